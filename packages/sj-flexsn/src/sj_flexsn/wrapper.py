"""Wrappers: check arguments, allocate results and launch the generated kernels.

Argument layout (``*args``): ``(*input_seqs, *init_states, *captured)``. Input
sequences are ``[T, *S]`` and share shape, dtype (float16, bfloat16 or float32) and
device; initial states are ``[*S]`` in the same dtype; captured tensors have one
element, or a shape that broadcasts to ``S``. Outputs and states are stored in the input
dtype (the kernels compute in fp32). Tensors must be on a CUDA device, or on the CPU
under Triton's interpreter (``TRITON_INTERPRET=1``).

``T == 0`` (or an empty step) launches nothing: sequences are empty, final states are
clones of the initial states, and in the backward pass a final-state gradient passes
straight to the initial state while everything else gets zeros.

One launch per call: ``grid = (cdiv(NCL, BLOCK),)`` with ``BLOCK`` and the warp count
taken from a small table indexed by :func:`flexsn_backward_ncl_bucket` (at most five
compiled variants per kernel; no autotuning at call time).

Example::

    >>> spikes, v_seq = flexsn_inference(kernel, info, x_seq, v_init)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence

import torch

from sj_core.backends import UnsupportedByBackendError
from sj_core.kernels import interpreter_enabled, launch_lock

from .info import FlexSNInfo

__all__ = [
    "LAUNCH_CONFIGS",
    "backward_with_layout",
    "flexsn_backward",
    "flexsn_backward_ncl_bucket",
    "flexsn_forward",
    "flexsn_inference",
    "flexsn_inference_final_state",
    "launch_config",
]

_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: ``(BLOCK, num_warps)`` per NCL bucket: small layers get small blocks so that they
#: still spread over many SMs; large ones get 1024 neurons per 4-warp program, 8 per
#: thread: two 16-byte accesses per tensor and step in fp32, one in fp16/bf16.
LAUNCH_CONFIGS: tuple[tuple[int, int], ...] = (
    (128, 4),
    (256, 4),
    (512, 4),
    (1024, 4),
    (1024, 4),
)
_BUCKET_LIMITS = (1 << 13, 1 << 16, 1 << 19, 1 << 22)


def flexsn_backward_ncl_bucket(ncl: int) -> int:
    """Map the elements per step ``NCL`` to a launch-configuration bucket in ``[0, 4]``.

    Buckets: ``<= 8K``, ``<= 64K``, ``<= 512K``, ``<= 4M``, larger.
    """
    for bucket, limit in enumerate(_BUCKET_LIMITS):
        if ncl <= limit:
            return bucket
    return len(_BUCKET_LIMITS)


def launch_config(ncl: int) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for a step of ``ncl`` elements."""
    return LAUNCH_CONFIGS[flexsn_backward_ncl_bucket(ncl)]


