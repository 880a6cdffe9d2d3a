"""sj-cupy: CuPy/NVRTC CUDA kernels for multi-step IF, LIF, PLIF, QIF, EIF, Izhikevich.

Installing the package registers the ``cupy`` backend with sj-core, so
``LIFNode(step_mode='m', backend='cupy')`` runs these kernels. Importing ``sj_cupy`` does
not import CuPy: kernel generation (:mod:`sj_cupy.codegen`) is pure Python, and CuPy is
imported when a kernel is first launched.
"""

from .__about__ import __version__

__all__ = ["__version__"]
