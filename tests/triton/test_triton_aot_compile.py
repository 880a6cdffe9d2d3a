"""Every Triton kernel variant the triton backend launches compiles for a GPU (sm_90).

Runs without a GPU: ``tests/support/triton_aot.py`` captures the launches of the
backend's host code (every neuron and flag setting, hard and soft reset, fp32 / bf16 /
fp16, training with and without ``v_seq``, inference, and the backward that recomputes
``H``) and compiles each with ``triton.compile`` down to machine code. Triton's CPU
interpreter, which runs the other CPU tests, does not use the compiler, so this is what
catches a kernel that only a GPU would refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
pytest.importorskip("sj_triton", reason="needs sj-triton")

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "triton_aot.py"


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _nvidia_compiler_reason() -> str | None:
    # ASTSource's signature by argument name and the ptxas that Triton ships: 3.4 and later.
    if _version(triton.__version__) < (3, 4):
        return f"needs triton >= 3.4 to compile without a GPU, found {triton.__version__}"
    try:
        from triton.backends import backends
    except ImportError:
        return "this triton has no compiler backends"
    if "nvidia" not in backends:
        return "this triton has no NVIDIA compiler backend"
    return None


def test_every_launched_kernel_compiles_for_the_gpu(tmp_path):
    reason = _nvidia_compiler_reason()
    if reason is not None:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, not from a cache
    support = str(SCRIPT.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [support, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in records if "error" in r]
    assert not failed, "\n\n".join(f"{r['case']} {r['kernel']}:\n{r['error']}" for r in failed)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    kernels = {r["kernel"] for r in records}
    assert kernels == {
        "neuron_forward_kernel",
        "neuron_backward_kernel",
        "neuron_backward_recompute_kernel",
    }
    assert len(records) >= 60  # 3 to 5 cases per neuron, forward and backward each
