"""The ``backend`` fixture of the conformance grid: each parameter is a
:class:`kernel_backends.GridBackend`, skipped (with the reason) where it cannot run, and
made runnable (sj-cupy's host launcher on the CPU) for the test."""

from __future__ import annotations

import pytest


@pytest.fixture
def backend(request):
    grid_backend = request.param
    reason = grid_backend.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with grid_backend.active():
        yield grid_backend
