"""Compile each kernel variant once with CuPy's NVRTC and hand out launchable functions.

Two caches, both for the life of the process:

* ``source key -> cupy.RawKernel``: content-keyed (SHA-256 of the source text and the
  options, :func:`sj_cupy.codegen.source_key`), so equal text is compiled once. CuPy also
  keeps the binary on disk (``~/.cupy/kernel_cache``), so a new process reuses it.
* ``(variant, device) -> cupy.cuda.Function``: what a launch looks up, so a call costs one
  dictionary lookup and no source generation or hashing.

CuPy is imported here, on first use; nothing else in the package needs it.
"""

from __future__ import annotations

import logging
from typing import Any

from sj_core.waiting import long_work

from .codegen import COMPILE_OPTIONS, KernelVariant, kernel_source, source_key

__all__ = ["compiled_kernel_count", "get_function"]

_RAW_KERNELS: dict[str, Any] = {}
_FUNCTIONS: dict[tuple[KernelVariant, int], Any] = {}
_LOG = logging.getLogger(__name__)


def compiled_kernel_count() -> int:
    """How many distinct kernels have been compiled (tests check it stays put)."""
    return len(_RAW_KERNELS)


def _raw_kernel(variant: KernelVariant) -> Any:
    import cupy

    source = kernel_source(variant)
    key = source_key(source, COMPILE_OPTIONS)
    raw = _RAW_KERNELS.get(key)
    if raw is None:
        raw = cupy.RawKernel(source, variant.kernel_name, options=COMPILE_OPTIONS)
        _RAW_KERNELS[key] = raw
    return raw


def get_function(variant: KernelVariant, device_index: int) -> Any:
    """The compiled kernel of ``variant`` on CUDA device ``device_index`` (compiling
    it on first use)."""
    function = _FUNCTIONS.get((variant, device_index))
    if function is None:
        import cupy

        raw = _raw_kernel(variant)
        with (
            cupy.cuda.Device(device_index),
            long_work(
                _LOG,
                f"compiling CUDA kernel {variant.kernel_name} with NVRTC",
                hint="each configuration compiles once; CuPy keeps the binary on disk",
            ),
        ):
            function = raw.kernel  # NVRTC-compiles (or loads from disk) for this device
        _FUNCTIONS[(variant, device_index)] = function
    return function
