"""Containers that run their children over time.

Both are multi-step only (input ``[T, N, *]``) and set ``manages_time = True``:
:func:`sj_core.functional.set_step_mode` sets their own mode but leaves their children's
modes alone, because the container, not the child, decides how time is handled.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..base import MultiStepModule
from ..functional import multi_step_forward, seq_to_ann_forward
from ._shapes import check_multi_step_input

__all__ = ["MultiStepContainer", "SeqToANNContainer"]


class SeqToANNContainer(nn.Sequential, MultiStepModule):
    """Apply stateless modules to a whole sequence at once, time folded into the batch.

    ``[T, N, *]`` -> ``[T * N, *]`` -> modules in order -> ``[T, N, *out]``. Use it for
    plain torch layers (``nn.Conv2d``, ``nn.BatchNorm2d``, ...) in a multi-step network;
    one batched call is much faster than ``T`` calls. State-dict keys are those of an
    ``nn.Sequential`` of the same modules (``"0.weight"``, ...).

    Example::

        >>> block = SeqToANNContainer(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        >>> block(torch.rand(8, 2, 1, 9, 9)).shape           # [T, N, C, H, W]
        torch.Size([8, 2, 4, 7, 7])
    """

    manages_time: ClassVar[bool] = True

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(*modules)
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``x_seq``: ``[T, N, *]`` -> ``[T, N, *out]``."""
        check_multi_step_input(self, x_seq, min_dim=2, max_dim=None, layout="[T, N, *]")
        return seq_to_ann_forward(x_seq, tuple(self))

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


class MultiStepContainer(nn.Sequential, MultiStepModule):
    """Run single-step (stateful) modules over a sequence, one step at a time.

    At each ``t`` the modules run in order on ``x_seq[t]``; outputs are stacked to
    ``[T, N, *out]``. The children stay in step mode ``'s'`` (``set_step_mode`` does not
    change them) and keep their state across steps; reset it between sequences with
    :func:`sj_core.functional.reset_net`.

    Example::

        >>> block = MultiStepContainer(neuron.LIFNode())     # an 's'-mode neuron
        >>> block(torch.rand(8, 2, 3)).shape
        torch.Size([8, 2, 3])
    """

    manages_time: ClassVar[bool] = True

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(*modules)
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``x_seq``: ``[T, N, *]`` (``T >= 1``) -> ``[T, N, *out]``."""
        check_multi_step_input(self, x_seq, min_dim=2, max_dim=None, layout="[T, N, *]")
        return multi_step_forward(x_seq, tuple(self))

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"
