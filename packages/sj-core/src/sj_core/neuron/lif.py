"""Leaky integrate-and-fire neurons."""

from __future__ import annotations

import torch

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode, SimpleBaseNode
from .nonspiking import NonSpikingLIFNode
from .statements import LIF

__all__ = ["LIFNode", "NonSpikingLIFNode", "SimpleLIFNode"]


class LIFNode(BaseNode):
    """Leaky Integrate-and-Fire neuron.

    ``decay_input=True``:  ``H[t] = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau``
    ``decay_input=False``: ``H[t] = V[t-1] - (V[t-1] - V_r) / tau + X[t]``

    with ``V_r = v_reset`` (0 for soft reset).

    Args:
        tau: membrane time constant, > 1.
        decay_input: whether the input is divided by ``tau`` too.
        Others: as in :class:`~sj_core.neuron.BaseNode`.

    Equations: :data:`sj_core.neuron.statements.LIF`; kernel backends: operator keys
    ``lif.multi_step`` and ``lif.single_step``.

    Example::

        >>> node = LIFNode(tau=2.0, step_mode="m")
        >>> x_seq = torch.full((4, 3), 1.5)       # [T, N]
        >>> node(x_seq).shape
        torch.Size([4, 3])
    """

    statement = LIF

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        params, _, _ = LIF.validate({"tau": tau, "decay_input": decay_input}, v_threshold, v_reset)
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.tau = params["tau"]
        self.decay_input = params["decay_input"]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, decay_input={self.decay_input}"


class SimpleLIFNode(SimpleBaseNode):
    """A plain LIF neuron (:class:`~sj_core.neuron.SimpleBaseNode`), torch only.

    Same equations as :class:`LIFNode`; ``tau`` and ``decay_input`` have no defaults, as
    in the reference system.
    """

    def __init__(
        self,
        tau: float,
        decay_input: bool,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
    ) -> None:
        params, _, _ = LIF.validate({"tau": tau, "decay_input": decay_input}, v_threshold, v_reset)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode)
        self.tau = params["tau"]
        self.decay_input = params["decay_input"]

    def neuronal_charge(self, x: torch.Tensor) -> None:
        v_r = 0.0 if self.v_reset is None else self.v_reset
        self.v = LIF.charge(x, self.v, tau=self.tau, decay_input=self.decay_input, v_r=v_r)
