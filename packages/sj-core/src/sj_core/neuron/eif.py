"""Exponential integrate-and-fire neuron.

``H = V + (X + v_rest - V + delta_T exp((V - theta_rh) / delta_T)) / tau``
"""

from __future__ import annotations

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode
from .statements import EIF

__all__ = ["EIFNode"]


class EIFNode(BaseNode):
    """Exponential Integrate-and-Fire neuron.

    ``H[t] = V[t-1] + (X[t] + v_rest - V[t-1] + delta_T exp((V[t-1] - theta_rh) / delta_T)) / tau``

    A LIF leak towards ``v_rest`` plus an exponential upswing that takes over near the
    rheobase ``theta_rh``; it tends to LIF as ``delta_T -> 0``.

    Args:
        tau: membrane time constant, > 1.
        delta_T: sharpness of the exponential upswing, > 0.
        theta_rh: rheobase threshold.
        v_threshold: firing threshold.
        v_rest: resting potential.
        v_reset: reset potential (hard reset; then ``v_threshold > v_reset`` and
            ``v_rest >= v_reset``, as the reference system asserts), or ``None`` for soft
            reset.
        Others: as in :class:`~sj_core.neuron.BaseNode`.

    Equations: :data:`sj_core.neuron.statements.EIF`; kernel backends: operator key
    ``eif.multi_step`` (kwargs ``tau, delta_T, theta_rh, v_rest`` plus the common ones).

    Example::

        >>> node = EIFNode(step_mode="m")
        >>> node(torch.tensor([[2.0], [0.0]])).flatten().tolist()
        [1.0, 0.0]
    """

    statement = EIF

    def __init__(
        self,
        tau: float = 2.0,
        delta_T: float = 1.0,
        theta_rh: float = 0.8,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: float | None = -0.1,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        params, _, _ = EIF.validate(
            {"tau": tau, "delta_T": delta_T, "theta_rh": theta_rh, "v_rest": v_rest},
            v_threshold,
            v_reset,
        )
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.tau = params["tau"]
        self.delta_T = params["delta_T"]
        self.theta_rh = params["theta_rh"]
        self.v_rest = params["v_rest"]

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", tau={self.tau}, delta_T={self.delta_T}, "
            f"theta_rh={self.theta_rh}, v_rest={self.v_rest}"
        )
