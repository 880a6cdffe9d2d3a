"""The ``cupy`` backend description read by sj-core's registry.

Loading this module must stay cheap: it imports neither CuPy nor the kernels. The check
looks for CuPy with ``importlib.util.find_spec`` (no import) and for a CUDA device.
"""

from __future__ import annotations

import importlib.util

import torch

from sj_core.backends import BackendSpec
from sj_core.neuron.statements import STATEMENTS

#: What to run when CuPy is missing (one extra per CUDA major version).
CUPY_MISSING = (
    "CuPy is not installed: pip install 'sj-cupy[cuda12]' (or 'sj-cupy[cuda13]' for CUDA 13)"
)


def cupy_installed() -> bool:
    """Whether CuPy can be imported (found by ``find_spec``; nothing is imported)."""
    spec = importlib.util.find_spec("cupy")
    # A stray directory named "cupy" on sys.path (this repository's tests/cupy, when tests/
    # is on the path) is found as a namespace package: that is not CuPy.
    return spec is not None and spec.origin is not None


def _check() -> tuple[bool, str]:
    if not cupy_installed():
        return False, CUPY_MISSING
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return True, ""


BACKEND = BackendSpec(
    name="cupy",
    distribution="sj-cupy",
    check=_check,
    operators={
        f"{name}.{mode}": f"sj_cupy.operators:{name}_{mode}"
        for name in STATEMENTS
        for mode in ("multi_step", "single_step")
    },
    devices=("cuda",),
    priority=10,
    description="CuPy/NVRTC CUDA kernels: IF/LIF/PLIF/QIF/EIF/Izhikevich, fp32/fp16/bf16",
    api_version=1,
)
