"""Integrate-and-fire neurons: ``H[t] = V[t-1] + X[t]``."""

from __future__ import annotations

import torch

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode, SimpleBaseNode
from .nonspiking import NonSpikingIFNode
from .statements import IF

__all__ = ["IFNode", "NonSpikingIFNode", "SimpleIFNode"]


class IFNode(BaseNode):
    """Integrate-and-Fire neuron, an ideal integrator: ``H[t] = V[t-1] + X[t]``.

    Arguments as in :class:`~sj_core.neuron.BaseNode`. Equations:
    :data:`sj_core.neuron.statements.IF`; kernel backends: operator keys
    ``if.multi_step`` and ``if.single_step``.

    Example::

        >>> node = IFNode(step_mode="m")
        >>> node(torch.tensor([[0.6], [0.6]])).flatten().tolist()
        [0.0, 1.0]
    """

    statement = IF


class SimpleIFNode(SimpleBaseNode):
    """A plain IF neuron (:class:`~sj_core.neuron.SimpleBaseNode`), torch only."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = IF.charge(x, self.v)
