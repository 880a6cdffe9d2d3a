"""The optional ``nir`` package: imported when a conversion runs, never at import time."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "import_nir"]

#: What to run when ``nir`` is missing.
INSTALL_HINT = "pip install 'sj-core[nir]'"


def import_nir(feature: str) -> ModuleType:
    """The ``nir`` package, or an ``ImportError`` naming ``feature`` and how to install it."""
    try:
        return importlib.import_module("nir")
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs the 'nir' package, which is not installed: {INSTALL_HINT}"
        ) from exc
