"""The ``triton`` backend description read by sj-core's registry.

Loading this module must stay cheap: it imports neither triton nor the kernels.
"""

from __future__ import annotations

import torch

from sj_core.backends import BackendSpec
from sj_core.kernels import interpreter_enabled
from sj_core.neuron.statements import STATEMENTS


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
        f"{name}.{mode}": f"sj_triton.operators:{name}_{mode}"
        for name in STATEMENTS
        for mode in ("multi_step", "single_step")
    },
    devices=("cuda",),
    priority=20,
    description="fused Triton kernels for every neuron (IF/LIF/PLIF/QIF/EIF/Izhikevich)",
)
