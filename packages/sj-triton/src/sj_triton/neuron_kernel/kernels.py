"""The Triton kernels: one fused forward and one fused backward for IF, LIF and PLIF.

Layout: the input ``[T, *S]`` is contiguous memory ``[T, NCL]`` (NCL = neurons per step). One
program owns ``BLOCK`` neurons and walks the time axis sequentially with its state in
fp32 registers, so every element is read and written exactly once per pass:

* forward (training): read ``x``, write ``spike`` and the pre-reset ``H`` (all the
  backward needs), plus ``v_seq`` only when asked;
* forward (inference): read ``x``, write ``spike`` (and ``v_seq`` when asked);
* backward: read ``grad_spike`` and ``H`` (and ``grad_v_seq`` when it exists), write
  ``grad_x``; one accumulator per neuron carries ``dL/dV`` backwards in time.

Per-neuron extras (``v_init``, ``v_last``, ``grad_v_init``) are one element per
neuron, i.e. ``1/T`` of the traffic. Neuron family, reset mode, decay_input,
detach_reset, the surrogate and which tensors exist are compile-time constants; ``T``,
``NCL`` and every float parameter are run-time arguments, so a new sequence length or
layer width does not recompile.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .surrogates import surrogate_gradient

__all__ = ["IF", "LIF", "PLIF", "multistep_forward_kernel", "multistep_backward_kernel"]

IF, LIF, PLIF = 0, 1, 2


@triton.jit
def _charge(x, v, r, v_r, NEURON: tl.constexpr, DECAY_INPUT: tl.constexpr):
    """H from X and V[t-1]; ``r`` is 1/tau (LIF: a float, PLIF: loaded from memory)."""
    if NEURON == 0:
        h = v + x
    elif DECAY_INPUT:
        h = v + (x - (v - v_r)) * r
    else:
        h = v - (v - v_r) * r + x
    return h


@triton.jit
def _after_reset(h, spiked, v_threshold, v_reset, HARD_RESET: tl.constexpr):
    """V[t] from H[t] and the spike (forward values do not depend on detach_reset)."""
    if HARD_RESET:
        v = tl.where(spiked, v_reset, h)
    else:
        v = h - tl.where(spiked, v_threshold, 0.0)
    return v


# T is never specialised (T == 1 would otherwise compile its own variant). NCL is: on
# divisibility by 16, which lets the per-step pointer increments keep 16-byte alignment
# (and, as Triton does for every int argument, on NCL == 1).
@triton.jit(do_not_specialize=["T"])
def multistep_forward_kernel(
    x_ptr,  # [T, NCL] input
    v_init_ptr,  # [NCL]
    r_tau_ptr,  # [1] (PLIF only)
    spike_ptr,  # [T, NCL] out
    h_ptr,  # [T, NCL] out, pre-reset potential (SAVE_H)
    v_seq_ptr,  # [T, NCL] out, post-reset potential (STORE_V_SEQ)
    v_last_ptr,  # [NCL] out
    T,
    NCL,
    r_tau,  # 1/tau for LIF
    v_threshold,
    v_reset,  # V_reset for hard reset; 0 for soft reset (V_r in the charge)
    h_below,  # largest H storable in the output dtype that is < v_threshold
    h_at_or_above,  # smallest H storable in the output dtype that is >= v_threshold
    NEURON: tl.constexpr,
    HARD_RESET: tl.constexpr,
    DECAY_INPUT: tl.constexpr,
    SAVE_H: tl.constexpr,
    STORE_V_SEQ: tl.constexpr,
    FIX_H_ROUNDING: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NCL
    out_dtype = spike_ptr.dtype.element_ty
    # Scalars may arrive as fp64 (Inductor passes Python floats that way); the state
    # must stay fp32 so the loop-carried types do not change.
    r_tau = tl.cast(r_tau, tl.float32)
    v_threshold = tl.cast(v_threshold, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    h_below = tl.cast(h_below, tl.float32)
    h_at_or_above = tl.cast(h_at_or_above, tl.float32)

    v = tl.load(v_init_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = r_tau
    if NEURON == 2:
        r = tl.load(r_tau_ptr).to(tl.float32)

    # Pointers advance by NCL per step (64-bit pointer arithmetic: no int32 overflow
    # even when T * NCL exceeds 2**31).
    x_ptrs = x_ptr + offs
    spike_ptrs = spike_ptr + offs
    h_ptrs = h_ptr + offs
    v_seq_ptrs = v_seq_ptr + offs
    for _ in range(T):
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
        h = _charge(x, v, r, v_reset, NEURON, DECAY_INPUT)
        spiked = h >= v_threshold
        # bool -> fp32 -> dtype: a direct int1 -> bf16 cast is not supported everywhere
        # (it fails under the Triton 3.9 CPU interpreter).
        tl.store(spike_ptrs, spiked.to(tl.float32).to(out_dtype), mask=mask)
        if SAVE_H:
            h_out = h.to(out_dtype)
            if FIX_H_ROUNDING:
                # The backward recomputes the spike as H >= v_threshold from the stored
                # (rounded) H. Rounding to fp16/bf16 can cross the threshold; nudge such
                # values to the nearest storable value on the forward's side.
                h_back = h_out.to(tl.float32)
                h_out = tl.where(
                    spiked & (h_back < v_threshold), h_at_or_above.to(out_dtype), h_out
                )
                h_out = tl.where((~spiked) & (h_back >= v_threshold), h_below.to(out_dtype), h_out)
            tl.store(h_ptrs, h_out, mask=mask)
            h_ptrs += NCL
        v = _after_reset(h, spiked, v_threshold, v_reset, HARD_RESET)
        if STORE_V_SEQ:
            tl.store(v_seq_ptrs, v.to(out_dtype), mask=mask)
            v_seq_ptrs += NCL
        x_ptrs += NCL
        spike_ptrs += NCL
    tl.store(v_last_ptr + offs, v.to(out_dtype), mask=mask)


@triton.jit(do_not_specialize=["T"])
def multistep_backward_kernel(
    grad_spike_ptr,  # [T, NCL] (HAS_GRAD_SPIKE)
    grad_v_seq_ptr,  # [T, NCL] (HAS_GRAD_V_SEQ)
    grad_v_last_ptr,  # [NCL] (HAS_GRAD_V_LAST)
    h_ptr,  # [T, NCL] pre-reset potential saved by the forward
    x_ptr,  # [T, NCL] input (PLIF with decay_input: dH/d(1/tau) = X - (V[t-1] - V_r))
    v_init_ptr,  # [NCL] (PLIF: V[-1] for the r_tau gradient)
    r_tau_ptr,  # [1] (PLIF)
    grad_x_ptr,  # [T, NCL] out
    grad_v_init_ptr,  # [NCL] out
    grad_r_partial_ptr,  # [num_programs] out (PLIF): per-program sums of dL/d(1/tau)
    T,
    NCL,
    r_tau,
    v_threshold,
    v_reset,
    sg_p0,
    sg_p1,
    NEURON: tl.constexpr,
    HARD_RESET: tl.constexpr,
    DECAY_INPUT: tl.constexpr,
    DETACH_RESET: tl.constexpr,
    SG: tl.constexpr,
    SG_TERMS: tl.constexpr,
    HAS_GRAD_SPIKE: tl.constexpr,
    HAS_GRAD_V_SEQ: tl.constexpr,
    HAS_GRAD_V_LAST: tl.constexpr,
    WRITE_GRAD_V_INIT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NCL
    out_dtype = grad_x_ptr.dtype.element_ty
    r_tau = tl.cast(r_tau, tl.float32)
    v_threshold = tl.cast(v_threshold, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    sg_p0 = tl.cast(sg_p0, tl.float32)
    sg_p1 = tl.cast(sg_p1, tl.float32)

    r = r_tau
    if NEURON == 2:
        r = tl.load(r_tau_ptr).to(tl.float32)
    # g = dL/dV[t], carried backwards in time.
    if HAS_GRAD_V_LAST:
        g = tl.load(grad_v_last_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        g = tl.zeros([BLOCK], dtype=tl.float32)
    grad_r = tl.zeros([BLOCK], dtype=tl.float32)

    # The host launches only for T >= 1. Start at step T - 1 and walk backwards.
    last = tl.cast(T - 1, tl.int64) * NCL
    h_ptrs = h_ptr + last + offs
    grad_x_ptrs = grad_x_ptr + last + offs
    grad_spike_ptrs = grad_spike_ptr + last + offs
    grad_v_seq_ptrs = grad_v_seq_ptr + last + offs
    x_ptrs = x_ptr + last + offs
    if NEURON == 2:
        # PLIF needs V[t-1] for dH/d(1/tau); it is recovered from H[t-1], which the
        # next (earlier) step needs anyway, so H is carried from step to step.
        h = tl.load(h_ptrs, mask=mask, other=0.0).to(tl.float32)
    for i in range(T):
        t = T - 1 - i
        if NEURON == 2:
            if t > 0:
                h_prev = tl.load(h_ptrs - NCL, mask=mask, other=0.0).to(tl.float32)
                v_prev = _after_reset(
                    h_prev, h_prev >= v_threshold, v_threshold, v_reset, HARD_RESET
                )
            else:
                h_prev = h
                v_prev = tl.load(v_init_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            h = tl.load(h_ptrs, mask=mask, other=0.0).to(tl.float32)
        if HAS_GRAD_V_SEQ:
            g += tl.load(grad_v_seq_ptrs, mask=mask, other=0.0).to(tl.float32)
            grad_v_seq_ptrs -= NCL
        sg = surrogate_gradient(h - v_threshold, sg_p0, sg_p1, SG, SG_TERMS)
        if HAS_GRAD_SPIKE:
            grad_s = tl.load(grad_spike_ptrs, mask=mask, other=0.0).to(tl.float32)
            grad_h = grad_s * sg
            grad_spike_ptrs -= NCL
        else:
            grad_h = tl.zeros([BLOCK], dtype=tl.float32)
        if HARD_RESET:
            not_spiked = tl.where(h >= v_threshold, 0.0, 1.0)
            grad_h += g * not_spiked
            if not DETACH_RESET:
                grad_h += g * (v_reset - h) * sg
        elif DETACH_RESET:
            grad_h += g
        else:
            grad_h += g * (1.0 - v_threshold * sg)

        if NEURON == 0:
            grad_x = grad_h
            g = grad_h
        else:
            if DECAY_INPUT:
                grad_x = grad_h * r
            else:
                grad_x = grad_h
            g = grad_h * (1.0 - r)
            if NEURON == 2:
                # dH/d(1/tau). Not (H - V[t-1]) * tau: that difference cancels badly
                # when the input term is small against H (and H is stored rounded in
                # fp16/bf16), so decay_input reads X instead.
                if DECAY_INPUT:
                    x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
                    grad_r += grad_h * (x - (v_prev - v_reset))
                    x_ptrs -= NCL
                else:
                    grad_r += grad_h * (v_reset - v_prev)
                h = h_prev
        tl.store(grad_x_ptrs, grad_x.to(out_dtype), mask=mask)
        grad_x_ptrs -= NCL
        h_ptrs -= NCL
    if WRITE_GRAD_V_INIT:
        tl.store(grad_v_init_ptr + offs, g.to(out_dtype), mask=mask)
    if NEURON == 2:
        tl.store(grad_r_partial_ptr + pid, tl.sum(tl.where(mask, grad_r, 0.0), axis=0))
