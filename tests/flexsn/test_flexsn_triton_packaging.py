"""sj-flexsn as an sj-core plugin: entry points, the merged backends, lazy imports."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest
import torch
from flexsn_triton_cases import require_flexsn

from sj_core import backends

require_flexsn()


def test_entry_points_name_backend_specs():
    points = {
        ep.name: ep.value
        for ep in importlib.metadata.entry_points(group="sj.backends")
        if ep.value.startswith("sj_flexsn.")
    }
    assert points == {
        "triton": "sj_flexsn._backend:TRITON",
        "inductor": "sj_flexsn._backend:INDUCTOR",
        "hop": "sj_flexsn._backend:HOP",
    }


@pytest.mark.parametrize("name", ["triton", "inductor"])
def test_flexsn_operator_of_the_triton_names(name):
    backends.refresh()
    info = backends.get_backend(name)
    assert "sj-flexsn" in info.distributions
    spec = info.spec_for("flexsn")
    assert spec.distribution == "sj-flexsn"
    assert spec.operators == {"flexsn": "sj_flexsn.factory:build_flexsn_kernel"}
    assert spec.requirements == ("triton>=3.2",)
    assert spec.devices == ("cuda",)
    assert spec.available() == (True, "")  # CUDA, or the interpreter conftest switched on
    from sj_flexsn.factory import build_flexsn_kernel

    assert backends.get_operator(name, "flexsn") is build_flexsn_kernel


def test_hop_backend_spec():
    backends.refresh()
    spec = backends.get_backend("hop").spec_for("flexsn")
    assert spec.operators == {"flexsn": "sj_flexsn.hop:build_hop_kernel"}
    assert spec.devices == ("cpu", "cuda")
    assert spec.requirements == ()


def test_availability_without_cuda_or_interpreter(monkeypatch):
    from sj_flexsn import _backend

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = _backend.TRITON.available()
    assert not ok and "no CUDA device" in reason and "TRITON_INTERPRET=1" in reason


def test_loading_the_backend_imports_neither_triton_nor_the_kernels():
    code = (
        "import sys\n"
        "from sj_core import backends\n"
        "backends.refresh(); backends.list_backends()\n"
        "import sj_flexsn._backend, sj_flexsn\n"
        "heavy = ('triton', 'sj_flexsn.factory', 'sj_flexsn.kernel')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(bad)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
