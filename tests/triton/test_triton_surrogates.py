"""Every surrogate of SPEC section 4 inside the Triton backward kernel.

For each of the 16 surrogates, with its default parameters and with one non-default
set, the kernel's gradients (``x_seq``, ``v_init``) must equal autograd through the
sj-core reference loop, which calls the surrogate's own torch ``surrogate_gradient``.
The neuron is LIF with a hard reset and without ``detach_reset``, so the surrogate enters
the backward twice per step (through the spike and through the reset).
``SquarewaveFourierSeries`` is run with ``n = 2`` (one term) and ``n = 5`` (four terms:
``n`` is a compile-time constant of the kernel).
"""

from __future__ import annotations

import pytest
from _triton_helpers import (
    HAS_CUDA,
    OUTPUTS,
    Neuron,
    compare_with_reference,
    make_inputs,
    random_out_grads,
)

from sj_core import surrogate as sg

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
neuron_kernel = pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)

NEURON = Neuron("lif", v_reset=0.0, detach_reset=False, decay_input=True, tau=2.5)
T = 32 if HAS_CUDA else 7
STEP_SHAPE = (4, 4099) if HAS_CUDA else (3, 333)

# (default instance, non-default instance) for each surrogate of SPEC 4.
SURROGATES = [
    (sg.Sigmoid(), sg.Sigmoid(alpha=2.5)),
    (sg.ATan(), sg.ATan(alpha=3.5)),
    (sg.PiecewiseQuadratic(), sg.PiecewiseQuadratic(alpha=0.6)),
    (sg.PiecewiseExp(), sg.PiecewiseExp(alpha=2.5)),
    (sg.SoftSign(), sg.SoftSign(alpha=0.7)),
    (sg.SuperSpike(), sg.SuperSpike(alpha=2.5)),
    (sg.Erf(), sg.Erf(alpha=1.3)),
    (sg.PiecewiseLeakyReLU(), sg.PiecewiseLeakyReLU(w=0.4, c=0.05)),
    (sg.QPseudoSpike(), sg.QPseudoSpike(alpha=3.5)),
    (sg.LeakyKReLU(), sg.LeakyKReLU(leak=0.1, k=0.7)),
    (sg.S2NN(), sg.S2NN(alpha=2.5, beta=0.5)),
    (sg.NonzeroSignLogAbs(), sg.NonzeroSignLogAbs(alpha=2.5)),
    (sg.LogTailedReLU(), sg.LogTailedReLU(alpha=0.1)),
    (sg.Rect(), sg.Rect(alpha=0.7)),
    (sg.SquarewaveFourierSeries(), sg.SquarewaveFourierSeries(n=5, T_period=6.0)),
    (sg.FakeNumericalGradient(), sg.FakeNumericalGradient(alpha=0.6)),
]


def _params():
    params = []
    for default, custom in SURROGATES:
        params.append(pytest.param(default, id=f"{type(default).__name__}-default"))
        values = "-".join(f"{k}{v:g}" for k, v in custom.kernel_params().items())
        params.append(pytest.param(custom, id=f"{type(custom).__name__}-{values}"))
    return params


def test_every_surrogate_is_listed():
    """The table above covers all 16 surrogates that sj-core exports."""
    exported = {
        name
        for name in sg.__all__
        if isinstance(getattr(sg, name), type)
        and issubclass(getattr(sg, name), sg.SurrogateFunctionBase)
        and getattr(sg, name) is not sg.SurrogateFunctionBase
    }
    listed = {type(default).__name__ for default, _ in SURROGATES}
    assert listed == exported and len(listed) == 16


@pytest.mark.parametrize("surrogate_function", _params())
def test_surrogate_gradient_matches_reference(surrogate_function):
    x_seq, v_init, _ = make_inputs(NEURON, T, STEP_SHAPE, seed=17)
    result = compare_with_reference(
        neuron_kernel.lif_multi_step,
        NEURON,
        x_seq,
        v_init,
        None,
        surrogate_function,
        store_v_seq=True,
        out_grads=random_out_grads(x_seq, v_init, use=OUTPUTS, seed=40),
    )
    assert 0.1 < result.spike_rate < 0.9
    assert result.kernel.grad_x.abs().sum() > 0


def test_squarewave_terms_change_the_gradient():
    """n = 2 and n = 5 give different gradients (the term count reaches the kernel)."""
    x_seq, v_init, _ = make_inputs(NEURON, 4, (64,), seed=3)
    grads = []
    for n in (2, 5):
        x = x_seq.clone().requires_grad_()
        spike_seq, _, _ = neuron_kernel.lif_multi_step(
            x,
            v_init,
            **NEURON.kwargs(sg.SquarewaveFourierSeries(n=n, T_period=8.0), store_v_seq=False),
        )
        spike_seq.sum().backward()
        grads.append(x.grad)
    assert not grads[0].allclose(grads[1], rtol=1e-3, atol=1e-3)
