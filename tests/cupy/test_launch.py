"""The CuPy launcher and the compile cache, against a stand-in ``cupy`` module.

Runs without CuPy or a GPU: a fake ``cupy`` records what the launcher asks of it, so the
argument types (a wrong width would be read as garbage by the kernel), the stream, the
device guard and the caching are checked in CI. The real CuPy runs in the ``gpu`` tests.
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy
import pytest
import torch

from sj_cupy import compiler
from sj_cupy.codegen import BLOCK, COMPILE_OPTIONS, kernel_params, kernel_source, make_variant
from sj_cupy.launch import CupyLauncher, pack_args


class FakeCupy:
    """Just enough of ``cupy`` for :mod:`sj_cupy.launch` and :mod:`sj_cupy.compiler`."""

    def __init__(self) -> None:
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

        class ExternalStream:
            def __init__(self, ptr):
                self.ptr = ptr

        self.module = types.ModuleType("cupy")
        self.module.RawKernel = RawKernel
        self.module.cuda = types.SimpleNamespace(
            Device=device,
            ExternalStream=ExternalStream,
            runtime=types.SimpleNamespace(getDevice=lambda: fake.current_device),
        )


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = FakeCupy()
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
    assert [p.name for p, a in zip(params, kernel_args, strict=True) if a == 0] == [
        "grad_v_last",
        "grad_v_seq",
        "grad_h_seq",
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
    assert fake_cupy.current_device == 0
