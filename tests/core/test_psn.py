"""The PSN family (SPEC section 3): PSN, MaskedPSN, SlidingPSN.

Hand-computed cases use an identity "surrogate" (any callable is accepted), so the
module returns ``H`` itself and the numbers in the tests are exact.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from sj_core.neuron.psn import PSN, MaskedPSN, SlidingPSN
from sj_core.surrogate import ATan


def identity(h: torch.Tensor) -> torch.Tensor:
    return h


def set_params(module: torch.nn.Module, **values: torch.Tensor) -> None:
    with torch.no_grad():
        for name, value in values.items():
            getattr(module, name).copy_(value)


def run_single_steps(module: torch.nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    module.reset()
    return torch.stack([module(x) for x in x_seq])


# -- PSN -------------------------------------------------------------------------------


def test_psn_hand_computed():
    psn = PSN(T=2, surrogate_function=identity)
    set_params(
        psn, weight=torch.tensor([[1.0, 2.0], [3.0, 4.0]]), bias=torch.tensor([[-1.0], [0.5]])
    )
    x_seq = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # [T=2, N=1, 2]
    # H = W X + B with X = [[1, 2], [3, 4]]
    expected = torch.tensor([[[1 + 6 - 1.0, 2 + 8 - 1.0]], [[3 + 12 + 0.5, 6 + 16 + 0.5]]])
    assert torch.equal(psn(x_seq), expected)


def test_psn_spikes_are_heaviside_of_h():
    psn = PSN(T=2)
    set_params(
        psn, weight=torch.tensor([[1.0, 0.0], [0.0, -1.0]]), bias=torch.tensor([[-1.0], [0.0]])
    )
    x_seq = torch.tensor([[0.5, 1.0, 2.0], [1.0, 0.0, -3.0]])
    # H = [[-0.5, 0, 1], [-1, 0, 3]] -> spike at H >= 0
    assert torch.equal(psn(x_seq), torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))


def test_psn_init_and_state_dict():
    psn = PSN(T=5)
    assert list(psn.state_dict()) == ["weight", "bias"]
    assert psn.weight.shape == (5, 5) and psn.bias.shape == (5, 1)
    assert torch.equal(psn.bias.detach(), torch.full((5, 1), -1.0))
    # Kaiming-uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = T.
    assert psn.weight.abs().max() <= 5**-0.5
    assert psn.step_mode == "m"
    with pytest.raises(ValueError, match="step_mode"):
        psn.step_mode = "s"


def test_psn_rejects_wrong_T():
    with pytest.raises(ValueError, match="T=3"):
        PSN(T=3)(torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        PSN(T=3)(torch.rand(3))


@pytest.mark.parametrize("T", [0, -1, 2.0, True], ids=["zero", "negative", "float", "bool"])
def test_psn_rejects_bad_T(T):
    with pytest.raises(ValueError, match="T must be a positive int"):
        PSN(T=T)


def test_default_surrogate_is_fresh_per_instance():
    a, b = PSN(2), PSN(2)
    assert isinstance(a.surrogate_function, ATan)
    assert a.surrogate_function is not b.surrogate_function
    assert MaskedPSN(1, 2).surrogate_function is not MaskedPSN(1, 2).surrogate_function
    assert SlidingPSN(2).surrogate_function is not SlidingPSN(2).surrogate_function


def test_psn_gradcheck():
    psn = PSN(T=3, surrogate_function=ATan(spiking=False)).double()
    x_seq = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    weight = psn.weight.detach().clone().requires_grad_()
    bias = torch.randn(3, 1, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return functional_call(psn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x_seq, weight, bias))


# -- MaskedPSN ---------------------------------------------------------------------------

WEIGHT_3X3 = torch.arange(1.0, 10.0).view(3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_masked_psn_mask0():
    # mask0[i][j] = 1 for j <= i <= j + k - 1
    assert torch.equal(MaskedPSN(k=2, T=3).mask0, torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 1, 1]]))
    assert torch.equal(MaskedPSN(k=1, T=3).mask0, torch.eye(3))
    assert torch.equal(MaskedPSN(k=3, T=3).mask0, torch.ones(3, 3).tril())
    assert torch.equal(MaskedPSN(k=2, T=3).mask1, torch.ones(3, 3))


@pytest.mark.parametrize(
    "lambda_, expected",
    [
        (0.0, [[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]),
        (0.5, [[1.0, 1, 1.5], [4, 5, 3], [3.5, 8, 9]]),
        (1.0, [[1.0, 0, 0], [4, 5, 0], [0, 8, 9]]),
        (2.0, [[1.0, 0, 0], [4, 5, 0], [0, 8, 9]]),
    ],
    ids=["lambda0", "lambda0.5", "lambda1", "lambda2"],
)
def test_masked_psn_masked_weight(lambda_, expected):
    psn = MaskedPSN(k=2, T=3, lambda_init=lambda_)
    set_params(psn, weight=WEIGHT_3X3)
    assert torch.equal(psn.masked_weight(), torch.tensor(expected))


def test_masked_psn_lambda_property_fills_buffer_in_place():
    psn = MaskedPSN(k=2, T=3)
    buffer = psn._lambda_
    psn.lambda_ = 0.25
    assert psn.lambda_ is buffer and psn.lambda_.item() == 0.25 and psn.lambda_.dim() == 0
    assert "lambda_=0.25, T=3, k=2" in repr(psn)


@pytest.mark.parametrize(
    "lambda_, expected",
    [
        # off-band entries scaled by 1 - lambda
        (0.25, [[1.0, 1.5, 2.25], [4, 5, 4.5], [5.25, 8, 9]]),
        # no clamping in the static formula: 1 - 2 = -1 off the band
        (2.0, [[1.0, -2, -3], [4, 5, -6], [-7, 8, 9]]),
    ],
    ids=["lambda0.25", "lambda2-unclamped"],
)
def test_masked_psn_gen_masked_weight_is_the_plain_formula(lambda_, expected):
    mask0 = MaskedPSN(k=2, T=3).mask0
    out = MaskedPSN.gen_masked_weight(torch.tensor(lambda_), mask0, torch.ones(3, 3), WEIGHT_3X3)
    assert torch.equal(out, torch.tensor(expected))


def test_masked_psn_multi_step_hand_computed():
    psn = MaskedPSN(k=2, T=3, lambda_init=1.0, surrogate_function=identity, step_mode="m")
    set_params(psn, weight=WEIGHT_3X3)
    x_seq = torch.tensor([[1.0], [2.0], [3.0]])
    # masked W = [[1, 0, 0], [4, 5, 0], [0, 8, 9]], bias -1
    expected = torch.tensor([[1.0 - 1], [4 + 10 - 1.0], [16 + 27 - 1.0]])
    assert torch.equal(psn(x_seq), expected)
    psn.step_mode = "s"
    assert torch.equal(run_single_steps(psn, x_seq), expected)


def test_masked_psn_single_matches_multi():
    torch.manual_seed(0)
    psn = MaskedPSN(k=3, T=6, lambda_init=1.0, surrogate_function=ATan(spiking=False)).double()
    x_seq = torch.randn(6, 4, 5, dtype=torch.float64)
    psn.step_mode = "m"
    multi = psn(x_seq)
    psn.step_mode = "s"
    single = run_single_steps(psn, x_seq)
    torch.testing.assert_close(single, multi, rtol=1e-12, atol=1e-12)


def test_masked_psn_single_step_needs_lambda_one():
    psn = MaskedPSN(k=2, T=3, lambda_init=0.5)
    with pytest.raises(ValueError, match="lambda_ >= 1"):
        psn(torch.rand(4))
    psn.lambda_ = 1.0
    psn(torch.rand(4))


def test_masked_psn_overflow_and_reset():
    psn = MaskedPSN(k=2, T=2, lambda_init=1.0)
    x = torch.rand(3)
    psn(x)
    psn(x)
    assert psn.time_step == 2 and len(psn.queue) == 2
    with pytest.raises(OverflowError, match="T=2"):
        psn(x)
    assert psn.time_step == 2 and len(psn.queue) == 2  # the failed call changed nothing
    psn.reset()
    assert psn.time_step == 0 and psn.queue == []
    psn(x)


def test_masked_psn_queue_keeps_last_k():
    psn = MaskedPSN(k=2, T=4, lambda_init=1.0)
    xs = [torch.full((2,), float(i)) for i in range(3)]
    for x in xs:
        psn(x)
    assert len(psn.queue) == 2
    assert torch.equal(torch.stack(psn.queue), torch.stack(xs[1:]))


def test_masked_psn_state_dict_keys_and_roundtrip():
    a = MaskedPSN(k=2, T=3, lambda_init=0.3)
    assert list(a.state_dict()) == ["weight", "bias", "_lambda_", "mask0", "mask1"]
    b = MaskedPSN(k=2, T=3)
    b.load_state_dict(a.state_dict())
    assert b.lambda_.item() == pytest.approx(0.3)
    assert torch.equal(b.weight, a.weight)


def test_masked_psn_gradcheck_multi_step():
    psn = MaskedPSN(k=2, T=4, lambda_init=0.5, surrogate_function=ATan(spiking=False))
    psn = psn.double()
    psn.step_mode = "m"
    x_seq = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, 1, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return functional_call(psn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x_seq, weight, bias))


def test_masked_psn_gradcheck_single_step():
    psn = MaskedPSN(k=2, T=3, lambda_init=1.0, surrogate_function=ATan(spiking=False)).double()
    x_seq = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, 1, dtype=torch.float64, requires_grad=True)

    def f(x_seq, w, b):
        psn.reset()
        return torch.stack([functional_call(psn, {"weight": w, "bias": b}, (x,)) for x in x_seq])

    assert torch.autograd.gradcheck(f, (x_seq, weight, bias))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"k": 0, "T": 3}, "k must be a positive int"),
        ({"k": 2, "T": 0}, "T must be a positive int"),
        ({"k": 2, "T": 3, "lambda_init": "0"}, "lambda_init must be a float"),
        ({"k": 2, "T": 3, "step_mode": "x"}, "step_mode"),
    ],
    ids=["k0", "T0", "lambda-str", "bad-step-mode"],
)
def test_masked_psn_rejects_bad_arguments(kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        MaskedPSN(**kwargs)


def test_masked_psn_multi_step_rejects_wrong_T():
    with pytest.raises(ValueError, match="T=3"):
        MaskedPSN(k=2, T=3, step_mode="m")(torch.rand(2, 4))


# -- SlidingPSN --------------------------------------------------------------------------


def test_sliding_psn_exp_init():
    psn = SlidingPSN(k=4)
    assert torch.equal(psn.weight.detach(), torch.tensor([0.125, 0.25, 0.5, 1.0]))
    assert psn.bias.dim() == 0 and psn.bias.item() == -1.0


def test_sliding_psn_kaiming_init():
    psn = SlidingPSN(k=4, exp_init=False)
    assert psn.weight.shape == (4,)
    assert psn.weight.abs().max() <= 4**-0.5  # fan_in = k on the [1, k] tensor


def test_sliding_psn_gen_gemm_weight():
    psn = SlidingPSN(k=3)
    set_params(psn, weight=torch.tensor([1.0, 2.0, 3.0]))
    expected = torch.tensor(
        [[3.0, 0, 0, 0, 0], [2, 3, 0, 0, 0], [1, 2, 3, 0, 0], [0, 1, 2, 3, 0], [0, 0, 1, 2, 3]]
    )
    assert torch.equal(psn.gen_gemm_weight(5), expected)
    # k > T: only the last weights fit.
    assert torch.equal(psn.gen_gemm_weight(2), torch.tensor([[3.0, 0], [2, 3]]))


# H[t] = 1 X[t-2] + 2 X[t-1] + 3 X[t] - 1 with X = 1, 2, 3, 4
SLIDING_EXPECTED = torch.tensor([[3.0 - 1], [2 + 6 - 1.0], [1 + 4 + 9 - 1.0], [2 + 6 + 12 - 1.0]])


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_multi_step_hand_computed(backend):
    psn = SlidingPSN(k=3, surrogate_function=identity, step_mode="m", backend=backend)
    set_params(psn, weight=torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(psn(torch.tensor([[1.0], [2.0], [3.0], [4.0]])), SLIDING_EXPECTED)


def test_sliding_psn_single_step_hand_computed():
    psn = SlidingPSN(k=3, surrogate_function=identity, step_mode="s")
    set_params(psn, weight=torch.tensor([1.0, 2.0, 3.0]))
    out = run_single_steps(psn, torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    assert torch.equal(out, SLIDING_EXPECTED)
    assert len(psn.queue) == 3
    psn.reset()
    assert psn.queue == []


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_single_matches_multi(backend):
    torch.manual_seed(1)
    psn = SlidingPSN(k=3, exp_init=False, surrogate_function=ATan(spiking=False)).double()
    x_seq = torch.randn(7, 2, 3, dtype=torch.float64)
    single = run_single_steps(psn, x_seq)
    psn.step_mode = "m"
    psn.backend = backend
    torch.testing.assert_close(psn(x_seq), single, rtol=1e-12, atol=1e-12)


def test_sliding_psn_gemm_equals_conv_with_gradients():
    torch.manual_seed(2)
    psn = SlidingPSN(k=4, exp_init=False, surrogate_function=ATan(spiking=False), step_mode="m")
    x_seq = torch.randn(9, 3, 5)
    results = {}
    for backend in ("gemm", "conv"):
        psn.backend = backend
        psn.zero_grad()
        x = x_seq.clone().requires_grad_()
        out = psn(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[backend] = (out, x.grad, psn.weight.grad.clone(), psn.bias.grad.clone())
    for gemm, conv in zip(results["gemm"], results["conv"], strict=True):
        torch.testing.assert_close(conv, gemm, rtol=1e-5, atol=1e-6)


def test_sliding_psn_spikes_gemm_equals_conv():
    psn = SlidingPSN(k=2, step_mode="m")
    x_seq = torch.tensor([[1.0, 0.25], [0.5, 0.75], [1.5, 0.0]])
    # W = (1/2, 1): H = [1, 0.25]-1, [0.5+0.5, 0.125+0.75]-1, [0.25+1.5, 0.375]-1
    expected = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    for backend in ("gemm", "conv"):
        psn.backend = backend
        assert torch.equal(psn(x_seq), expected)


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_empty_sequence(backend):
    psn = SlidingPSN(k=3, step_mode="m", backend=backend)
    assert psn(torch.rand(0, 2, 3)).shape == (0, 2, 3)


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_gradcheck_multi_step(backend):
    psn = SlidingPSN(k=3, surrogate_function=ATan(spiking=False), step_mode="m", backend=backend)
    psn = psn.double()
    x_seq = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn((), dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return functional_call(psn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x_seq, weight, bias))


def test_sliding_psn_gradcheck_single_step():
    psn = SlidingPSN(k=2, surrogate_function=ATan(spiking=False)).double()
    x_seq = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn((), dtype=torch.float64, requires_grad=True)

    def f(x_seq, w, b):
        psn.reset()
        return torch.stack([functional_call(psn, {"weight": w, "bias": b}, (x,)) for x in x_seq])

    assert torch.autograd.gradcheck(f, (x_seq, weight, bias))


def test_sliding_psn_state_dict_and_backend_validation():
    psn = SlidingPSN(k=3)
    assert list(psn.state_dict()) == ["weight", "bias"]
    assert SlidingPSN.supported_backends == ("gemm", "conv")
    with pytest.raises(ValueError, match=r"\('gemm', 'conv'\)"):
        SlidingPSN(k=3, backend="fft")
    with pytest.raises(ValueError, match="k must be a positive int"):
        SlidingPSN(k=0)
    with pytest.raises(TypeError, match="exp_init must be a bool"):
        SlidingPSN(k=2, exp_init=1)
