"""flex_sn_scan under tracing: make_fx, functionalization, fake tensors, torch.compile.

The compiled module must match the same module run eagerly, in values and in the
gradients of its input, initial state and an ``nn.Parameter`` its core closes over;
and the eager module is itself checked against the hand-written loop in test_hop.py.
"""

from __future__ import annotations

import time

import pytest
import torch
from test_hop_cores import SJ_FLEXSN_INSTALLED, SKIP_REASON, reference_scan, smooth_lif_core
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

if not SJ_FLEXSN_INSTALLED:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from sj_flexsn import hop
from sj_flexsn.hop import (
    build_hop_kernel,
    dynamo_hop_available,
    dynamo_hop_unavailable_reason,
    flex_sn_scan,
    flex_sn_scan_final_state,
)


class ScanNet(torch.nn.Module):
    """Linear -> FlexSN-style scan whose core closes over a learnable decay."""

    def __init__(self, how: str):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 4, dtype=torch.float64)
        self.decay = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.how = how
        self.kernel = build_hop_kernel(self.core, num_inputs=1, num_states=1, num_outputs=1)

    def core(self, x, v):
        h = v + (x - v) * torch.sigmoid(self.decay)
        s = torch.sigmoid(4.0 * (h - 1.0))
        return s, h * (1.0 - s)

    def forward(self, x_seq, v0):
        y_seq = self.fc(x_seq)
        decay = self.decay

        def closure_core(x, v):  # a tensor closure Dynamo has to lift
            h = v + (x - v) * torch.sigmoid(decay)
            s = torch.sigmoid(4.0 * (h - 1.0))
            return s, h * (1.0 - s)

        if self.how == "flex_sn_scan":
            spikes, v_seq = flex_sn_scan(closure_core, 1, 1, 1, y_seq, v0)
            return spikes, v_seq
        if self.how == "flex_sn_scan_final_state":
            return flex_sn_scan_final_state(closure_core, 1, 1, 1, y_seq, v0)
        if self.how == "kernel":
            return self.kernel(y_seq, v0)
        return self.kernel.final_state(y_seq, v0)


# Compiling a *direct* flex_sn_scan call needs sj-flexsn's Dynamo rule, which is built on
# private Dynamo helpers of torch >= 2.13; without it such a call is a graph break, while
# the kernel (HopScanKernel) still compiles by handing Dynamo the plain loop.
requires_dynamo_rule = pytest.mark.skipif(
    not dynamo_hop_available(),
    reason=f"no Dynamo rule for flex_sn_scan on torch {torch.__version__}: "
    f"{dynamo_hop_unavailable_reason()}",
)
HOWS = [
    pytest.param("flex_sn_scan", marks=requires_dynamo_rule),
    pytest.param("flex_sn_scan_final_state", marks=requires_dynamo_rule),
    "kernel",
    "kernel_final_state",
]


