"""fp16 and bf16 inputs: results against an fp32 reference, and forward/backward spike
consistency.

Reference: the sj-core torch loop in fp32 on the upcast inputs and upcast incoming
gradients. Tolerances (``_triton_helpers.LOW_PRECISION_TOLERANCES``) are multiples of the
unit roundoff ``u`` (fp16 ``2**-11``, bf16 ``2**-8``): at most ``1e-3`` of the spikes may
flip (rounding near the threshold decides them; flipped neurons are then left out), the
relative-norm error of ``v_last``/``v_seq`` is at most ``2u`` (they are fp32 values
rounded once on store) and of the gradients at most ``4u`` (rounded incoming gradients,
the surrogate evaluated at the stored, rounded ``H``, the rounded result).

Spike consistency: the backward recomputes each spike as ``H >= V_th`` from the ``H`` the
forward stored in the input dtype. Rounding ``H`` can cross the threshold; the kernel
must store a value on the forward's side, or the backward takes the other reset branch.
The tests check this with gradients that depend only on the spikes the kernel emitted
(hard reset, ``detach_reset``, gradient from ``v_last`` only: each step passes the
gradient on iff it did *not* spike), against closed forms written from the kernel's own
spike output.
"""

from __future__ import annotations

import pytest
import torch
from _triton_helpers import (
    DEVICE,
    HAS_CUDA,
    LOW_PRECISION_TOLERANCES,
    OUTPUTS,
    Neuron,
    compare_with_reference,
    make_inputs,
    random_out_grads,
)

from sj_core import surrogate

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
neuron_kernel = pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)


KERNELS = {
    "if": neuron_kernel.if_multi_step,
    "lif": neuron_kernel.lif_multi_step,
    "plif": neuron_kernel.plif_multi_step,
}
SG = surrogate.Sigmoid(alpha=4.0)

DTYPES = [
    pytest.param(torch.float16, id="fp16"),
    pytest.param(torch.bfloat16, id="bf16"),
]

NEURONS = [
    Neuron("if", v_reset=0.0),
    Neuron("if", v_reset=None, detach_reset=True),
    Neuron("lif", v_reset=None, decay_input=False),
    Neuron("lif", v_reset=-0.3, detach_reset=True, decay_input=True),
    Neuron("plif", v_reset=-0.3, decay_input=True),
    Neuron("plif", v_reset=None, decay_input=False),
]
T = 64 if HAS_CUDA else 7
STEP_SHAPE = (16, 4099) if HAS_CUDA else (2, 500)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neuron", NEURONS, ids=lambda n: n.id)
def test_low_precision_against_fp32_reference(neuron, dtype):
    """Output dtypes equal the input dtype; values and gradients within the tolerances."""
    x_seq, v_init, r_tau = make_inputs(neuron, T, STEP_SHAPE, dtype=dtype, seed=9)
    result = compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=True,
        out_grads=random_out_grads(x_seq, v_init, use=OUTPUTS, seed=50),
    )
    assert 0.1 < result.spike_rate < 0.9
    # At most a small fraction of neurons may be left out of the comparison.
    assert result.excluded.float().mean().item() < 0.1


def test_tolerances_are_multiples_of_the_unit_roundoff():
    for dtype, (_, values, grads) in LOW_PRECISION_TOLERANCES.items():
        u = torch.finfo(dtype).eps / 2
        assert values <= 2 * u * 1.05 and grads <= 4 * u * 1.05, dtype


# -- forward/backward spike consistency ------------------------------------------------------


def _ulp_below_and_above_one(dtype: torch.dtype) -> tuple[float, float]:
    eps = torch.finfo(dtype).eps  # spacing just above 1.0
    return eps / 2, eps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direction", ["rounds-up-across", "rounds-down-across"])
