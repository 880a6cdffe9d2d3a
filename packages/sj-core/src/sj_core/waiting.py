"""Work that makes a user wait says so.

A first call can compile for a long time: ``torch.compile`` of one LIF loop took about a
minute on a laptop-class CPU, FlexSN traces and generates kernels, NVRTC compiles CUDA
sources. :func:`long_work` logs the start and the end (with the time taken) at ``INFO``
and, when the work is still running after :data:`PATIENCE_SECONDS`, says so once at
``WARNING``, which Python prints even where logging is not configured. Quick work stays
silent.

Loggers are named after the modules (``sj_core.inductor``, ``sj_flexsn.factory``,
``sj_cupy.compiler``); ``logging.basicConfig(level=logging.INFO)`` shows every step.

Example::

    with long_work(_LOG, "compiling lif.multi_step with torch.compile (inductor)"):
        compiled(*tensors)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

__all__ = ["PATIENCE_SECONDS", "long_work"]

#: After this long, work still running is reported at WARNING.
PATIENCE_SECONDS = 5.0


@contextlib.contextmanager
def long_work(logger: logging.Logger, what: str, hint: str = "") -> Iterator[None]:
    """Log ``what`` while the block runs; a ``WARNING`` if it outlasts the patience.

    Args:
        logger: the calling module's logger.
        what: the work in the present continuous ("compiling ...").
        hint: appended to the patience message (e.g. "only the first call compiles").
    """
    start = time.perf_counter()
    logger.info("%s ...", what)
    message = f"still {what} after {PATIENCE_SECONDS:.0f} s" + (f"; {hint}" if hint else "")
    timer = threading.Timer(PATIENCE_SECONDS, logger.warning, args=(message,))
    timer.daemon = True  # never keeps the interpreter alive
    timer.start()
    try:
        yield
    except BaseException:
        logger.info("%s: failed after %.1f s", what, time.perf_counter() - start)
        raise
    else:
        logger.info("%s: done in %.1f s", what, time.perf_counter() - start)
    finally:
        timer.cancel()
