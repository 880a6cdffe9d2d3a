"""Launching generated kernels: argument packing and the CuPy launcher.

A launcher takes a variant, the values of its kernel arguments by name and the grid
size, and runs the kernel. :class:`CupyLauncher` runs it on the GPU on PyTorch's current
stream; tests may install another launcher (:func:`set_launcher`) that runs the same
generated code on the CPU.

Tensors are passed by pointer (``tensor.data_ptr()`` as a 64-bit integer): no copy, no
conversion to CuPy arrays. Null pointers (``None``) mean "no such input/output".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from .codegen import BLOCK, KernelParam, KernelVariant, kernel_params
from .compiler import get_function

__all__ = ["CupyLauncher", "Launcher", "get_launcher", "pack_args", "set_launcher"]


class Launcher(Protocol):
    #: ``torch.device.type`` of the tensors this launcher runs on.
    device_type: str

    def launch(
        self, variant: KernelVariant, args: tuple, n_blocks: int, device: torch.device
    ) -> None: ...


@functools.cache
def _params(variant: KernelVariant) -> tuple[KernelParam, ...]:
    return kernel_params(variant)


def pack_args(variant: KernelVariant, values: Mapping[str, Any]) -> tuple:
    """The kernel's argument tuple: pointers as ints (0 for ``None``), floats and ints
    as Python numbers, in :func:`~sj_cupy.codegen.kernel_params` order."""
    args = []
    for param in _params(variant):
        value = values.get(param.name)
        if param.kind == "pointer":
            args.append(0 if value is None else value.data_ptr())
        else:
            args.append(value)
    return tuple(args)


class CupyLauncher:
    """Runs kernels with CuPy on the device of the tensors, on torch's current stream."""

    device_type = "cuda"

    def __init__(self) -> None:
        import cupy
        import numpy

        self._cupy = cupy
        self._float32 = numpy.float32
        self._float_slots: dict[KernelVariant, tuple[int, ...]] = {}
        self._streams: dict[int, Any] = {}

    def _stream(self, device: torch.device) -> Any:
        """A CuPy handle of torch's current stream on ``device`` (cached by pointer)."""
        pointer = torch.cuda.current_stream(device).cuda_stream
        stream = self._streams.get(pointer)
        if stream is None:
            if len(self._streams) > 64:  # user streams come and go; keep the cache small
                self._streams.clear()
            stream = self._cupy.cuda.ExternalStream(pointer)
            self._streams[pointer] = stream
        return stream

    def _as_kernel_types(self, variant: KernelVariant, args: tuple) -> tuple:
        # CuPy passes Python floats as double and ints as 64-bit: only the fp32
        # scalars need an explicit type.
        slots = self._float_slots.get(variant)
        if slots is None:
            slots = tuple(i for i, p in enumerate(_params(variant)) if p.kind == "float")
            self._float_slots[variant] = slots
        args = list(args)
        for i in slots:
            args[i] = self._float32(args[i])
        return tuple(args)

    def launch(
        self, variant: KernelVariant, args: tuple, n_blocks: int, device: torch.device
    ) -> None:
        index = device.index if device.index is not None else torch.cuda.current_device()
        function = get_function(variant, index)
        kernel_args = self._as_kernel_types(variant, args)
        stream = self._stream(device)
        if self._cupy.cuda.runtime.getDevice() == index:
            function((n_blocks,), (BLOCK,), kernel_args, 0, stream)
        else:
            with self._cupy.cuda.Device(index):
                function((n_blocks,), (BLOCK,), kernel_args, 0, stream)


_LAUNCHER: Launcher | None = None


def get_launcher() -> Launcher:
    """The active launcher (a :class:`CupyLauncher`, created on first use)."""
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = CupyLauncher()
    return _LAUNCHER


def set_launcher(launcher: Launcher | None) -> Launcher | None:
    """Install ``launcher`` (``None``: back to CuPy on next use); returns the previous one.

    A seam for tests, which run the generated kernels on the CPU this way.
    """
    global _LAUNCHER
    previous, _LAUNCHER = _LAUNCHER, launcher
    return previous


def device_type() -> str:
    """The device type kernels run on: ``"cuda"`` unless a test launcher says otherwise.
    (Does not import CuPy.)"""
    return "cuda" if _LAUNCHER is None else _LAUNCHER.device_type
