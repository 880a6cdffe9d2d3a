"""Izhikevich neuron: a quadratic IF neuron with an adaptation current ``w``."""

from __future__ import annotations

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode
from .statements import IZHIKEVICH
from .validation import check_float

__all__ = ["IzhikevichNode"]


class IzhikevichNode(BaseNode):
    """Izhikevich neuron (two memories: potential ``v`` and adaptation ``w``).

    Each step::

        H[t]  = V[t-1] + (X[t] + a0 (V[t-1] - v_rest)(V[t-1] - v_c) - W[t-1]) / tau
        W'[t] = W[t-1] + (a (H[t] - v_rest) - W[t-1]) / tau_w     # from H, before reset
        S[t]  = surrogate(H[t] - v_threshold)
        V[t]  = reset(H[t], S[t])                                  # as BaseNode
        W[t]  = W'[t] + b S[t]                                     # S never detached

    ``v`` starts at ``v_reset`` (0 for soft reset), ``w`` at ``w_rest``.

    Args:
        tau: membrane time constant, > 1.
        v_c: critical voltage of the quadratic term.
        a0: sharpness of the quadratic term, > 0.
        v_threshold: firing threshold.
        v_reset: reset potential, or ``None`` for soft reset.
        v_rest: resting potential.
        w_rest: initial (reset) value of the adaptation ``w``.
        tau_w: adaptation time constant, > 0.
        a: sub-threshold coupling of ``w`` to the potential.
        b: spike-triggered jump of ``w``.
        Others: as in :class:`~sj_core.neuron.BaseNode`.

    Equations: :data:`sj_core.neuron.statements.IZHIKEVICH`; kernel backends: operator
    key ``izhikevich.multi_step``, which takes and returns both states.

    Example::

        >>> node = IzhikevichNode(a=0.5, b=0.2, step_mode="m")
        >>> spikes = node(torch.full((4, 3), 1.2))       # [T, N]
        >>> node.w.shape
        torch.Size([3])
    """

    statement = IZHIKEVICH

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        v_rest: float = -0.1,
        w_rest: float = 0.0,
        tau_w: float = 2.0,
        a: float = 0.0,
        b: float = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        params, _, _ = IZHIKEVICH.validate(
            {"tau": tau, "v_c": v_c, "a0": a0, "v_rest": v_rest, "a": a, "b": b, "tau_w": tau_w},
            v_threshold,
            v_reset,
        )
        w_rest = check_float("w_rest", w_rest)
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.register_memory("w", w_rest)
        for name, value in params.items():
            setattr(self, name, value)
        self.w_rest = w_rest

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, "
            f"v_rest={self.v_rest}, w_rest={self.w_rest}, tau_w={self.tau_w}, a={self.a}, "
            f"b={self.b}"
        )
