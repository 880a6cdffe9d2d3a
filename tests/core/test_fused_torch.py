"""The torch backend's fused loop (sj_core.fused) against the per-step reference loop.

* Every statement x flag setting x reset mode x ``detach_reset``, fp32 and fp64: the
  forward outputs bitwise equal (the same operations in the same order), every gradient
  within ``1e-6`` (fp32) or ``1e-12`` (fp64) of the reference, relative to the tensor's
  scale (a sum over ``T`` steps cancels terms; the scale of PLIF's ``r_tau`` gradient is
  the sum of its per-neuron magnitudes, as in ``reference_compare``).
* fp16/bf16: both loops compute in the input's dtype; the forward is still bitwise equal.
* What the fused loop keeps for the backward pass, counted with saved-tensor hooks.
* Where it must not run (custom neurons, ``spiking=False``, a custom surrogate, traced
  calls, ``disabled()``) and what it refuses (a second derivative).
"""

from __future__ import annotations

import pytest
import torch
from neuron_cases import (
    NeuronCase,
    flag_settings,
    make_inputs,
    make_surrogate,
    one_case_per_statement,
    statement_cases,
)
from reference_compare import (
    input_names,
    random_weights,
    relative_norm_error,
    run_with_grads,
    tensor_gradient_scale,
)

from sj_core import fused, neuron, reference, surrogate

CASES = statement_cases()
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


def _ops(name: str):
    return getattr(fused, f"multistep_{name}"), getattr(reference, f"multistep_{name}")


def _both(case, x_seq, states, tensors, sg, *, store_v_seq=True, weights=None):
    fused_op, reference_op = _ops(case.name)
    if weights is None:
        weights = random_weights(case, x_seq, states)
        if not store_v_seq:
            weights["v_seq"] = None
    args = (case, x_seq, states, tensors, sg)
    got = run_with_grads(fused_op, *args, store_v_seq=store_v_seq, weights=weights)
    want = run_with_grads(reference_op, *args, store_v_seq=store_v_seq, weights=weights)
    return got, want, weights


def _assert_forward_bitwise(got, want) -> None:
    for name, expected in want.outputs.items():
        actual = got.outputs[name]
        if expected is None:
            assert actual is None, name
            continue
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
        # equal_nan: the same operations give NaN in the same places
        assert torch.equal(actual, expected) or torch.allclose(
            actual, expected, rtol=0, atol=0, equal_nan=True
        ), f"{name} differs from the reference loop"


def _assert_gradients(case, got, want, x_seq, states, tensors, sg, weights, rtol) -> None:
    for name in input_names(case):
        actual, expected = got.grads.get(name), want.grads.get(name)
        if expected is None:
            assert actual is None or not actual.any(), f"grad_{name}: expected none"
            continue
        assert actual is not None and actual.shape == expected.shape, f"grad_{name}"
        if name == "r":
            scale = tensor_gradient_scale(case, x_seq, states, tensors, sg, weights)
        else:
            scale = expected.abs().max().item()
        torch.testing.assert_close(
            actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-300),
            msg=lambda m, n=name: f"grad_{n}: {m}",
        )  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.id for c in CASES])
def test_every_statement_matches_the_reference_loop(index, dtype):
    case = CASES[index]
    sg = make_surrogate(("Sigmoid", "ATan", "PiecewiseQuadratic", "Erf")[index % 4])
    x_seq, states, tensors = make_inputs(case, 9, (5, 7), dtype=dtype, seed=index)
    tensors = tuple(t.to(dtype) for t in tensors)
    store = index % 2 == 0
    got, want, weights = _both(case, x_seq, states, tensors, sg, store_v_seq=store)
    spikes = want.outputs["spike"]
    assert 0.05 < spikes.mean().item() < 0.9, "inputs must make the neuron fire sometimes"
    _assert_forward_bitwise(got, want)
    _assert_gradients(case, got, want, x_seq, states, tensors, sg, weights, TOLERANCE[dtype])


@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_a_long_sequence_stays_within_the_tolerance(case):
    # Rounding differences accumulate over the reverse-time recurrence: T = 64.
    sg = make_surrogate("SoftSign")
    x_seq, states, tensors = make_inputs(case, 64, (33,), seed=7)
    got, want, weights = _both(case, x_seq, states, tensors, sg)
    _assert_forward_bitwise(got, want)
    _assert_gradients(case, got, want, x_seq, states, tensors, sg, weights, 1e-6)


