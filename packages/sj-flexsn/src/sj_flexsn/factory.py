"""The ``flexsn`` operator of the ``triton`` and ``inductor`` backends.

sj-core's ``FlexSN`` / ``FlexSNKernel`` call :func:`build_flexsn_kernel` (through the
backend registry) and get a :class:`FlexSNTritonKernel`: a callable running a core over
``T`` steps with the generated kernels, through the ``sj_flexsn`` custom operators.

Example::

    >>> kernel = build_flexsn_kernel(lif_core, num_inputs=1, num_states=1, num_outputs=1)
    >>> spike_seq, v_seq = kernel(x_seq, v_init)            # [T, *S], [T, *S]
    >>> spike_seq, v_last = kernel.final_state(x_seq, v_init)  # [T, *S], [*S]
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence

import torch

from sj_core.kernels import interpreter_enabled
from sj_core.waiting import long_work

from .capture import CoreSpec, make_core_spec
from .custom_ops import (
    FLEXSN_OP,
    FlexSNConfig,
    attach_flexsn_handle_finalizer,
    register_flexsn_kernel_handle,
    retain_owner_flexsn_kernel_handle,
)
from .kernel import (
    build_inference_kernels_for_spec,
    build_training_kernels_for_spec,
    check_example_inputs,
    normalize_requires_grad,
)

__all__ = ["FlexSNTritonKernel", "build_flexsn_kernel"]

_BACKENDS = ("triton", "inductor")
_LOG = logging.getLogger(__name__)


class FlexSNTritonKernel:
    """A user core compiled to multi-step Triton kernels.

    ``kernel(*input_seqs, *init_states) -> (*output_seqs, *state_seqs)`` and
    ``kernel.final_state(*input_seqs, *init_states) -> (*output_seqs, *final_states)``:
    input sequences ``[T, *S]``, states ``[*S]``, all one dtype (float32, float16 or
    bfloat16) on a CUDA device (or the CPU under ``TRITON_INTERPRET=1``).

    When grad is enabled and any input, state or captured parameter requires grad, the
    training kernels run (one forward launch, one backward launch); otherwise the
    inference kernels. The captured tensors (:attr:`captured`) are read at every call.

    Attributes:
        handle: the ``sj_flexsn`` custom-op handle of the kernels.
        captured: the tensors ``core`` captured, passed to every launch.
        backend: ``"triton"`` or ``"inductor"`` (the same kernels).
    """

    def __init__(
        self,
        core: Callable,
        num_inputs: int,
        num_states: int,
        num_outputs: int,
        example_inputs: Sequence[torch.Tensor] | None = None,
        requires_grad: Sequence[bool] | None = None,
        backend: str = "triton",
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(
                f"sj_flexsn builds kernels for backend 'triton' or 'inductor', got {backend!r}"
            )
        if not (torch.cuda.is_available() or interpreter_enabled()):
            raise RuntimeError(
                "FlexSN Triton kernels need a CUDA device (or Triton's CPU interpreter, "
                "TRITON_INTERPRET=1); use backend='torch' on this machine"
            )
        check_example_inputs(example_inputs, num_inputs, num_states)
        flags = normalize_requires_grad(requires_grad, num_inputs, num_states)
        name = getattr(core, "__name__", type(core).__name__)
        with long_work(_LOG, f"tracing FlexSN core {name!r} and generating its kernels"):
            spec = make_core_spec(core, num_inputs, num_states, num_outputs, flags)
            self._requires_grad = flags
            self._captured_requires_grad = spec.captured_requires_grad
            self.handle = self._register(spec)
        self.backend = backend
        self.num_inputs, self.num_states, self.num_outputs = num_inputs, num_states, num_outputs
        self.captured: tuple[torch.Tensor, ...] = spec.captured
        self._core_name = spec.name
        self._finalizer = attach_flexsn_handle_finalizer(self, self.handle)

    def _register(self, spec: CoreSpec) -> int:
        (inference, inference_info), (final_state, final_state_info) = (
            build_inference_kernels_for_spec(spec)
        )
        trainable = any(self._requires_grad) or any(self._captured_requires_grad)
        forward = backward = training_info = None
        if trainable:
            forward, backward, training_info = build_training_kernels_for_spec(
                spec, self._requires_grad
            )
        return register_flexsn_kernel_handle(
            inference_kernel=inference,
            inference_info=inference_info,
            inference_final_state_kernel=final_state,
            inference_final_state_info=final_state_info,
            forward_kernel=forward,
            backward_kernel=backward,
            training_info=training_info,
        )

    @property
    def trainable(self) -> bool:
        """Whether training kernels were built (some argument or capture is differentiable)."""
        return any(self._requires_grad) or any(self._captured_requires_grad)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(*input_seqs, *init_states) -> (*output_seqs, *state_seqs)``."""
        return self._run(args, final_state=False)

    def final_state(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(*input_seqs, *init_states) -> (*output_seqs, *final_states)``."""
        return self._run(args, final_state=True)

    def _run(self, args: Sequence[torch.Tensor], final_state: bool) -> tuple[torch.Tensor, ...]:
        count = self.num_inputs + self.num_states
        if len(args) != count:
            raise TypeError(
                f"FlexSN kernel of {self._core_name!r} takes {self.num_inputs} input sequences "
                f"and {self.num_states} initial states ({count} tensors), got {len(args)}"
            )
        for index, arg in enumerate(args):
            if not isinstance(arg, torch.Tensor):
                raise TypeError(f"argument {index} must be a tensor, got {type(arg).__name__}")
        tensors = [*args, *self.captured]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            self._check_differentiable(args)
        return FLEXSN_OP(FlexSNConfig(self.handle, store_state_seqs=not final_state), tensors)

    def _check_differentiable(self, args: Sequence[torch.Tensor]) -> None:
        # A gradient the kernels were not built for would silently be zero.
        for index, arg in enumerate(args):
            if arg.requires_grad and not self._requires_grad[index]:
                raise ValueError(
                    f"argument {index} of the FlexSN kernel of {self._core_name!r} requires "
                    f"grad, but the kernel was built with requires_grad[{index}]=False"
                )
        for index, tensor in enumerate(self.captured):
            if tensor.requires_grad and not self._captured_requires_grad[index]:
                raise ValueError(
                    f"captured tensor {index} of {self._core_name!r} requires grad now but "
                    "did not when the kernel was built; rebuild the kernel"
                )

    def __deepcopy__(self, memo: dict) -> FlexSNTritonKernel:
        # The copy shares the compiled kernels (one more owner reference) and reads the
        # copies of the captured tensors (a deep-copied module's parameters).
        clone = copy.copy(self)
        clone.captured = copy.deepcopy(self.captured, memo)
        retain_owner_flexsn_kernel_handle(self.handle)
        clone._finalizer = attach_flexsn_handle_finalizer(clone, self.handle)
        return clone

    def __repr__(self) -> str:
        return (
            f"FlexSNTritonKernel(core={self._core_name!r}, num_inputs={self.num_inputs}, "
            f"num_states={self.num_states}, num_outputs={self.num_outputs}, "
            f"captured={len(self.captured)}, backend={self.backend!r})"
        )


def build_flexsn_kernel(
    core: Callable,
    *,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    example_inputs: Sequence[torch.Tensor] | None = None,
    requires_grad: Sequence[bool] | None = None,
    backend: str = "triton",
) -> FlexSNTritonKernel:
    """Build the multi-step Triton kernels of ``core`` (the ``flexsn`` operator).

    Args:
        core: ``core(*inputs, *states) -> (*outputs, *new_states)``, element-wise.
        num_inputs, num_states, num_outputs: its signature.
        example_inputs: optional ``[*inputs, *states]``, only checked (tracing uses fake
            tensors).
        requires_grad: one flag per ``[*inputs, *states]``: whether gradients are built
            for it (``None``: all).
        backend: ``"triton"`` or ``"inductor"``; both run these kernels.

    Raises:
        RuntimeError: no CUDA device and the Triton interpreter is off.
        UnsupportedOpError: the core uses an op without a Triton lowering.
        FlexSNTraceError: the core cannot be traced as an element-wise step.
    """
    return FlexSNTritonKernel(
        core,
        num_inputs,
        num_states,
        num_outputs,
        example_inputs=example_inputs,
        requires_grad=requires_grad,
        backend=backend,
    )
