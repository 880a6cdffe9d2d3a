"""FlexSN kernels as ``torch.library`` operators, addressed by integer handles.

Generated kernels are Python objects that ``torch.compile`` must not trace into, so they
live in a registry (:class:`FlexSNKernelHandle` per built core) and the operators take an
integer ``handle``:

* ``sj_flexsn::inference(handle, tensors, final_state) -> list[Tensor]``
* ``sj_flexsn::forward(handle, tensors, store_state_seqs) -> list[Tensor]`` (training;
  autograd registered with ``register_autograd``)
* ``sj_flexsn::backward(handle, grads, saved, captured, T, step_shape, dtype, device,
  needs) -> list[Tensor]``

``tensors`` is ``[*input_seqs, *init_states, *captured]``. Each operator has a fake
implementation, so Dynamo and AOTAutograd see one opaque node per call (no graph break,
``fullgraph=True`` works). These are ``custom_op``\\ s rather than ``triton_op``\\ s: the
kernel is looked up at run time from the handle, which also works under Triton's CPU
interpreter.

Lifetime: a handle starts with one *owner* reference (the object the factory returns;
:func:`attach_flexsn_handle_finalizer` releases it when that object is collected, and a
deep copy retains another one). An eager training forward takes an *active* reference
for its autograd node and drops it when the node is freed, so the kernels survive until
the backward pass even if the owner is gone. A handle is removed when both counts reach
zero.

Example::

    >>> handle = register_flexsn_kernel_handle(inference_kernel=k, inference_info=info, ...)
    >>> outs = torch.ops.sj_flexsn.inference(handle, [x_seq, v_init], False)
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import weakref

import torch

from .info import FlexSNInfo
from .wrapper import (
    backward_with_layout,
    flexsn_forward,
    flexsn_inference,
    flexsn_inference_final_state,
)

__all__ = [
    "FlexSNKernelHandle",
    "attach_flexsn_handle_finalizer",
    "get_flexsn_kernel_handle",
    "hold_active_reference",
    "num_registered_flexsn_kernel_handles",
    "register_flexsn_kernel_handle",
    "release_active_flexsn_kernel_handle",
    "release_flexsn_kernel_handle",
    "retain_flexsn_kernel_handle",
    "retain_owner_flexsn_kernel_handle",
]


@dataclasses.dataclass(eq=False)
class FlexSNKernelHandle:
    """The kernels of one core, their metadata and reference counts.

    A missing training pair (``forward_kernel is None``) means nothing of the core is
    differentiable.
    """

    inference_kernel: object | None
    inference_info: FlexSNInfo | None
    inference_final_state_kernel: object | None
    inference_final_state_info: FlexSNInfo | None
    forward_kernel: object | None
    backward_kernel: object | None
    training_info: FlexSNInfo | None
    owner_refs: int = 1
    active_refs: int = 0


_REGISTRY: dict[int, FlexSNKernelHandle] = {}
_NEXT_HANDLE = itertools.count(1)
_LOCK = threading.Lock()


def register_flexsn_kernel_handle(
    *,
    inference_kernel,
    inference_info,
    inference_final_state_kernel,
    inference_final_state_info,
    forward_kernel,
    backward_kernel,
    training_info,
) -> int:
    """Register a core's kernels; returns a new handle with one owner reference."""
    entry = FlexSNKernelHandle(
        inference_kernel=inference_kernel,
        inference_info=inference_info,
        inference_final_state_kernel=inference_final_state_kernel,
        inference_final_state_info=inference_final_state_info,
        forward_kernel=forward_kernel,
        backward_kernel=backward_kernel,
        training_info=training_info,
    )
    with _LOCK:
        handle = next(_NEXT_HANDLE)
        _REGISTRY[handle] = entry
    return handle


def get_flexsn_kernel_handle(handle: int) -> FlexSNKernelHandle:
    """The registered kernels of ``handle``.

    Raises:
        RuntimeError: the handle was released (its owner was garbage-collected).
    """
    entry = _REGISTRY.get(handle)
    if entry is None:
        raise RuntimeError(
            f"FlexSN kernel handle {handle} is not registered: the kernel object that owned "
            "it was garbage-collected"
        )
    return entry


def num_registered_flexsn_kernel_handles() -> int:
    """How many handles are alive (for leak checks)."""
    return len(_REGISTRY)


def _adjust(handle: int, owner: int = 0, active: int = 0) -> None:
    with _LOCK:
        entry = _REGISTRY.get(handle)
        if entry is None:
            return  # already gone (e.g. at interpreter shutdown)
        entry.owner_refs += owner
        entry.active_refs += active
        if entry.owner_refs <= 0 and entry.active_refs <= 0:
            del _REGISTRY[handle]


def retain_flexsn_kernel_handle(handle: int) -> None:
    """Add an active reference (an autograd node that will run the backward kernel)."""
    _adjust(handle, active=1)


def retain_owner_flexsn_kernel_handle(handle: int) -> None:
    """Add an owner reference (e.g. a deep copy of the owning object)."""
    _adjust(handle, owner=1)


def release_flexsn_kernel_handle(handle: int) -> None:
    """Drop an owner reference; the kernels go when no reference is left."""
    _adjust(handle, owner=-1)


def release_active_flexsn_kernel_handle(handle: int) -> None:
    """Drop an active reference; the kernels go when no reference is left."""
    _adjust(handle, active=-1)


def attach_flexsn_handle_finalizer(owner: object, handle: int) -> weakref.finalize:
    """Release one owner reference of ``handle`` when ``owner`` is garbage-collected."""
    return weakref.finalize(owner, release_flexsn_kernel_handle, handle)


