"""The backends that ship with sj-core: ``torch`` and ``inductor``.

``torch`` runs every neuron in both step modes, on every device. Its multi-step operators
(:mod:`sj_core.fused`) run each call's ``T`` steps as one autograd node (a forward loop
without a graph, the reverse-time recurrences in the backward), falling back to the
per-step autograd loops of :mod:`sj_core.reference` where those do not apply; the
reference loops are what every backend, the fused loop included, is tested against.
``inductor`` compiles the reference loops with ``torch.compile`` (:mod:`sj_core.inductor`).
"""

from __future__ import annotations

from ..neuron.statements import STATEMENTS
from .spec import BackendSpec

__all__ = ["BUILTIN_BACKENDS", "TORCH", "INDUCTOR"]

_REFERENCE_NEURONS = tuple(STATEMENTS)

TORCH = BackendSpec(
    name="torch",
    distribution="sj-core",
    operators={
        f"{neuron}.multi_step": f"sj_core.fused:multistep_{neuron}" for neuron in _REFERENCE_NEURONS
    },
    devices=("cpu", "cuda", "mps", "xpu"),
    priority=0,
    description="PyTorch time loop, fused into one autograd node; every neuron, every device",
)

INDUCTOR = BackendSpec(
    name="inductor",
    distribution="sj-core",
    operators={
        f"{neuron}.multi_step": f"sj_core.inductor:multistep_{neuron}"
        for neuron in _REFERENCE_NEURONS
    },
    devices=("cpu", "cuda"),
    priority=-10,  # compiling costs seconds: 'auto' never prefers it
    description="the torch loop compiled by torch.compile, cached per configuration",
)

BUILTIN_BACKENDS: dict[str, BackendSpec] = {"torch": TORCH, "inductor": INDUCTOR}
