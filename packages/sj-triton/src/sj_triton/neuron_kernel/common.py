"""Validation and the shared entry point behind ``multistep_if/lif/plif``."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from .._backend import interpreter_enabled
from .ops import MultistepFunction, launch_forward, multistep_forward
from .surrogates import surrogate_args

__all__ = ["SUPPORTED_DTYPES", "run_multistep"]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Read once: torch.compile traces these functions, and a constant keeps os.environ out.
_INTERPRETER = interpreter_enabled()
# Eager calls normally bypass the torch.library dispatcher (MultistepFunction);
# SJ_TRITON_EAGER_OPS=1 routes them through the registered ops too (for measuring).
_EAGER_OPS = os.environ.get("SJ_TRITON_EAGER_OPS", "0") == "1"


def _check_tensors(x_seq: Tensor, states: tuple[Tensor, ...]) -> None:
    if x_seq.device.type != "cuda" and not (x_seq.device.type == "cpu" and _INTERPRETER):
        raise NotImplementedError(
            f"the triton backend runs on CUDA tensors (or on the CPU under "
            f"TRITON_INTERPRET=1); got a tensor on {x_seq.device}"
        )
    if x_seq.dtype not in SUPPORTED_DTYPES:
        raise NotImplementedError(
            f"the triton backend supports float32, float16 and bfloat16 inputs, got "
            f"{x_seq.dtype} (use backend='torch' for it)"
        )
    if x_seq.dim() < 1:
        raise ValueError("x_seq must have shape [T, *S]")
    for state in states:
        if state.shape != x_seq.shape[1:]:
            raise ValueError(
                f"initial state shape {tuple(state.shape)} does not match one step of x_seq "
                f"{tuple(x_seq.shape[1:])}"
            )
        if state.dtype != x_seq.dtype or state.device != x_seq.device:
            raise ValueError(
                f"initial state ({state.dtype}, {state.device}) must match x_seq "
                f"({x_seq.dtype}, {x_seq.device})"
            )


def run_multistep(
    neuron: int,
    x_seq: Tensor,
    v_init: Tensor,
    r_tau: Tensor | None,
    *,
    r_tau_value: float,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
    store_v_seq: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate and run the kernels (eager: ``MultistepFunction``; compiled: the ops).

    Returns ``(spike_seq [T, *S], v_last [*S], v_seq [T, *S] | None)``.
    """
    _check_tensors(x_seq, (v_init,))
    sg_id, sg_p0, sg_p1, sg_terms = surrogate_args(surrogate_function)
    T = x_seq.shape[0]
    if T == 0:
        return torch.empty_like(x_seq), v_init, torch.empty_like(x_seq) if store_v_seq else None
    needs_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or v_init.requires_grad or (r_tau is not None and r_tau.requires_grad)
    )
    # Contiguous [T, *S] tensors go to the kernel as they are (it sees [T, NCL]): no
    # reshapes, so no extra autograd nodes per call.
    x_seq = x_seq.contiguous()
    v_init = v_init.contiguous()
    config = (
        neuron,
        v_reset is not None,
        decay_input,
        detach_reset,
        r_tau_value,
        v_threshold,
        0.0 if v_reset is None else v_reset,
        sg_id,
        sg_p0,
        sg_p1,
        sg_terms,
    )
    if _EAGER_OPS or torch.compiler.is_compiling():
        spike_seq, _, v_seq, v_last = multistep_forward(
            x_seq, v_init, r_tau, *config, needs_grad, store_v_seq
        )
        return spike_seq, v_last, v_seq if store_v_seq else None
    if not needs_grad:
        # Inference: no autograd node at all, just the launch.
        spike_seq, _, v_seq, v_last = launch_forward(
            lambda kernel: kernel, x_seq, v_init, r_tau, *config[:3], *config[4:7],
            False, store_v_seq, allocate_unused=False,
        )  # fmt: skip
        return spike_seq, v_last, v_seq
    return MultistepFunction.apply(x_seq, v_init, r_tau, config, needs_grad, store_v_seq)
