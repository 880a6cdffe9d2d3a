"""The experimental scans through torch.ops.higher_order.scan / while_loop.

Each must return exactly what the hand-written loop returns (values, and gradients for
the scan version); the while-loop version is forward-only and must say so rather than
return gradients.
"""

from __future__ import annotations

import pytest
import torch
from test_hop_cores import (
    SJ_FLEXSN_INSTALLED,
    SKIP_REASON,
    adaptive_core,
    lifted_core,
    reference_scan,
    smooth_lif_core,
    stateless_core,
    two_in_two_out_core,
)

if not SJ_FLEXSN_INSTALLED:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from sj_flexsn.hop import (
    lowerable_scan,
    lowerable_scan_available,
    lowerable_scan_final_state,
    lowerable_while_loop_available,
    lowerable_while_loop_scan,
    lowerable_while_loop_scan_final_state,
)
from sj_flexsn.hop_lowerable import lowerable_scan_differentiable

needs_scan = pytest.mark.skipif(
    not lowerable_scan_available(), reason="this torch has no torch.ops.higher_order.scan"
)
needs_scan_autograd = pytest.mark.skipif(
    not lowerable_scan_differentiable(), reason="this torch's scan operator has no autograd"
)
needs_while_loop = pytest.mark.skipif(
    not lowerable_while_loop_available(),
    reason="this torch has no torch.ops.higher_order.while_loop",
)


def _case(name, T=5, requires_grad=False):
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return (torch.rand(*shape, generator=g) * 2 - 0.5).requires_grad_(requires_grad)

    if name == "two_states":
        return adaptive_core, 1, 2, 1, (rand(T, 3), rand(3), rand(3))
    if name == "two_in_two_out":
        return two_in_two_out_core, 2, 1, 2, (rand(T, 3), rand(T, 3), rand(3))
    if name == "zero_states":
        return stateless_core, 2, 0, 1, (rand(T, 3), rand(T, 3))
    if name == "lifted_freevars":
        return lifted_core, 1, 1, 1, (rand(T, 3), rand(3), rand(3), rand(()))
    raise KeyError(name)


CASES = ["two_states", "two_in_two_out", "zero_states", "lifted_freevars"]


def _close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)


def test_availability_reports_match_torch():
    assert lowerable_scan_available() == hasattr(torch.ops.higher_order, "scan")
    assert lowerable_while_loop_available() == hasattr(torch.ops.higher_order, "while_loop")


@needs_scan
@pytest.mark.parametrize("case", CASES)
def test_lowerable_scan_matches_hand_written_loop(case):
    core, ni, ns, no, args = _case(case)
    outputs, state_seqs, finals = reference_scan(core, ni, ns, no, *args)
    _close(lowerable_scan(core, ni, ns, no, *args), (*outputs, *state_seqs))
    _close(lowerable_scan_final_state(core, ni, ns, no, *args), (*outputs, *finals))


@needs_scan_autograd
@pytest.mark.parametrize("case", ["two_states", "lifted_freevars"])
def test_lowerable_scan_gradients_match_hand_written_loop(case):
    core, ni, ns, no, args = _case(case, requires_grad=True)
    outputs, state_seqs, _ = reference_scan(core, ni, ns, no, *args)
    expected = torch.autograd.grad(sum(t.sum() for t in (*outputs, *state_seqs)), args)
    actual = torch.autograd.grad(
        sum(t.sum() for t in lowerable_scan(core, ni, ns, no, *args)), args
    )
    _close(actual, expected)


@needs_scan
@pytest.mark.skipif(lowerable_scan_differentiable(), reason="this torch's scan has autograd")
@pytest.mark.parametrize("function", [lowerable_scan, lowerable_scan_final_state])
def test_lowerable_scan_refuses_gradients_where_scan_has_no_autograd(function):
    core, ni, ns, no, args = _case("two_states", requires_grad=True)
    with pytest.raises(NotImplementedError, match="need torch >= 2.7"):
        function(core, ni, ns, no, *args)
    detached = [a.detach() for a in args]  # inference still runs
    outputs, _, _ = reference_scan(core, ni, ns, no, *detached)
    _close(function(core, ni, ns, no, *detached)[:1], outputs)


@needs_scan
def test_lowerable_scan_under_compile_matches_hand_written_loop():
    torch._dynamo.reset()
    core, ni, ns, no, args = _case("lifted_freevars")
    outputs, state_seqs, _ = reference_scan(core, ni, ns, no, *args)
    compiled = torch.compile(
        lambda *a: lowerable_scan(core, ni, ns, no, *a), fullgraph=True, backend="aot_eager"
    )
    _close(compiled(*args), (*outputs, *state_seqs))


@needs_while_loop
@pytest.mark.parametrize("case", CASES)
def test_lowerable_while_loop_matches_hand_written_loop(case):
    core, ni, ns, no, args = _case(case)
    outputs, state_seqs, finals = reference_scan(core, ni, ns, no, *args)
    with torch.no_grad():
        _close(lowerable_while_loop_scan(core, ni, ns, no, *args), (*outputs, *state_seqs))
        _close(lowerable_while_loop_scan_final_state(core, ni, ns, no, *args), (*outputs, *finals))


@needs_while_loop
def test_lowerable_while_loop_under_compile_matches_hand_written_loop():
    torch._dynamo.reset()
    core, ni, ns, no, args = _case("two_in_two_out")
    outputs, state_seqs, _ = reference_scan(core, ni, ns, no, *args)
    compiled = torch.compile(
        lambda *a: lowerable_while_loop_scan(core, ni, ns, no, *a),
        fullgraph=True,
        backend="aot_eager",
    )
    with torch.no_grad():
        _close(compiled(*args), (*outputs, *state_seqs))


@needs_while_loop
def test_lowerable_while_loop_refuses_gradients():
    core, ni, ns, no, args = _case("two_states", requires_grad=True)
    with pytest.raises(NotImplementedError, match="no_grad"):
        lowerable_while_loop_scan(core, ni, ns, no, *args)


@needs_while_loop
def test_lowerable_while_loop_refuses_gradients_of_captured_tensors():
    w = torch.nn.Parameter(torch.tensor(0.5))

    def core(x, v):
        return torch.sigmoid(x + w * v), v * w

    with pytest.raises(NotImplementedError, match="no_grad"):
        lowerable_while_loop_scan(core, 1, 1, 1, torch.rand(3, 2), torch.rand(2))


@pytest.mark.parametrize(
    ("helper", "final_state"),
    [
        pytest.param(lowerable_scan, False, marks=needs_scan, id="scan"),
        pytest.param(lowerable_scan_final_state, True, marks=needs_scan, id="scan_final"),
        pytest.param(lowerable_while_loop_scan, False, marks=needs_while_loop, id="while"),
        pytest.param(
            lowerable_while_loop_scan_final_state, True, marks=needs_while_loop, id="while_final"
        ),
    ],
)
def test_empty_sequence_uses_templates(helper, final_state):
    x, v0 = torch.zeros(0, 3), torch.rand(3)
    specs = (((3,), torch.float32),)
    out, state = helper(smooth_lif_core, 1, 1, 1, x, v0, output_template_specs=specs)
    assert out.shape == (0, 3)
    if final_state:
        torch.testing.assert_close(state, v0)
    else:
        assert state.shape == (0, 3)
    with pytest.raises(ValueError, match="output_template_specs"):
        helper(smooth_lif_core, 1, 1, 1, x, v0)
