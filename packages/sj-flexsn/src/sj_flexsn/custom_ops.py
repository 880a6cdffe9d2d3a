"""FlexSN kernels as one operator of sj-core's kernel plumbing, addressed by handles.

Generated kernels are Python objects that ``torch.compile`` must not trace into, so they
live in a registry (:class:`FlexSNKernelHandle` per built core) and the operator's
configuration carries an integer ``handle`` (:class:`FlexSNConfig`). :data:`FLEXSN_OP`
(a :class:`sj_core.kernels.KernelOp`) runs them eagerly without the dispatcher, under
autograd with a clear refusal of double backward, or, when traced, through the
registered ``sj_flexsn::flexsn_forward`` / ``sj_flexsn::flexsn_backward`` custom
operators with fake implementations (one opaque node per call; ``fullgraph=True``
works). Inputs are ``[*input_seqs, *init_states, *captured]``.

Lifetime: a handle starts with one *owner* reference (the object the factory returns;
:func:`attach_flexsn_handle_finalizer` releases it when that object is collected, and a
deep copy retains another one). An eager training forward takes an *active* reference
for its autograd node and drops it when the node is freed, so the kernels survive until
the backward pass even if the owner is gone. A handle is removed when both counts reach
zero.

Example::

    >>> handle = register_flexsn_kernel_handle(inference_kernel=k, inference_info=info, ...)
    >>> outs = FLEXSN_OP(FlexSNConfig(handle, store_state_seqs=True), [x_seq, v_init])
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import weakref
from typing import NamedTuple

from sj_core.kernels import KernelOp

from .info import FlexSNInfo
from .wrapper import (
    backward_with_layout,
    flexsn_forward,
    flexsn_inference,
    flexsn_inference_final_state,
)

__all__ = [
    "FLEXSN_OP",
    "FlexSNConfig",
    "FlexSNKernelHandle",
    "FlexSNKernels",
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


# -- the kernels as one operator -----------------------------------------------------------


class FlexSNConfig(NamedTuple):
    """A FlexSN kernel call: which kernels, and which states it returns.

    Attributes:
        handle: the registered kernels (:func:`register_flexsn_kernel_handle`).
        store_state_seqs: return the state sequences ``[T, *S]`` (else the final states).
    """

    handle: int
    store_state_seqs: bool


def _counts(entry: FlexSNKernelHandle) -> FlexSNInfo:
    return entry.training_info or entry.inference_info


class FlexSNKernels:
    """:class:`sj_core.kernels.KernelImplementation` of the generated FlexSN kernels.

    Inputs ``[*input_seqs, *init_states, *captured]``; results ``[*outputs, *states,
    *stored intermediates, layout]`` in training (``layout`` an empty tensor
    ``[T, *S, 0]`` that carries the call's shape, dtype and device to the backward) and
    ``[*outputs, *states]`` in inference.
    """

    backend = "FlexSN"

    def num_outputs(self, config: FlexSNConfig) -> int:
        info = _counts(get_flexsn_kernel_handle(config.handle))
        return info.num_outputs + info.num_states

    def retain(self, config: FlexSNConfig) -> object:
        # The kernels must survive until the backward pass, even if their owner does not.
        return hold_active_reference(config.handle)

    def forward(self, config, inputs, *, save, launch, placeholders):
        entry = get_flexsn_kernel_handle(config.handle)
        if save:
            results = flexsn_forward(
                entry.forward_kernel,
                entry.training_info,
                *inputs,
                store_state_seqs=config.store_state_seqs,
            )
            x = inputs[0]
            return [*results, x.new_empty((*x.shape, 0))]
        if config.store_state_seqs:
            return list(flexsn_inference(entry.inference_kernel, entry.inference_info, *inputs))
        return list(
            flexsn_inference_final_state(
                entry.inference_final_state_kernel, entry.inference_final_state_info, *inputs
            )
        )

    def saved(self, config, inputs, results):
        info = get_flexsn_kernel_handle(config.handle).training_info
        n_in, n_st = info.num_inputs, info.num_states
        base = info.num_outputs + n_st
        # Each intermediate is re-read from an input sequence (mapping -(i + 1)), an output
        # or a stored buffer.
        intermediates = [
            inputs[-m - 1] if m < 0 else results[m] for m in info.c2k_return_mapping[base:]
        ]
        return [*intermediates, *inputs[n_in + n_st :], results[-1]]

    def backward(self, config, saved, grads, needs, *, launch):
        entry = get_flexsn_kernel_handle(config.handle)
        info = entry.training_info
        n_saved = info.num_intermediates
        layout = saved[-1]
        return list(
            backward_with_layout(
                entry.backward_kernel,
                info,
                grads[: info.num_outputs + info.num_states],
                saved[:n_saved],
                saved[n_saved:-1],
                T=layout.shape[0],
                step=layout.shape[1:-1],
                dtype=layout.dtype,
                device=layout.device,
                needs_input_grad=needs,
            )
        )

    def fake_forward(self, config, inputs, save):
        entry = get_flexsn_kernel_handle(config.handle)
        info = entry.training_info if save else entry.inference_info
        x = inputs[0]
        states = inputs[info.num_inputs : info.num_inputs + info.num_states]
        results = [x.new_empty(x.shape) for _ in range(info.num_outputs)]
        results += [
            x.new_empty(x.shape) if config.store_state_seqs else s.new_empty(s.shape)
            for s in states
        ]
        if save:
            results += [x.new_empty(x.shape) for _ in info.stored_intermediates]
            results.append(x.new_empty((*x.shape, 0)))
        return results

    def fake_backward(self, config, saved, grads, needs):
        info = get_flexsn_kernel_handle(config.handle).training_info
        layout = saved[-1]
        T, step = layout.shape[0], tuple(layout.shape[1:-1])
        captured = saved[info.num_intermediates : -1]
        shapes = [(T, *step)] * info.num_inputs + [step] * info.num_states
        shapes += [tuple(c.shape) for c in captured]
        dtypes = [layout.dtype] * (info.num_inputs + info.num_states) + [c.dtype for c in captured]
        return [
            layout.new_empty(shape, dtype=dtype) if need else None
            for shape, dtype, need in zip(shapes, dtypes, needs, strict=True)
        ]


#: The operator every FlexSN kernel runs through (``sj_flexsn::flexsn_forward`` and
#: ``sj_flexsn::flexsn_backward`` when traced). Custom ops rather than ``triton_op`` s:
#: the kernels are looked up at run time from the handle.
FLEXSN_OP = KernelOp("sj_flexsn", "flexsn", FlexSNKernels(), FlexSNConfig)
