"""``torch.library`` operators around the kernels, with fake implementations and autograd.

Two operators, in namespace ``sj_triton``:

* ``multistep_forward(x_seq [T, *S], v_init [*S], r_tau [1]?, ...)`` ->
  ``(spike_seq [T, *S], h_seq [T, *S] | [0], v_seq [T, *S] | [0], v_last [*S])``
* ``multistep_backward(grad_spike?, grad_v_seq?, grad_v_last?, h_seq, v_init, r_tau?, ...)``
  -> ``(grad_x_seq, grad_v_init, grad_r_tau)``

They are registered with ``torch.library.triton_op`` (so Inductor sees the Triton
kernels themselves) where it exists and Triton runs on a GPU; under Triton's CPU
interpreter (``TRITON_INTERPRET=1``), whose kernels cannot be traced, and on torch
versions without ``triton_op``, they are opaque ``torch.library.custom_op``s with
explicit fake implementations. ``register_autograd`` connects the two.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from .._backend import interpreter_enabled
from .kernels import PLIF, multistep_backward_kernel, multistep_forward_kernel
from .launch import LOW_PRECISION, block_config, device_guard, threshold_neighbours

__all__ = ["USES_TRITON_OP", "multistep_forward", "multistep_backward"]

USES_TRITON_OP = hasattr(torch.library, "triton_op") and not interpreter_enabled()

if USES_TRITON_OP:
    from torch.library import wrap_triton

    def _register(name: str):
        return torch.library.triton_op(f"sj_triton::{name}", mutates_args=())

    def _launcher(kernel):
        return wrap_triton(kernel)
else:

    def _register(name: str):
        return torch.library.custom_op(f"sj_triton::{name}", mutates_args=())

    def _launcher(kernel):
        return kernel


_EMPTY = (0,)


def launch_forward(
    launcher,
    x_seq: Tensor,
    v_init: Tensor,
    r_tau: Tensor | None,
    neuron: int,
    hard_reset: bool,
    decay_input: bool,
    r_tau_value: float,
    v_threshold: float,
    v_reset: float,
    save_h: bool,
    store_v_seq: bool,
    allocate_unused: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
    """Allocate the outputs and launch the forward kernel through ``launcher``.

    ``x_seq`` ``[T, *S]`` (T >= 1) and ``v_init`` ``[*S]`` are contiguous; the kernel
    sees them as ``[T, NCL]`` and ``[NCL]`` without any reshape. ``launcher`` is the
    identity (eager) or ``wrap_triton`` (inside a ``triton_op``). Returns
    ``(spike_seq, h_seq, v_seq, v_last)``; outputs that were not asked for are empty
    tensors when ``allocate_unused`` (operators must return tensors), else ``None``.
    """
    T = x_seq.shape[0]
    ncl = v_init.numel()
    spike_seq = torch.empty_like(x_seq)
    h_seq = torch.empty_like(x_seq) if save_h else None
    v_seq = torch.empty_like(x_seq) if store_v_seq else None
    v_last = torch.empty_like(v_init)
    block, num_warps = block_config(ncl)
    below, at_or_above = threshold_neighbours(v_threshold, x_seq.dtype)
    with device_guard(x_seq):
        launcher(multistep_forward_kernel)[(triton.cdiv(ncl, block),)](
            x_seq,
            v_init,
            r_tau if r_tau is not None else v_init,
            spike_seq,
            h_seq if save_h else spike_seq,
            v_seq if store_v_seq else spike_seq,
            v_last,
            T,
            ncl,
            r_tau_value,
            v_threshold,
            v_reset,
            below,
            at_or_above,
            NEURON=neuron,
            HARD_RESET=hard_reset,
            DECAY_INPUT=decay_input,
            SAVE_H=save_h,
            STORE_V_SEQ=store_v_seq,
            FIX_H_ROUNDING=x_seq.dtype in LOW_PRECISION,
            BLOCK=block,
            num_warps=num_warps,
        )
    if allocate_unused:
        h_seq = x_seq.new_empty(_EMPTY) if h_seq is None else h_seq
        v_seq = x_seq.new_empty(_EMPTY) if v_seq is None else v_seq
    return spike_seq, h_seq, v_seq, v_last


def launch_backward(
    launcher,
    grad_spike: Tensor | None,
    grad_v_seq: Tensor | None,
    grad_v_last: Tensor | None,
    h_seq: Tensor,
    x_seq: Tensor | None,
    v_init: Tensor,
    r_tau: Tensor | None,
    neuron: int,
    hard_reset: bool,
    decay_input: bool,
    detach_reset: bool,
    r_tau_value: float,
    v_threshold: float,
    v_reset: float,
    sg_id: int,
    sg_p0: float,
    sg_p1: float,
    sg_terms: int,
    need_grad_v_init: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Allocate the gradients and launch the backward kernel through ``launcher``.

    Returns ``(grad_x_seq, grad_v_init, grad_r_tau)``; ``grad_r_tau`` is ``[1]`` for
    PLIF (per-program partial sums reduced on the device) and empty otherwise;
    ``grad_v_init`` is empty unless ``need_grad_v_init`` (the initial state usually
    needs no gradient after a reset, and then the kernel skips that write).
    """
    T = h_seq.shape[0]
    ncl = v_init.numel()
    grad_x_seq = torch.empty_like(h_seq)
    grad_v_init = torch.empty_like(v_init) if need_grad_v_init else h_seq.new_empty(_EMPTY)
    block, num_warps = block_config(ncl)
    grid = triton.cdiv(ncl, block)
    is_plif = neuron == PLIF
    grad_r_partial = h_seq.new_empty((grid if is_plif else 0,), dtype=torch.float32)
    with device_guard(h_seq):
        launcher(multistep_backward_kernel)[(grid,)](
            grad_spike if grad_spike is not None else h_seq,
            grad_v_seq if grad_v_seq is not None else h_seq,
            grad_v_last if grad_v_last is not None else v_init,
            h_seq,
            x_seq if x_seq is not None else h_seq,
            v_init,
            r_tau if r_tau is not None else v_init,
            grad_x_seq,
            grad_v_init if need_grad_v_init else grad_x_seq,
            grad_r_partial if is_plif else grad_x_seq,
            T,
            ncl,
            r_tau_value,
            v_threshold,
            v_reset,
            sg_p0,
            sg_p1,
            NEURON=neuron,
            HARD_RESET=hard_reset,
            DECAY_INPUT=decay_input,
            DETACH_RESET=detach_reset,
            SG=sg_id,
            SG_TERMS=sg_terms,
            HAS_GRAD_SPIKE=grad_spike is not None,
            HAS_GRAD_V_SEQ=grad_v_seq is not None,
            HAS_GRAD_V_LAST=grad_v_last is not None,
            WRITE_GRAD_V_INIT=need_grad_v_init,
            BLOCK=block,
            num_warps=num_warps,
        )
    if is_plif:
        grad_r_tau = grad_r_partial.sum().reshape(1).to(r_tau.dtype)
    else:
        grad_r_tau = h_seq.new_empty(_EMPTY)
    return grad_x_seq, grad_v_init, grad_r_tau


