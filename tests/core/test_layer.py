"""sj_core.layer: step-mode-aware torch layers, containers and time-shared dropout.

Every layer is compared with the plain torch layer holding the same weights: in step
mode 's' it must be that layer; in 'm' it must equal the torch layer applied to each
step of the sequence.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

import sj_core.functional as functional
import sj_core.layer as layer
from sj_core import neuron

T = 3

# (id, our layer factory(step_mode), torch layer factory, per-step input shape)
LAYER_CASES: list[tuple[str, Callable, Callable, tuple[int, ...]]] = [
    (
        "linear",
        lambda m: layer.Linear(5, 3, step_mode=m),
        lambda: nn.Linear(5, 3),
        (2, 5),
    ),
    (
        "linear-no-bias-3d-step",
        lambda m: layer.Linear(5, 3, bias=False, step_mode=m),
        lambda: nn.Linear(5, 3, bias=False),
        (2, 4, 5),
    ),
    (
        "conv2d",
        lambda m: layer.Conv2d(3, 4, 3, stride=2, padding=1, step_mode=m),
        lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
        (2, 3, 7, 6),
    ),
    (
        "conv2d-groups-dilation-reflect",
        lambda m: layer.Conv2d(
            4,
            6,
            3,
            padding=2,
            dilation=2,
            groups=2,
            bias=False,
            padding_mode="reflect",
            step_mode=m,
        ),
        lambda: nn.Conv2d(
            4, 6, 3, padding=2, dilation=2, groups=2, bias=False, padding_mode="reflect"
        ),
        (2, 4, 5, 5),
    ),
    (
        "maxpool2d",
        lambda m: layer.MaxPool2d(2, step_mode=m),
        lambda: nn.MaxPool2d(2),
        (2, 3, 6, 5),
    ),
    (
        "maxpool2d-ceil-padding",
        lambda m: layer.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True, step_mode=m),
        lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        (2, 3, 7, 6),
    ),
    (
        "avgpool2d",
        lambda m: layer.AvgPool2d(2, step_mode=m),
        lambda: nn.AvgPool2d(2),
        (2, 3, 6, 5),
    ),
    (
        "avgpool2d-no-pad-count",
        lambda m: layer.AvgPool2d(3, stride=1, padding=1, count_include_pad=False, step_mode=m),
        lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        (2, 3, 5, 5),
    ),
    (
        "avgpool2d-divisor",
        lambda m: layer.AvgPool2d(2, divisor_override=3, step_mode=m),
        lambda: nn.AvgPool2d(2, divisor_override=3),
        (2, 3, 4, 4),
    ),
    (
        "adaptive-avgpool2d",
        lambda m: layer.AdaptiveAvgPool2d((2, 3), step_mode=m),
        lambda: nn.AdaptiveAvgPool2d((2, 3)),
        (2, 3, 7, 8),
    ),
    (
        "batchnorm2d-eval",
        lambda m: layer.BatchNorm2d(3, step_mode=m).eval(),
        lambda: nn.BatchNorm2d(3).eval(),
        (2, 3, 4, 4),
    ),
    (
        "flatten",
        lambda m: layer.Flatten(step_mode=m),
        lambda: nn.Flatten(),
        (2, 3, 4, 5),
    ),
]


def _randomize(module: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial running statistics and affine parameters."""
    if isinstance(module, nn.BatchNorm2d):
        with torch.no_grad():
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-1, 1)
    return module


def _pair(make_ours: Callable, make_torch: Callable, step_mode: str):
    """Our layer and the torch layer with identical weights (loaded through state_dict)."""
    reference = _randomize(make_torch())
    ours = make_ours(step_mode)
    ours.load_state_dict(reference.state_dict())  # strict: keys must match
    return ours, reference


@pytest.mark.parametrize(
    "make_ours, make_torch, step_shape",
    [c[1:] for c in LAYER_CASES],
    ids=[c[0] for c in LAYER_CASES],
)
def test_single_step_is_the_torch_layer(make_ours, make_torch, step_shape):
    torch.manual_seed(0)
    ours, reference = _pair(make_ours, make_torch, "s")
    x = torch.randn(step_shape)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "make_ours, make_torch, step_shape",
    [c[1:] for c in LAYER_CASES],
    ids=[c[0] for c in LAYER_CASES],
)
def test_multi_step_equals_torch_layer_per_step(make_ours, make_torch, step_shape):
    torch.manual_seed(0)
    ours, reference = _pair(make_ours, make_torch, "m")
    x_seq = torch.randn(T, *step_shape, requires_grad=True)
    y_seq = ours(x_seq)
    expected = torch.stack([reference(x_seq[t]) for t in range(T)])
    assert y_seq.shape == expected.shape
    torch.testing.assert_close(y_seq, expected, rtol=1e-5, atol=1e-6)

    # Gradients to the input and to the (shared) parameters match as well.
    grad_out = torch.randn_like(expected)
    params = list(ours.parameters())
    ref_params = list(reference.parameters())
    got = torch.autograd.grad(y_seq, [x_seq, *params], grad_out)
    want = torch.autograd.grad(expected, [x_seq, *ref_params], grad_out)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make_ours, make_torch", [c[1:3] for c in LAYER_CASES], ids=[c[0] for c in LAYER_CASES]
)
def test_state_dict_keys_match_torch(make_ours, make_torch):
    ours, reference = make_ours("m"), make_torch()
    assert list(ours.state_dict().keys()) == list(reference.state_dict().keys())
    # ...and a checkpoint of ours loads into the torch layer.
    reference.load_state_dict(ours.state_dict())


