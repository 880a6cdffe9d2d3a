"""sj-core: spiking neurons, surrogate gradients and a backend registry for PyTorch.

Importing it loads only PyTorch: kernel backends (``sj-triton``, ``sj-cupy``,
``sj-flexsn``) are discovered lazily and imported when first used, and
:mod:`sj_core.monitor`, :mod:`sj_core.nir` and :mod:`sj_core.visualizing` are imported on
first access (``sj_core.nir.to_nir``); the last two use optional extras (``nir``,
``plot``) only when they run.
"""

import importlib
from typing import Any

from . import backends, base, functional, layer, neuron, surrogate
from .__about__ import __version__

__all__ = ["__version__", "backends", "base", "functional", "layer", "neuron", "surrogate"]

_LAZY_SUBMODULES = ("monitor", "nir", "visualizing")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
