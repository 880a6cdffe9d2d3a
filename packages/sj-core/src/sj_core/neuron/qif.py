"""Quadratic integrate-and-fire neuron: ``H = V + (X + a0 (V - v_rest)(V - v_c)) / tau``."""

from __future__ import annotations

from typing import Any

import torch

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode, check_float
from .dynamics import qif_charge
from .validation import check_tau

__all__ = ["QIFNode", "check_hard_reset_order", "check_positive"]


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless it is > 0."""
    value = check_float(name, value)
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_hard_reset_order(v_threshold: Any, v_rest: Any, v_reset: Any) -> None:
    """For hard reset, require ``v_threshold > v_reset`` and ``v_rest >= v_reset``.

    A neuron reset above its threshold, or above its resting potential, would fire again
    at once or be pushed upwards by its own leak; the reference system rejects both.
    Soft reset (``v_reset is None``) has no such constraint.
    """
    v_threshold = check_float("v_threshold", v_threshold)
    v_rest = check_float("v_rest", v_rest)
    v_reset = check_float("v_reset", v_reset, allow_none=True)
    if v_reset is None:
        return
    if not v_threshold > v_reset:
        raise ValueError(
            f"with hard reset, v_threshold must be > v_reset, got v_threshold={v_threshold}, "
            f"v_reset={v_reset} (or use v_reset=None for soft reset)"
        )
    if not v_rest >= v_reset:
        raise ValueError(
            f"with hard reset, v_rest must be >= v_reset, got v_rest={v_rest}, v_reset={v_reset}"
        )


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

    Kernel backends: operator key ``qif.multi_step`` (kwargs ``tau, v_c, a0, v_rest``
    plus the common ones).

    Example::

        >>> node = QIFNode(step_mode="m")
        >>> x_seq = torch.tensor([[1.5], [0.0], [2.0]])   # [T, N]
        >>> node(x_seq).flatten().tolist()
        [0.0, 0.0, 1.0]
    """

    operator_name = "qif"

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
        tau = check_tau("tau", tau)
        v_c = check_float("v_c", v_c)
        a0 = check_positive("a0", a0)
        v_rest = check_float("v_rest", v_rest)
        check_hard_reset_order(v_threshold, v_rest, v_reset)
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.tau = tau
        self.v_c = v_c
        self.a0 = a0
        self.v_rest = v_rest

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = qif_charge(x, self.v, self.tau, self.v_c, self.a0, self.v_rest)

    def kernel_kwargs(self) -> dict[str, Any]:
        return {
            **super().kernel_kwargs(),
            "tau": self.tau,
            "v_c": self.v_c,
            "a0": self.a0,
            "v_rest": self.v_rest,
        }

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}"
        )
