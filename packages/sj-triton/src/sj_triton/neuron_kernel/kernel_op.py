"""The neuron kernels as one :class:`sj_core.kernels.KernelOp`: ``sj_triton::neuron``.

:class:`TritonNeuronKernels` allocates the outputs and launches :mod:`.kernels` for any
neuron described by a :class:`~sj_core.kernels.NeuronKernelConfig`; sj-core's plumbing
runs it eagerly (directly or under a ``torch.autograd.Function``) or, when traced,
through the registered operators ``sj_triton::neuron_forward`` and
``sj_triton::neuron_backward``. Those are ``torch.library.triton_op`` s (Inductor sees the
Triton kernels) where this torch has it and Triton runs on a GPU; under Triton's CPU
interpreter, whose kernels cannot be traced, they are ``custom_op`` s with explicit fake
implementations.

Layout (every neuron): inputs ``[x_seq [T, *S], v_init [*S], w_init [*S] | None,
r [1] | None]``; results ``[spike_seq, v_last, w_last, v_seq, w_seq, h_seq]``, the last
being the pre-reset potentials the backward needs (when ``save``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
from torch import Tensor

from sj_core.kernels import (
    KernelOp,
    NeuronKernelConfig,
    NeuronKernels,
    interpreter_enabled,
    launch_lock,
)

from . import launch_config
from .equations import BACKWARD_READS, NEURON_IDS
from .kernels import (
    neuron_backward_kernel,
    neuron_backward_recompute_kernel,
    neuron_forward_kernel,
)
from .launch_config import (
    LOW_PRECISION,
    block_config,
    device_guard,
    h_tile_rows,
    recomputes_h,
    scalar_slots,
    threshold_neighbours,
)
from .surrogates import SURROGATE_IDS, surrogate_arguments

__all__ = ["NEURON_OP", "SURROGATES", "TritonNeuronKernels"]

#: The surrogates the kernels have formulas for (every one of SPEC section 4).
SURROGATES = tuple(SURROGATE_IDS)


def _reads(config: NeuronKernelConfig) -> tuple[str, ...]:
    return BACKWARD_READS[(config.neuron, config.flags)]


def _backward_launch(
    config: NeuronKernelConfig, ncl: int, like: Tensor, r: Tensor | None
) -> tuple[int, int, int, Tensor | None, tuple]:
    """What both backward kernels' launches share: ``(BLOCK, num_warps, grid, the
    per-program sums of dL/dr to fill (when ``r`` exists), the surrogate's arguments)``."""
    block, num_warps = block_config(ncl, training=True)
    grid = triton.cdiv(ncl, block)
    grad_r_partial = like.new_empty((grid,), dtype=torch.float32) if r is not None else None
    surrogate = surrogate_arguments(config.surrogate, config.surrogate_params)
    return block, num_warps, grid, grad_r_partial, surrogate


def _sum_grad_r(grad_r_partial: Tensor | None, r: Tensor | None) -> Tensor | None:
    """``dL/dr`` ``[1]`` from the per-program partial sums, reduced on the device (no host
    synchronisation)."""
    return None if r is None else grad_r_partial.sum().reshape(1).to(r.dtype)


def _incoming(grad: Tensor | None) -> Tensor | None:
    """An incoming gradient as the kernel reads it: ``None`` when absent (or an empty
    placeholder output's), else contiguous."""
    return None if grad is None or grad.numel() == 0 else grad.contiguous()


