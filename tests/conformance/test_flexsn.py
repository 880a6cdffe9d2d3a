"""FlexSN modules on every FlexSN backend: the torch reference's numbers and BaseNode's
state handling (batch-size and dtype changes, ``T == 0``, deepcopy and pickle after a
training forward), a clear refusal of double backward where the kernels have none,
thread-safe kernel building, and errors of the tracing machinery never blamed on the
user's core."""

from __future__ import annotations

import copy
import importlib.util
import io
import threading

import pytest
import torch
from neuron_cases import NeuronCase, make_inputs

from sj_core import reference, surrogate
from sj_core.kernels import interpreter_enabled
from sj_core.neuron import FlexSN

HAS_CUDA = torch.cuda.is_available()
TAU, V_THRESHOLD = 2.5, 1.0
SIGMOID = surrogate.Sigmoid(alpha=4.0)


def lif_core(x, v):
    """A hard-reset LIF step, as the LIF statement states it (decay_input, V_r = 0)."""
    h = v + (x - (v - 0.0)) / TAU
    s = SIGMOID(h - V_THRESHOLD)
    return s, s * 0.0 + (1.0 - s) * h


def _flexsn_installed() -> bool:
    return importlib.util.find_spec("sj_flexsn") is not None


BACKENDS = [
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("hop", "cpu"), id="hop-cpu"),
    pytest.param(("triton", "cpu"), id="triton-cpu"),
    pytest.param(("triton", "cuda"), id="triton-cuda", marks=pytest.mark.gpu),
    pytest.param(("hop", "cuda"), id="hop-cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(params=BACKENDS)
def flexsn_backend(request):
    name, device = request.param
    if device == "cuda" and not HAS_CUDA:
        pytest.skip("needs a CUDA GPU")
    if name != "torch" and not _flexsn_installed():
        pytest.skip("sj-flexsn is not installed")
    if name == "triton" and device == "cpu" and not interpreter_enabled():
        pytest.skip("FlexSN's triton backend runs on the CPU only under TRITON_INTERPRET=1")
    return name, device


def _node(backend, **kwargs):
    name, _ = backend
    return FlexSN(lif_core, 1, 1, 1, step_mode="m", backend=name, **kwargs)


def _x(T, shape, seed, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn((T, *shape), generator=generator) * 0.9 + 0.9).to(device, dtype)


def test_flexsn_lif_matches_the_lif_statement(flexsn_backend):
    _, device = flexsn_backend
    case = NeuronCase("lif", 0.0, V_THRESHOLD, False, {"decay_input": True})
    x_seq, _, _ = make_inputs(case, 7, (3, 5), device=device, seed=2)
    x_a, x_b = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
    node = _node(flexsn_backend, store_state_seqs=True)
    spikes = node(x_a)
    v_init = torch.zeros(3, 5, device=device)
    ref_spikes, ref_v, ref_v_seq = reference.multistep_lif(
        x_b, v_init, tau=TAU, decay_input=True, v_threshold=V_THRESHOLD, v_reset=0.0,
        detach_reset=False, surrogate_function=SIGMOID, store_v_seq=True,
    )  # fmt: skip
    torch.testing.assert_close(spikes, ref_spikes, rtol=0, atol=0)
    torch.testing.assert_close(node.states[0], ref_v, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(node.state_seqs[0], ref_v_seq, rtol=1e-6, atol=1e-6)
    weights = torch.linspace(-1, 1, spikes.numel(), device=device).reshape(spikes.shape)
    (ga,) = torch.autograd.grad((spikes * weights).sum() + node.states[0].sum(), x_a)
    (gb,) = torch.autograd.grad((ref_spikes * weights).sum() + ref_v.sum(), x_b)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sizes", [(2, 3), (1, 3), (3, 1)], ids=["2to3", "1to3", "3to1"])
def test_a_new_batch_size_starts_afresh(flexsn_backend, sizes):
    # Before: 2 then 3 raised an opaque size error; 1 then 3 silently broadcast the state.
    _, device = flexsn_backend
    node = _node(flexsn_backend)
    node(_x(4, (sizes[0], 5), 1, device))
    second = _x(4, (sizes[1], 5), 2, device)
    got = node(second)
    fresh = _node(flexsn_backend)
    torch.testing.assert_close(got, fresh(second), rtol=0, atol=0)
    torch.testing.assert_close(node.states[0], fresh.states[0], rtol=0, atol=0)


def test_a_new_dtype_converts_the_state(flexsn_backend):
    # Before: an fp16 input after an fp32 one gave fp32 outputs (promoted by the state).
    _, device = flexsn_backend
    node = _node(flexsn_backend)
    node(_x(3, (4,), 3, device))
    out = node(_x(3, (4,), 4, device, torch.float16))
    assert out.dtype == torch.float16 and node.states[0].dtype == torch.float16


def test_empty_sequence_gives_zero_gradients(flexsn_backend):
    # Before: "element 0 of tensors does not require grad" on the torch backend.
    _, device = flexsn_backend
    # The torch backend cannot run the core on zero steps to learn the outputs' shape.
    node = _node(flexsn_backend, example_outputs=(torch.zeros(3),))
    x = torch.rand(0, 3, device=device, requires_grad=True)
    out = node(x)
    assert out.shape == (0, 3)
    out.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))
    assert node.states[0].shape == (3,)


