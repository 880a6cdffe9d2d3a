"""sj_flexsn.hop: eager_scan, the flex_sn_scan operator and the hop kernel, run eagerly.

Every result is compared with ``reference_scan`` (a separately written loop) or with
numbers worked out by hand; gradients with autograd through that loop or gradcheck.
Compiled paths are in test_hop_compile.py, PyTorch's loop operators in
test_hop_lowerable.py.
"""

from __future__ import annotations

import pytest
import torch
from test_hop_cores import (
    SJ_FLEXSN_INSTALLED,
    SKIP_REASON,
    adaptive_core,
    lif_core,
    lifted_core,
    reference_scan,
    smooth_lif_core,
    stateless_core,
    two_in_two_out_core,
)

if not SJ_FLEXSN_INSTALLED:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from sj_flexsn.hop import (
    FlexSNScan,
    build_hop_kernel,
    eager_scan,
    eager_scan_final_state,
    flex_sn_scan,
    flex_sn_scan_final_state,
)


def _make_case(name, T=6, N=5, dtype=torch.float32, requires_grad=False):
    """``(core, num_inputs, num_states, num_outputs, flat_args)`` for a named case."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        t = (torch.rand(*shape, generator=g, dtype=dtype) * 2 - 0.5) * scale
        return t.requires_grad_(requires_grad)

    if name == "lif":
        return lif_core, 1, 1, 1, (rand(T, N, scale=2.0), rand(N))
    if name == "smooth_lif":
        return smooth_lif_core, 1, 1, 1, (rand(T, N, scale=2.0), rand(N))
    if name == "two_states":
        return adaptive_core, 1, 2, 1, (rand(T, N, scale=2.0), rand(N), rand(N))
    if name == "two_in_two_out":
        return two_in_two_out_core, 2, 1, 2, (rand(T, N), rand(T, N), rand(N))
    if name == "zero_states":
        return stateless_core, 2, 0, 1, (rand(T, N), rand(T, N))
    if name == "lifted_freevars":
        return lifted_core, 1, 1, 1, (rand(T, N), rand(N), rand(N), rand(()))
    raise KeyError(name)


CASES = ["lif", "smooth_lif", "two_states", "two_in_two_out", "zero_states", "lifted_freevars"]
SMOOTH_CASES = [c for c in CASES if c != "lif"]


def _assert_all_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)


# -- values ----------------------------------------------------------------------------


def test_eager_scan_hand_computed_if_neuron():
    # IF with threshold 1 and hard reset to 0, x = 0.6 at every step:
    # H = 0.6, 1.2, 0.6 -> spikes 0, 1, 0 -> V = 0.6, 0.0, 0.6.
    def if_core(x, v):
        h = v + x
        s = (h >= 1.0).to(h.dtype)
        return s, h * (1.0 - s)

    x_seq = torch.full((3, 1), 0.6)
    spikes, v_seq = eager_scan(if_core, 1, 1, 1, x_seq, torch.zeros(1))
    torch.testing.assert_close(spikes, torch.tensor([[0.0], [1.0], [0.0]]))
    torch.testing.assert_close(v_seq, torch.tensor([[0.6], [0.0], [0.6]]))


@pytest.mark.parametrize("case", CASES)
def test_eager_scan_matches_hand_written_loop(case):
    core, ni, ns, no, args = _make_case(case)
    outputs, state_seqs, _ = reference_scan(core, ni, ns, no, *args)
    _assert_all_close(eager_scan(core, ni, ns, no, *args), (*outputs, *state_seqs))


@pytest.mark.parametrize("case", CASES)
def test_eager_scan_final_state_matches_hand_written_loop(case):
    core, ni, ns, no, args = _make_case(case)
    outputs, _, finals = reference_scan(core, ni, ns, no, *args)
    _assert_all_close(eager_scan_final_state(core, ni, ns, no, *args), (*outputs, *finals))


@pytest.mark.parametrize("case", CASES)
def test_flex_sn_scan_equals_eager_scan(case):
    core, ni, ns, no, args = _make_case(case)
    _assert_all_close(flex_sn_scan(core, ni, ns, no, *args), eager_scan(core, ni, ns, no, *args))
    _assert_all_close(
        flex_sn_scan_final_state(core, ni, ns, no, *args),
        eager_scan_final_state(core, ni, ns, no, *args),
    )


def test_flex_sn_scan_is_a_higher_order_operator():
    assert isinstance(flex_sn_scan, FlexSNScan)
    assert isinstance(flex_sn_scan, torch._ops.HigherOrderOperator)
    assert torch.ops.higher_order.flex_sn_scan is flex_sn_scan


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_flex_sn_scan_below_autograd_without_grad(context):
    # Without grad the operator redispatches below autograd (the dense kernel).
    core, ni, ns, no, args = _make_case("two_states")
    expected = eager_scan(core, ni, ns, no, *args)
    with context():
        actual = flex_sn_scan(core, ni, ns, no, *args)
    _assert_all_close(actual, expected)
    assert not any(t.requires_grad for t in actual)


# -- gradients -------------------------------------------------------------------------


def _grads(outputs, wrt, seed=1):
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.rand(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, wrt, allow_unused=True)


@pytest.mark.parametrize("scan", [eager_scan, flex_sn_scan], ids=["eager_scan", "flex_sn_scan"])
@pytest.mark.parametrize("case", SMOOTH_CASES)
def test_gradients_match_hand_written_loop(scan, case):
    core, ni, ns, no, args = _make_case(case, requires_grad=True)
    outputs, state_seqs, _ = reference_scan(core, ni, ns, no, *args)
    expected = _grads((*outputs, *state_seqs), args)
    actual = _grads(scan(core, ni, ns, no, *args), args)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "scan", [eager_scan_final_state, flex_sn_scan_final_state], ids=["eager", "hop"]
)
def test_final_state_gradients_match_hand_written_loop(scan):
    core, ni, ns, no, args = _make_case("two_states", requires_grad=True)
    outputs, _, finals = reference_scan(core, ni, ns, no, *args)
    expected = _grads((*outputs, *finals), args)
    actual = _grads(scan(core, ni, ns, no, *args), args)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scan", [eager_scan, flex_sn_scan], ids=["eager_scan", "flex_sn_scan"])
@pytest.mark.parametrize("case", ["two_states", "two_in_two_out", "lifted_freevars"])
def test_gradcheck_fp64(scan, case):
    core, ni, ns, no, args = _make_case(case, T=4, N=3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: scan(core, ni, ns, no, *a), args)


def test_captured_parameter_gets_gradient_when_inputs_do_not_require_grad():
    # The autograd implementation must run whenever grad mode is on: the only tensor
    # that requires grad here is hidden in core's closure.
    w = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

    def core(x, v):
        h = v * w + x
        return torch.sigmoid(h), h * 0.5

    x_seq, v0 = torch.rand(4, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    (expected,) = torch.autograd.grad(
        sum(t.sum() for t in reference_scan(core, 1, 1, 1, x_seq, v0)[0]), w
    )
    (actual,) = torch.autograd.grad(flex_sn_scan(core, 1, 1, 1, x_seq, v0)[0].sum(), w)
    torch.testing.assert_close(actual, expected)


# -- T == 0 ----------------------------------------------------------------------------


def test_eager_scan_empty_sequence_uses_templates_without_running_core():
    def core_must_not_run(*_):
        raise AssertionError("core ran on an empty sequence")

    x = torch.zeros(0, 4, 2, dtype=torch.float64)
    y = torch.zeros(0, 4, 2, dtype=torch.float64)
    v0 = torch.ones(4, 2, dtype=torch.float64)
    specs = (((4, 2), torch.float16), ([4], torch.bool, "cpu"))
    out, flag, v_seq = eager_scan(core_must_not_run, 2, 1, 2, x, y, v0, output_template_specs=specs)
    assert (out.shape, out.dtype) == ((0, 4, 2), torch.float16)
    assert (flag.shape, flag.dtype, flag.device) == ((0, 4), torch.bool, torch.device("cpu"))
    assert (v_seq.shape, v_seq.dtype) == ((0, 4, 2), torch.float64)

    out, flag, v_last = eager_scan_final_state(
        core_must_not_run, 2, 1, 2, x, y, v0, output_template_specs=specs
    )
    assert out.shape == (0, 4, 2) and flag.shape == (0, 4)
    torch.testing.assert_close(v_last, v0)
    assert v_last.data_ptr() != v0.data_ptr(), "final state must be a clone"


@pytest.mark.parametrize("scan", [eager_scan, eager_scan_final_state])
def test_eager_scan_empty_sequence_without_templates_is_an_error(scan):
    with pytest.raises(ValueError, match="output_template_specs"):
        scan(lif_core, 1, 1, 1, torch.zeros(0, 3), torch.zeros(3))


@pytest.mark.parametrize(
    "specs",
    [((3,),), (((3,), torch.float32), ((3,), torch.float32)), (((3,), "float32"),)],
    ids=["no_dtype", "too_many", "dtype_not_torch_dtype"],
)
def test_bad_templates_are_errors(specs):
    with pytest.raises((ValueError, TypeError), match=r"output_template_specs"):
        eager_scan(
            lif_core, 1, 1, 1, torch.zeros(0, 3), torch.zeros(3), output_template_specs=specs
        )


def test_empty_sequence_gradients_are_zeros():
    x = torch.zeros(0, 3, requires_grad=True)
    v0 = torch.rand(3, requires_grad=True)
    out, v_last = eager_scan_final_state(
        smooth_lif_core, 1, 1, 1, x, v0, output_template_specs=(((3,), torch.float32),)
    )
    grad_x, grad_v = torch.autograd.grad(out.sum() + v_last.sum(), (x, v0))
    assert grad_x.shape == (0, 3)
    torch.testing.assert_close(grad_v, torch.ones(3))  # the clone passes its gradient on
    out, v_seq = eager_scan(
        smooth_lif_core, 1, 1, 1, x, v0, output_template_specs=(((3,), torch.float32),)
    )
    grad_x, grad_v = torch.autograd.grad(out.sum() + v_seq.sum(), (x, v0))
    torch.testing.assert_close(grad_v, torch.zeros(3))


def test_flex_sn_scan_empty_sequence_learns_output_metadata():
    def core(x, v):
        return (x > v), (x + v).double(), v * 2.0

    x = torch.zeros(0, 2, 3)
    v0 = torch.ones(2, 3)
    spikes, wide, v_seq = flex_sn_scan(core, 1, 1, 2, x, v0)
    assert (spikes.shape, spikes.dtype) == ((0, 2, 3), torch.bool)
    assert (wide.shape, wide.dtype) == ((0, 2, 3), torch.float64)
    assert v_seq.shape == (0, 2, 3)
    spikes, wide, v_last = flex_sn_scan_final_state(core, 1, 1, 2, x, v0)
    torch.testing.assert_close(v_last, v0)


# -- argument errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "args", "error"),
    [
        ((0, 1, 1), (torch.zeros(2, 3), torch.zeros(3)), ValueError),
        ((1, 1, 0), (torch.zeros(2, 3), torch.zeros(3)), ValueError),
        ((1, 1, 1), (torch.zeros(2, 3),), ValueError),
        ((1.0, 1, 1), (torch.zeros(2, 3), torch.zeros(3)), TypeError),
        ((2, 1, 1), (torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(3)), ValueError),
        ((1, 1, 1), (torch.zeros(()), torch.zeros(3)), ValueError),
        ((1, 1, 1), (torch.zeros(2, 3), 0.0), TypeError),
    ],
    ids=[
        "no_inputs",
        "no_outputs",
        "missing_state",
        "float_count",
        "different_T",
        "input_without_time",
        "state_not_tensor",
    ],
)
@pytest.mark.parametrize("scan", [eager_scan, flex_sn_scan], ids=["eager_scan", "flex_sn_scan"])
def test_bad_arguments_are_clear_errors(scan, counts, args, error):
    with pytest.raises(error):
        scan(lif_core, *counts, *args)


@pytest.mark.parametrize("scan", [eager_scan, flex_sn_scan], ids=["eager_scan", "flex_sn_scan"])
def test_core_returning_the_wrong_count_is_an_error(scan):
    with pytest.raises(ValueError, match="num_outputs \\+ num_states"):
        scan(lambda x, v: (x,), 1, 1, 1, torch.zeros(2, 3), torch.zeros(3))


# -- build_hop_kernel ------------------------------------------------------------------


def test_kernel_both_call_forms_match_reference():
    core, ni, ns, no, args = _make_case("two_states")
    kernel = build_hop_kernel(core, num_inputs=ni, num_states=ns, num_outputs=no)
    outputs, state_seqs, finals = reference_scan(core, ni, ns, no, *args)
    _assert_all_close(kernel(*args), (*outputs, *state_seqs))
    _assert_all_close(kernel.final_state(*args), (*outputs, *finals))


def test_kernel_accepts_the_full_factory_signature():
    example = (torch.zeros(3), torch.zeros(3))
    kernel = build_hop_kernel(
        lif_core,
        num_inputs=1,
        num_states=1,
        num_outputs=1,
        example_inputs=example,
        requires_grad=(True, False),
        backend="hop",
    )
    x_seq = torch.tensor([[0.6, 2.2, 1.0], [0.6, 0.0, 1.0]])
    spikes, v_last = kernel.final_state(x_seq, torch.zeros(3))
    # LIF tau=2 from 0: H1 = x/2 = (0.3, 1.1, 0.5); spike at 1.1, reset to 0;
    # H2 = V + (x - V)/2 = (0.45, 0.0, 0.75).
    torch.testing.assert_close(spikes, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(v_last, torch.tensor([0.45, 0.0, 0.75]))


def test_kernel_empty_sequence_both_call_forms():
    kernel = build_hop_kernel(smooth_lif_core, num_inputs=1, num_states=1, num_outputs=1)
    x = torch.zeros(0, 4, requires_grad=True)
    v0 = torch.rand(4, requires_grad=True)
    spikes, v_seq = kernel(x, v0)
    assert spikes.shape == (0, 4) and v_seq.shape == (0, 4)
    spikes, v_last = kernel.final_state(x, v0)
    assert spikes.shape == (0, 4)
    torch.testing.assert_close(v_last, v0)
    assert v_last.data_ptr() != v0.data_ptr()
    grad_x, grad_v = torch.autograd.grad(spikes.sum() + 2 * v_last.sum(), (x, v0))
    assert grad_x.shape == (0, 4)
    torch.testing.assert_close(grad_v, torch.full((4,), 2.0))


def test_kernel_nn_module_core_parameters_get_gradients():
    class Core(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decay = torch.nn.Parameter(torch.tensor(0.6))

        def forward(self, x, v):
            h = self.decay * v + x
            return torch.sigmoid(h), h * 0.5

    core = Core()
    kernel = build_hop_kernel(core, num_inputs=1, num_states=1, num_outputs=1)
    x_seq, v0 = torch.rand(5, 3), torch.zeros(3)
    (expected,) = torch.autograd.grad(
        reference_scan(core, 1, 1, 1, x_seq, v0)[0][0].sum(), core.decay
    )
    (actual,) = torch.autograd.grad(kernel(x_seq, v0)[0].sum(), core.decay)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": "triton"}, ValueError, "'hop' backend only"),
        ({"num_states": -1}, ValueError, "num_states"),
        ({"example_inputs": (torch.zeros(3),)}, ValueError, "example_inputs"),
        ({"requires_grad": (True,)}, ValueError, "requires_grad"),
    ],
    ids=["other_backend", "negative_states", "example_count", "requires_grad_count"],
)
def test_build_hop_kernel_rejects_bad_arguments(kwargs, error, match):
    arguments = {"num_inputs": 1, "num_states": 1, "num_outputs": 1, **kwargs}
    with pytest.raises(error, match=match):
        build_hop_kernel(lif_core, **arguments)


def test_wrong_core_return_count_fails_at_the_first_call_not_at_construction():
    calls = []

    def core(x, v):
        calls.append(1)
        return (x,)

    kernel = build_hop_kernel(
        core,
        num_inputs=1,
        num_states=1,
        num_outputs=1,
        example_inputs=(torch.zeros(3), torch.zeros(3)),
    )
    assert calls == []  # constructing runs none of the user's code
    with pytest.raises(ValueError, match="num_outputs \\+ num_states"):
        kernel(torch.zeros(2, 3), torch.zeros(3))


def test_kernel_call_with_wrong_tensor_count_is_an_error():
    kernel = build_hop_kernel(lif_core, num_inputs=1, num_states=1, num_outputs=1)
    with pytest.raises(TypeError, match="2 tensors"):
        kernel(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="2 tensors"):
        kernel.final_state(torch.zeros(2, 3), torch.zeros(3), torch.zeros(3))


# -- CUDA ------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["lif", "two_states", "lifted_freevars"])
def test_kernel_on_cuda_matches_cpu(case):
    core, ni, ns, no, args = _make_case(case, T=16, N=1000)
    expected = eager_scan(core, ni, ns, no, *args)
    cuda_args = [a.cuda() for a in args]
    if case == "lifted_freevars":  # the kernel contract has no lifted tensors: close over them
        w, b = cuda_args[2:]
        kernel = build_hop_kernel(
            lambda x, v: core(x, v, w, b), num_inputs=ni, num_states=ns, num_outputs=no
        )
        cuda_args = cuda_args[:2]
    else:
        kernel = build_hop_kernel(core, num_inputs=ni, num_states=ns, num_outputs=no)
    actual = kernel(*cuda_args)
    assert all(t.is_cuda for t in actual)
    _assert_all_close([t.cpu() for t in actual], expected)
