"""The CuPy launcher, the compile cache and the scalar/vector choice, without a GPU.

Runs without CuPy: a fake ``cupy`` records what the launcher asks of it, so the argument
types (a wrong width would be read as garbage by the kernel), the stream (CuPy 14's
``Stream.from_external``, or ``ExternalStream`` on older CuPy), the device guard and the
caching are checked in CI. The real CuPy runs in the ``gpu`` tests.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings

import numpy
import pytest
import torch
from cupy_cases import misaligned

from sj_cupy import compiler
from sj_cupy.codegen import (
    BLOCK,
    COMPILE_OPTIONS,
    kernel_params,
    kernel_source,
    make_variant,
    vector_variant,
)
from sj_cupy.kernel_op import dtype_name
from sj_cupy.launch import CupyLauncher, choose_variant, grid_blocks, pack_args


class FakeCupy:
    """Just enough of ``cupy`` for :mod:`sj_cupy.launch` and :mod:`sj_cupy.compiler`.

    ``from_external``: CuPy >= 14, where ``Stream.from_external`` reads the CUDA stream
    protocol and takes the current device, and ``ExternalStream`` warns that it is
    deprecated; otherwise an older CuPy with ``ExternalStream(ptr, device_id)`` only.
    """

    def __init__(self, from_external: bool = True) -> None:
        self.current_device = 0
        self.compiled: list[tuple[str, str, tuple]] = []
        self.calls: list[tuple] = []
        self.device_entries: list[int] = []
        fake = self

        class Function:
            def __init__(self, name, device):
                self.name, self.device = name, device

            def __call__(self, grid, block, args, shared_mem, stream):
                fake.calls.append(
                    (self, grid, block, args, shared_mem, stream, fake.current_device)
                )

        class RawKernel:
            def __init__(self, code, name, options=()):
                fake.compiled.append((code, name, options))
                self.name = name

            @property
            def kernel(self):
                return Function(self.name, fake.current_device)

        @contextlib.contextmanager
        def device(index):
            fake.device_entries.append(index)
            previous, fake.current_device = fake.current_device, index
            try:
                yield
            finally:
                fake.current_device = previous

        class Stream:
            def __init__(self, ptr, device_id):
                self.ptr, self.device_id = ptr, device_id

        def from_external(obj):
            version, ptr = obj.__cuda_stream__()
            assert version == 0
            return Stream(ptr, fake.current_device)

        if from_external:
            Stream.from_external = staticmethod(from_external)

        class ExternalStream(Stream):
            def __init__(self, ptr, device_id=-1):
                if from_external:  # as CuPy 14 does
                    warnings.warn("ExternalStream is deprecated", DeprecationWarning, 2)
                super().__init__(ptr, device_id)

        self.module = types.ModuleType("cupy")
        self.module.RawKernel = RawKernel
        self.module.cuda = types.SimpleNamespace(
            Device=device,
            Stream=Stream,
            ExternalStream=ExternalStream,
            runtime=types.SimpleNamespace(getDevice=lambda: fake.current_device),
        )


@pytest.fixture(params=[True, False], ids=["cupy14", "cupy13"])
def fake_cupy(request, monkeypatch):
    fake = FakeCupy(from_external=request.param)
    monkeypatch.setitem(sys.modules, "cupy", fake.module)
    # Fresh caches: nothing compiled here may leak into real GPU tests.
    monkeypatch.setattr(compiler, "_RAW_KERNELS", {})
    monkeypatch.setattr(compiler, "_FUNCTIONS", {})
    streams = {
        0: types.SimpleNamespace(cuda_stream=0xABC0),
        1: types.SimpleNamespace(cuda_stream=0xABC1),
    }
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: streams[device.index])
    return fake


def _backward_values(variant):
    T, N = 3, 300
    h = torch.rand(T, N)
    values = {p.name: None for p in kernel_params(variant)}
    values.update(
        h_seq=h,
        v_init=torch.rand(N),
        x_seq=torch.rand(T, N),
        grad_x_seq=torch.empty(T, N),
        grad_v_init=torch.empty(N),
        grad_spike_seq=torch.rand(T, N),
        r_tau_ptr=torch.rand(1),
        r_tau_partials=torch.empty(2),
        T=T,
        N=N,
        v_threshold=1.0,
        v_reset=-0.1,
        sg_n=3.0,
        sg_T_period=8.0,
    )
    return values


def test_arguments_streams_and_caching(fake_cupy):
    variant = make_variant(
        "plif",
        "backward",
        soft_reset=False,
        decay_input=True,
        dtype="float32",
        surrogate="SquarewaveFourierSeries",
    )
    values = _backward_values(variant)
    launcher = CupyLauncher()
    args = pack_args(variant, values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning from ExternalStream
        for _ in range(3):
            launcher.launch(variant, args, 2, torch.device("cuda", 0))

    # Compiled once, from the variant's source, with the package's options.
    assert len(fake_cupy.compiled) == 1
    code, name, options = fake_cupy.compiled[0]
    assert (code, name, options) == (kernel_source(variant), variant.kernel_name, COMPILE_OPTIONS)
    assert compiler.compiled_kernel_count() == 1

    assert len(fake_cupy.calls) == 3
    function, grid, block, kernel_args, shared_mem, stream, device = fake_cupy.calls[0]
    assert (grid, block, shared_mem, device) == ((2,), (BLOCK,), 0, 0)
    assert stream.ptr == 0xABC0  # torch's current stream on that device
    assert stream.device_id == 0
    assert all(call[0] is function for call in fake_cupy.calls)  # cached per (variant, device)
    assert fake_cupy.calls[1][5] is stream  # one stream handle per torch stream

    params = kernel_params(variant)
    assert len(kernel_args) == len(params)
    for param, arg in zip(params, kernel_args, strict=True):
        value = values[param.name]
        if param.kind == "pointer":
            assert type(arg) is int  # 64-bit, as CuPy passes Python ints
            assert arg == (0 if value is None else value.data_ptr())
        elif param.kind == "float":
            assert type(arg) is numpy.float32 and arg == numpy.float32(value)
        elif param.kind == "double":
            assert type(arg) is float and arg == value  # CuPy passes floats as double
        else:
            assert type(arg) is int and arg == value
    # Absent incoming gradients are null pointers; PLIF with decay_input reads x_seq.
    assert "x_seq" in [p.name for p in params]
    assert [p.name for p, a in zip(params, kernel_args, strict=True) if a == 0] == [
        "grad_v_last",
        "grad_v_seq",
    ]


def test_other_device_is_entered_and_compiled_separately(fake_cupy):
    variant = make_variant("lif", "forward", soft_reset=True, decay_input=False, dtype="bfloat16")
    T, N = 2, 10
    x = torch.rand(T, N).bfloat16()
    values = dict(
        x_seq=x,
        v_init=x[0],
        spike_seq=x,
        v_last=x[0],
        h_seq=None,
        v_seq=None,
        v_threshold=1.0,
        v_reset=0.0,
        tau=2.0,
        T=T,
        N=N,
    )
    launcher = CupyLauncher()
    launcher.launch(variant, pack_args(variant, values), 1, torch.device("cuda", 1))
    launcher.launch(variant, pack_args(variant, values), 1, torch.device("cuda", 0))
    assert len(fake_cupy.compiled) == 1  # one source, loaded on each device
    (fn1, *_, stream1, device1), (fn0, *_, stream0, device0) = fake_cupy.calls
    assert (fn1.device, device1, stream1.ptr) == (1, 1, 0xABC1)  # launched inside device 1
    assert (fn0.device, device0, stream0.ptr) == (0, 0, 0xABC0)
    assert (stream1.device_id, stream0.device_id) == (1, 0)  # each made on its device
    assert fake_cupy.current_device == 0


# -- scalar or vector kernel ------------------------------------------------------------------


def _forward_values(n: int, dtype=torch.float32, **replace):
    T = 3
    values = dict(
        x_seq=torch.rand(T, n, dtype=dtype),
        v_init=torch.rand(n, dtype=dtype),
        spike_seq=torch.empty(T, n, dtype=dtype),
        v_last=torch.empty(n, dtype=dtype),
        h_seq=None,
        v_seq=None,
        r_tau_ptr=torch.rand(1),
        v_threshold=1.0,
        v_reset=0.0,
        T=T,
        N=n,
    )
    return values | replace


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_choose_variant(dtype):
    scalar = make_variant(
        "plif", "forward", soft_reset=False, decay_input=True, dtype=dtype_name(dtype)
    )
    vector = vector_variant(scalar)
    vec = vector.vec
    assert vec == (4 if dtype == torch.float32 else 8)
    # Fresh tensors are aligned (torch's allocators align far beyond 16 bytes).
    assert choose_variant(scalar, _forward_values(4 * vec, dtype)) == vector
    # N not a multiple of the lane count: scalar.
    assert choose_variant(scalar, _forward_values(4 * vec + 1, dtype)) == scalar
    assert choose_variant(scalar, _forward_values(vec // 2, dtype)) == scalar
    # Any per-neuron tensor off a 16-byte boundary, optional outputs included: scalar.
    n = 4 * vec
    for name, shape in (("x_seq", (3, n)), ("v_init", (n,)), ("v_seq", (3, n))):
        values = _forward_values(n, dtype, **{name: misaligned(torch.rand(shape, dtype=dtype))})
        assert choose_variant(scalar, values) == scalar, name
    # PLIF's 1/tau is read as one scalar: its alignment does not matter.
    values = _forward_values(n, dtype, r_tau_ptr=misaligned(torch.rand(1)))
    assert choose_variant(scalar, values) == vector


def test_grid_blocks():
    scalar = make_variant("lif", "forward", soft_reset=False, decay_input=True, dtype="float16")
    vector = vector_variant(scalar)  # 8 neurons per thread
    assert [grid_blocks(scalar, n) for n in (1, BLOCK, BLOCK + 1)] == [1, 1, 2]
    assert [grid_blocks(vector, n) for n in (8, 8 * BLOCK, 8 * BLOCK + 8)] == [1, 1, 2]
    assert grid_blocks(vector, 4 * 2**20) == 2**22 // (8 * BLOCK)


@pytest.mark.parametrize(
    ("neuron", "decay_input", "reads_x"),
    [("plif", True, True), ("plif", False, False), ("izhikevich", False, False)],
)
def test_backward_choice_looks_at_the_tensors_the_kernel_reads(neuron, decay_input, reads_x):
    # A misaligned x_seq forces the scalar backward only where the backward reads it (PLIF
    # with decay_input); a misaligned v_init (V[t-1] at t = 0, for neurons whose derivatives
    # use V) does too. Absent (null) incoming gradients never block the vector kernel.
    scalar = make_variant(
        neuron, "backward", soft_reset=False, decay_input=decay_input, dtype="float32",
        surrogate="ATan",
    )  # fmt: skip
    vector = vector_variant(scalar)
    T, n = 3, 64
    values = {p.name: None for p in kernel_params(scalar)}
    values |= dict(
        h_seq=torch.rand(T, n), v_init=torch.rand(n), x_seq=torch.rand(T, n),
        grad_x_seq=torch.empty(T, n), grad_v_init=torch.empty(n), T=T, N=n,
    )  # fmt: skip
    assert choose_variant(scalar, values) == vector
    shifted_x = values | {"x_seq": misaligned(torch.rand(T, n))}
    assert choose_variant(scalar, shifted_x) == (scalar if reads_x else vector)
    shifted_v = values | {"v_init": misaligned(torch.rand(n))}
    assert choose_variant(scalar, shifted_v) == scalar
