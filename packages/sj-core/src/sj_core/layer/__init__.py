"""Layers for spiking networks.

* Step-mode-aware torch layers: :class:`Linear`, :class:`Conv2d`, :class:`BatchNorm2d`,
  :class:`Flatten`, :class:`MaxPool2d`, :class:`AvgPool2d`, :class:`AdaptiveAvgPool2d`
  (:mod:`~sj_core.layer.stateless`): the torch layer in step mode ``'s'``, time folded
  into the batch in ``'m'``.
* :class:`Dropout` (:mod:`~sj_core.layer.dropout`): one mask per sequence.
* :class:`SyncBatchNorm` and :func:`convert_sync_batchnorm`
  (:mod:`~sj_core.layer.sync_batchnorm`): synchronised batch norm that keeps its step
  mode, for data-parallel training.
* Containers (:mod:`~sj_core.layer.containers`): :class:`SeqToANNContainer` (stateless
  modules, time folded into the batch) and :class:`MultiStepContainer` (single-step
  modules, step by step).

Example::

    >>> from sj_core import functional, layer, neuron
    >>> net = nn.Sequential(
    ...     layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.LIFNode(),
    ...     layer.Flatten(), layer.Linear(8 * 28 * 28, 10), neuron.LIFNode(),
    ... )
    >>> functional.set_step_mode(net, "m")
    >>> net(torch.rand(4, 2, 1, 28, 28)).shape      # [T, N, C, H, W] -> [T, N, classes]
    torch.Size([4, 2, 10])
"""

from .containers import MultiStepContainer, SeqToANNContainer
from .dropout import Dropout
from .stateless import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    TimeFoldedLayer,
)
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "MultiStepContainer",
    "SeqToANNContainer",
    "SyncBatchNorm",
    "TimeFoldedLayer",
    "convert_sync_batchnorm",
]