def _identity(kernel):
    return kernel


@_register("multistep_forward")
def multistep_forward(
    x_seq: Tensor,
    v_init: Tensor,
    r_tau: Tensor | None,
    neuron: int,
    hard_reset: bool,
    decay_input: bool,
    detach_reset: bool,
    r_tau_value: float,
    v_threshold: float,
    v_reset: float,
    sg_id: int,
    sg_p0: float,
    sg_p1: float,
    sg_terms: int,
    save_h: bool,
    store_v_seq: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Run ``T`` steps. ``x_seq`` ``[T, NCL]`` and ``v_init`` ``[NCL]`` are contiguous.

    ``detach_reset`` and the ``sg_*`` surrogate arguments are not used by the forward
    kernel; they are here so that the registered autograd formula can read them.
    """
    return launch_forward(
        _launcher, x_seq, v_init, r_tau, neuron, hard_reset, decay_input,
        r_tau_value, v_threshold, v_reset, save_h, store_v_seq,
    )  # fmt: skip


@_register("multistep_backward")
def multistep_backward(
    grad_spike: Tensor | None,
    grad_v_seq: Tensor | None,
    grad_v_last: Tensor | None,
    h_seq: Tensor,
    x_seq: Tensor | None,
    v_init: Tensor,
    r_tau: Tensor | None,
    neuron: int,
    hard_reset: bool,
    decay_input: bool,
    detach_reset: bool,
    r_tau_value: float,
    v_threshold: float,
    v_reset: float,
    sg_id: int,
    sg_p0: float,
    sg_p1: float,
    sg_terms: int,
    need_grad_v_init: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Reverse-time pass. Returns ``(grad_x_seq, grad_v_init | [0], grad_r_tau | [0])``."""
    return launch_backward(
        _launcher, grad_spike, grad_v_seq, grad_v_last, h_seq, x_seq, v_init, r_tau, neuron,
        hard_reset, decay_input, detach_reset, r_tau_value, v_threshold, v_reset,
        sg_id, sg_p0, sg_p1, sg_terms, need_grad_v_init,
    )  # fmt: skip


if not USES_TRITON_OP:
    # custom_op needs explicit shape functions; triton_op derives them from the body.

    @multistep_forward.register_fake
    def _(x_seq, v_init, r_tau, neuron, hard_reset, decay_input, detach_reset, r_tau_value,
          v_threshold, v_reset, sg_id, sg_p0, sg_p1, sg_terms, save_h, store_v_seq):  # fmt: skip
        spike_seq = torch.empty_like(x_seq)
        h_seq = torch.empty_like(x_seq) if save_h else x_seq.new_empty(_EMPTY)
        v_seq = torch.empty_like(x_seq) if store_v_seq else x_seq.new_empty(_EMPTY)
        return spike_seq, h_seq, v_seq, torch.empty_like(v_init)

    @multistep_backward.register_fake
    def _(grad_spike, grad_v_seq, grad_v_last, h_seq, x_seq, v_init, r_tau, neuron, *args):
        grad_r_tau = h_seq.new_empty((1,) if neuron == PLIF else _EMPTY)
        if neuron == PLIF:
            grad_r_tau = grad_r_tau.to(r_tau.dtype)
        need_grad_v_init = args[-1]
        grad_v_init = torch.empty_like(v_init) if need_grad_v_init else h_seq.new_empty(_EMPTY)
        return torch.empty_like(h_seq), grad_v_init, grad_r_tau


# -- autograd ------------------------------------------------------------------------

_CONFIG_ARGS = (
    "neuron",
    "hard_reset",
    "decay_input",
    "detach_reset",
    "r_tau_value",
    "v_threshold",
    "v_reset",
    "sg_id",
    "sg_p0",
    "sg_p1",
    "sg_terms",
)


def needs_x_in_backward(neuron: int, decay_input: bool) -> bool:
    """PLIF with decay_input reads X in the backward (for the 1/tau gradient)."""
    return neuron == PLIF and decay_input


def _setup_context(ctx, inputs, output) -> None:
    x_seq, v_init, r_tau, *config = inputs
    _, h_seq, _, _ = output
    ctx.config = dict(zip(_CONFIG_ARGS, config[: len(_CONFIG_ARGS)], strict=True))
    ctx.has_r_tau = r_tau is not None
    # Unused outputs (an empty v_seq, v_last nobody reads) then arrive as None instead
    # of materialised zeros, which the kernel would otherwise read for nothing.
    ctx.set_materialize_grads(False)
    keep_x = needs_x_in_backward(ctx.config["neuron"], ctx.config["decay_input"])
    ctx.save_for_backward(h_seq, x_seq if keep_x else None, v_init, r_tau)


def _contiguous_or_none(grad: Tensor | None) -> Tensor | None:
    return None if grad is None or grad.numel() == 0 else grad.contiguous()


def _backward(ctx, grad_spike, grad_h, grad_v_seq, grad_v_last):
    h_seq, x_seq, v_init, r_tau = ctx.saved_tensors
    if h_seq.numel() == 0:
        raise RuntimeError(
            "sj_triton: backward through a forward that ran in inference mode "
            "(save_h=False); this is a bug in the caller"
        )
    grad_x, grad_v_init, grad_r_tau = multistep_backward(
        _contiguous_or_none(grad_spike),
        _contiguous_or_none(grad_v_seq),
        _contiguous_or_none(grad_v_last),
        h_seq,
        x_seq,
        v_init,
        r_tau,
        **ctx.config,
        need_grad_v_init=ctx.needs_input_grad[1],
    )
    grads = [
        grad_x,
        grad_v_init if ctx.needs_input_grad[1] else None,
        grad_r_tau if ctx.has_r_tau else None,
    ]
    return (*grads,) + (None,) * 13


multistep_forward.register_autograd(_backward, setup_context=_setup_context)


# -- eager path -------------------------------------------------------------------------


class MultistepFunction(torch.autograd.Function):
    """The same computation as the registered ops, for eager mode.

    Dispatching a ``torch.library`` operator and its registered autograd costs tens of
    microseconds per call in Python; at small ``T`` that is as long as the kernels
    themselves, so eager calls launch the kernels directly. ``torch.compile`` traces
    the registered ops instead (see ``common.run_multistep``).
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, r_tau, config, save_h, store_v_seq):
        (neuron, hard_reset, decay_input, _, r_tau_value, v_threshold, v_reset) = config[:7]
        spike_seq, h_seq, v_seq, v_last = launch_forward(
            _identity, x_seq, v_init, r_tau, neuron, hard_reset, decay_input,
            r_tau_value, v_threshold, v_reset, save_h, store_v_seq, allocate_unused=False,
        )  # fmt: skip
        ctx.config = config
        ctx.has_r_tau = r_tau is not None
        ctx.set_materialize_grads(False)
        if save_h:
            keep_x = needs_x_in_backward(neuron, decay_input)
            ctx.save_for_backward(h_seq, x_seq if keep_x else None, v_init, r_tau)
        # Only real outputs: every returned tensor costs autograd bookkeeping per call.
        return spike_seq, v_last, v_seq

    @staticmethod
    def backward(ctx, grad_spike, grad_v_last, grad_v_seq):
        if torch.is_grad_enabled():
            # create_graph=True would silently drop the second-order terms.
            raise RuntimeError(
                "sj_triton kernels have no second derivative (create_graph=True); "
                "use backend='torch' for higher-order gradients"
            )
        h_seq, x_seq, v_init, r_tau = ctx.saved_tensors
        grad_x, grad_v_init, grad_r_tau = launch_backward(
            _identity,
            _contiguous_or_none(grad_spike),
            _contiguous_or_none(grad_v_seq),
            _contiguous_or_none(grad_v_last),
            h_seq,
            x_seq,
            v_init,
            r_tau,
            *ctx.config,
            need_grad_v_init=ctx.needs_input_grad[1],
        )
        grad_v_init = grad_v_init if ctx.needs_input_grad[1] else None
        return grad_x, grad_v_init, grad_r_tau if ctx.has_r_tau else None, None, None, None
