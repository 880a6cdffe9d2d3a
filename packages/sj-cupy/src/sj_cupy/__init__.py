"""sj-cupy: CuPy/NVRTC CUDA kernels for every neuron of sj-core (IF, LIF, PLIF, QIF, EIF,
Izhikevich), multi-step and single-step, generated from sj-core's neuron statements.

Installing the package registers the ``cupy`` backend with sj-core, so
``LIFNode(step_mode='m', backend='cupy')`` runs these kernels. Importing ``sj_cupy`` does
not import CuPy: kernel generation (:mod:`sj_cupy.codegen`) is pure Python, and CuPy is
imported when a kernel is first launched.
"""

from .__about__ import __version__

__all__ = ["__version__"]