def _inputs(T=5):
    g = torch.Generator().manual_seed(3)
    x_seq = torch.rand(T, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    v0 = torch.rand(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    return x_seq, v0


def _values_and_grads(net, x_seq, v0):
    outputs = net(x_seq, v0)
    g = torch.Generator().manual_seed(4)
    loss = sum(
        (o * torch.rand(o.shape, generator=g, dtype=o.dtype).to(o.device)).sum() for o in outputs
    )
    # With T == 0 eager mode cannot link a parameter that only core captures to the
    # (empty) outputs; its gradient is zero either way, so unused means zeros.
    grads = torch.autograd.grad(
        loss, (x_seq, v0, net.decay, net.fc.weight), allow_unused=True, materialize_grads=True
    )
    return [o.detach() for o in outputs], grads


def _assert_match(actual, expected):
    (out_a, grad_a), (out_e, grad_e) = actual, expected
    for a, e in zip((*out_a, *grad_a), (*out_e, *grad_e), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-7, atol=1e-9)


def test_dynamo_registration_succeeded_on_this_torch():
    # Known to work from torch 2.13 (2.11 lacks the private helpers the rule uses).
    if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13):
        pytest.skip(f"the Dynamo rule is not expected on torch {torch.__version__}")
    assert dynamo_hop_available(), dynamo_hop_unavailable_reason()


def test_eager_net_matches_hand_written_loop():
    net = ScanNet("flex_sn_scan")
    x_seq, v0 = _inputs()
    spikes, v_seq = net(x_seq, v0)
    (ref_spikes,), (ref_v_seq,), _ = reference_scan(net.core, 1, 1, 1, net.fc(x_seq), v0)
    torch.testing.assert_close(spikes, ref_spikes)
    torch.testing.assert_close(v_seq, ref_v_seq)


@pytest.mark.parametrize("how", HOWS)
def test_compile_fullgraph_aot_eager_matches_eager(how):
    torch._dynamo.reset()
    net = ScanNet(how)
    x_seq, v0 = _inputs()
    expected = _values_and_grads(net, x_seq, v0)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    _assert_match(_values_and_grads(compiled, x_seq, v0), expected)


@pytest.mark.parametrize(
    "how", [pytest.param("flex_sn_scan", marks=requires_dynamo_rule), "kernel_final_state"]
)
def test_compile_fullgraph_aot_eager_no_grad_matches_eager(how):
    # Inference tracing takes another route: functionalization, then the proxy tracer.
    torch._dynamo.reset()
    net = ScanNet(how)
    x_seq, v0 = _inputs()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        for a, e in zip(compiled(x_seq, v0), net(x_seq, v0), strict=True):
            torch.testing.assert_close(a, e, rtol=1e-7, atol=1e-9)


@requires_dynamo_rule
def test_compile_captures_one_scan_node_with_lifted_parameter():
    torch._dynamo.reset()
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm

    net = ScanNet("flex_sn_scan")
    torch.compile(net, fullgraph=True, backend=capture)(*_inputs())
    (gm,) = graphs
    scans = [n for n in gm.graph.nodes if n.target is flex_sn_scan]
    assert len(scans) == 1
    # (body, num_inputs, num_states, num_outputs, y_seq, v0, lifted decay)
    body, *counts = scans[0].args[:4]
    assert counts == [1, 1, 1] and len(scans[0].args) == 7
    assert "decay" in scans[0].args[6].name


def test_compile_new_sequence_lengths_match_eager():
    torch._dynamo.reset()
    net = ScanNet("kernel_final_state")
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    for T in (3, 6, 1):
        x_seq, v0 = _inputs(T)
        _assert_match(_values_and_grads(compiled, x_seq, v0), _values_and_grads(net, x_seq, v0))


def test_compile_empty_sequence_matches_eager():
    torch._dynamo.reset()
    net = ScanNet("kernel_final_state")
    x_seq, v0 = _inputs(0)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    (spikes, v_last), grads = _values_and_grads(compiled, x_seq, v0)
    assert spikes.shape == (0, 2, 4)
    torch.testing.assert_close(v_last, v0.detach())
    _assert_match(((spikes, v_last), grads), _values_and_grads(net, x_seq, v0))


def test_compile_without_dynamo_rule_traces_the_loop(monkeypatch):
    # What a torch whose private Dynamo API moved gets: the kernel hands Dynamo the plain
    # loop, so fullgraph still holds and nothing of flex_sn_scan reaches the graph. The
    # rule is really absent too (as on such a torch), so the fallback must not make
    # Dynamo touch the operator object at all.
    from torch._dynamo.variables import higher_order_ops as hops

    monkeypatch.setattr(hop, "_DYNAMO_REGISTRATION_ERROR", "simulated")
    # A private table; torch 2.6 has none (its Dynamo has no rule to remove).
    rules = getattr(hops, "_hop_name_to_variable_class", {})
    for name in ("flex_sn_scan", "flex_sn_scan_final_state"):
        monkeypatch.delitem(rules, name, raising=False)
    assert not dynamo_hop_available()
    torch._dynamo.reset()
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm

    net = ScanNet("kernel")
    x_seq, v0 = _inputs()
    expected = _values_and_grads(net, x_seq, v0)
    _assert_match(
        _values_and_grads(torch.compile(net, fullgraph=True, backend=capture), x_seq, v0), expected
    )
    targets = {n.target for gm in graphs for n in gm.graph.nodes}
    assert flex_sn_scan not in targets
    torch._dynamo.reset()


@requires_dynamo_rule
def test_compile_rejects_a_core_that_eager_rejects():
    # A bare tensor instead of a tuple: eager raises; the compiled call must not accept it.
    def bare_core(x):
        return x * 2.0

    x_seq = torch.rand(3, 2)
    with pytest.raises(ValueError, match="num_outputs \\+ num_states"):
        flex_sn_scan(bare_core, 1, 0, 1, x_seq)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x: flex_sn_scan(bare_core, 1, 0, 1, x), fullgraph=True, backend="aot_eager"
    )
    with pytest.raises(torch._dynamo.exc.Unsupported, match="num_outputs \\+ num_states"):
        compiled(x_seq)
    torch._dynamo.reset()
    # Without fullgraph Dynamo falls back to the eager operator and its error.
    compiled = torch.compile(lambda x: flex_sn_scan(bare_core, 1, 0, 1, x), backend="aot_eager")
    with pytest.raises(ValueError, match="num_outputs \\+ num_states"):
        compiled(x_seq)