def test_rounding_across_threshold_keeps_the_forward_spike(dtype, direction):
    """Hand-built two-step IF cases whose fp32 ``H`` rounds to the other side of ``V_th``
    in the input dtype.

    ``rounds-up-across``: ``V_th = 1``, ``x = (0.5, 0.5 - ulp_below(1)/2)``: ``H[1] =
    1 - ulp_below/2`` does not spike, but rounds (to even) to ``1.0``.
    ``rounds-down-across``: ``V_th = 1 + ulp_above(1)/4`` (not representable),
    ``x = (0.5, 0.5 + ulp_above/2)``: ``H[1] = 1 + ulp_above/2`` spikes, but rounds (to
    even) to ``1.0 < V_th``.

    IF, hard reset to 0, ``detach_reset``, loss ``v_last``: with no spike at step 1 the
    gradient passes (``grad_x = (1, 1)``, ``grad_v_init = 1``); with a spike it is
    blocked (all zero). A backward that recomputed the spike from the rounded ``H`` would
    give the opposite.
    """
    below, above = _ulp_below_and_above_one(dtype)
    if direction == "rounds-up-across":
        v_threshold, x1, spikes, passes = 1.0, 0.5 - below / 2, False, 1.0
    else:
        v_threshold, x1, spikes, passes = 1.0 + above / 4, 0.5 + above / 2, True, 0.0
    h1 = 0.5 + x1
    # The premise: the exact H is on one side, its rounding on the other.
    assert (h1 >= v_threshold) == spikes
    assert (torch.tensor(h1).to(dtype).item() >= v_threshold) != spikes
    x_seq = torch.tensor([[0.5], [x1]], dtype=dtype, device=DEVICE, requires_grad=True)
    assert x_seq[1].item() == x1  # exactly representable
    v_init = torch.zeros(1, dtype=dtype, device=DEVICE, requires_grad=True)
    spike_seq, v_last, _ = neuron_kernel.if_multi_step(
        x_seq,
        v_init,
        v_threshold=v_threshold,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.Rect(alpha=1.0),
    )
    assert spike_seq.flatten().tolist() == [0.0, float(spikes)]
    grad_x, grad_v = torch.autograd.grad(v_last.sum(), (x_seq, v_init))
    assert grad_x.flatten().tolist() == [passes, passes]
    assert grad_v.tolist() == [passes]


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_uses_the_emitted_spikes(dtype):
    """Random LIF (``tau = 2``, decay_input, hard reset to 0, detach_reset), gradient of
    ``sum(v_last)`` only. Backward: ``grad_H[t] = g (1 - S[t])``, ``grad_x[t] = grad_H / 2``,
    ``g = grad_H / 2``, so with the kernel's spikes ``S``:
    ``grad_x[t] = 2**-(T - t) * prod_{s >= t} (1 - S[s])`` and
    ``grad_v_init = 2**-T * prod_s (1 - S[s])``, exact in fp16/bf16.

    Inputs sit around the threshold so that many fp32 ``H`` round across it; the test
    asserts that such cases occurred (counted on the fp32 reference's ``H``).
    """
    neuron = Neuron("lif", v_reset=0.0, detach_reset=True, decay_input=True, tau=2.0)
    T_steps = 12 if HAS_CUDA else 8
    ncl = (1 << 20) if HAS_CUDA else 8192
    gen = torch.Generator().manual_seed(123)
    x_seq = (torch.randn(T_steps, ncl, generator=gen) * 0.4 + 1.05).to(DEVICE, dtype)
    v_init = (torch.rand(ncl, generator=gen) * 0.9).to(DEVICE, dtype)
    x_leaf, v_leaf = x_seq.clone().requires_grad_(), v_init.clone().requires_grad_()
    spike_seq, v_last, _ = neuron_kernel.lif_multi_step(
        x_leaf, v_leaf, **neuron.kwargs(surrogate.Sigmoid(), store_v_seq=False)
    )
    grad_x, grad_v = torch.autograd.grad(v_last.sum(), (x_leaf, v_leaf))

    passes = 1.0 - spike_seq.float()
    # suffix[t] = prod_{s >= t} (1 - S[s])
    suffix = passes.flip(0).cumprod(0).flip(0)
    scale = 2.0 ** -torch.arange(T_steps, 0, -1, dtype=torch.float32, device=DEVICE)
    expected_x = scale[:, None] * suffix
    expected_v = 2.0**-T_steps * suffix[0]
    assert torch.equal(grad_x.float(), expected_x), "a step used the other reset branch"
    assert torch.equal(grad_v.float(), expected_v)

    # How many fp32 H values rounded across the threshold in this run (fp32 loop).
    with torch.no_grad():
        v = v_init.float()
        crossings = 0
        for t in range(T_steps):
            h = v + (x_seq[t].float() - v) / 2
            crossings += int(((h >= 1.0) != (h.to(dtype).float() >= 1.0)).sum())
            v = torch.where(h >= 1.0, torch.zeros_like(h), h)
    assert crossings > 0, "no H rounded across the threshold: the test exercised nothing"


def test_fp16_threshold_beyond_the_fp16_range():
    """``V_th = 1e5`` with fp16 inputs: the kernel's fp32 state can reach it (large
    inputs over several steps); spikes and ``v_last`` must match the fp32 reference, or
    the call must fail with a clear error, not an OverflowError from packing floats."""
    n = Neuron("if", v_reset=0.0, v_threshold=1e5)
    x_seq = torch.full((6, 4), 3.0e4, dtype=torch.float16, device=DEVICE)
    v_init = torch.zeros(4, dtype=torch.float16, device=DEVICE)
    spike_seq, v_last, _ = neuron_kernel.if_multi_step(
        x_seq, v_init, **n.kwargs(SG, store_v_seq=False)
    )
    # H = 3e4, 6e4, 9e4, 1.2e5 (spike, reset to 0), 3e4, 6e4
    assert spike_seq[:, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert v_last.tolist() == [6.0e4] * 4
