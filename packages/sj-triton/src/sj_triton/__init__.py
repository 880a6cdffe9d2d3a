"""sj-triton: Triton multi-step kernels for IF, LIF and PLIF neurons.

Installing the package registers the ``triton`` backend with sj-core, so
``LIFNode(step_mode='m', backend='triton')`` uses these kernels. Importing ``sj_triton``
does not import Triton; :mod:`sj_triton.neuron_kernel` does.
"""

from .__about__ import __version__

__all__ = ["__version__"]
