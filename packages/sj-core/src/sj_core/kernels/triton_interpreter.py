"""Triton's CPU interpreter: whether it is on, and serialising its launches.

Triton runs kernels on CPU tensors when the environment variable ``TRITON_INTERPRET`` is
set. Every Triton-based backend (sj-triton, sj-flexsn) asks :func:`interpreter_enabled`,
so they never disagree about a value such as ``"true"``, and wraps its launches in
:func:`launch_lock`, because the interpreter is not thread-safe.

:func:`triton_check` is the availability check of both plugins' backends: a CUDA device,
or the interpreter switched on and able to run here (:func:`interpreter_problem`).

None of these functions imports Triton (or numpy): they read the environment and the
installed distributions' versions.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import threading
from collections.abc import Iterator

import torch

__all__ = ["interpreter_enabled", "interpreter_problem", "launch_lock", "triton_check"]

# Triton >= 3.4 reads the variable as a boolean; older releases only as "1".
_TRUE_WORDS = ("1", "true", "yes", "on", "y")

# Reentrant: a launch inside a launch (a Triton op calling another) must not deadlock.
_INTERPRETER_LOCK = threading.RLock()


def _installed(distribution: str) -> tuple[int, int] | None:
    """(major, minor) of an installed distribution, or ``None``."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    numbers = [int(n) for n in re.findall(r"\d+", version)[:2]]
    return (numbers + [0, 0])[0], (numbers + [0, 0])[1]


@functools.cache
def _triton_reads_words() -> bool:
    version = _installed("triton")
    return version is None or version >= (3, 4)


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


def interpreter_problem() -> str | None:
    """Why Triton's CPU interpreter would fail here, or ``None`` if it can run.

    The interpreter computes with numpy; Triton releases before 3.7 convert one-element
    arrays to Python scalars, which numpy 2.4 made an error.
    """
    numpy = _installed("numpy")
    if numpy is None:
        return "Triton's CPU interpreter needs numpy: pip install numpy"
    triton = _installed("triton")
    if triton is not None and triton < (3, 7) and numpy >= (2, 4):
        return (
            f"the CPU interpreter of Triton {triton[0]}.{triton[1]} fails with numpy "
            f"{numpy[0]}.{numpy[1]} (Triton < 3.7 needs numpy < 2.4): pip install 'numpy<2.4'"
        )
    return None


def triton_check() -> tuple[bool, str]:
    """``(True, "")`` where Triton kernels can run (a CUDA device, or the interpreter on
    and able to run), else ``(False, reason)`` saying what to do."""
    if torch.cuda.is_available():
        return True, ""
    problem = interpreter_problem()
    if interpreter_enabled():
        return (False, problem) if problem else (True, "")
    hint = f"; for that, first {problem}" if problem else ""
    return False, f"no CUDA device (set TRITON_INTERPRET=1 to run the kernels on the CPU{hint})"


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
