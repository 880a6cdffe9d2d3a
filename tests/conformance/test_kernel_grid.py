"""Every kernel backend against the torch reference, for every neuron statement.

The grid: backends (``kernel_backends``) x statements x flags x reset modes x
``detach_reset`` (with the 16 surrogates spread over it), then every statement x every
surrogate x both reset modes, fp16/bf16, sequence lengths, non-contiguous tensors and
gradients of some outputs only. Comparison rules: :mod:`reference_compare`.
"""

from __future__ import annotations

import pytest
import torch
from kernel_backends import FUSED, KERNEL_BACKENDS, TRITON_RECOMPUTE, backend_params
from neuron_cases import (
    ALL_SURROGATES,
    NeuronCase,
    flag_settings,
    make_inputs,
    make_surrogate,
    one_case_per_statement,
    statement_cases,
)
from reference_compare import compare_with_reference, random_weights

from sj_core.neuron.statements import STATEMENTS

# The kernel backends, the torch backend's fused loop (sj_core.fused) and the triton
# backend's recomputing backward, each as its own entry.
BACKENDS = backend_params((FUSED, *KERNEL_BACKENDS, *TRITON_RECOMPUTE))
CASES = statement_cases()


def _device(backend) -> str:
    return backend.device


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.id for c in CASES])
def test_every_statement_flag_reset_and_detach(backend, index):
    case = CASES[index]
    # The surrogates rotate over the cases, so that each appears with several neurons.
    sg = make_surrogate(ALL_SURROGATES[index % len(ALL_SURROGATES)])
    x_seq, states, tensors = make_inputs(case, 7, (3, 5), device=_device(backend), seed=index)
    comparison = compare_with_reference(
        backend.operator(case.name), case, x_seq, states, tensors, sg, store_v_seq=index % 2 == 0
    )
    assert 0.05 < comparison.spike_rate < 0.9, "inputs must make the neuron fire sometimes"


SURROGATE_GRID = [
    (name, sg, v_reset) for name in STATEMENTS for sg in ALL_SURROGATES for v_reset in (-0.3, None)
]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("name", "sg", "v_reset"),
    SURROGATE_GRID,
    ids=[f"{n}-{s}-{'soft' if r is None else 'hard'}" for n, s, r in SURROGATE_GRID],
)
def test_every_statement_surrogate_and_reset_mode(backend, name, sg, v_reset):
    case = NeuronCase(
        name, v_reset, 1.25 if v_reset is None else 0.9, False, flag_settings(name)[0]
    )
    x_seq, states, tensors = make_inputs(case, 4, (29,), device=_device(backend), seed=3)
    compare_with_reference(
        backend.operator(name), case, x_seq, states, tensors, make_surrogate(sg), store_v_seq=True
    )


