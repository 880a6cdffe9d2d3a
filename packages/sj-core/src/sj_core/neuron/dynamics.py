"""Per-step neuron equations as pure functions (SPEC sections 2 and 3).

These are the single definition of the math: the neuron modules' hooks call them, and so
do the functional reference loops in :mod:`sj_core.reference` that every kernel backend
is tested against. All tensors share one shape ``[*S]``; ``V_r`` is ``v_reset``, or 0
for soft reset.
"""

from __future__ import annotations

import torch

__all__ = [
    "eif_charge",
    "if_charge",
    "izhikevich_adapt",
    "izhikevich_charge",
    "izhikevich_jump",
    "lif_charge",
    "plif_charge",
    "qif_charge",
    "reset_potential",
    "reset_voltage_or_zero",
]


def reset_voltage_or_zero(v_reset: float | None) -> float:
    """``V_r`` in the charge equations: ``v_reset``, or 0 for soft reset."""
    return 0.0 if v_reset is None else v_reset


def if_charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IF: ``H = V + X``."""
    return v + x


def lif_charge(
    x: torch.Tensor, v: torch.Tensor, tau: float, decay_input: bool, v_reset: float | None
) -> torch.Tensor:
    """LIF: ``H = V + (X - (V - V_r)) / tau`` (decay_input) or ``V - (V - V_r) / tau + X``."""
    v_r = reset_voltage_or_zero(v_reset)
    if decay_input:
        return v + (x - (v - v_r)) / tau
    return v - (v - v_r) / tau + x


def plif_charge(
    x: torch.Tensor,
    v: torch.Tensor,
    r_tau: torch.Tensor,
    decay_input: bool,
    v_reset: float | None,
) -> torch.Tensor:
    """Parametric LIF: LIF with ``1/tau = r_tau`` (a tensor, ``sigmoid(w)``)."""
    v_r = reset_voltage_or_zero(v_reset)
    if decay_input:
        return v + (x - (v - v_r)) * r_tau
    return v - (v - v_r) * r_tau + x


def reset_potential(
    h: torch.Tensor,
    spike: torch.Tensor,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
) -> torch.Tensor:
    """The membrane potential after firing.

    Hard reset (``v_reset`` a float): ``V = S_d * V_reset + (1 - S_d) * H``.
    Soft reset (``v_reset is None``): ``V = H - S_d * V_th``.
    ``S_d`` is ``spike.detach()`` when ``detach_reset``, else ``spike``: it changes the
    gradient only, never the value.
    """
    spike_d = spike.detach() if detach_reset else spike
    if v_reset is None:
        return h - spike_d * v_threshold
    return spike_d * v_reset + (1.0 - spike_d) * h


def qif_charge(
    x: torch.Tensor, v: torch.Tensor, tau: float, v_c: float, a0: float, v_rest: float
) -> torch.Tensor:
    """Quadratic IF: ``H = V + (X + a0 (V - v_rest)(V - v_c)) / tau``."""
    return v + (x + a0 * (v - v_rest) * (v - v_c)) / tau


def eif_charge(
    x: torch.Tensor,
    v: torch.Tensor,
    tau: float,
    delta_T: float,
    theta_rh: float,
    v_rest: float,
) -> torch.Tensor:
    """Exponential IF: ``H = V + (X + v_rest - V + delta_T e^((V - theta_rh) / delta_T)) / tau``."""
    return v + (x + v_rest - v + delta_T * torch.exp((v - theta_rh) / delta_T)) / tau


def izhikevich_charge(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    tau: float,
    v_c: float,
    a0: float,
    v_rest: float,
) -> torch.Tensor:
    """Izhikevich: ``H = V + (X + a0 (V - v_rest)(V - v_c) - W) / tau`` (``W`` the adaptation)."""
    return v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau


def izhikevich_adapt(
    h: torch.Tensor, w: torch.Tensor, a: float, v_rest: float, tau_w: float
) -> torch.Tensor:
    """Sub-threshold adaptation, from the charged ``H`` (before firing and reset):
    ``W' = W + (a (H - v_rest) - W) / tau_w``."""
    return w + (a * (h - v_rest) - w) / tau_w


def izhikevich_jump(w: torch.Tensor, spike: torch.Tensor, b: float) -> torch.Tensor:
    """Spike-triggered adaptation after firing: ``W = W' + b S``.

    ``S`` is never detached here, even with ``detach_reset`` (as in the reference system):
    ``detach_reset`` concerns the membrane reset only.
    """
    return w + b * spike
