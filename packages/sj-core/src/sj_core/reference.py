"""Pure-torch multi-step neuron loops: the reference every kernel backend reproduces.

Each function implements an operator key of :mod:`sj_core.backends.operators` (they are
the ``torch`` backend's operators) with autograd through a plain time loop, built from
the per-step equations in :mod:`sj_core.neuron.dynamics`. Shapes: ``x_seq`` ``[T, *S]``,
states ``[*S]``; returns ``(spike_seq [T, *S], v_last [*S], v_seq [T, *S] | None)``
(Izhikevich, with two states: ``(spike_seq, v_last, w_last, v_seq | None)``).

Example::

    >>> x_seq = torch.rand(8, 32)
    >>> spike_seq, v_last, v_seq = multistep_lif(
    ...     x_seq, torch.zeros(32), tau=2.0, decay_input=True, v_threshold=1.0,
    ...     v_reset=0.0, detach_reset=False, surrogate_function=Sigmoid(),
    ...     store_v_seq=True)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .neuron.dynamics import (
    eif_charge,
    if_charge,
    izhikevich_adapt,
    izhikevich_charge,
    izhikevich_jump,
    lif_charge,
    plif_charge,
    qif_charge,
    reset_potential,
)

__all__ = [
    "multistep_eif",
    "multistep_if",
    "multistep_izhikevich",
    "multistep_lif",
    "multistep_plif",
    "multistep_qif",
    "run_multistep",
]

ChargeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_shapes(x_seq: torch.Tensor, *states: torch.Tensor) -> None:
    if x_seq.dim() < 1:
        raise ValueError("x_seq must be [T, *S], got a 0-d tensor")
    for state in states:
        if tuple(state.shape) != tuple(x_seq.shape[1:]):
            raise ValueError(
                f"initial state shape {tuple(state.shape)} does not match one step of "
                f"x_seq {tuple(x_seq.shape[1:])}"
            )


def run_multistep(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    charge: ChargeFn,
    *,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The charge -> fire -> reset loop over ``T`` steps for a one-state neuron.

    Args:
        charge: ``(x [*S], v [*S]) -> H [*S]``.
    """
    _check_shapes(x_seq, v_init)
    v = v_init
    spikes: list[torch.Tensor] = []
    v_seq: list[torch.Tensor] = []
    for t in range(x_seq.shape[0]):
        h = charge(x_seq[t], v)
        spike = surrogate_function(h - v_threshold)
        v = reset_potential(h, spike, v_threshold, v_reset, detach_reset)
        spikes.append(spike)
        if store_v_seq:
            v_seq.append(v)
    spike_seq = torch.stack(spikes) if spikes else torch.empty_like(x_seq)
    if not store_v_seq:
        return spike_seq, v, None
    return spike_seq, v, torch.stack(v_seq) if v_seq else torch.empty_like(x_seq)


def multistep_if(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    *,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """IF neuron over ``T`` steps (operator ``if.multi_step``)."""
    return run_multistep(
        x_seq,
        v_init,
        if_charge,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


def multistep_lif(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    *,
    tau: float,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """LIF neuron over ``T`` steps (operator ``lif.multi_step``)."""

    def charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return lif_charge(x, v, tau, decay_input, v_reset)

    return run_multistep(
        x_seq,
        v_init,
        charge,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


def multistep_plif(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor,
    *,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Parametric LIF over ``T`` steps (operator ``plif.multi_step``).

    ``r_tau`` is a one-element tensor ``1/tau``; gradients flow to it.
    """
    if r_tau.numel() != 1:
        raise ValueError(f"r_tau must have one element, got shape {tuple(r_tau.shape)}")
    r = r_tau.reshape(())

    def charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return plif_charge(x, v, r, decay_input, v_reset)

    return run_multistep(
        x_seq,
        v_init,
        charge,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


def multistep_qif(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    *,
    tau: float,
    v_c: float,
    a0: float,
    v_rest: float,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quadratic IF neuron over ``T`` steps (operator ``qif.multi_step``)."""

    def charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return qif_charge(x, v, tau, v_c, a0, v_rest)

    return run_multistep(
        x_seq,
        v_init,
        charge,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


def multistep_eif(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    *,
    tau: float,
    delta_T: float,
    theta_rh: float,
    v_rest: float,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Exponential IF neuron over ``T`` steps (operator ``eif.multi_step``)."""

    def charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return eif_charge(x, v, tau, delta_T, theta_rh, v_rest)

    return run_multistep(
        x_seq,
        v_init,
        charge,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


def multistep_izhikevich(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    w_init: torch.Tensor,
    *,
    tau: float,
    v_c: float,
    a0: float,
    v_rest: float,
    a: float,
    b: float,
    tau_w: float,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Izhikevich neuron over ``T`` steps (operator ``izhikevich.multi_step``).

    Two states: the membrane potential ``v`` and the adaptation ``w``. Each step:
    charge ``H`` (with the old ``W``), adapt ``W'`` from ``H``, fire, reset ``V``, then
    ``W = W' + b S``. Returns ``(spike_seq, v_last, w_last, v_seq | None)``; ``T == 0``
    returns the initial states as given.
    """
    _check_shapes(x_seq, v_init, w_init)
    v, w = v_init, w_init
    spikes: list[torch.Tensor] = []
    v_seq: list[torch.Tensor] = []
    for t in range(x_seq.shape[0]):
        h = izhikevich_charge(x_seq[t], v, w, tau, v_c, a0, v_rest)
        w = izhikevich_adapt(h, w, a, v_rest, tau_w)
        spike = surrogate_function(h - v_threshold)
        v = reset_potential(h, spike, v_threshold, v_reset, detach_reset)
        w = izhikevich_jump(w, spike, b)
        spikes.append(spike)
        if store_v_seq:
            v_seq.append(v)
    spike_seq = torch.stack(spikes) if spikes else torch.empty_like(x_seq)
    if not store_v_seq:
        return spike_seq, v, w, None
    return spike_seq, v, w, torch.stack(v_seq) if v_seq else torch.empty_like(x_seq)
