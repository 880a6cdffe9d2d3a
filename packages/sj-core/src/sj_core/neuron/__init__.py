"""Spiking neurons.

Submodules mirror the reference layout: :mod:`~sj_core.neuron.base_node`,
:mod:`~sj_core.neuron.integrate_and_fire`, :mod:`~sj_core.neuron.lif`,
:mod:`~sj_core.neuron.plif`, :mod:`~sj_core.neuron.psn`, :mod:`~sj_core.neuron.flexsn`;
:mod:`~sj_core.neuron.dynamics` holds the per-step equations they share with
:mod:`sj_core.reference`.
"""

from .base_node import BaseNode, SimpleBaseNode
from .flexsn import FlexSN, FlexSNKernel
from .integrate_and_fire import IFNode, SimpleIFNode
from .lif import LIFNode, SimpleLIFNode
from .plif import ParametricLIFNode
from .psn import PSN, MaskedPSN, SlidingPSN

__all__ = [
    "PSN",
    "BaseNode",
    "FlexSN",
    "FlexSNKernel",
    "IFNode",
    "LIFNode",
    "MaskedPSN",
    "ParametricLIFNode",
    "SlidingPSN",
    "SimpleBaseNode",
    "SimpleIFNode",
    "SimpleLIFNode",
]
