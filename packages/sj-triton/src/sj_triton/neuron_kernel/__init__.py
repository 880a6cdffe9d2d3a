"""Triton multi-step neuron kernels (IF, LIF, PLIF).

Submodules (as in the reference system): :mod:`.integrate_and_fire` (``multistep_if``),
:mod:`.lif` (``multistep_lif``), :mod:`.plif` (``multistep_plif``). The ``*_multi_step``
functions implement sj-core's operator keys and are what the ``triton`` backend
registers.
"""

from .integrate_and_fire import if_multi_step, multistep_if
from .lif import lif_multi_step, multistep_lif
from .plif import multistep_plif, plif_multi_step

__all__ = [
    "if_multi_step",
    "lif_multi_step",
    "multistep_if",
    "multistep_lif",
    "multistep_plif",
    "plif_multi_step",
]
