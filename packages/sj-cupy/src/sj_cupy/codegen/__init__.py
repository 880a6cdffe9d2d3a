"""CUDA source generation for the cupy backend (pure Python: no CuPy, no GPU).

* :mod:`.prelude`: storage dtypes and the shared helpers (loads, stores, reset).
* :mod:`.neurons`, :mod:`.surrogates`: the equations, as data.
* :mod:`.variant`: what is baked into one kernel (:class:`KernelVariant`).
* :mod:`.kernels`: writers for the forward and backward kernels.
* :mod:`.source`: whole sources and their content keys.

Example::

    >>> from sj_cupy.codegen import make_variant, kernel_source
    >>> v = make_variant("lif", "forward", soft_reset=False, decay_input=True,
    ...                  dtype="float32")
    >>> "sj_lif_decay_hard_f32_forward" in kernel_source(v)
    True
"""

from .kernels import KernelParam, kernel_params
from .neurons import NEURONS
from .prelude import BLOCK, DTYPES
from .source import COMPILE_OPTIONS, kernel_source, module_source, source_key
from .surrogates import SURROGATES
from .variant import KernelVariant, all_variants, make_variant

__all__ = [
    "BLOCK",
    "COMPILE_OPTIONS",
    "DTYPES",
    "KernelParam",
    "KernelVariant",
    "NEURONS",
    "SURROGATES",
    "all_variants",
    "kernel_params",
    "kernel_source",
    "make_variant",
    "module_source",
    "source_key",
]