@pytest.mark.parametrize("steps_per_chunk", [1, 3])
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_the_backward_in_chunks_of_steps_gives_the_same_gradients(
    case, steps_per_chunk, monkeypatch
):
    # The backward evaluates CHUNK_ELEMENTS neuron-steps at a time; 10 steps of 12 neurons
    # in chunks of 1 or 3 steps (the last one shorter) must change nothing.
    monkeypatch.setattr(fused.backward, "CHUNK_ELEMENTS", 12 * steps_per_chunk)
    sg = make_surrogate("ATan")
    x_seq, states, tensors = make_inputs(case, 10, (3, 4), seed=21)
    got, want, weights = _both(case, x_seq, states, tensors, sg)
    _assert_gradients(case, got, want, x_seq, states, tensors, sg, weights, 1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_half_precision_matches_the_reference_loop_in_the_same_dtype(case, dtype):
    sg = make_surrogate("ATan")
    x_seq, states, tensors = make_inputs(case, 6, (40,), dtype=dtype, seed=5)
    got, want, _ = _both(case, x_seq, states, tensors, sg)
    _assert_forward_bitwise(got, want)
    # Both round every operation to the input's dtype, in a different order in the
    # backward; a few units of rounding (u = 2^-11 fp16, 2^-8 bf16) over the sequence.
    u = 2.0**-11 if dtype == torch.float16 else 2.0**-8
    for name, expected in want.grads.items():
        error = relative_norm_error(got.grads[name], expected)
        assert error <= 8 * u, f"grad_{name}: relative-norm error {error:.2e}"


@pytest.mark.parametrize("used", ["spike", "v_last", "v_seq"])
@pytest.mark.parametrize("name", ["lif", "plif", "izhikevich"])
def test_gradients_of_some_outputs_only(name, used):
    case = NeuronCase(name, -0.3, 0.9, False, flag_settings(name)[0])
    sg = make_surrogate("Sigmoid")
    x_seq, states, tensors = make_inputs(case, 6, (17,), seed=2)
    weights = random_weights(case, x_seq, states, use=(used,))
    got, want, _ = _both(case, x_seq, states, tensors, sg, weights=weights)
    _assert_gradients(case, got, want, x_seq, states, tensors, sg, weights, 1e-6)


@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_non_contiguous_inputs_and_incoming_gradients(case):
    x_seq, states, tensors = make_inputs(case, 5, (6, 4), seed=11)
    x_seq = x_seq.transpose(1, 2).contiguous().transpose(1, 2)
    states = tuple(s.t().contiguous().t() for s in states)
    assert not x_seq.is_contiguous()
    weights = random_weights(case, x_seq, states)
    weights = {k: None if w is None else w.transpose(-1, -2).contiguous().transpose(-1, -2)
               for k, w in weights.items()}  # fmt: skip
    sg = make_surrogate("PiecewiseExp")
    got, want, _ = _both(case, x_seq, states, tensors, sg, weights=weights)
    _assert_forward_bitwise(got, want)
    _assert_gradients(case, got, want, x_seq, states, tensors, sg, weights, 1e-6)


@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_inference_gives_the_training_forward_and_keeps_nothing(case):
    x_seq, states, tensors = make_inputs(case, 5, (21,), seed=4)
    kwargs = case.kwargs(make_surrogate("ATan"), store_v_seq=True)
    operator = _ops(case.name)[0]
    with torch.no_grad():
        inference = operator(x_seq, *states, *tensors, **kwargs)
    training = operator(x_seq.clone().requires_grad_(), *states, *tensors, **kwargs)
    assert type(training[0].grad_fn).__name__ == "FusedMultiStepBackward"
    assert all(o.grad_fn is None for o in inference)
    for a, b in zip(inference, training, strict=True):
        assert torch.equal(a, b.detach())


def _kept_bytes(function) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``function()``."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = function()
    assert outputs[0].requires_grad
    return sum(storages.values())


@pytest.mark.parametrize("T", [4, 8])
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_what_the_fused_loop_keeps_for_backward(case, T):
    x_seq, states, tensors = make_inputs(case, T, (64,), seed=3)
    x_seq.requires_grad_()
    kwargs = case.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    fused_op, reference_op = _ops(case.name)
    kept = _kept_bytes(lambda: fused_op(x_seq, *states, *tensors, **kwargs))
    per_step_loop = _kept_bytes(lambda: reference_op(x_seq, *states, *tensors, **kwargs))
    one = x_seq.numel() * x_seq.element_size()  # T * N * 4
    tensor_bytes = sum(t.untyped_storage().nbytes() for t in tensors)
    reads = {"if": (), "lif": (), "plif": ("v", "x"), "qif": ("v",), "eif": ("v",),
             "izhikevich": ("v",)}[case.name]  # fmt: skip
    # H (or, where X is read, X instead), plus the initial V where V[t-1] is read.
    expected = one + (one // T if "v" in reads else 0) + tensor_bytes
    assert kept == expected
    assert kept - tensor_bytes <= 1.25 * one
    assert per_step_loop >= 2.5 * one  # what the fused loop saves


# -- where the fused loop runs, and where it must not ---------------------------------------


def _grad_fn_name(spikes: torch.Tensor) -> str:
    return type(spikes.grad_fn).__name__


def test_modules_on_the_torch_backend_run_the_fused_loop():
    x_seq = torch.rand(4, 3, 5, requires_grad=True)
    for node in (neuron.LIFNode(step_mode="m"), neuron.IzhikevichNode(step_mode="m"),
                 neuron.LIFNode(step_mode="m", backend="auto")):  # fmt: skip
        assert _grad_fn_name(node(x_seq)) == "FusedMultiStepBackward"
        assert node.last_backend == "torch"


def test_a_custom_neuron_keeps_the_per_step_loop_and_its_results():
    class HalfIF(neuron.BaseNode):
        def neuronal_charge(self, x):
            self.v = self.v + 0.5 * x

    node = HalfIF(step_mode="m")
    x_seq = torch.rand(6, 8, requires_grad=True) * 3
    spikes = node(x_seq)
    assert _grad_fn_name(spikes) == "StackBackward0"
    v = torch.zeros(8)
    expected = []
    for x in x_seq.detach():
        h = v + 0.5 * x
        s = (h >= 1.0).float()
        v = h * (1 - s)
        expected.append(s)
    assert torch.equal(spikes.detach(), torch.stack(expected))


@pytest.mark.parametrize(
    "surrogate_function",
    [surrogate.Sigmoid(spiking=False), lambda x: torch.sigmoid(4 * x)],
    ids=["spiking_false", "callable"],
)
def test_surrogates_the_recurrences_do_not_describe_use_the_reference(surrogate_function):
    x_seq = torch.rand(5, 7, requires_grad=True)
    node = neuron.LIFNode(step_mode="m", surrogate_function=surrogate_function)
    assert _grad_fn_name(node(x_seq)) != "FusedMultiStepBackward"


def test_traced_calls_use_the_reference_loop():
    case = NeuronCase("lif", 0.0, 1.0, False, {"decay_input": True})
    kwargs = case.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    x_seq = torch.rand(3, 4)
    graph = torch.fx.experimental.proxy_tensor.make_fx(
        lambda x, v: fused.multistep_lif(x, v, **kwargs)[0]
    )(x_seq, torch.zeros(4))
    # The per-step loop unrolled: one comparison per step in the traced graph.
    assert sum(1 for n in graph.graph.nodes if "ge" in str(n.target)) == 3


def test_a_second_derivative_is_refused_and_available_inside_disabled():
    x_seq = torch.rand(5, 6, requires_grad=True) * 2
    node = neuron.LIFNode(step_mode="m", surrogate_function=surrogate.Sigmoid())
    loss = node(x_seq).sum()
    with pytest.raises(RuntimeError, match="no second derivative.*fused.disabled"):
        torch.autograd.grad(loss, x_seq, create_graph=True)
    node.reset()
    with fused.disabled():
        spikes = node(x_seq)
    assert _grad_fn_name(spikes) == "StackBackward0"
    (g,) = torch.autograd.grad((spikes * x_seq).sum(), x_seq, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x_seq)
    assert gg.abs().sum() > 0


def test_only_the_tensor_parameter_needs_a_gradient():
    case = NeuronCase("plif", 0.0, 1.0, False, {"decay_input": True})
    x_seq, states, tensors = make_inputs(case, 4, (9,), seed=1)
    r = tensors[0].clone().requires_grad_()
    spikes = fused.multistep_plif(
        x_seq, *states, r, **case.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    )[0]
    assert _grad_fn_name(spikes) == "FusedMultiStepBackward"
    (grad_r,) = torch.autograd.grad(spikes.sum(), r)
    ref = reference.multistep_plif(
        x_seq, *states, r, **case.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    )[0]
    (want,) = torch.autograd.grad(ref.sum(), r)
    torch.testing.assert_close(grad_r, want, rtol=1e-5, atol=1e-6)
