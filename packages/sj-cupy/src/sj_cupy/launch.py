"""Launching generated kernels: the variant a call runs, argument packing, the launcher.

Every configuration has a scalar kernel (one neuron per thread) and a vector kernel
(``vec`` neurons per thread, one 16-byte access per tensor per step). The vector kernel is
the fast one; it needs ``N % vec == 0`` and every per-neuron tensor 16-byte aligned, which
:func:`choose_variant` checks on each call (a sliced tensor may start anywhere).

A launcher takes a variant, the values of its kernel arguments by name and the grid
size, and runs the kernel. :class:`CupyLauncher` runs it on the GPU on PyTorch's current
stream; tests may install another launcher (:func:`set_launcher`) that runs the same
generated code on the CPU.

Tensors are passed by pointer (``tensor.data_ptr()`` as a 64-bit integer): no copy, no
conversion to CuPy arrays. Null pointers (``None``) mean "no such input/output".

Example::

    >>> variant = choose_variant(make_variant("lif", "forward", ...), values)
    >>> get_launcher().launch(variant, pack_args(variant, values),
    ...                       grid_blocks(variant, values["N"]), x_seq.device)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from .codegen import (
    BLOCK,
    VECTOR_BYTES,
    KernelParam,
    KernelVariant,
    kernel_params,
    vector_variant,
)
from .compiler import get_function

__all__ = [
    "CupyLauncher",
    "Launcher",
    "choose_variant",
    "get_launcher",
    "grid_blocks",
    "pack_args",
    "set_launcher",
]


class Launcher(Protocol):
    #: ``torch.device.type`` of the tensors this launcher runs on.
    device_type: str

    def launch(
        self, variant: KernelVariant, args: tuple, n_blocks: int, device: torch.device
    ) -> None: ...


@functools.cache
def _params(variant: KernelVariant) -> tuple[KernelParam, ...]:
    return kernel_params(variant)


@functools.cache
def _vector_form(variant: KernelVariant) -> tuple[KernelVariant, tuple[str, ...]]:
    """The vector variant of a scalar ``variant`` and the tensors it accesses 16 bytes at
    a time (cached: a call does no code generation)."""
    vector = vector_variant(variant)
    return vector, tuple(p.name for p in _params(vector) if p.per_neuron)


def choose_variant(variant: KernelVariant, values: Mapping[str, Any]) -> KernelVariant:
    """The kernel to run for argument ``values`` (names as in ``kernel_params``): the
    vector form of the scalar ``variant`` when ``N`` is a multiple of its lane count and
    every per-neuron tensor (optional ones included) starts on a 16-byte boundary;
    otherwise ``variant`` itself, which runs any size and alignment."""
    vector, names = _vector_form(variant)
    if values["N"] % vector.vec:
        return variant
    for name in names:
        tensor = values.get(name)
        if tensor is not None and tensor.data_ptr() % VECTOR_BYTES:
            return variant
    return vector


def grid_blocks(variant: KernelVariant, n: int) -> int:
    """Blocks of :data:`~sj_cupy.codegen.BLOCK` threads that cover ``n`` neurons at
    ``variant.vec`` neurons per thread."""
    threads = (n + variant.vec - 1) // variant.vec
    return (threads + BLOCK - 1) // BLOCK


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


class _StreamPointer:
    """A raw ``cudaStream_t`` in the CUDA stream protocol, which
    ``cupy.cuda.Stream.from_external`` reads (torch streams implement the protocol only in
    recent releases)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.ptr)


class CupyLauncher:
    """Runs kernels with CuPy on the device of the tensors, on torch's current stream."""

    device_type = "cuda"

    def __init__(self) -> None:
        import cupy
        import numpy

        self._cupy = cupy
        self._float32 = numpy.float32
        self._float_slots: dict[KernelVariant, tuple[int, ...]] = {}
        self._streams: dict[tuple[int, int], Any] = {}

    def _stream(self, device: torch.device, index: int) -> Any:
        """A CuPy handle of torch's current stream on device ``index``, made while that
        device is current (cached per device and pointer).

        Entries are never dropped: a CuPy ``Stream`` destroys its handle when it is
        collected unless CuPy knows the handle is foreign, and a wrapper that stays alive
        can never destroy torch's stream. Torch hands out streams from fixed per-device
        pools, so the cache stays small.
        """
        pointer = torch.cuda.current_stream(device).cuda_stream
        stream = self._streams.get((index, pointer))
        if stream is None:
            from_external = getattr(self._cupy.cuda.Stream, "from_external", None)
            if from_external is not None:  # CuPy >= 14 (ExternalStream is deprecated)
                stream = from_external(_StreamPointer(pointer))
            else:
                stream = self._cupy.cuda.ExternalStream(pointer, index)
            self._streams[(index, pointer)] = stream
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
        if self._cupy.cuda.runtime.getDevice() == index:
            function((n_blocks,), (BLOCK,), kernel_args, 0, self._stream(device, index))
        else:
            with self._cupy.cuda.Device(index):
                function((n_blocks,), (BLOCK,), kernel_args, 0, self._stream(device, index))


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
