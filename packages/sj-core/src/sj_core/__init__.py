"""sj-core: spiking neurons, surrogate gradients and a backend registry for PyTorch.

Importing it loads only PyTorch: kernel backends (``sj-triton``, ``sj-cupy``,
``sj-flexsn``) are discovered lazily and imported when first used.
"""

from . import backends, base, functional, layer, neuron, surrogate
from .__about__ import __version__

__all__ = ["__version__", "backends", "base", "functional", "layer", "neuron", "surrogate"]
