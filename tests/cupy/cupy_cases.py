"""Helpers specific to the cupy backend's tests: which kernel ran, misaligned tensors,
the GPU requirement, and the kernel configuration of a neuron case.

Neuron cases, inputs and the comparison with the reference come from
``tests/support`` (:mod:`neuron_cases`, :mod:`reference_compare`).
"""

from __future__ import annotations

import pytest
import torch
from neuron_cases import NeuronCase

from sj_core.kernels import NeuronKernelConfig
from sj_core.neuron.statements import FLAG, FLOAT
from sj_cupy import launch
from sj_cupy._backend import cupy_installed
from sj_cupy.codegen import DTYPES, VECTOR_BYTES
from sj_cupy.kernel_op import NEURON_OP


def launched_vecs(direction: str | None = None) -> list[int]:
    """Neurons per thread of every kernel the active (recording) launcher ran so far,
    optionally only the ``"forward"`` or ``"backward"`` ones."""
    return [
        v.vec
        for v in launch.get_launcher().launches
        if direction is None or v.direction == direction
    ]


def vector_width(dtype: torch.dtype) -> int:
    """Neurons per thread of the vector kernels for ``dtype`` (4 fp32, 8 fp16/bf16)."""
    return DTYPES[str(dtype).removeprefix("torch.")].vec


def misaligned(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``tensor`` that starts one element past a 16-byte boundary
    (a view into a larger buffer, as a slice of a bigger tensor would be)."""
    buffer = tensor.new_empty(tensor.numel() + 1 + VECTOR_BYTES // tensor.element_size())
    offset = (-buffer.data_ptr() % VECTOR_BYTES) // tensor.element_size() + 1
    view = buffer[offset : offset + tensor.numel()].view(tensor.shape)
    view.copy_(tensor)
    assert view.is_contiguous() and view.data_ptr() % VECTOR_BYTES != 0
    return view


def require_cuda_and_cupy() -> None:
    """Skip (with the reason) unless the GPU path can run here."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    # Not importorskip: tests/cupy itself can be found as a namespace package "cupy".
    if not cupy_installed():
        pytest.skip("CuPy is not installed: pip install 'sj-cupy[cuda13]'")


def kernel_config(
    case: NeuronCase,
    surrogate_function,
    *,
    store_v_seq: bool,
) -> NeuronKernelConfig:
    """The :class:`~sj_core.kernels.NeuronKernelConfig` of ``case`` (what the operators
    build from their keyword arguments)."""
    statement = case.statement
    params = case.params
    flags = 0
    for i, name in enumerate(statement.names(FLAG)):
        flags |= int(params[name]) << i
    return NeuronKernelConfig(
        neuron=case.name,
        surrogate=surrogate_function.kernel_name,
        hard_reset=case.v_reset is not None,
        detach_reset=case.detach_reset,
        store_v_seq=store_v_seq,
        flags=flags,
        v_threshold=case.v_threshold,
        v_reset=0.0 if case.v_reset is None else case.v_reset,
        params=tuple(float(params[name]) for name in statement.names(FLOAT)),
        surrogate_params=tuple(float(v) for v in surrogate_function.kernel_params().values()),
    )


def op_inputs(x_seq, states, tensors) -> list:
    """``[x_seq, v_init, w_init | None, r_tau | None]``: the kernel operator's inputs."""
    w_init = states[1] if len(states) > 1 else None
    r_tau = tensors[0] if tensors else None
    return [x_seq, states[0], w_init, r_tau]


def forward_op_args(
    case: NeuronCase, surrogate_function, inputs: list, *, store_v_seq: bool, save: bool
) -> tuple:
    """The arguments of the registered ``sj_cupy::neuron_forward`` for ``inputs`` (as
    :func:`op_inputs`), as a traced call passes them."""
    config = kernel_config(case, surrogate_function, store_v_seq=store_v_seq)
    return NEURON_OP.op_arguments(config, inputs, save=save)
