"""Shared test setup.

This file lives at the repository root, not in ``tests/``: pytest puts a conftest's
folder on ``sys.path``, and ``tests/`` there would let ``tests/cupy`` and
``tests/triton`` pass for the real ``cupy`` and ``triton`` as namespace packages.

Without a CUDA device, Triton kernels run under Triton's CPU interpreter; the variable
must be set before anything imports triton, so it is set here, at collection start.
Tests marked ``gpu`` are skipped, with the reason, when no CUDA device is present.
"""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
