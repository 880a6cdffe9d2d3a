"""Triton's CPU interpreter: whether it is on, and serialising its launches.

Triton runs kernels on CPU tensors when the environment variable ``TRITON_INTERPRET`` is
set. Every Triton-based backend (sj-triton, sj-flexsn) asks :func:`interpreter_enabled`,
so they never disagree about a value such as ``"true"``, and wraps its launches in
:func:`launch_lock`, because the interpreter is not thread-safe.

Neither function imports Triton.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import threading
from collections.abc import Iterator

__all__ = ["interpreter_enabled", "launch_lock"]

# Triton >= 3.4 reads the variable as a boolean; older releases only as "1".
_TRUE_WORDS = ("1", "true", "yes", "on", "y")

# Reentrant: a launch inside a launch (a Triton op calling another) must not deadlock.
_INTERPRETER_LOCK = threading.RLock()


@functools.cache
def _triton_reads_words() -> bool:
    try:
        version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return True
    numbers = [int(n) for n in re.findall(r"\d+", version)[:2]]
    return tuple(numbers) >= (3, 4)


def interpreter_enabled() -> bool:
    """Whether Triton will run kernels in its CPU interpreter (``TRITON_INTERPRET``).

    Read from the environment at every call, with the values the installed Triton itself
    takes as true: ``1``, ``true``, ``yes``, ``on``, ``y`` (any case) on Triton >= 3.4,
    only ``1`` before.
    """
    value = os.environ.get("TRITON_INTERPRET", "0")
    if not _triton_reads_words():
        return value == "1"
    return value.lower() in _TRUE_WORDS


@contextlib.contextmanager
def launch_lock() -> Iterator[None]:
    """Hold a process-wide lock while launching under the interpreter (a no-op on a GPU).

    Triton's interpreter patches module-level state during a launch, so two threads
    launching at once corrupt each other; GPU launches need no lock.
    """
    if not interpreter_enabled():
        yield
        return
    with _INTERPRETER_LOCK:
        yield
