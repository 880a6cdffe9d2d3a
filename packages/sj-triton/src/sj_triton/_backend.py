"""The ``triton`` backend description read by sj-core's registry.

Loading this module must stay cheap: it imports neither triton nor the kernels.
"""

from __future__ import annotations

import os

import torch

from sj_core.backends import BackendSpec

_KERNELS = "sj_triton.neuron_kernel"


def interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter is switched on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check() -> tuple[bool, str]:
    if torch.cuda.is_available() or interpreter_enabled():
        return True, ""
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on the CPU)"


BACKEND = BackendSpec(
    name="triton",
    distribution="sj-triton",
    requirements=("triton>=3.2",),
    check=_check,
    operators={
        "if.multi_step": f"{_KERNELS}.integrate_and_fire:if_multi_step",
        "lif.multi_step": f"{_KERNELS}.lif:lif_multi_step",
        "plif.multi_step": f"{_KERNELS}.plif:plif_multi_step",
    },
    devices=("cuda",),
    priority=20,
    description="fused Triton kernels for IF/LIF/PLIF (multi-step), torch.compile-ready",
)
