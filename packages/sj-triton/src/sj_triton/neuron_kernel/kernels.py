"""The Triton kernels: one fused forward and one fused backward, for every neuron.

The neuron's equations come from :mod:`.equations` (printed from the statements in
sj-core); these kernels are the time loop around them, the same for every neuron.

Layout: the input ``[T, *S]`` is contiguous memory ``[T, NCL]`` (NCL = neurons per step).
One program owns ``BLOCK`` neurons and walks the time axis sequentially with its state
in fp32 registers, so every element is read and written exactly once per pass:

* forward (training): read ``x``, write ``spike`` and the pre-reset ``H`` (what the
  backward needs), plus ``v_seq`` only when asked;
* forward (inference): read ``x``, write ``spike`` (and ``v_seq``, ``w_seq`` when asked);
* backward: read ``grad_spike`` and ``H`` (and ``grad_v_seq`` when it exists, ``x`` when
  the neuron's derivatives use it), write ``grad_x``; accumulators carry ``dL/dV`` (and
  ``dL/dW``) backwards in time, and ``V[t-1]`` is recomputed from ``H[t-1]`` when the
  derivatives use it.

Per-neuron extras (``v_init``, ``v_last``, ``w_*``, ``grad_v_init``) are one element per
neuron, i.e. ``1/T`` of the traffic. The neuron, its flags, the reset mode,
``detach_reset``, the surrogate and which tensors exist are compile-time constants; ``T``,
``NCL`` and every float parameter are run-time arguments, so a new sequence length,
layer width or parameter value does not recompile.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .equations import (
    adapt,
    adaptation_grads,
    charge,
    charge_grads,
    fires,
    jump,
    reset,
    reset_grads,
)
from .surrogates import surrogate_gradient

__all__ = [
    "neuron_backward_kernel",
    "neuron_backward_recompute_kernel",
    "neuron_forward_kernel",
]


@triton.jit
def _f32(value):
    return tl.cast(value, tl.float32)


@triton.jit
def _spike_value(spiked):
    # bool -> fp32 through where(): a direct int1 -> bf16 cast is not supported everywhere
    # (it fails under the Triton CPU interpreter).
    return tl.where(spiked, 1.0, 0.0)


@triton.jit
def _after_reset(h, v_threshold, v_reset, HARD_RESET: tl.constexpr):
    """``V[t]`` from ``H[t]``: the reset after the spike ``H[t]`` fires, with the
    forward's own operations (so a backward that rebuilds ``V`` gets the forward's bits)."""
    return reset(h, _spike_value(fires(h, v_threshold)), v_threshold, v_reset, HARD_RESET)


@triton.jit
def _step_backward(
    h, v_prev, x, g_s, g_v, g_w, r, c0, c1, c2, c3, c4, c5, c6, c7,
    v_threshold, v_reset, sg_p0, sg_p1,
    NEURON: tl.constexpr, FLAGS: tl.constexpr, HARD_RESET: tl.constexpr,
    DETACH_RESET: tl.constexpr, HAS_W: tl.constexpr, SG: tl.constexpr, SG_TERMS: tl.constexpr,
):  # fmt: skip
    """One step of the reverse recurrence (SPEC section 5), every value ``[BLOCK]`` fp32.

    From ``H[t]``, ``V[t-1]`` and ``X[t]`` (where the derivatives read them), ``dL/dS[t]``
    and the carried ``g_v = dL/dV[t]``, ``g_w = dL/dW[t]``: returns ``dL/dX[t]``, the
    carried gradients ``dL/dV[t-1]`` and ``dL/dW[t-1]``, and step ``t``'s term of
    ``dL/dr``.
    """
    s = _spike_value(fires(h, v_threshold))
    sg = surrogate_gradient(h - v_threshold, sg_p0, sg_p1, SG, SG_TERMS)
    dv_dh, dv_ds = reset_grads(h, s, v_threshold, v_reset, HARD_RESET)
    g_w_adapted = g_w
    da_dw = 0.0
    if HAS_W:
        da_dh, da_dw, dj_dw, dj_ds = adaptation_grads(
            h, 0.0, s, r, c0, c1, c2, c3, c4, c5, c6, c7, v_reset, NEURON, FLAGS
        )
        g_s += g_w * dj_ds  # the jump's spike is never detached
        g_w_adapted = g_w * dj_dw
    g_h = g_s * sg + g_v * dv_dh
    if not DETACH_RESET:
        g_h += g_v * dv_ds * sg
    if HAS_W:
        g_h += g_w_adapted * da_dh
    dh_dx, dh_dv, dh_dw, dh_dr = charge_grads(
        x, v_prev, 0.0, r, c0, c1, c2, c3, c4, c5, c6, c7, v_reset, NEURON, FLAGS
    )
    g_w_before = g_w
    if HAS_W:
        g_w_before = g_w_adapted * da_dw + g_h * dh_dw
    return g_h * dh_dx, g_h * dh_dv, g_w_before, g_h * dh_dr


# T is never specialised (T == 1 would otherwise compile its own variant). NCL is: on
# divisibility by 16, which lets the per-step pointer increments keep 16-byte alignment
# (and, as Triton does for every int argument, on NCL == 1).
@triton.jit(do_not_specialize=["T"])
def neuron_forward_kernel(
    x_ptr,  # [T, NCL] input
    v_init_ptr,  # [NCL]
    w_init_ptr,  # [NCL] (HAS_W)
    r_ptr,  # [1] the tensor parameter (HAS_R)
    spike_ptr,  # [T, NCL] out
    h_ptr,  # [T, NCL] out, pre-reset potential (SAVE_H)
    v_seq_ptr,  # [T, NCL] out, post-reset potential (STORE_V_SEQ)
    v_last_ptr,  # [NCL] out
    w_last_ptr,  # [NCL] out (HAS_W)
    w_seq_ptr,  # [T, NCL] out, the second state after each step (HAS_W and STORE_V_SEQ)
    T,
    NCL,
    c0, c1, c2, c3, c4, c5, c6, c7,  # the float parameters (equations.SCALAR_SLOTS)
    v_threshold,
    v_reset,  # V_r: v_reset for hard reset, 0 for soft reset
    h_below,  # largest H storable in the output dtype that does not fire
    h_at_or_above,  # smallest H storable in the output dtype that fires
    NEURON: tl.constexpr,
    FLAGS: tl.constexpr,
    HARD_RESET: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_R: tl.constexpr,
    SAVE_H: tl.constexpr,
    STORE_V_SEQ: tl.constexpr,
    FIX_H_ROUNDING: tl.constexpr,
    PREFETCH: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NCL
    out_dtype = spike_ptr.dtype.element_ty
    # Scalars may arrive as fp64 (Inductor passes Python floats that way); the state must
    # stay fp32 so that the loop-carried types do not change.
    c0, c1, c2, c3 = _f32(c0), _f32(c1), _f32(c2), _f32(c3)
    c4, c5, c6, c7 = _f32(c4), _f32(c5), _f32(c6), _f32(c7)
    v_threshold = tl.cast(v_threshold, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    h_below = tl.cast(h_below, tl.float32)
    h_at_or_above = tl.cast(h_at_or_above, tl.float32)

    v = tl.load(v_init_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = 0.0
    if HAS_W:
        w = tl.load(w_init_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = 0.0
    if HAS_R:
        r = tl.load(r_ptr).to(tl.float32)

    # Pointers advance by NCL per step (64-bit pointer arithmetic: no int32 overflow even
    # when T * NCL exceeds 2**31).
    x_ptrs = x_ptr + offs
    spike_ptrs = spike_ptr + offs
    h_ptrs = h_ptr + offs
    v_seq_ptrs = v_seq_ptr + offs
    w_seq_ptrs = w_seq_ptr + offs
    if PREFETCH:
        # Step t + 1's input is loaded before step t is computed: two loads in flight per
        # thread, which short sequences need to keep the memory system busy. (The host
        # launches only for T >= 1.)
        x_next = tl.load(x_ptrs, mask=mask, other=0.0)
    for t in range(T):
        if PREFETCH:
            x = x_next.to(tl.float32)
            # (The step index broadcast to the block: a scalar condition in a mask is
            # refused by the interpreter.)
            x_next = tl.load(x_ptrs + NCL, mask=mask & (offs * 0 + t < T - 1), other=0.0)
        else:
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
        h = charge(x, v, w, r, c0, c1, c2, c3, c4, c5, c6, c7, v_reset, NEURON, FLAGS)
        if HAS_W:
            w = adapt(h, w, r, c0, c1, c2, c3, c4, c5, c6, c7, v_reset, NEURON, FLAGS)
        spiked = fires(h, v_threshold)
        s = _spike_value(spiked)
        tl.store(spike_ptrs, s.to(out_dtype), mask=mask)
        if SAVE_H:
            h_out = h.to(out_dtype)
            if FIX_H_ROUNDING:
                # The backward recomputes each spike from the stored (rounded) H. Rounding
                # to fp16/bf16 can cross the threshold; such values move to the nearest
                # storable value on the forward's side.
                # (Compared, not negated: Triton 3.2's interpreter cannot invert booleans.)
                back_fires = fires(h_out.to(tl.float32), v_threshold)
                nearest = tl.where(spiked, h_at_or_above, h_below).to(out_dtype)
                h_out = tl.where(spiked != back_fires, nearest, h_out)
            tl.store(h_ptrs, h_out, mask=mask)
            h_ptrs += NCL
        v = reset(h, s, v_threshold, v_reset, HARD_RESET)
        if HAS_W:
            w = jump(w, s, r, c0, c1, c2, c3, c4, c5, c6, c7, v_reset, NEURON, FLAGS)
        if STORE_V_SEQ:
            tl.store(v_seq_ptrs, v.to(out_dtype), mask=mask)
            v_seq_ptrs += NCL
            if HAS_W:
                tl.store(w_seq_ptrs, w.to(out_dtype), mask=mask)
                w_seq_ptrs += NCL
        x_ptrs += NCL
        spike_ptrs += NCL
    tl.store(v_last_ptr + offs, v.to(out_dtype), mask=mask)
    if HAS_W:
        tl.store(w_last_ptr + offs, w.to(out_dtype), mask=mask)


@triton.jit(do_not_specialize=["T"])
def neuron_backward_kernel(
    grad_spike_ptr,  # [T, NCL] (HAS_GRAD_SPIKE)
    grad_v_seq_ptr,  # [T, NCL] (HAS_GRAD_V_SEQ)
    grad_v_last_ptr,  # [NCL] (HAS_GRAD_V_LAST)
    grad_w_last_ptr,  # [NCL] (HAS_GRAD_W_LAST)
    grad_w_seq_ptr,  # [T, NCL] (HAS_GRAD_W_SEQ)
    h_ptr,  # [T, NCL] pre-reset potential saved by the forward
    x_ptr,  # [T, NCL] input (NEEDS_X)
    v_init_ptr,  # [NCL] (NEEDS_V: V[-1])
    r_ptr,  # [1] (HAS_R)
    grad_x_ptr,  # [T, NCL] out
    grad_v_init_ptr,  # [NCL] out (WRITE_GRAD_V_INIT)
    grad_w_init_ptr,  # [NCL] out (WRITE_GRAD_W_INIT)
    grad_r_partial_ptr,  # [num_programs] out (HAS_R): per-program sums of dL/dr
    T,
    NCL,
    c0, c1, c2, c3, c4, c5, c6, c7,
    v_threshold,
    v_reset,
    sg_p0,
    sg_p1,
    NEURON: tl.constexpr,
    FLAGS: tl.constexpr,
    HARD_RESET: tl.constexpr,
    DETACH_RESET: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_R: tl.constexpr,
    NEEDS_X: tl.constexpr,
    NEEDS_V: tl.constexpr,
    SG: tl.constexpr,
    SG_TERMS: tl.constexpr,
    HAS_GRAD_SPIKE: tl.constexpr,
    HAS_GRAD_V_SEQ: tl.constexpr,
    HAS_GRAD_V_LAST: tl.constexpr,
    HAS_GRAD_W_LAST: tl.constexpr,
    HAS_GRAD_W_SEQ: tl.constexpr,
    WRITE_GRAD_V_INIT: tl.constexpr,
    WRITE_GRAD_W_INIT: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NCL
    out_dtype = grad_x_ptr.dtype.element_ty
    c0, c1, c2, c3 = _f32(c0), _f32(c1), _f32(c2), _f32(c3)
    c4, c5, c6, c7 = _f32(c4), _f32(c5), _f32(c6), _f32(c7)
    v_threshold = tl.cast(v_threshold, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    sg_p0 = tl.cast(sg_p0, tl.float32)
    sg_p1 = tl.cast(sg_p1, tl.float32)

    r = 0.0
    if HAS_R:
        r = tl.load(r_ptr).to(tl.float32)
    # g_v = dL/dV[t] and g_w = dL/dW[t], carried backwards in time.
    if HAS_GRAD_V_LAST:
        g_v = tl.load(grad_v_last_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        g_v = tl.zeros([BLOCK], dtype=tl.float32)
    g_w = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_GRAD_W_LAST:
        g_w = tl.load(grad_w_last_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    grad_r = tl.zeros([BLOCK], dtype=tl.float32)

    # The host launches only for T >= 1. Start at step T - 1 and walk backwards.
    last = tl.cast(T - 1, tl.int64) * NCL
    h_ptrs = h_ptr + last + offs
    grad_x_ptrs = grad_x_ptr + last + offs
    grad_spike_ptrs = grad_spike_ptr + last + offs
    grad_v_seq_ptrs = grad_v_seq_ptr + last + offs
    grad_w_seq_ptrs = grad_w_seq_ptr + last + offs
    x_ptrs = x_ptr + last + offs
    if NEEDS_V:
        # V[t-1] is recomputed from H[t-1], which the next (earlier) step needs anyway,
        # so H is carried from step to step.
        h = tl.load(h_ptrs, mask=mask, other=0.0).to(tl.float32)
    for i in range(T):
        t = T - 1 - i
        if NEEDS_V:
            if t > 0:
                h_prev = tl.load(h_ptrs - NCL, mask=mask, other=0.0).to(tl.float32)
                v_prev = _after_reset(h_prev, v_threshold, v_reset, HARD_RESET)
            else:
                h_prev = h
                v_prev = tl.load(v_init_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            h = tl.load(h_ptrs, mask=mask, other=0.0).to(tl.float32)
            v_prev = 0.0
        x = 0.0
        if NEEDS_X:
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
            x_ptrs -= NCL
        if HAS_GRAD_V_SEQ:
            g_v += tl.load(grad_v_seq_ptrs, mask=mask, other=0.0).to(tl.float32)
            grad_v_seq_ptrs -= NCL
        if HAS_GRAD_W_SEQ:
            g_w += tl.load(grad_w_seq_ptrs, mask=mask, other=0.0).to(tl.float32)
            grad_w_seq_ptrs -= NCL

        if HAS_GRAD_SPIKE:
            g_s = tl.load(grad_spike_ptrs, mask=mask, other=0.0).to(tl.float32)
            grad_spike_ptrs -= NCL
        else:
            g_s = tl.zeros([BLOCK], dtype=tl.float32)
        grad_x, g_v, g_w, grad_r_step = _step_backward(
            h, v_prev, x, g_s, g_v, g_w, r, c0, c1, c2, c3, c4, c5, c6, c7,
            v_threshold, v_reset, sg_p0, sg_p1,
            NEURON, FLAGS, HARD_RESET, DETACH_RESET, HAS_W, SG, SG_TERMS,
        )  # fmt: skip
        tl.store(grad_x_ptrs, grad_x.to(out_dtype), mask=mask)
        if HAS_R:
            grad_r += grad_r_step
        if NEEDS_V:
            h = h_prev
        grad_x_ptrs -= NCL
        h_ptrs -= NCL
    if WRITE_GRAD_V_INIT:
        tl.store(grad_v_init_ptr + offs, g_v.to(out_dtype), mask=mask)
    if WRITE_GRAD_W_INIT:
        tl.store(grad_w_init_ptr + offs, g_w.to(out_dtype), mask=mask)
    if HAS_R:
        tl.store(grad_r_partial_ptr + pid, tl.sum(tl.where(mask, grad_r, 0.0), axis=0))


@triton.jit
def _row(tile, steps, t: tl.constexpr):
    """Row ``t`` of a ``[T_PAD, BLOCK]`` tile (Triton has no indexing of register tiles:
    a select and a sum over the step axis, which each thread holds in its registers)."""
    return tl.sum(tl.where(steps[:, None] == t, tile, 0.0), axis=0)


@triton.jit(do_not_specialize=["T"])
def neuron_backward_recompute_kernel(
    grad_spike_ptr,  # [T, NCL] (HAS_GRAD_SPIKE)
    grad_v_seq_ptr,  # [T, NCL] (HAS_GRAD_V_SEQ)
    grad_v_last_ptr,  # [NCL] (HAS_GRAD_V_LAST)
    x_ptr,  # [T, NCL] the input, kept by the forward instead of H
    v_init_ptr,  # [NCL] V[-1]
    r_ptr,  # [1] (HAS_R)
    grad_x_ptr,  # [T, NCL] out
    grad_v_init_ptr,  # [NCL] out (WRITE_GRAD_V_INIT)
    grad_r_partial_ptr,  # [num_programs] out (HAS_R): per-program sums of dL/dr
    T,
    NCL,
    c0, c1, c2, c3, c4, c5, c6, c7,
    v_threshold,
    v_reset,
    sg_p0,
    sg_p1,
    NEURON: tl.constexpr,
    FLAGS: tl.constexpr,
    HARD_RESET: tl.constexpr,
    DETACH_RESET: tl.constexpr,
    HAS_R: tl.constexpr,
    NEEDS_X: tl.constexpr,
    NEEDS_V: tl.constexpr,
    SG: tl.constexpr,
    SG_TERMS: tl.constexpr,
    HAS_GRAD_SPIKE: tl.constexpr,
    HAS_GRAD_V_SEQ: tl.constexpr,
    HAS_GRAD_V_LAST: tl.constexpr,
    WRITE_GRAD_V_INIT: tl.constexpr,
    T_PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """The backward of a short sequence (``T <= T_PAD``) of a neuron without a second
    state, from ``X`` instead of a saved ``H``.

    The forward then writes only the spikes (8 bytes per element-step in fp32 instead of
    12) and the backward reads ``dL/dS`` and ``X`` and writes ``dL/dX``, as the usual one
    reads ``dL/dS`` and ``H``: 20 bytes per element-step for a training step instead of
    24. A first pass recomputes ``H`` with the forward's own operations (bitwise its
    values) into a ``[T_PAD, BLOCK]`` register tile; the second walks backwards in time
    through it. ``T_PAD`` (a power of two) is a compile-time constant, ``T`` is not.
    """
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NCL
    out_dtype = grad_x_ptr.dtype.element_ty
    c0, c1, c2, c3 = _f32(c0), _f32(c1), _f32(c2), _f32(c3)
    c4, c5, c6, c7 = _f32(c4), _f32(c5), _f32(c6), _f32(c7)
    v_threshold = tl.cast(v_threshold, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    sg_p0 = tl.cast(sg_p0, tl.float32)
    sg_p1 = tl.cast(sg_p1, tl.float32)
    r = 0.0
    if HAS_R:
        r = tl.load(r_ptr).to(tl.float32)
    ncl = tl.cast(NCL, tl.int64)  # step offsets t * NCL in 64 bits
    steps = tl.arange(0, T_PAD)

    # Pass 1: H[0 .. T-1], as the forward computed them.
    v_init = tl.load(v_init_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v = v_init
    h_tile = tl.zeros([T_PAD, BLOCK], dtype=tl.float32)
    for t in tl.static_range(T_PAD):
        if t < T:
            x = tl.load(x_ptr + t * ncl + offs, mask=mask, other=0.0).to(tl.float32)
            h = charge(x, v, 0.0, r, c0, c1, c2, c3, c4, c5, c6, c7, v_reset, NEURON, FLAGS)
            v = _after_reset(h, v_threshold, v_reset, HARD_RESET)
            h_tile = tl.where(steps[:, None] == t, h[None, :], h_tile)

    # Pass 2: the reverse recurrence, as neuron_backward_kernel (no second state).
    if HAS_GRAD_V_LAST:
        g_v = tl.load(grad_v_last_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        g_v = tl.zeros([BLOCK], dtype=tl.float32)
    g_w = tl.zeros([BLOCK], dtype=tl.float32)
    grad_r = tl.zeros([BLOCK], dtype=tl.float32)
    for i in tl.static_range(T_PAD):
        t = T_PAD - 1 - i  # a compile-time constant
        if t < T:
            step = t * ncl + offs
            h = _row(h_tile, steps, t)
            # (Every name a branch may assign starts as a [BLOCK] tensor: the compiler
            # refuses a branch that changes a value's type.)
            v_prev = v_init
            if NEEDS_V:  # noqa: SIM102 (compile-time branches; `and` is not for tensors)
                if t > 0:
                    h_prev = _row(h_tile, steps, t - 1)
                    v_prev = _after_reset(h_prev, v_threshold, v_reset, HARD_RESET)
            x = v_init
            if NEEDS_X:
                x = tl.load(x_ptr + step, mask=mask, other=0.0).to(tl.float32)
            if HAS_GRAD_V_SEQ:
                g_v += tl.load(grad_v_seq_ptr + step, mask=mask, other=0.0).to(tl.float32)
            if HAS_GRAD_SPIKE:
                g_s = tl.load(grad_spike_ptr + step, mask=mask, other=0.0).to(tl.float32)
            else:
                g_s = tl.zeros([BLOCK], dtype=tl.float32)
            grad_x, g_v, g_w, grad_r_step = _step_backward(
                h, v_prev, x, g_s, g_v, g_w, r, c0, c1, c2, c3, c4, c5, c6, c7,
                v_threshold, v_reset, sg_p0, sg_p1,
                NEURON, FLAGS, HARD_RESET, DETACH_RESET, False, SG, SG_TERMS,
            )  # fmt: skip
            tl.store(grad_x_ptr + step, grad_x.to(out_dtype), mask=mask)
            if HAS_R:
                grad_r += grad_r_step
    if WRITE_GRAD_V_INIT:
        tl.store(grad_v_init_ptr + offs, g_v.to(out_dtype), mask=mask)
    if HAS_R:
        tl.store(grad_r_partial_ptr + pid, tl.sum(tl.where(mask, grad_r, 0.0), axis=0))
