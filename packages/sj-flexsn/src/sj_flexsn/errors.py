"""Errors raised while turning a user's core into kernels.

* :class:`FlexSNTraceError` (a ``RuntimeError``): ``core`` could not be traced to an
  element-wise aten graph (wrong number of results, data-dependent Python control flow,
  ``.item()``, in-place updates of its arguments, ...).
* :class:`UnsupportedOpError` (a ``NotImplementedError``): the graph contains an aten op
  that has no Triton lowering; the message names the op, the FX node and the core.
"""

from __future__ import annotations

__all__ = ["FlexSNTraceError", "UnsupportedOpError"]


class FlexSNTraceError(RuntimeError):
    """``core`` cannot be captured as an element-wise single-step function."""


class UnsupportedOpError(NotImplementedError):
    """The traced core uses an op the Triton lowering does not support."""
