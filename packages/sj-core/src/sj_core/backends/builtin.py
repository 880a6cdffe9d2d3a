"""The backends that ship with sj-core: ``torch`` and ``inductor``.

``torch`` is the reference: every neuron runs on it in both step modes through its
Python hooks, and its operators (:mod:`sj_core.reference`) are the pure-torch loops that
every other backend must reproduce. ``inductor`` compiles the same loops with
``torch.compile`` (:mod:`sj_core.inductor`).
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
        f"{neuron}.multi_step": f"sj_core.reference:multistep_{neuron}"
        for neuron in _REFERENCE_NEURONS
    },
    devices=("cpu", "cuda", "mps", "xpu"),
    priority=0,
    description="pure PyTorch time loop (the reference); every neuron, every device",
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
