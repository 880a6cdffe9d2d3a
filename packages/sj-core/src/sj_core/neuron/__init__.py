"""Spiking neurons.

Submodules mirror the reference layout: :mod:`~sj_core.neuron.base_node`,
:mod:`~sj_core.neuron.integrate_and_fire`, :mod:`~sj_core.neuron.lif`,
:mod:`~sj_core.neuron.plif`, :mod:`~sj_core.neuron.qif`, :mod:`~sj_core.neuron.eif`,
:mod:`~sj_core.neuron.izhikevich`, :mod:`~sj_core.neuron.nonspiking`,
:mod:`~sj_core.neuron.psn`, :mod:`~sj_core.neuron.flexsn`;
:mod:`~sj_core.neuron.statements` holds the one statement of each neuron's equations
that the modules, :mod:`sj_core.reference` and every kernel backend derive from.
"""

from .base_node import BaseNode, SimpleBaseNode
from .eif import EIFNode
from .flexsn import FlexSN, FlexSNKernel
from .integrate_and_fire import IFNode, SimpleIFNode
from .izhikevich import IzhikevichNode
from .lif import LIFNode, SimpleLIFNode
from .nonspiking import NonSpikingBaseNode, NonSpikingIFNode, NonSpikingLIFNode
from .plif import ParametricLIFNode
from .psn import PSN, MaskedPSN, SlidingPSN
from .qif import QIFNode

__all__ = [
    "PSN",
    "BaseNode",
    "EIFNode",
    "FlexSN",
    "FlexSNKernel",
    "IFNode",
    "IzhikevichNode",
    "LIFNode",
    "MaskedPSN",
    "NonSpikingBaseNode",
    "NonSpikingIFNode",
    "NonSpikingLIFNode",
    "ParametricLIFNode",
    "QIFNode",
    "SlidingPSN",
    "SimpleBaseNode",
    "SimpleIFNode",
    "SimpleLIFNode",
]
