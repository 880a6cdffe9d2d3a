"""sj-triton: Triton kernels for every neuron of sj-core (IF, LIF, PLIF, QIF, EIF,
Izhikevich), multi-step and single-step.

Installing the package registers the ``triton`` backend with sj-core, so
``LIFNode(step_mode='m', backend='triton')`` uses these kernels. The neurons' equations
are printed from sj-core's statements (:mod:`sj_triton.neuron_kernel.codegen`); the
operators are in :mod:`sj_triton.operators`. Importing ``sj_triton`` does not import
Triton; :mod:`sj_triton.operators` and :mod:`sj_triton.neuron_kernel` do.
"""

from .__about__ import __version__

__all__ = ["__version__"]
