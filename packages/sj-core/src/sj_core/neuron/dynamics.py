"""Per-step neuron equations as pure functions (SPEC sections 2 and 3).

These are the single definition of the math: the neuron modules' hooks call them, and so
do the functional reference loops in :mod:`sj_core.reference` that every kernel backend
is tested against. All tensors share one shape ``[*S]``; ``V_r`` is ``v_reset``, or 0
for soft reset.
"""

from __future__ import annotations

import torch

__all__ = [
    "if_charge",
    "lif_charge",
    "plif_charge",
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