class _ActiveReference:
    """Held by an autograd node: keeps ``handle`` registered until the node is freed."""

    __slots__ = ("__weakref__",)

    def __init__(self, handle: int) -> None:
        retain_flexsn_kernel_handle(handle)
        weakref.finalize(self, release_active_flexsn_kernel_handle, handle)


def hold_active_reference(handle: int) -> object:
    """An object that holds an active reference to ``handle`` for as long as it lives
    (store it on an autograd context)."""
    return _ActiveReference(handle)


# -- inference ---------------------------------------------------------------------------


@torch.library.custom_op("sj_flexsn::inference", mutates_args=())
def inference_op(handle: int, tensors: list[torch.Tensor], final_state: bool) -> list[torch.Tensor]:
    """Outputs and state sequences (or final states) of a no-grad call."""
    entry = get_flexsn_kernel_handle(handle)
    if final_state:
        return list(
            flexsn_inference_final_state(
                entry.inference_final_state_kernel, entry.inference_final_state_info, *tensors
            )
        )
    return list(flexsn_inference(entry.inference_kernel, entry.inference_info, *tensors))


def _fake_outputs_and_states(info: FlexSNInfo, tensors, state_seqs: bool) -> list[torch.Tensor]:
    x = tensors[0]
    states = tensors[info.num_inputs : info.num_inputs + info.num_states]
    outputs = [x.new_empty(x.shape) for _ in range(info.num_outputs)]
    outputs += [x.new_empty(x.shape) if state_seqs else s.new_empty(s.shape) for s in states]
    return outputs


@inference_op.register_fake
def _inference_fake(handle: int, tensors: list[torch.Tensor], final_state: bool):
    info = get_flexsn_kernel_handle(handle).inference_info
    return _fake_outputs_and_states(info, tensors, not final_state)


# -- training ------------------------------------------------------------------------------


@torch.library.custom_op("sj_flexsn::forward", mutates_args=())
def forward_op(
    handle: int, tensors: list[torch.Tensor], store_state_seqs: bool
) -> list[torch.Tensor]:
    """``[*outputs, *states, *stored intermediates]`` of a training call."""
    entry = get_flexsn_kernel_handle(handle)
    return list(
        flexsn_forward(
            entry.forward_kernel, entry.training_info, *tensors, store_state_seqs=store_state_seqs
        )
    )


@forward_op.register_fake
def _forward_fake(handle: int, tensors: list[torch.Tensor], store_state_seqs: bool):
    info = get_flexsn_kernel_handle(handle).training_info
    x = tensors[0]
    stored = [x.new_empty(x.shape) for _ in info.stored_intermediates]
    return _fake_outputs_and_states(info, tensors, store_state_seqs) + stored


@torch.library.custom_op("sj_flexsn::backward", mutates_args=())
def backward_op(
    handle: int,
    grads: list[torch.Tensor | None],
    saved: list[torch.Tensor],
    captured: list[torch.Tensor],
    T: int,
    step_shape: list[int],
    dtype: torch.dtype,
    device: torch.device,
    needs: list[bool],
) -> list[torch.Tensor]:
    """Gradients of the ``tensors`` of :func:`forward_op` whose ``needs`` flag is set."""
    entry = get_flexsn_kernel_handle(handle)
    results = backward_with_layout(
        entry.backward_kernel,
        entry.training_info,
        grads,
        saved,
        captured,
        T=T,
        step=step_shape,
        dtype=dtype,
        device=device,
        needs_input_grad=needs,
    )
    return [r for r in results if r is not None]


@backward_op.register_fake
def _backward_fake(handle, grads, saved, captured, T, step_shape, dtype, device, needs):
    info = get_flexsn_kernel_handle(handle).training_info
    n_in, n_st = info.num_inputs, info.num_states
    shapes = [(T, *step_shape)] * n_in + [tuple(step_shape)] * n_st
    dtypes = [dtype] * (n_in + n_st) + [c.dtype for c in captured]
    shapes += [tuple(c.shape) for c in captured]
    return [
        torch.empty(shape, dtype=dt, device=device)
        for shape, dt, need in zip(shapes, dtypes, needs, strict=True)
        if need
    ]


def _setup_forward_context(ctx, inputs, output) -> None:
    handle, tensors, store_state_seqs = inputs
    info = get_flexsn_kernel_handle(handle).training_info
    n_in, n_st = info.num_inputs, info.num_states
    base = info.num_outputs + n_st
    # Each intermediate is re-read from an input, an output, or a stored buffer.
    saved = [tensors[-m - 1] if m < 0 else output[m] for m in info.c2k_return_mapping[base:]]
    captured = tensors[n_in + n_st :]
    ctx.save_for_backward(*saved, *captured)
    x = tensors[0]
    ctx.flexsn_call = (handle, len(saved), x.shape[0], list(x.shape[1:]), x.dtype, x.device)
    ctx.flexsn_active = hold_active_reference(handle)
    ctx.mark_non_differentiable(*output[base:])
    ctx.set_materialize_grads(False)


def _forward_backward(ctx, grads):
    handle, num_saved, T, step_shape, dtype, device = ctx.flexsn_call
    info = get_flexsn_kernel_handle(handle).training_info
    stored = ctx.saved_tensors
    needs = [bool(n) for n in ctx.needs_input_grad[1]]
    results = torch.ops.sj_flexsn.backward(
        handle,
        list(grads[: info.num_outputs + info.num_states]),
        list(stored[:num_saved]),
        list(stored[num_saved:]),
        T,
        step_shape,
        dtype,
        device,
        needs,
    )
    per_tensor = iter(results)
    return None, [next(per_tensor) if need else None for need in needs], None


forward_op.register_autograd(_forward_backward, setup_context=_setup_forward_context)
