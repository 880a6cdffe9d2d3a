"""Quadratic integrate-and-fire neuron: ``H = V + (X + a0 (V - v_rest)(V - v_c)) / tau``."""

from __future__ import annotations

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode
from .statements import QIF

__all__ = ["QIFNode"]


class QIFNode(BaseNode):
    """Quadratic Integrate-and-Fire neuron.

    ``H[t] = V[t-1] + (X[t] + a0 (V[t-1] - v_rest)(V[t-1] - v_c)) / tau``

    The quadratic term pulls ``V`` towards ``v_rest`` below the critical voltage ``v_c``
    and pushes it up (towards firing) above it.

    Args:
        tau: membrane time constant, > 1.
        v_c: critical voltage.
        a0: sharpness of the quadratic term, > 0.
        v_threshold: firing threshold.
        v_rest: resting potential.
        v_reset: reset potential (hard reset; then ``v_threshold > v_reset`` and
            ``v_rest >= v_reset``), or ``None`` for soft reset.
        Others: as in :class:`~sj_core.neuron.BaseNode`.

    Equations: :data:`sj_core.neuron.statements.QIF`; kernel backends: operator key
    ``qif.multi_step`` (kwargs ``tau, v_c, a0, v_rest`` plus the common ones).

    Example::

        >>> node = QIFNode(step_mode="m")
        >>> x_seq = torch.tensor([[1.5], [0.0], [2.0]])   # [T, N]
        >>> node(x_seq).flatten().tolist()
        [0.0, 0.0, 1.0]
    """

    statement = QIF

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: float | None = -0.1,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        params, _, _ = QIF.validate(
            {"tau": tau, "v_c": v_c, "a0": a0, "v_rest": v_rest}, v_threshold, v_reset
        )
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.tau = params["tau"]
        self.v_c = params["v_c"]
        self.a0 = params["a0"]
        self.v_rest = params["v_rest"]

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}"
        )
