"""Non-finite values: one semantics, stated once in sj_core.neuron.statements, on every
backend.

A spike is ``H - V_th >= 0`` (NaN never fires); hard reset is the arithmetic blend
``S V_reset + (1 - S) H``, soft reset ``H - S V_th``. So an input of ``+inf`` fires once
and leaves ``V = V_reset + 0 * inf = NaN`` (hard reset), after which the neuron never
fires again; NaN inputs propagate. Every backend must produce the reference's values,
NaN and infinities in the same places.
"""

from __future__ import annotations

import math

import pytest
import torch
from kernel_backends import FUSED, INDUCTOR, TORCH, backend_params
from neuron_cases import NeuronCase, flag_settings, make_inputs, make_surrogate

from sj_core import neuron, reference
from sj_core.neuron.statements import STATEMENTS

EVERY_BACKEND = backend_params((TORCH, INDUCTOR, FUSED)) + backend_params()
# inductor compiles every configuration (seconds each): two neurons are enough for it.
PER_STATEMENT = [
    (backend, name)
    for backend in EVERY_BACKEND
    for name in STATEMENTS
    if backend.values[0] is not INDUCTOR or name in ("lif", "izhikevich")
]


def _assert_same_values(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal NaN and infinity positions, and finite values within fp32 rounding."""
    assert actual.shape == expected.shape, name
    a, e = actual.double().cpu(), expected.double().cpu()
    assert torch.equal(torch.isnan(a), torch.isnan(e)), f"{name}: NaN positions differ"
    assert torch.equal(torch.isposinf(a), torch.isposinf(e)), f"{name}: +inf positions differ"
    assert torch.equal(torch.isneginf(a), torch.isneginf(e)), f"{name}: -inf positions differ"
    finite = torch.isfinite(e)
    torch.testing.assert_close(a[finite], e[finite], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    ("backend", "name"),
    [pytest.param(b.values[0], n, id=f"{n}-{b.id}", marks=b.marks) for b, n in PER_STATEMENT],
    indirect=["backend"],
)
@pytest.mark.parametrize("v_reset", [-0.3, None], ids=["hard", "soft"])
def test_infinities_and_nan_in_the_input(backend, name, v_reset):
    case = NeuronCase(
        name, v_reset, 1.25 if v_reset is None else 0.9, False, flag_settings(name)[0]
    )
    x_seq, states, tensors = make_inputs(case, 6, (8,), device=backend.device, seed=1)
    x_seq[1, 0] = math.inf
    x_seq[2, 1] = -math.inf
    x_seq[0, 2] = math.nan
    x_seq[4, 3] = math.inf
    kwargs = case.kwargs(make_surrogate("Sigmoid"), store_v_seq=True)
    got = backend.operator(name)(x_seq, *states, *tensors, **kwargs)
    cpu = [t.cpu() for t in (x_seq, *states, *tensors)]
    want = getattr(reference, f"multistep_{name}")(*cpu, **kwargs)
    for i, (a, e) in enumerate(zip(got, want, strict=True)):
        _assert_same_values(a, e, f"output {i}")


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_hard_reset_at_plus_infinity_fires_once_then_stays_silent(backend):
    # The documented semantics, checked by hand: fire, V = 0 * inf -> NaN, silent after.
    case = NeuronCase("if", 0.0, 1.0, False, {})
    x_seq = torch.tensor([[math.inf], [0.5], [5.0]], device=backend.device)
    spikes, v_last, v_seq = backend.operator("if")(
        x_seq, torch.zeros(1, device=backend.device), **case.kwargs(make_surrogate("ATan"), True)
    )
    assert spikes.flatten().tolist() == [1.0, 0.0, 0.0]
    assert torch.isnan(v_seq).all() and torch.isnan(v_last).all()


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_soft_reset_keeps_plus_infinity(backend):
    case = NeuronCase("if", None, 1.0, False, {})
    x_seq = torch.tensor([[math.inf], [-1.0]], device=backend.device)
    spikes, v_last, v_seq = backend.operator("if")(
        x_seq, torch.zeros(1, device=backend.device), **case.kwargs(make_surrogate("ATan"), True)
    )
    assert spikes.flatten().tolist() == [1.0, 1.0]  # inf - 1 - 1 is still inf
    assert torch.isposinf(v_seq).all()


def test_modules_follow_the_same_semantics():
    node = neuron.LIFNode(step_mode="m")
    spikes = node(torch.tensor([[math.inf], [2.0]]))
    assert spikes.flatten().tolist() == [1.0, 0.0] and torch.isnan(node.v).all()