class TritonNeuronKernels(NeuronKernels):
    """:class:`sj_core.kernels.KernelImplementation` of every neuron on Triton."""

    backend = "triton"

    def forward(
        self,
        config: NeuronKernelConfig,
        inputs: list[Tensor | None],
        *,
        save: bool,
        launch: Callable,
        placeholders: bool,
    ) -> list[Tensor | None]:
        x_seq, v_init, w_init, r = inputs
        T, ncl = x_seq.shape[0], v_init.numel()
        spike_seq = torch.empty_like(x_seq)
        keep_h = save and self.keeps_h(config, T)
        h_seq = torch.empty_like(x_seq) if keep_h else None
        v_seq = torch.empty_like(x_seq) if config.store_v_seq else None
        v_last = torch.empty_like(v_init)
        w_last = torch.empty_like(v_init) if w_init is not None else None
        w_seq = torch.empty_like(x_seq) if config.store_v_seq and w_init is not None else None
        block, num_warps = block_config(ncl, training=save)
        below, at_or_above = threshold_neighbours(config.v_threshold, x_seq.dtype)
        with device_guard(x_seq), launch_lock():
            launch(neuron_forward_kernel)[(triton.cdiv(ncl, block),)](
                x_seq, v_init, v_init if w_init is None else w_init, v_init if r is None else r,
                spike_seq, spike_seq if h_seq is None else h_seq,
                spike_seq if v_seq is None else v_seq, v_last,
                v_last if w_last is None else w_last, spike_seq if w_seq is None else w_seq,
                T, ncl, *scalar_slots(config), config.v_threshold, config.v_reset,
                below, at_or_above,
                NEURON=NEURON_IDS[config.neuron], FLAGS=config.flags,
                HARD_RESET=config.hard_reset, HAS_W=w_init is not None, HAS_R=r is not None,
                SAVE_H=keep_h, STORE_V_SEQ=config.store_v_seq,
                FIX_H_ROUNDING=x_seq.dtype in LOW_PRECISION, PREFETCH=launch_config.PREFETCH,
                BLOCK=block, num_warps=num_warps,
            )  # fmt: skip
        return self.results(x_seq, [spike_seq, v_last, w_last, v_seq, w_seq, h_seq], placeholders)

    def saved(
        self, config: NeuronKernelConfig, inputs: list[Tensor | None], results: list[Tensor | None]
    ) -> list[Tensor | None]:
        x_seq, v_init, _, r = inputs
        if not self.keeps_h(config, x_seq.shape[0]):
            return [None, x_seq, v_init, r]  # the backward recomputes H from these
        reads = _reads(config)
        return [
            results[5],
            x_seq if "x" in reads else None,
            v_init if "v" in reads else None,
            r,
        ]

    def backward(
        self,
        config: NeuronKernelConfig,
        saved: list[Tensor | None],
        grads: list[Tensor | None],
        needs: list[bool],
        *,
        launch: Callable,
    ) -> list[Tensor | None]:
        h_seq, x_seq, v_init, r = saved
        if h_seq is None and x_seq is not None and v_init is not None:
            # What the forward kept says how it ran (not RECOMPUTE_MAX_T now): X instead
            # of H.
            return self._backward_recompute(config, x_seq, v_init, r, grads, needs, launch)
        if h_seq is None or h_seq.numel() == 0:
            raise RuntimeError(
                "sj_triton: backward through a forward that kept nothing for it "
                "(an inference launch); this is a bug in the caller"
            )
        grad_spike, grad_v_last, grad_w_last, grad_v_seq, grad_w_seq = map(_incoming, grads)
        has_w = config.statement.adaptation is not None
        if not config.store_v_seq:
            grad_v_seq = grad_w_seq = None
        if not has_w:
            grad_w_last = grad_w_seq = None
        T, ncl = h_seq.shape[0], h_seq[0].numel()
        step = h_seq.shape[1:]
        grad_x_seq = torch.empty_like(h_seq)
        grad_v_init = h_seq.new_empty(step) if needs[1] else None
        grad_w_init = h_seq.new_empty(step) if has_w and needs[2] else None
        block, num_warps, grid, grad_r_partial, surrogate = _backward_launch(config, ncl, h_seq, r)
        sg_id, sg_p0, sg_p1, sg_terms = surrogate
        reads = _reads(config)
        with device_guard(h_seq), launch_lock():
            launch(neuron_backward_kernel)[(grid,)](
                h_seq if grad_spike is None else grad_spike,
                h_seq if grad_v_seq is None else grad_v_seq,
                h_seq if grad_v_last is None else grad_v_last,
                h_seq if grad_w_last is None else grad_w_last,
                h_seq if grad_w_seq is None else grad_w_seq,
                h_seq, h_seq if x_seq is None else x_seq, h_seq if v_init is None else v_init,
                h_seq if r is None else r,
                grad_x_seq, grad_x_seq if grad_v_init is None else grad_v_init,
                grad_x_seq if grad_w_init is None else grad_w_init,
                grad_x_seq if grad_r_partial is None else grad_r_partial,
                T, ncl, *scalar_slots(config), config.v_threshold, config.v_reset, sg_p0, sg_p1,
                NEURON=NEURON_IDS[config.neuron], FLAGS=config.flags,
                HARD_RESET=config.hard_reset, DETACH_RESET=config.detach_reset,
                HAS_W=has_w, HAS_R=r is not None, NEEDS_X="x" in reads, NEEDS_V="v" in reads,
                SG=sg_id, SG_TERMS=sg_terms,
                HAS_GRAD_SPIKE=grad_spike is not None, HAS_GRAD_V_SEQ=grad_v_seq is not None,
                HAS_GRAD_V_LAST=grad_v_last is not None,
                HAS_GRAD_W_LAST=grad_w_last is not None, HAS_GRAD_W_SEQ=grad_w_seq is not None,
                WRITE_GRAD_V_INIT=grad_v_init is not None,
                WRITE_GRAD_W_INIT=grad_w_init is not None,
                BLOCK=block, num_warps=num_warps,
            )  # fmt: skip
        return [grad_x_seq, grad_v_init, grad_w_init, _sum_grad_r(grad_r_partial, r)]

    def keeps_h(self, config: NeuronKernelConfig, T: int) -> bool:
        """Whether a training forward over ``T`` steps keeps ``H`` (else the backward
        recomputes it from ``X``: :func:`.launch_config.recomputes_h`)."""
        return not recomputes_h(config, T)

    def _backward_recompute(
        self,
        config: NeuronKernelConfig,
        x_seq: Tensor,
        v_init: Tensor,
        r: Tensor | None,
        grads: list[Tensor | None],
        needs: list[bool],
        launch: Callable,
    ) -> list[Tensor | None]:
        """:meth:`backward` from ``X`` (``neuron_backward_recompute_kernel``)."""
        grad_spike, grad_v_last, _, grad_v_seq, _ = map(_incoming, grads)
        if not config.store_v_seq:
            grad_v_seq = None
        T, ncl = x_seq.shape[0], v_init.numel()
        grad_x_seq = torch.empty_like(x_seq)
        grad_v_init = torch.empty_like(v_init) if needs[1] else None
        block, num_warps, grid, grad_r_partial, surrogate = _backward_launch(config, ncl, x_seq, r)
        sg_id, sg_p0, sg_p1, sg_terms = surrogate
        reads = _reads(config)
        with device_guard(x_seq), launch_lock():
            launch(neuron_backward_recompute_kernel)[(grid,)](
                x_seq if grad_spike is None else grad_spike,
                x_seq if grad_v_seq is None else grad_v_seq,
                x_seq if grad_v_last is None else grad_v_last,
                x_seq, v_init, x_seq if r is None else r,
                grad_x_seq, grad_x_seq if grad_v_init is None else grad_v_init,
                grad_x_seq if grad_r_partial is None else grad_r_partial,
                T, ncl, *scalar_slots(config), config.v_threshold, config.v_reset, sg_p0, sg_p1,
                NEURON=NEURON_IDS[config.neuron], FLAGS=config.flags,
                HARD_RESET=config.hard_reset, DETACH_RESET=config.detach_reset,
                HAS_R=r is not None, NEEDS_X="x" in reads, NEEDS_V="v" in reads,
                SG=sg_id, SG_TERMS=sg_terms,
                HAS_GRAD_SPIKE=grad_spike is not None, HAS_GRAD_V_SEQ=grad_v_seq is not None,
                HAS_GRAD_V_LAST=grad_v_last is not None,
                WRITE_GRAD_V_INIT=grad_v_init is not None,
                T_PAD=h_tile_rows(T), BLOCK=block, num_warps=num_warps,
            )  # fmt: skip
        return [grad_x_seq, grad_v_init, None, _sum_grad_r(grad_r_partial, r)]


# Under the interpreter a triton_op body could not be traced (its kernels are Python).
NEURON_OP = KernelOp(
    "sj_triton",
    "neuron",
    TritonNeuronKernels(),
    NeuronKernelConfig,
    use_triton_op=not interpreter_enabled(),
)
