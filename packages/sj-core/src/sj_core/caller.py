"""Warnings that point at the user's line.

A warning raised while a module resolves its backend passes through sj-core's own frames
and through ``torch.nn.Module.__setattr__`` (a property set in ``__init__``), at a depth
that depends on the subclass and on the entry point (constructor, ``set_backend``,
unpickling). A fixed ``stacklevel`` would name one of those frames instead of the line
the user wrote, so the level is counted at the call.
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = ["user_stacklevel"]

_LIBRARY_DIRS = tuple(
    os.path.dirname(path) + os.sep for path in (__file__, torch.__file__) if path is not None
)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` in the caller of this function
    point at the first frame outside sj-core and torch.

    Example::

        warnings.warn("backend='auto' skips 'triton': ...", stacklevel=user_stacklevel())
    """
    frame = sys._getframe(1)  # the function about to call warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
        level += 1
    return level
