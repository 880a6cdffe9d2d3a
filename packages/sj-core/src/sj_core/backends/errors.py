"""Errors raised when a backend is asked for.

Each says what went wrong and what to do about it:

* :class:`UnknownBackendError` (a ``ValueError``): no backend of that name is installed;
  the message lists the installed ones.
* :class:`BackendNotInstalledError` (an ``ImportError``): a first-party backend (or
  operator) whose package is not installed; the message gives the ``pip install`` line.
* :class:`BackendLoadError` (an ``ImportError``): the plugin is installed but failed to
  load; the message carries the original error.
* :class:`BackendUnavailableError` (a ``RuntimeError``): installed but unusable here,
  with the backend's own reason (e.g. "no CUDA device").
* :class:`UnsupportedOperatorError` (a ``ValueError``): the backend exists but does not
  implement the operator a module needs (e.g. single-step LIF on ``triton``).

At call time, a backend reports an input or configuration it cannot run (a surrogate
it lacks, a dtype, a CPU tensor) with :class:`UnsupportedByBackendError` (a
``NotImplementedError``), the one error ``backend='auto'`` falls back on. A user mistake
(a wrong shape, a value out of range, a wrong type) is a ``ValueError`` or ``TypeError``
on every backend, the ``torch`` reference included.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "UnknownBackendError",
    "BackendNotInstalledError",
    "BackendLoadError",
    "BackendUnavailableError",
    "UnsupportedByBackendError",
    "UnsupportedOperatorError",
]


class BackendError(Exception):
    """Base class of every backend-resolution error."""


class UnknownBackendError(BackendError, ValueError):
    """No backend with this name is installed."""


class BackendNotInstalledError(BackendError, ImportError):
    """A first-party backend or operator whose package is not installed."""


class BackendLoadError(BackendError, ImportError):
    """A backend plugin is installed but failed to load."""


class BackendUnavailableError(BackendError, RuntimeError):
    """A backend is installed but cannot run on this machine."""


class UnsupportedOperatorError(BackendError, ValueError):
    """A backend does not provide the operator a module needs."""


class UnsupportedByBackendError(BackendError, NotImplementedError):
    """At call time: this backend cannot run this input or configuration (a dtype, a
    device, a surrogate it lacks, ``spiking=False``); another backend (``torch``) can.

    ``backend='auto'`` moves on to the next backend on this error, and on no other.
    """