def test_deepcopy_after_a_training_forward(flexsn_backend):
    # Before: deepcopy raised (the states were non-leaf tensors in a list).
    _, device = flexsn_backend
    node = _node(flexsn_backend)
    node(_x(4, (6,), 5, device).requires_grad_())
    clone = copy.deepcopy(node)
    second = _x(3, (6,), 6, device)
    torch.testing.assert_close(node(second), clone(second), rtol=0, atol=0)
    torch.testing.assert_close(node.states[0], clone.states[0], rtol=0, atol=0)


def test_torch_save_and_load_in_the_middle_of_a_sequence(flexsn_backend):
    # Before: an opaque PicklingError about a generated kernel function (triton).
    name, device = flexsn_backend
    node = _node(flexsn_backend)
    node(_x(4, (6,), 7, device).requires_grad_())
    buffer = io.BytesIO()
    torch.save(node, buffer)
    buffer.seek(0)
    clone = torch.load(buffer, weights_only=False)
    assert clone.backend == name and (name == "torch") == (clone.kernel is None)
    second = _x(3, (6,), 8, device)
    torch.testing.assert_close(node(second), clone(second), rtol=0, atol=0)


def _gradient_penalty(node, x):
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(node(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad((grad**2).sum(), x)
    return second


def test_double_backward_is_right_or_refused(flexsn_backend):
    # Before: FlexSN(triton) returned wrong numbers without an error.
    name, device = flexsn_backend
    x = _x(5, (7,), 9, device)
    if name == "triton":
        with pytest.raises(RuntimeError, match="no second derivative"):
            _gradient_penalty(_node(flexsn_backend), x)
        return
    expected = _gradient_penalty(_node(("torch", device)), x)
    torch.testing.assert_close(_gradient_penalty(_node(flexsn_backend), x), expected)


def test_kernels_built_from_several_threads(flexsn_backend):
    # Before: 3 builds in 12 failed from 4 threads, blaming the user's core.
    name, device = flexsn_backend
    x = _x(4, (5,), 10, device)
    expected = _node(("torch", device))(x)
    results, errors = [None] * 4, []

    def build(i):
        try:
            results[i] = _node(flexsn_backend)(x)
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for got in results:
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


# -- who is to blame -----------------------------------------------------------------------


def test_an_error_in_the_tracing_machinery_is_not_blamed_on_the_core(monkeypatch):
    pytest.importorskip("sj_flexsn", reason="sj-flexsn is not installed")
    from sj_flexsn import capture
    from sj_flexsn.errors import FlexSNTraceError

    def broken_make_fx(*args, **kwargs):
        def trace(*example):
            raise AssertionError("CURRENT_PATCHER is None in finally block")

        return trace

    monkeypatch.setattr(capture, "make_fx", broken_make_fx)
    spec = capture.make_core_spec(lif_core, 1, 1, 1)
    with pytest.raises(FlexSNTraceError, match="not in the core") as info:
        capture.trace_inference_graph(spec)
    assert "must be element-wise" not in str(info.value)


def test_an_error_in_the_core_is_reported_with_the_rules_for_cores():
    pytest.importorskip("sj_flexsn", reason="sj-flexsn is not installed")
    from sj_flexsn import capture
    from sj_flexsn.errors import FlexSNTraceError

    def item_core(x, v):
        return x * float(v.sum().item()), v  # .item() on a traced value

    with pytest.raises(FlexSNTraceError, match="must be element-wise"):
        capture.trace_inference_graph(capture.make_core_spec(item_core, 1, 1, 1))