LOW_PRECISION = [
    (case, dtype, n)
    for case in one_case_per_statement()
    for dtype in (torch.float16, torch.bfloat16)
    for n in (40, 37)  # a multiple of every vector width, and an odd size
]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("case", "dtype", "n"),
    LOW_PRECISION,
    ids=[f"{c.id}-{str(d)[6:]}-{n}" for c, d, n in LOW_PRECISION],
)
def test_half_precision(backend, case, dtype, n):
    if backend.name == "fused":
        pytest.skip(
            "the torch backend computes in the input's dtype, as the reference loop does; "
            "tests/core/test_fused_torch.py compares the two in fp16/bf16"
        )
    x_seq, states, tensors = make_inputs(
        case, 6, (n,), dtype=dtype, device=_device(backend), seed=5
    )
    compare_with_reference(
        backend.operator(case.name), case, x_seq, states, tensors, make_surrogate("ATan"),
        store_v_seq=True,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("T", [0, 1, 2, 33])
@pytest.mark.parametrize("name", ["if", "plif", "izhikevich"])
def test_sequence_lengths(backend, name, T):
    case = NeuronCase(name, -0.3, 0.9, False, flag_settings(name)[0])
    x_seq, states, tensors = make_inputs(case, T, (4, 6), device=_device(backend), seed=T)
    compare_with_reference(
        backend.operator(name), case, x_seq, states, tensors, make_surrogate("Sigmoid"),
        store_v_seq=True,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_non_contiguous_inputs_and_gradients(backend, case):
    device = _device(backend)
    x_seq, states, tensors = make_inputs(case, 5, (6, 4), device=device, seed=11)
    # Transposed views of the same values: strides the kernels must not assume.
    x_seq = x_seq.transpose(1, 2).contiguous().transpose(1, 2)
    states = tuple(s.t().contiguous().t() for s in states)
    assert not x_seq.is_contiguous() and not states[0].is_contiguous()
    weights = random_weights(case, x_seq, states)
    weights = {k: None if w is None else w.transpose(-1, -2).contiguous().transpose(-1, -2)
               for k, w in weights.items()}  # fmt: skip
    compare_with_reference(
        backend.operator(case.name), case, x_seq, states, tensors, make_surrogate("PiecewiseExp"),
        store_v_seq=True, weights=weights,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("used", ["spike", "v_last", "v_seq"])
@pytest.mark.parametrize("name", ["lif", "izhikevich"])
def test_gradients_of_some_outputs_only(backend, name, used):
    case = NeuronCase(name, 0.0, 1.0, False, flag_settings(name)[0])
    x_seq, states, tensors = make_inputs(case, 6, (17,), device=_device(backend), seed=2)
    weights = random_weights(case, x_seq, states, use=(used,))
    compare_with_reference(
        backend.operator(name), case, x_seq, states, tensors, make_surrogate("Erf"),
        store_v_seq=True, weights=weights,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_inference_matches_training_forward(backend, case):
    # Without autograd the kernels skip saving H: the outputs must not change.
    x_seq, states, tensors = make_inputs(case, 5, (21,), device=_device(backend), seed=4)
    operator = backend.operator(case.name)
    kwargs = case.kwargs(make_surrogate("ATan"), store_v_seq=True)
    with torch.no_grad():
        inference = operator(x_seq, *states, *tensors, **kwargs)
    training = operator(x_seq.requires_grad_(), *states, *tensors, **kwargs)
    for a, b in zip(inference, training, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_single_step_operators_match_one_step_of_the_reference(backend, case):
    x_seq, states, tensors = make_inputs(case, 1, (13,), device=_device(backend), seed=8)
    kwargs = case.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    single = backend.operator(case.name, "single_step")
    kwargs.pop("store_v_seq")
    got = single(x_seq[0], *states, *tensors, **kwargs)
    want = backend.operator(case.name)(x_seq, *states, *tensors, **kwargs)
    torch.testing.assert_close(got[0], want[0][0], rtol=0, atol=0)
    for a, b in zip(got[1:], want[1:-1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# The surrogate gradient evaluated exactly where its formula changes branch (and around
# it): an IF neuron with V_th = 0 and v_init = 0 sees H - V_th = X at its one step, so
# dL/dX is the surrogate gradient at X. Rounding-free points, so the branch taken must be
# the reference's.
BREAKPOINTS = (0.0, 1.0, -1.0, 0.5, -0.5, 1.0 / 3.0, 2.0, -2.0, 0.25, 1e-3, -1e-3, 3.0)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("sg", ALL_SURROGATES)
def test_surrogate_gradients_at_their_breakpoints(backend, sg):
    surrogate_function = make_surrogate(sg)
    x = torch.tensor(BREAKPOINTS, device=backend.device).reshape(1, -1)
    x = x.requires_grad_()
    case = NeuronCase("if", 0.0, 0.0, False, {})
    spikes = backend.operator("if")(
        x, torch.zeros(x.shape[1], device=backend.device), **case.kwargs(surrogate_function, False)
    )[0]
    (grad,) = torch.autograd.grad(spikes.sum(), x)
    # The reference computes in fp32 too (Sigmoid's 1 - s cancels at x = 3 in both).
    expected = surrogate_function.gradient(x.detach().cpu())
    torch.testing.assert_close(grad.cpu(), expected, rtol=2e-6, atol=1e-7)
