"""CUDA source generation for the cupy backend (pure Python: no CuPy, no GPU).

* :mod:`.prelude`: storage dtypes and the shared helpers (loads, stores, reset).
* :mod:`.neurons`, :mod:`.surrogates`: the equations, as data.
* :mod:`.variant`: what is baked into one kernel (:class:`KernelVariant`), including the
  neurons per thread (``vec``: 1, or 4 fp32 / 8 16-bit neurons with 16-byte accesses).
* :mod:`.kernels`: writers for the forward and backward kernels.
* :mod:`.source`: whole sources and their content keys.

Example::

    >>> from sj_cupy.codegen import kernel_source, make_variant, vector_variant
    >>> v = make_variant("lif", "forward", soft_reset=False, decay_input=True,
    ...                  dtype="float32")
    >>> "sj_lif_decay_hard_f32_forward" in kernel_source(v)
    True
    >>> "sj_lif_decay_hard_f32x4_forward" in kernel_source(vector_variant(v))
    True
"""

from .kernels import KernelParam, kernel_params
from .neurons import NEURONS
from .prelude import BLOCK, DTYPES, VECTOR_BYTES
from .source import COMPILE_OPTIONS, kernel_source, module_source, source_key
from .surrogates import SURROGATES
from .variant import KernelVariant, all_variants, make_variant, vector_variant

__all__ = [
    "BLOCK",
    "COMPILE_OPTIONS",
    "DTYPES",
    "KernelParam",
    "KernelVariant",
    "NEURONS",
    "SURROGATES",
    "VECTOR_BYTES",
    "all_variants",
    "kernel_params",
    "kernel_source",
    "make_variant",
    "module_source",
    "source_key",
    "vector_variant",
]