def _launch(
    kernel,
    device: torch.device,
    ncl: int,
    args: Sequence[object],
    constexprs: dict[str, object],
) -> None:
    block, num_warps = launch_config(ncl)
    grid = ((ncl + block - 1) // block,)
    # Triton launches on the current device (and its current stream).
    guard = (
        torch.cuda.device(device)
        if device.type == "cuda" and device.index != torch.cuda.current_device()
        else contextlib.nullcontext()
    )
    with guard, launch_lock():
        # No FMA contraction: the generated step then rounds exactly like torch's ops.
        kernel[grid](*args, **constexprs, BLOCK=block, num_warps=num_warps, enable_fp_fusion=False)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Per-``info`` constants of the hot path, computed once."""

    n_in: int
    n_st: int
    n_out: int
    n_cap: int
    n_saved: int
    n_stored: int
    cap_flags: tuple[str, ...]
    grad_out_flags: tuple[str, ...]
    state_mode_flags: tuple[str, ...]
    need_flags: tuple[str, ...]  # inputs, states, captures


@functools.lru_cache(maxsize=256)
def _layout(info: FlexSNInfo) -> _Layout:
    n_in, n_st, n_out, n_cap = info.num_inputs, info.num_states, info.num_outputs, info.num_captured
    return _Layout(
        n_in=n_in,
        n_st=n_st,
        n_out=n_out,
        n_cap=n_cap,
        n_saved=info.num_intermediates,
        n_stored=len(info.stored_intermediates),
        cap_flags=tuple(f"CAP{c}_SCALAR" for c in range(n_cap)),
        grad_out_flags=tuple(f"HAS_GRAD_OUT{j}" for j in range(n_out)),
        state_mode_flags=tuple(f"GRAD_STATE{k}_MODE" for k in range(n_st)),
        need_flags=tuple(f"NEED_GRAD_IN{i}" for i in range(n_in))
        + tuple(f"NEED_GRAD_STATE{k}" for k in range(n_st))
        + tuple(f"NEED_GRAD_CAP{c}" for c in range(n_cap)),
    )


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _check_device_and_dtype(device: torch.device, dtype: torch.dtype, what: str) -> None:
    if dtype not in _SUPPORTED_DTYPES:
        raise UnsupportedByBackendError(
            f"{what}: FlexSN Triton kernels support float32, float16 and bfloat16 inputs, "
            f"got {dtype}"
        )
    if device.type == "cuda":
        return
    if device.type == "cpu" and interpreter_enabled():
        return
    raise UnsupportedByBackendError(
        f"{what}: FlexSN Triton kernels need CUDA tensors, got a {device.type} tensor "
        "(CPU tensors work only under Triton's interpreter, TRITON_INTERPRET=1; or use "
        "backend='torch')"
    )


def _bad_argument(tensor: object, expected: tuple, first: torch.Tensor, what: str) -> Exception:
    """The error for an input or state that does not match the first input."""
    if not isinstance(tensor, torch.Tensor):
        return TypeError(f"{what} must be a tensor, got {type(tensor).__name__}")
    if tuple(tensor.shape) != tuple(expected):
        return ValueError(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")
    if tensor.dtype != first.dtype:
        return TypeError(
            f"{what} is {tensor.dtype}; every input sequence and initial state must share "
            f"the dtype of the first input ({first.dtype})"
        )
    return ValueError(f"{what} is on {tensor.device}, the first input on {first.device}")


def _matching(tensors, shape, first: torch.Tensor, what: str) -> list[torch.Tensor]:
    """``tensors`` made contiguous, after checking shape, dtype and device."""
    dtype, device = first.dtype, first.device
    checked = []
    for index, tensor in enumerate(tensors):
        if (
            not isinstance(tensor, torch.Tensor)
            or tensor.shape != shape
            or tensor.dtype != dtype
            or tensor.device != device
        ):
            raise _bad_argument(tensor, shape, first, f"{what} {index}")
        checked.append(tensor if tensor.is_contiguous() else tensor.contiguous())
    return checked


def _captured_arg(
    tensor: torch.Tensor, step: tuple[int, ...], device: torch.device, what: str
) -> tuple[torch.Tensor, bool]:
    """The kernel argument for a captured tensor, and whether it is one scalar."""
    if tensor.device != device:
        raise ValueError(
            f"{what} (a tensor the core captured) is on {tensor.device}, the inputs on {device}"
        )
    tensor = tensor.detach()
    if tensor.numel() == 1:
        return tensor, True
    try:
        broadcast = torch.broadcast_shapes(tuple(tensor.shape), tuple(step))
    except RuntimeError:
        broadcast = None
    if broadcast != tuple(step):
        raise ValueError(
            f"{what} has shape {tuple(tensor.shape)}, which does not broadcast to one step "
            f"{tuple(step)}; captured tensors must have one element or one per neuron"
        )
    return tensor.expand(step).contiguous(), False


def _captured_args(captured, step, device, what) -> tuple[list[torch.Tensor], list[bool]]:
    args, scalar = [], []
    for c, tensor in enumerate(captured):
        arg, is_scalar = _captured_arg(tensor, step, device, f"{what}: capture {c}")
        args.append(arg)
        scalar.append(is_scalar)
    return args, scalar


def _run_forward_like(
    kernel,
    info: FlexSNInfo,
    args: Sequence[torch.Tensor],
    *,
    what: str,
    state_seqs: bool,
    intermediates: bool,
    extra_flags: dict[str, object] | None = None,
) -> tuple[torch.Tensor, ...]:
    layout = _layout(info)
    n_in, n_st = layout.n_in, layout.n_st
    if len(args) != n_in + n_st + layout.n_cap:
        raise TypeError(
            f"{what} takes {n_in} input sequences, {n_st} initial states and "
            f"{layout.n_cap} captured tensors ({n_in + n_st + layout.n_cap} tensors), "
            f"got {len(args)}"
        )
    first = args[0]
    if not isinstance(first, torch.Tensor) or first.dim() < 1:
        raise ValueError(f"{what}: input sequences must be tensors [T, *S], got {first!r:.60}")
    dtype, device = first.dtype, first.device
    if device.type != "cuda" or dtype not in _SUPPORTED_DTYPES:
        _check_device_and_dtype(device, dtype, what)
    seq_shape = first.shape
    T, step = seq_shape[0], seq_shape[1:]
    ncl = _numel(step)
    inputs = _matching(args[:n_in], seq_shape, first, f"{what}: input sequence")
    states = _matching(args[n_in : n_in + n_st], step, first, f"{what}: initial state")
    captured, cap_scalar = _captured_args(args[n_in + n_st :], step, device, what)

    outputs = [torch.empty(seq_shape, dtype=dtype, device=device) for _ in range(layout.n_out)]
    if state_seqs:
        new_states = [torch.empty(seq_shape, dtype=dtype, device=device) for _ in range(n_st)]
    elif T == 0 or ncl == 0:
        new_states = [s.clone() for s in states]
    else:
        new_states = [torch.empty(step, dtype=dtype, device=device) for _ in range(n_st)]
    count = layout.n_stored if intermediates else 0
    stored = [torch.empty(seq_shape, dtype=dtype, device=device) for _ in range(count)]
    if T > 0 and ncl > 0:
        flags = dict(zip(layout.cap_flags, cap_scalar, strict=True))
        if extra_flags:
            flags.update(extra_flags)
        _launch(
            kernel,
            device,
            ncl,
            [*inputs, *states, *captured, *outputs, *new_states, *stored, T, ncl],
            flags,
        )
    return (*outputs, *new_states, *stored)


def flexsn_inference(f, info: FlexSNInfo, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Run the inference kernel.

    Args:
        f: the kernel from :func:`~sj_flexsn.kernel.build_inference_kernel`.
        info: its :class:`FlexSNInfo`.
        args: ``(*input_seqs [T, *S], *init_states [*S], *captured)``.

    Returns:
        ``(*output_seqs, *state_seqs)``, each ``[T, *S]``.
    """
    return _run_forward_like(
        f, info, args, what="flexsn_inference", state_seqs=True, intermediates=False
    )


def flexsn_inference_final_state(
    f, info: FlexSNInfo, *args: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Run the final-state inference kernel.

    Returns:
        ``(*output_seqs [T, *S], *final_states [*S])``; with ``T == 0`` the outputs are
        empty and the final states are clones of the initial states.
    """
    return _run_forward_like(
        f,
        info,
        args,
        what="flexsn_inference_final_state",
        state_seqs=False,
        intermediates=False,
    )


def flexsn_forward(
    f, info: FlexSNInfo, *args: torch.Tensor, store_state_seqs: bool = True
) -> tuple[torch.Tensor, ...]:
    """Run the training forward kernel.

    Args:
        f, info: from :func:`~sj_flexsn.kernel.build_training_kernels`.
        args: ``(*input_seqs, *init_states, *captured)``.
        store_state_seqs: return state sequences ``[T, *S]`` (else final states ``[*S]``).

    Returns:
        ``(*output_seqs, *states, *stored)``: ``stored`` are the intermediates the kernel
        writes (``info.stored_intermediates``), each ``[T, *S]``.
    """
    return _run_forward_like(
        f,
        info,
        args,
        what="flexsn_forward",
        state_seqs=store_state_seqs,
        intermediates=True,
        extra_flags={"STORE_STATE_SEQS": store_state_seqs},
    )


def _layout_from(
    info: FlexSNInfo,
    grads: Sequence[torch.Tensor | None],
    saved: Sequence[torch.Tensor],
    input_templates: Sequence[torch.Tensor] | None,
) -> tuple[int, tuple[int, ...], torch.dtype, torch.device]:
    """``(T, step shape, dtype, device)`` of the forward call being differentiated."""
    if input_templates:
        template = input_templates[0]
        return template.shape[0], tuple(template.shape[1:]), template.dtype, template.device
    for tensor in [*saved, *grads[: info.num_outputs]]:
        if tensor is not None:
            return tensor.shape[0], tuple(tensor.shape[1:]), tensor.dtype, tensor.device
    raise ValueError(
        "flexsn_backward cannot tell T and the step shape: pass input_templates "
        "(tensors, or meta tensors, shaped like the input sequences)"
    )


def _state_grad_mode(grad: torch.Tensor | None, step, T: int, k: int) -> int:
    if grad is None:
        return 0
    shape = tuple(grad.shape)
    if shape == tuple(step):
        return 1
    if shape[1:] == tuple(step) and shape[0] == T:
        return 2
    raise ValueError(
        f"flexsn_backward: the gradient of state {k} has shape {tuple(shape)}; expected "
        f"{tuple(step)} (final state) or {(T, *step)} (state sequence)"
    )


def flexsn_backward(
    f,
    info: FlexSNInfo,
    *args: torch.Tensor | None,
    input_templates: Sequence[torch.Tensor] | None = None,
    state_templates: Sequence[torch.Tensor] | None = None,
    needs_input_grad: Sequence[bool] | None = None,
    device: torch.device | None = None,
) -> tuple[torch.Tensor | None, ...]:
    """Run the training backward kernel.

    Args:
        f, info: from :func:`~sj_flexsn.kernel.build_training_kernels`.
        args: ``(*grad_outputs, *grad_states, *saved, *captured)``: gradients of the
            output sequences (``[T, *S]`` or ``None``), of the states (state sequences
            ``[T, *S]``, final states ``[*S]``, or ``None``), then one tensor per
            intermediate of ``info`` (the input sequence, output sequence or stored
            intermediate that ``info.c2k_return_mapping`` points to), then the captured
            tensors.
        input_templates: tensors shaped like the input sequences (meta tensors are fine);
            needed when every gradient is ``None`` and nothing is saved.
        state_templates: tensors shaped like the initial states (checked to share the
            inputs' dtype).
        needs_input_grad: which of ``(*inputs, *states, *captured)`` to return
            gradients for (default: all).
        device: the device to compute on, when the templates are meta tensors.

    Returns:
        ``(*grad_inputs, *grad_init_states, *grad_captured)``, ``None`` where not needed.
        With ``T == 0`` the input gradients are empty, a final-state gradient passes to
        the initial state unchanged and everything else is zero.
    """
    layout = _layout(info)
    n_grads = layout.n_out + layout.n_st
    if len(args) != n_grads + layout.n_saved + layout.n_cap:
        raise TypeError(
            f"flexsn_backward takes {n_grads} gradients, {layout.n_saved} saved tensors and "
            f"{layout.n_cap} captured tensors, got {len(args)} arguments"
        )
    grads = args[:n_grads]
    saved = args[n_grads : n_grads + layout.n_saved]
    T, step, dtype, template_device = _layout_from(info, grads, saved, input_templates)
    if state_templates and any(s.dtype != dtype for s in state_templates):
        raise TypeError("flexsn_backward: states must share the dtype of the inputs")
    return backward_with_layout(
        f,
        info,
        grads,
        saved,
        args[n_grads + layout.n_saved :],
        T=T,
        step=step,
        dtype=dtype,
        device=torch.device(device) if device is not None else template_device,
        needs_input_grad=needs_input_grad,
    )


def backward_with_layout(
    f,
    info: FlexSNInfo,
    grads: Sequence[torch.Tensor | None],
    saved: Sequence[torch.Tensor],
    captured_in: Sequence[torch.Tensor],
    *,
    T: int,
    step: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    needs_input_grad: Sequence[bool] | None,
) -> tuple[torch.Tensor | None, ...]:
    """:func:`flexsn_backward` with the forward call's layout given (the hot path).

    ``grads`` has one entry per output and state, ``saved`` one per intermediate;
    ``step`` is the step shape ``S``.
    """
    layout = _layout(info)
    n_in, n_st, n_out = layout.n_in, layout.n_st, layout.n_out
    if device.type != "cuda" or dtype not in _SUPPORTED_DTYPES:
        _check_device_and_dtype(device, dtype, "flexsn_backward")
    step = torch.Size(step)
    ncl = _numel(step)
    needs = needs_input_grad if needs_input_grad is not None else (True,) * len(layout.need_flags)
    saved = [s if s.is_contiguous() else s.contiguous() for s in saved]
    grad_outs = [g if g is None or g.is_contiguous() else g.contiguous() for g in grads[:n_out]]
    grad_states = [g if g is None or g.is_contiguous() else g.contiguous() for g in grads[n_out:]]
    modes = [_state_grad_mode(g, step, T, k) for k, g in enumerate(grad_states)]
    captured, cap_scalar = _captured_args(captured_in, step, device, "flexsn_backward")

    seq_shape = (T, *step)
    grad_inputs = [
        torch.empty(seq_shape, dtype=dtype, device=device) if needs[i] else None
        for i in range(n_in)
    ]
    grad_init = [
        torch.empty(step, dtype=dtype, device=device) if needs[n_in + k] else None
        for k in range(n_st)
    ]
    block, _ = launch_config(ncl)
    programs = (ncl + block - 1) // block
    grad_cap_buffers = [
        torch.zeros(programs if scalar else ncl, dtype=torch.float32, device=device)
        if needs[n_in + n_st + c]
        else None
        for c, scalar in enumerate(cap_scalar)
    ]

    if T == 0 or ncl == 0:
        for g in grad_inputs:
            if g is not None:
                g.zero_()
        for k, g in enumerate(grad_init):
            if g is not None:
                g.copy_(grad_states[k]) if modes[k] == 1 else g.zero_()
    else:
        dummy = next(t for t in (*saved, *grad_outs, *grad_states, *grad_inputs) if t is not None)
        flags: dict[str, object] = dict(
            zip(layout.grad_out_flags, [g is not None for g in grad_outs], strict=True)
        )
        flags.update(zip(layout.state_mode_flags, modes, strict=True))
        flags.update(zip(layout.cap_flags, cap_scalar, strict=True))
        wanted = [*grad_inputs, *grad_init, *grad_cap_buffers]
        flags.update(zip(layout.need_flags, [g is not None for g in wanted], strict=True))
        pointers = [t if t is not None else dummy for t in (*grad_outs, *grad_states)]
        outputs = [t if t is not None else dummy for t in wanted]
        _launch(f, device, ncl, [*pointers, *saved, *captured, *outputs, T, ncl], flags)
    grad_captured = []
    for tensor, buffer in zip(captured_in, grad_cap_buffers, strict=True):
        if buffer is None:
            grad_captured.append(None)
        elif tensor.numel() == 1:
            grad_captured.append(buffer.sum().reshape(tensor.shape).to(tensor.dtype))
        else:
            grad_captured.append(buffer.view(step).sum_to_size(tensor.shape).to(tensor.dtype))
    return (*grad_inputs, *grad_init, *grad_captured)
