"""Exchange networks with other SNN libraries and neuromorphic hardware through NIR.

`NIR <https://neuroir.org>`_, the Neuromorphic Intermediate Representation, describes a
spiking network as a graph of continuous-time primitives (``Affine``, ``Conv2d``,
``LIF``, ``IF``, ...) that snnTorch, Norse, Sinabs, Lava, SpiNNaker2 and other simulators
and chips read and write.

* :func:`to_nir` describes a trained sj_core network as a ``nir.NIRGraph``;
  ``nir.write(path, graph)`` saves it.
* :func:`from_nir` builds an sj_core network from a graph or a file: an
  ``nn.Sequential`` for a chain, a :class:`NIRNetwork` for a graph with branches.
* :mod:`sj_core.nir.neurons` and :mod:`sj_core.nir.layers` state how each parameter is
  converted (time constants in seconds are ``dt`` times those in steps, ...).

Both need the ``nir`` package (``pip install 'sj-core[nir]'``); importing this module
does not.

Example::

    >>> from sj_core.nir import from_nir, to_nir
    >>> graph = to_nir(net, torch.rand(8, 1, 64))     # a sample input [T, N, features]
    >>> nir.write("net.nir", graph)
    >>> same = from_nir("net.nir")                    # the same spikes as net
"""

from .export import to_nir
from .load import from_nir
from .network import NIRNetwork
from .neurons import DEFAULT_DT

__all__ = ["DEFAULT_DT", "NIRNetwork", "from_nir", "to_nir"]