@pytest.mark.parametrize(
    "make_ours, step_shape",
    [(c[1], c[3]) for c in LAYER_CASES],
    ids=[c[0] for c in LAYER_CASES],
)
def test_repr_and_isinstance(make_ours, step_shape):
    ours = make_ours("m")
    assert "step_mode=m" in repr(ours)
    assert isinstance(ours, nn.Module)
    ours.step_mode = "s"
    assert "step_mode=s" in repr(ours)
    with pytest.raises(ValueError, match="step_mode"):
        ours.step_mode = "x"


WRONG_RANK_CASES = [
    ("conv2d-4d", lambda: layer.Conv2d(3, 4, 3, step_mode="m"), (2, 3, 5, 5), r"\[T, N, C, H, W\]"),
    (
        "conv2d-6d",
        lambda: layer.Conv2d(3, 4, 3, step_mode="m"),
        (1, 2, 2, 3, 5, 5),
        r"\[T, N, C, H, W\]",
    ),
    (
        "batchnorm2d-4d",
        lambda: layer.BatchNorm2d(3, step_mode="m"),
        (2, 3, 5, 5),
        r"\[T, N, C, H, W\]",
    ),
    ("maxpool2d-4d", lambda: layer.MaxPool2d(2, step_mode="m"), (2, 3, 4, 4), r"\[T, N, C, H, W\]"),
    ("avgpool2d-4d", lambda: layer.AvgPool2d(2, step_mode="m"), (2, 3, 4, 4), r"\[T, N, C, H, W\]"),
    (
        "adaptive-avgpool2d-4d",
        lambda: layer.AdaptiveAvgPool2d(1, step_mode="m"),
        (2, 3, 4, 4),
        r"\[T, N, C, H, W\]",
    ),
    ("linear-2d", lambda: layer.Linear(4, 3, step_mode="m"), (2, 4), r"\[T, N, \*, in_features\]"),
    ("flatten-1d", lambda: layer.Flatten(step_mode="m"), (4,), r"\[T, N, \*\]"),
    ("dropout-1d", lambda: layer.Dropout(0.5, step_mode="m"), (4,), r"\[T, N, \*\]"),
    ("seq-to-ann-1d", lambda: layer.SeqToANNContainer(nn.Identity()), (4,), r"\[T, N, \*\]"),
    ("multi-step-1d", lambda: layer.MultiStepContainer(nn.Identity()), (4,), r"\[T, N, \*\]"),
]


@pytest.mark.parametrize(
    "make, shape, layout", [c[1:] for c in WRONG_RANK_CASES], ids=[c[0] for c in WRONG_RANK_CASES]
)
def test_wrong_rank_in_multi_step_mode_names_the_layout(make, shape, layout):
    module = make()
    with pytest.raises(ValueError, match=layout):
        module(torch.randn(shape))


# -- BatchNorm2d ---------------------------------------------------------------------------


def test_batchnorm2d_multi_step_statistics_are_over_t_times_n():
    torch.manual_seed(0)
    ours = layer.BatchNorm2d(3, momentum=0.1, step_mode="m")
    reference = nn.BatchNorm2d(3, momentum=0.1)
    x_seq = torch.randn(T, 4, 3, 5, 5) * 2 + 1
    y_seq = ours(x_seq)
    folded = reference(x_seq.reshape(T * 4, 3, 5, 5)).reshape(T, 4, 3, 5, 5)
    torch.testing.assert_close(y_seq, folded)
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.running_var, reference.running_var)
    assert ours.num_batches_tracked.item() == 1

    # Independently: the batch statistics pool every step, sample, row and column.
    mean = x_seq.mean(dim=(0, 1, 3, 4))
    var_unbiased = x_seq.var(dim=(0, 1, 3, 4), unbiased=True)
    torch.testing.assert_close(ours.running_mean, 0.1 * mean)
    torch.testing.assert_close(ours.running_var, 0.9 * torch.ones(3) + 0.1 * var_unbiased)
    var_biased = x_seq.var(dim=(0, 1, 3, 4), unbiased=False)
    manual = (x_seq - mean.view(3, 1, 1)) / torch.sqrt(var_biased.view(3, 1, 1) + 1e-5)
    torch.testing.assert_close(y_seq, manual, rtol=1e-4, atol=1e-5)


