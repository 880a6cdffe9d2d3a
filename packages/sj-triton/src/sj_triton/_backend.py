"""The ``triton`` backend description read by sj-core's registry.

Loading this module must stay cheap: it imports neither triton nor the kernels.
"""

from __future__ import annotations

from sj_core.backends import BackendSpec
from sj_core.kernels import triton_check
from sj_core.neuron.statements import STATEMENTS

BACKEND = BackendSpec(
    name="triton",
    distribution="sj-triton",
    requirements=("triton>=3.2",),
    check=triton_check,  # a CUDA device, or Triton's CPU interpreter on and able to run
    operators={
        f"{name}.{mode}": f"sj_triton.operators:{name}_{mode}"
        for name in STATEMENTS
        for mode in ("multi_step", "single_step")
    },
    devices=("cuda",),
    priority=20,
    description="fused Triton kernels for every neuron (IF/LIF/PLIF/QIF/EIF/Izhikevich)",
    api_version=1,
)
