"""The backend descriptions read by sj-core's registry (entry-point group ``sj.backends``).

sj-flexsn adds the ``flexsn`` operator to the ``triton`` and ``inductor`` backends (both
names run the same generated Triton kernels; sj-triton and sj-core contribute the other
operators of those names) and provides the ``hop`` backend.

Loading this module must stay cheap: it imports neither triton nor the kernels.
"""

from __future__ import annotations

from sj_core.backends import BackendSpec
from sj_core.kernels import triton_check

__all__ = ["HOP", "INDUCTOR", "TRITON"]

_TRITON_FLEXSN = {"flexsn": "sj_flexsn.factory:build_flexsn_kernel"}

TRITON = BackendSpec(
    name="triton",
    distribution="sj-flexsn",
    requirements=("triton>=3.2",),
    check=triton_check,
    operators=_TRITON_FLEXSN,
    devices=("cuda",),
    priority=20,
    description="FlexSN: Triton kernels generated from a user-defined neuron core",
    api_version=1,
)

INDUCTOR = BackendSpec(
    name="inductor",
    distribution="sj-flexsn",
    requirements=("triton>=3.2",),
    check=triton_check,
    operators=_TRITON_FLEXSN,
    devices=("cuda",),
    priority=-10,  # the same kernels as 'triton': 'auto' prefers that name
    description="FlexSN: the same generated Triton kernels under the 'inductor' name",
    api_version=1,
)

HOP = BackendSpec(
    name="hop",
    distribution="sj-flexsn",
    operators={"flexsn": "sj_flexsn.hop:build_hop_kernel"},
    devices=("cpu", "cuda"),
    priority=5,
    description="FlexSN as a higher-order-op scan that torch.compile can capture",
    api_version=1,
)