def test_batchnorm2d_single_step_rejects_5d_like_torch():
    with pytest.raises(ValueError):
        layer.BatchNorm2d(3)(torch.randn(2, 2, 3, 4, 4))


# -- MaxPool2d(return_indices=True) ------------------------------------------------------------


def test_maxpool2d_return_indices_multi_step():
    torch.manual_seed(0)
    ours = layer.MaxPool2d(2, return_indices=True, step_mode="m")
    reference = nn.MaxPool2d(2, return_indices=True)
    x_seq = torch.randn(T, 2, 3, 4, 6)
    out, indices = ours(x_seq)
    for t in range(T):
        ref_out, ref_indices = reference(x_seq[t])
        torch.testing.assert_close(out[t], ref_out, rtol=0, atol=0)
        torch.testing.assert_close(indices[t], ref_indices, rtol=0, atol=0)


# -- Flatten -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, step_mode, in_shape, out_shape",
    [
        ({}, "s", (2, 3, 4, 5), (2, 60)),
        ({}, "m", (6, 2, 3, 4, 5), (6, 2, 60)),
        ({"start_dim": 2}, "m", (6, 2, 3, 4, 5), (6, 2, 3, 20)),
        ({"start_dim": 0}, "m", (6, 2, 3, 4, 5), (6, 120)),
        ({"start_dim": 1, "end_dim": 2}, "m", (6, 2, 3, 4, 5), (6, 2, 12, 5)),
        ({"start_dim": -3, "end_dim": -2}, "m", (6, 2, 3, 4, 5), (6, 2, 12, 5)),
        ({"start_dim": -3, "end_dim": -2}, "s", (2, 3, 4, 5), (2, 12, 5)),
        ({}, "m", (6, 2, 7), (6, 2, 7)),
    ],
    ids=[
        "s-default",
        "m-default",
        "m-start2",
        "m-start0-merges-batch-not-time",
        "m-start1-end2",
        "m-negative-dims",
        "s-negative-dims",
        "m-already-flat",
    ],
)
def test_flatten_shapes(kwargs, step_mode, in_shape, out_shape):
    x = torch.arange(torch.Size(in_shape).numel(), dtype=torch.float32).reshape(in_shape)
    y = layer.Flatten(**kwargs, step_mode=step_mode)(x)
    assert tuple(y.shape) == out_shape
    # Flatten never reorders elements.
    torch.testing.assert_close(y.reshape(-1), x.reshape(-1), rtol=0, atol=0)


def test_flatten_dim_out_of_range_for_one_step():
    with pytest.raises(IndexError, match="one step of rank 4"):
        layer.Flatten(start_dim=4, step_mode="m")(torch.randn(2, 2, 3, 4, 5))


# -- containers ----------------------------------------------------------------------------


def test_seq_to_ann_container_folds_time_into_batch():
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
    block = layer.SeqToANNContainer(copy.deepcopy(conv), copy.deepcopy(norm))
    x_seq = torch.randn(T, 2, 2, 5, 5)
    expected = norm(conv(x_seq.reshape(T * 2, 2, 5, 5))).reshape(T, 2, 4, 5, 5)
    torch.testing.assert_close(block(x_seq), expected)
    assert list(block.state_dict()) == list(nn.Sequential(conv, norm).state_dict())
    assert block.step_mode == "m"
    with pytest.raises(ValueError, match="step_mode"):
        block.step_mode = "s"


def test_multi_step_container_runs_single_step_modules_step_by_step():
    torch.manual_seed(0)
    linear = nn.Linear(3, 4)
    block = layer.MultiStepContainer(copy.deepcopy(linear), neuron.LIFNode(tau=2.0))
    x_seq = torch.randn(5, 2, 3) * 3

    # Reference: the LIF recurrence by hand, V = V + (X - V) / tau, hard reset to 0.
    v = torch.zeros(2, 4)
    expected = []
    for t in range(5):
        h = v + (linear(x_seq[t]) - v) / 2.0
        spike = (h >= 1.0).float()
        v = h * (1 - spike)
        expected.append(spike)
    expected = torch.stack(expected)

    out = block(x_seq)
    torch.testing.assert_close(out, expected)
    assert 0 < expected.sum() < expected.numel()  # the case exercises both branches
    assert block[1].step_mode == "s"
    torch.testing.assert_close(block[1].v, v)


