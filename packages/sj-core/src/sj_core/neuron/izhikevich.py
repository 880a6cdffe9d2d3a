"""Izhikevich neuron: a quadratic IF neuron with an adaptation current ``w``."""

from __future__ import annotations

from typing import Any

import torch

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode, check_float, step_like
from .dynamics import izhikevich_adapt, izhikevich_charge, izhikevich_jump
from .qif import check_positive
from .validation import check_tau

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

    Kernel backends: operator key ``izhikevich.multi_step``; it takes and returns both
    states (``kernel_states = ("v", "w")``).

    Example::

        >>> node = IzhikevichNode(a=0.5, b=0.2, step_mode="m")
        >>> spikes = node(torch.full((4, 3), 1.2))       # [T, N]
        >>> node.w.shape
        torch.Size([3])
    """

    operator_name = "izhikevich"
    kernel_states = ("v", "w")

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
        tau = check_tau("tau", tau)
        v_c = check_float("v_c", v_c)
        a0 = check_positive("a0", a0)
        v_rest = check_float("v_rest", v_rest)
        w_rest = check_float("w_rest", w_rest)
        # The reference system only asserts a float here; tau_w <= 0 would divide by zero
        # or make the adaptation grow without bound.
        tau_w = check_positive("tau_w", tau_w)
        a = check_float("a", a)
        b = check_float("b", b)
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.register_memory("w", w_rest)
        self.tau = tau
        self.v_c = v_c
        self.a0 = a0
        self.v_rest = v_rest
        self.w_rest = w_rest
        self.tau_w = tau_w
        self.a = a
        self.b = b

    # -- hooks (torch backend) -----------------------------------------------------------

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = izhikevich_charge(x, self.v, self.w, self.tau, self.v_c, self.a0, self.v_rest)

    def neuronal_adaptation(self) -> None:
        """Sub-threshold update of ``w``; called after charging, so ``self.v`` is ``H``."""
        self.w = izhikevich_adapt(self.v, self.w, self.a, self.v_rest, self.tau_w)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        super().neuronal_reset(spike)
        self.w = izhikevich_jump(self.w, spike, self.b)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: charge, adapt, fire, reset. ``x``: ``[N, *]``."""
        self.v_float_to_tensor(x)
        self.materialize_memory("w", x)
        self.neuronal_charge(x)
        self.neuronal_adaptation()
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # Materialise w up front too, so that it is a tensor even when T == 0.
        self.materialize_memory("w", step_like(x_seq))
        return super().multi_step_forward(x_seq)

    # -- kernel backends -----------------------------------------------------------------

    def kernel_kwargs(self) -> dict[str, Any]:
        return {
            **super().kernel_kwargs(),
            "tau": self.tau,
            "v_c": self.v_c,
            "a0": self.a0,
            "v_rest": self.v_rest,
            "a": self.a,
            "b": self.b,
            "tau_w": self.tau_w,
        }

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, "
            f"v_rest={self.v_rest}, w_rest={self.w_rest}, tau_w={self.tau_w}, a={self.a}, "
            f"b={self.b}"
        )