@pytest.mark.slow
def test_compile_fullgraph_inductor_cpu_matches_eager():
    torch._dynamo.reset()
    net = ScanNet("kernel")
    x_seq, v0 = _inputs()
    expected = _values_and_grads(net, x_seq, v0)
    start = time.perf_counter()
    actual = _values_and_grads(torch.compile(net, fullgraph=True, backend="inductor"), x_seq, v0)
    print(f"inductor compile + run: {time.perf_counter() - start:.1f} s")
    _assert_match(actual, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_on_cuda_matches_eager(backend):
    torch._dynamo.reset()
    net = ScanNet("kernel").cuda()
    x_seq, v0 = (t.detach().cuda().requires_grad_() for t in _inputs(8))
    expected = _values_and_grads(net, x_seq, v0)
    _assert_match(
        _values_and_grads(torch.compile(net, fullgraph=True, backend=backend), x_seq, v0),
        expected,
    )


# -- tracing below Dynamo --------------------------------------------------------------


def test_make_fx_unrolls_the_scan_into_aten_ops():
    x_seq, v0 = torch.rand(3, 4), torch.zeros(4)
    gm = make_fx(lambda x, v: flex_sn_scan(smooth_lif_core, 1, 1, 1, x, v))(x_seq, v0)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert flex_sn_scan not in targets
    assert targets.count(torch.ops.aten.sigmoid.default) == 3  # one per time step
    for a, e in zip(gm(x_seq, v0), flex_sn_scan(smooth_lif_core, 1, 1, 1, x_seq, v0), strict=True):
        torch.testing.assert_close(a, e)


def test_functionalized_trace_of_a_mutating_core_matches_eager():
    def mutating_core(x, v):
        h = v.clone()
        h.mul_(0.5).add_(x)  # in-place ops inside core must be functionalized
        return torch.sigmoid(h), h

    x_seq, v0 = torch.rand(3, 4), torch.rand(4)
    fn = torch.func.functionalize(lambda x, v: flex_sn_scan(mutating_core, 1, 1, 1, x, v))
    gm = make_fx(fn)(x_seq, v0)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert not any(getattr(t, "_schema", None) and t._schema.is_mutable for t in targets)
    expected = reference_scan(mutating_core, 1, 1, 1, x_seq, v0)
    for a, e in zip(gm(x_seq, v0), (*expected[0], *expected[1]), strict=True):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("T", [4, 0])
def test_fake_tensor_mode_gives_output_metadata(T):
    with FakeTensorMode():
        x_seq = torch.empty(T, 2, 3)
        v0 = torch.empty(2, 3, dtype=torch.float32)
        spikes, v_seq = flex_sn_scan(lambda x, v: ((x > v), x + v), 1, 1, 1, x_seq, v0)
    assert (spikes.shape, spikes.dtype) == ((T, 2, 3), torch.bool)
    assert (v_seq.shape, v_seq.dtype) == ((T, 2, 3), torch.float32)
