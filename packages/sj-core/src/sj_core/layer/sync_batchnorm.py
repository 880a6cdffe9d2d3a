"""Synchronised batch norm that keeps its step mode.

``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` replaces every batch-norm layer by a
plain ``nn.SyncBatchNorm``. For :class:`~sj_core.layer.BatchNorm2d` in step mode ``'m'``
that loses the time folding: the ``[T, N, C, H, W]`` input would be normalised over its
dimension 1 (``N``) as if it were the channels. :func:`convert_sync_batchnorm` converts
the same layers into :class:`SyncBatchNorm`, which keeps the step mode, and converts
plain torch batch norms as torch does.

Example::

    >>> net = nn.Sequential(layer.Conv2d(3, 8, 3), layer.BatchNorm2d(8), neuron.LIFNode())
    >>> functional.set_step_mode(net, "m")
    >>> net = layer.convert_sync_batchnorm(net)        # before wrapping it in DDP
    >>> type(net[1]).__name__, net[1].step_mode
    ('SyncBatchNorm', 'm')
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .stateless import TimeFoldedLayer

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


class SyncBatchNorm(TimeFoldedLayer, nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` with a step mode: the input as the batch norm it replaces
    takes it in ``'s'``, ``[T, N, C, *]`` in ``'m'`` (statistics over ``T * N * ...``
    per channel, across the processes of the group).

    Args:
        num_features, eps, momentum, affine, track_running_stats, process_group: as in
            ``nn.SyncBatchNorm``.
        step_mode: ``'s'`` or ``'m'``.
        multi_step_dim: the input rank in step mode ``'m'`` (5 for images ``[T, N, C,
            H, W]``).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        step_mode: str = "s",
        multi_step_dim: int = 5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            process_group,
            device=device,
            dtype=dtype,
        )
        self.multi_step_dim = multi_step_dim
        self.multi_step_layout = "[T, N, C" + ", *" * (multi_step_dim - 3) + "]"
        self.step_mode = step_mode


def convert_sync_batchnorm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """``module`` with every batch norm made synchronised, keeping step modes.

    Step-mode batch norms of :mod:`sj_core.layer` become :class:`SyncBatchNorm` with the
    same step mode, parameters, running statistics and training flag; plain torch batch
    norms become ``nn.SyncBatchNorm`` (torch's conversion). Other modules are kept and
    searched. Returns the converted module (a new one if ``module`` itself is a batch
    norm), as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does.
    """
    if isinstance(module, TimeFoldedLayer) and isinstance(module, _BatchNorm):
        converted = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            process_group,
            step_mode=module.step_mode,
            multi_step_dim=module.multi_step_dim,
        )
        if module.affine:  # the same Parameter objects, as torch's conversion does
            converted.weight = module.weight
            converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    if isinstance(module, _BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
