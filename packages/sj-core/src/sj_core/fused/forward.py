"""The fused forward loop: ``T`` steps of a neuron statement without an autograd graph.

It computes the statement's equations on tensors with the operations, in the order, of
the reference loop (:func:`sj_core.reference.multistep`), so its spikes and potentials
are the reference's, bit for bit; it only builds no autograd nodes, skips operations
that change no bit (:mod:`.evaluate`), fires and resets in fewer passes over memory
(:func:`reset_into`: the same values), and keeps each step's pre-reset potential ``H``
for the backward pass (:mod:`.backward`).

Shapes: ``x_seq``, ``spike_seq``, ``v_seq`` ``[T, *S]``; states and each step's ``H``
``[*S]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..neuron.statements import fire_input, reset
from .config import FusedConfig
from .evaluate import evaluate

__all__ = ["forward_loop", "heaviside_into", "reset_into"]


def heaviside_into(margin: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`~sj_core.surrogate.heaviside` of ``margin`` written into ``out`` (the same
    values: 1 where ``margin >= 0``, else 0). Comparing straight into a float tensor costs
    a third of a bool comparison followed by a cast (measured on a CPU)."""
    return torch.ge(margin, 0, out=out)


def _fire_into(h: torch.Tensor, v_threshold: float, out: torch.Tensor) -> torch.Tensor:
    """The spike ``heaviside(H - V_th)`` into ``out``. In fp32 and fp64 (whose arithmetic
    type is their own, and with gradual underflow) ``H - V_th >= 0`` exactly when
    ``H >= V_th``, NaN and infinities included, so the subtraction is skipped; fp16 and
    bf16 subtract in fp32 and round, so they keep it."""
    if h.dtype in (torch.float32, torch.float64):
        return torch.ge(h, v_threshold, out=out)
    return heaviside_into(fire_input(h, v_threshold), out=out)


def reset_into(
    h: torch.Tensor, spike: torch.Tensor, v_threshold: float, v_reset: float | None
) -> torch.Tensor:
    """:func:`~sj_core.neuron.statements.reset` of ``h`` after ``spike``, the same values
    (bit for bit, non-finite ones included) in fewer passes over memory.

    ``spike`` is exactly 0 or 1, so every product in the reset is exact and fusing a
    product into the following addition (one rounding either way) changes nothing: hard
    reset ``S V_reset + (1 - S) H`` is one ``addcmul`` on ``S V_reset``; soft reset
    ``H - S V_th`` is ``H + (-V_th) S``, one ``add``, where ``V_th`` is rounded like the
    reference rounds it (fp32 and fp64, whose arithmetic type is their own).
    """
    if v_reset is not None:
        return torch.addcmul(spike * v_reset, 1.0 - spike, h)
    if h.dtype in (torch.float32, torch.float64):
        return torch.add(h, spike, alpha=-v_threshold)
    return reset(h, spike, v_threshold, v_reset)


def forward_loop(
    config: FusedConfig,
    x_seq: torch.Tensor,
    states: Sequence[torch.Tensor],
    tensors: Sequence[torch.Tensor],
    *,
    keep_h: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None, list[torch.Tensor] | None]:
    """``T >= 1`` steps: ``(spike_seq, final states, v_seq | None, h_steps | None)``;
    ``h_steps`` (each step's ``H`` as computed: kept, not copied into one tensor) when
    ``keep_h``. Every state must have ``x_seq``'s dtype (the outputs are allocated in it).
    """
    statement = config.statement
    adaptation = statement.adaptation
    params, v_r = config.params, config.v_r
    v_threshold, v_reset = config.v_threshold, config.v_reset
    charge = config.equations.charge
    values = config.symbol_values(tensors)
    state_names = statement.states
    spike_seq = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
    v_seq = torch.empty_like(spike_seq) if config.store_v_seq else None
    h_steps: list[torch.Tensor] | None = [] if keep_h else None
    states = tuple(states)
    for t in range(x_seq.shape[0]):
        # The statement's charge, printed as an expression tree (the same operations in
        # the same order), evaluated with exact no-ops skipped (V - V_r for V_r = 0).
        values.update(zip(state_names, states, strict=True), x=x_seq[t])
        h = evaluate(charge, values)
        spike = _fire_into(h, v_threshold, out=spike_seq[t])
        v = reset_into(h, spike, v_threshold, v_reset)
        if adaptation is None:
            states = (v,)
        else:
            w = adaptation.adapt(h, states[1], **params, v_r=v_r)
            states = (v, adaptation.jump(w, spike, **params, v_r=v_r))
        if h_steps is not None:
            h_steps.append(h)
        if v_seq is not None:
            v_seq[t].copy_(v)
    return spike_seq, states, v_seq, h_steps
