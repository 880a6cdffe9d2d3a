"""The fused multi-step neuron as one ``torch.autograd.Function``.

One autograd node for all ``T`` steps instead of a dozen per step: the forward runs
:func:`~.forward.forward_loop` without a graph and keeps only what the backward
reads, the backward runs :func:`~.backward.backward_loop`. Kept for the backward
(:attr:`KernelEquations.backward_reads <sj_core.neuron.statements.KernelEquations>`
says what the derivatives read), besides the tensor parameters (one element each):

* IF, LIF: ``H`` (the pre-reset potentials, one ``[*S]`` tensor per step) only;
* QIF, EIF, Izhikevich (they read ``V[t-1]``): ``H`` and the initial ``V``;
* PLIF with ``decay_input`` (it reads ``X``): ``X`` and the initial ``V`` only, and the
  backward runs the forward loop again for ``H`` (bitwise the same) rather than keep both
  ``X`` and ``H``.

That is ``(1 + 1/T) x T * N`` elements at most, against about ``3 x`` for the per-step
autograd loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .backward import backward_loop
from .config import FusedConfig
from .forward import forward_loop

__all__ = ["FusedMultiStep"]


class FusedMultiStep(torch.autograd.Function):
    """``apply(config, x_seq, *states, *tensor_params) -> (spike_seq, *final_states,
    v_seq | None)``; ``T >= 1``, every state in ``x_seq``'s dtype."""

    @staticmethod
    def forward(ctx: Any, config: FusedConfig, x_seq: torch.Tensor, *tensors: torch.Tensor):
        n = len(config.statement.states)
        states, parameters = tensors[:n], tensors[n:]
        # Where the backward reads X anyway (PLIF's dH/dr_tau), keeping X and the initial
        # states is enough: the backward runs the forward loop again for H (the same
        # operations, so bitwise the same H), and H is not kept twice over.
        recompute = "x" in config.backward_reads()
        spike_seq, finals, v_seq, h_steps = forward_loop(
            config, x_seq, states, parameters, keep_h=not recompute
        )
        if recompute:
            ctx.save_for_backward(x_seq, *states, *parameters)
        else:
            # Each step's H as it was computed: saving the T tensors costs no copy.
            v_init = states[0] if "v" in config.backward_reads() else None
            ctx.save_for_backward(v_init, *parameters, *h_steps)
        ctx.config, ctx.recompute = config, recompute
        ctx.num_parameters = len(parameters)
        ctx.set_materialize_grads(False)
        return (spike_seq, *finals, v_seq)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None):
        if torch.is_grad_enabled():
            # The backward is not itself recorded: a second derivative through it would be
            # silently zero, so refuse (the per-step loop has one).
            raise RuntimeError(
                "the torch backend's fused multi-step loop has no second derivative: for a "
                "backward pass with create_graph=True (gradient penalties, higher-order "
                "gradients) run the forward pass inside sj_core.fused.disabled(), which "
                "records the per-step autograd loop instead"
            )
        config = ctx.config
        saved = ctx.saved_tensors
        if ctx.recompute:
            n = len(config.statement.states)
            x_seq, states, parameters = saved[0], saved[1 : 1 + n], saved[1 + n :]
            again = dataclasses.replace(config, store_v_seq=False)
            h_steps = forward_loop(again, x_seq, states, parameters, keep_h=True)[3]
            v_init = states[0]
        else:
            split = 1 + ctx.num_parameters
            v_init, parameters, h_steps = saved[0], saved[1:split], saved[split:]
            x_seq = None
        needs = list(ctx.needs_input_grad[1:])
        results = backward_loop(config, h_steps, x_seq, v_init, parameters, grads, needs)
        return (None, *results)