def test_multi_step_container_needs_a_time_step():
    with pytest.raises(ValueError, match="at least one time step"):
        layer.MultiStepContainer(nn.Identity())(torch.empty(0, 2, 3))


# -- Dropout -------------------------------------------------------------------------------


def _kept(y: torch.Tensor) -> torch.Tensor:
    """Which elements survived (inputs in these tests are strictly positive)."""
    return y != 0


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8], ids=lambda p: f"p{p}")
def test_dropout_multi_step_mask_shared_across_steps(p):
    torch.manual_seed(1)
    drop = layer.Dropout(p, step_mode="m")
    x_seq = torch.rand(4, 50, 40) + 0.5  # strictly positive: zero output means dropped
    y_seq = drop(x_seq)
    kept = _kept(y_seq)
    for t in range(1, 4):
        assert torch.equal(kept[t], kept[0])
    torch.testing.assert_close(y_seq[kept], x_seq[kept] / (1 - p))
    # 2000 Bernoulli draws: the dropped fraction is within 5 standard deviations of p.
    dropped = 1 - kept[0].float().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / 2000) ** 0.5

    # A second chunk of the same sequence (truncated BPTT) keeps the mask ...
    assert torch.equal(_kept(drop(x_seq))[0], kept[0])
    # ... and the next sequence, after reset(), draws a new one.
    drop.reset()
    assert drop.mask is None
    assert not torch.equal(_kept(drop(x_seq))[0], kept[0])


def test_dropout_single_step_mask_kept_until_reset():
    torch.manual_seed(2)
    drop = layer.Dropout(0.5)
    x = torch.rand(30, 20) + 0.5
    first = _kept(drop(x))
    for _ in range(3):
        # Other step inputs, same mask.
        x_t = torch.rand(30, 20) + 0.5
        y_t = drop(x_t)
        assert torch.equal(_kept(y_t), first)
        torch.testing.assert_close(y_t[first], 2 * x_t[first])

    functional.reset_net(drop)
    assert drop.mask is None
    y = drop(x)
    assert not torch.equal(_kept(y), first)
    torch.testing.assert_close(y[_kept(y)], 2 * x[_kept(y)])


def test_dropout_single_step_batch_change_without_reset_is_an_error():
    drop = layer.Dropout(0.5)
    drop(torch.ones(4, 3))
    with pytest.raises(ValueError, match="reset_net"):
        drop(torch.ones(5, 3))


def test_dropout_same_seed_same_mask():
    drop = layer.Dropout(0.5, step_mode="m")
    x_seq = torch.ones(2, 8, 8)
    torch.manual_seed(3)
    a = drop(x_seq)
    torch.manual_seed(3)
    b = drop(x_seq)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dropout_gradient_is_the_mask():
    torch.manual_seed(4)
    drop = layer.Dropout(0.25, step_mode="m")
    x_seq = (torch.rand(3, 6, 7) + 0.5).requires_grad_()
    y = drop(x_seq)
    (grad,) = torch.autograd.grad(y.sum(), x_seq)
    expected = torch.where(_kept(y), torch.tensor(1 / 0.75), torch.tensor(0.0))
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_dropout_eval_is_identity(step_mode):
    drop = layer.Dropout(0.9, step_mode=step_mode).eval()
    x = torch.randn(3, 4, 5)
    assert drop(x) is x
    assert drop.mask is None


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_dropout_p0_is_identity_and_p1_zeroes(step_mode):
    x = torch.randn(3, 4, 5)
    torch.testing.assert_close(layer.Dropout(0.0, step_mode=step_mode)(x), x, rtol=0, atol=0)
    y = layer.Dropout(1.0, step_mode=step_mode)(x)
    torch.testing.assert_close(y, torch.zeros_like(x), rtol=0, atol=0)  # no NaN from 1/0


def test_dropout_keeps_dtype():
    drop = layer.Dropout(0.5, step_mode="m")
    assert drop(torch.ones(2, 3, 4, dtype=torch.float16)).dtype == torch.float16
    single = layer.Dropout(0.5)
    single(torch.ones(3, 4))
    assert single(torch.ones(3, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "p, error",
    [(-0.1, ValueError), (1.5, ValueError), ("0.5", TypeError), (True, TypeError)],
    ids=["negative", "above-one", "string", "bool"],
)
def test_dropout_rejects_bad_p(p, error):
    with pytest.raises(error, match=r"\[0, 1\]"):
        layer.Dropout(p)


def test_dropout_repr():
    assert repr(layer.Dropout(0.3, step_mode="m")) == "Dropout(p=0.3, step_mode=m)"
