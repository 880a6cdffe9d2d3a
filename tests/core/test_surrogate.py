"""Tests of sj_core.surrogate (SPEC section 4).

Independent references used here:
- torch autograd of each ``primitive_function`` (and ``gradcheck``'s finite differences)
  for the closed-form ``surrogate_gradient``;
- values worked out by hand from SPEC's formulas, written as numbers or expressions;
- the eager module for the compiled and no-grad paths, fp64 for fp16/bf16.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from sj_core import surrogate
from sj_core.surrogate import (
    S2NN,
    ATan,
    Erf,
    FakeNumericalGradient,
    LeakyKReLU,
    LogTailedReLU,
    NonzeroSignLogAbs,
    PiecewiseExp,
    PiecewiseLeakyReLU,
    PiecewiseQuadratic,
    QPseudoSpike,
    Rect,
    Sigmoid,
    SoftSign,
    SquarewaveFourierSeries,
    SuperSpike,
    SurrogateFunctionBase,
)

SPIKING_ONLY = (SuperSpike, FakeNumericalGradient)
ALL_CLASSES = (
    Sigmoid,
    ATan,
    PiecewiseQuadratic,
    PiecewiseExp,
    SoftSign,
    SuperSpike,
    Erf,
    PiecewiseLeakyReLU,
    QPseudoSpike,
    LeakyKReLU,
    S2NN,
    NonzeroSignLogAbs,
    LogTailedReLU,
    Rect,
    SquarewaveFourierSeries,
    FakeNumericalGradient,
)
WITH_PRIMITIVE = tuple(cls for cls in ALL_CLASSES if cls not in SPIKING_ONLY)


def _class_ids(classes):
    return [cls.__name__ for cls in classes]


@dataclass(frozen=True)
class Case:
    """A configured surrogate and the points where its primitive is not differentiable."""

    id: str
    make: Callable[[], SurrogateFunctionBase]
    kinks: tuple[float, ...] = ()


# Every class with a primitive, at its defaults and at non-default parameters.
PRIMITIVE_CASES = [
    Case("Sigmoid", Sigmoid),
    Case("Sigmoid-alpha2.5", lambda: Sigmoid(alpha=2.5)),
    Case("ATan", ATan),
    Case("ATan-alpha0.7", lambda: ATan(alpha=0.7)),
    Case("PiecewiseQuadratic", PiecewiseQuadratic, (-1.0, 1.0)),
    Case("PiecewiseQuadratic-alpha2", lambda: PiecewiseQuadratic(alpha=2.0), (-0.5, 0.5)),
    Case("PiecewiseExp", PiecewiseExp),
    Case("PiecewiseExp-alpha3", lambda: PiecewiseExp(alpha=3.0)),
    Case("SoftSign", SoftSign),
    Case("SoftSign-alpha0.5", lambda: SoftSign(alpha=0.5)),
    Case("Erf", Erf),
    Case("Erf-alpha0.8", lambda: Erf(alpha=0.8)),
    Case("PiecewiseLeakyReLU", PiecewiseLeakyReLU, (-1.0, 1.0)),
    Case("PiecewiseLeakyReLU-w0.5-c0.1", lambda: PiecewiseLeakyReLU(w=0.5, c=0.1), (-0.5, 0.5)),
    Case("QPseudoSpike", QPseudoSpike),
    Case("QPseudoSpike-alpha3.5", lambda: QPseudoSpike(alpha=3.5)),
    Case("LeakyKReLU", LeakyKReLU, (0.0,)),
    Case("LeakyKReLU-leak0.1-k2", lambda: LeakyKReLU(leak=0.1, k=2.0), (0.0,)),
    Case("S2NN", S2NN, (0.0,)),
    Case("S2NN-alpha2-beta0.5", lambda: S2NN(alpha=2.0, beta=0.5), (0.0,)),
    Case("NonzeroSignLogAbs", NonzeroSignLogAbs),
    Case("NonzeroSignLogAbs-alpha2", lambda: NonzeroSignLogAbs(alpha=2.0)),
    Case("LogTailedReLU", LogTailedReLU, (0.0, 1.0)),
    Case("LogTailedReLU-alpha0.1", lambda: LogTailedReLU(alpha=0.1), (0.0, 1.0)),
    Case("Rect", Rect, (-0.5, 0.5)),
    Case("Rect-alpha2", lambda: Rect(alpha=2.0), (-0.25, 0.25)),
    Case("SquarewaveFourierSeries", SquarewaveFourierSeries),
    Case("SquarewaveFourierSeries-n5-T3", lambda: SquarewaveFourierSeries(n=5, T_period=3.0)),
]
PRIMITIVE_IDS = [case.id for case in PRIMITIVE_CASES]


def _points_away_from_kinks(
    kinks: tuple[float, ...], count: int, seed: int, margin: float = 1e-3
) -> torch.Tensor:
    """``count`` fp64 points in ``[-4, 4]``, none within ``margin`` of a kink, plus 0 when
    0 is not a kink (where a ``|x|``-based primitive would get autograd's ``sign(0) = 0``)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(4 * count, generator=generator, dtype=torch.float64) * 8 - 4
    for kink in kinks:
        x = x[(x - kink).abs() > margin]
    x = x[:count]
    if 0.0 not in kinks:
        x = torch.cat([x, torch.zeros(1, dtype=torch.float64)])
    return x


def _autograd_derivative(sg: SurrogateFunctionBase, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sg.primitive_function(x, *sg.params).sum(), x)
    return grad


# -- the closed-form gradient is the derivative of the primitive --------------------------


@pytest.mark.parametrize("case", PRIMITIVE_CASES, ids=PRIMITIVE_IDS)
def test_surrogate_gradient_is_autograd_derivative_of_primitive(case: Case) -> None:
    sg = case.make()
    x = _points_away_from_kinks(case.kinks, count=2000, seed=0)
    expected = _autograd_derivative(sg, x)
    if isinstance(sg, S2NN):
        # For x >= 0 the primitive is beta*ln(x + 1 + 1e-5) + 1/2, whose derivative is
        # beta / (x + 1 + 1e-5), while SPEC's gradient is beta / (x + 1): the relative
        # difference is 1e-5 / (x + 1 + 1e-5) <= 1e-5 (largest at x = 0).
        rtol, atol = 2e-5, 0.0
    else:
        # Same function evaluated along two fp64 expression paths: rounding only.
        rtol, atol = 1e-10, 1e-12
    torch.testing.assert_close(sg.gradient(x), expected, rtol=rtol, atol=atol)


def test_s2nn_gradient_differs_from_primitive_derivative_only_by_the_1e5_term() -> None:
    # Guard for the loosened tolerance above: at x = 0 the two must differ by ~1e-5.
    sg = S2NN()
    x = torch.zeros(1, dtype=torch.float64)
    assert sg.gradient(x).item() == 1.0
    assert _autograd_derivative(sg, x).item() == pytest.approx(1 / (1 + 1e-5), rel=1e-12)


@pytest.mark.parametrize("case", PRIMITIVE_CASES, ids=PRIMITIVE_IDS)
def test_gradcheck_of_primitive(case: Case) -> None:
    sg = case.make()
    sg.set_spiking_mode(False)
    # gradcheck's central differences use eps = 1e-6; points stay 1e-3 from any kink.
    x = _points_away_from_kinks(case.kinks, count=40, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(sg, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


# -- hand-computed values -----------------------------------------------------------------

LN3 = math.log(3.0)
LN2 = math.log(2.0)

# (id, surrogate, x, gradient at x worked out by hand from SPEC section 4)
HAND_GRADIENTS = [
    ("Sigmoid-at0", Sigmoid(), 0.0, 4.0 / 4),  # alpha/4
    ("Sigmoid-s=3/4", Sigmoid(), LN3 / 4, 4 * 0.75 * 0.25),  # sigmoid(ln 3) = 3/4
    ("Sigmoid-alpha2-s=1/4", Sigmoid(alpha=2.0), -LN3 / 2, 2 * 0.25 * 0.75),
    ("ATan-at0", ATan(), 0.0, 2.0 / 2),  # alpha/2
    ("ATan-at1/pi", ATan(), 1 / math.pi, 1.0 / 2),  # (a/2) / (1 + 1)
    ("ATan-alpha4-at-1/pi", ATan(alpha=4.0), -1 / math.pi, 2.0 / 5),  # 2 / (1 + 2^2)
    ("PiecewiseQuadratic-at0", PiecewiseQuadratic(alpha=2.0), 0.0, 2.0),
    ("PiecewiseQuadratic-at0.25", PiecewiseQuadratic(alpha=2.0), 0.25, 1.0),  # -4/4 + 2
    ("PiecewiseQuadratic-at-0.25", PiecewiseQuadratic(alpha=2.0), -0.25, 1.0),
    ("PiecewiseQuadratic-edge", PiecewiseQuadratic(alpha=2.0), 0.5, 0.0),  # -4/2 + 2
    ("PiecewiseQuadratic-outside", PiecewiseQuadratic(alpha=2.0), 0.6, 0.0),
    ("PiecewiseExp-at0", PiecewiseExp(alpha=2.0), 0.0, 1.0),  # a/2
    ("PiecewiseExp-at-ln2/2", PiecewiseExp(alpha=2.0), -LN2 / 2, 0.5),  # e^-ln2 = 1/2
    ("PiecewiseExp-at1", PiecewiseExp(), 1.0, 0.5 / math.e),
    ("SoftSign-at0", SoftSign(), 0.0, 1.0),  # 1 / (2*2*(1/2)^2)
    ("SoftSign-at0.5", SoftSign(), 0.5, 0.25),  # 1 / (4 * 1^2)
    ("SoftSign-at-1.5", SoftSign(), -1.5, 1 / 16),  # 1 / (4 * 2^2)
    ("SuperSpike-at0", SuperSpike(), 0.0, 1.0),
    ("SuperSpike-at1", SuperSpike(), 1.0, 0.25),
    ("SuperSpike-alpha2-at-3", SuperSpike(alpha=2.0), -3.0, 2 / 16),
    ("Erf-at0", Erf(), 0.0, 2 / math.sqrt(math.pi)),
    ("Erf-at0.5", Erf(), 0.5, 2 / math.sqrt(math.pi) * math.exp(-1.0)),
    ("Erf-alpha1-at-2", Erf(alpha=1.0), -2.0, math.exp(-4.0) / math.sqrt(math.pi)),
    ("PiecewiseLeakyReLU-at0", PiecewiseLeakyReLU(), 0.0, 0.5),  # 1/(2w)
    ("PiecewiseLeakyReLU-at0.99", PiecewiseLeakyReLU(), 0.99, 0.5),
    ("PiecewiseLeakyReLU-at-1-edge", PiecewiseLeakyReLU(), -1.0, 0.01),  # |x| < w is strict
    ("PiecewiseLeakyReLU-at1.5", PiecewiseLeakyReLU(), 1.5, 0.01),
    ("PiecewiseLeakyReLU-w2-at1", PiecewiseLeakyReLU(w=2.0, c=0.2), 1.0, 0.25),
    ("PiecewiseLeakyReLU-w2-at-3", PiecewiseLeakyReLU(w=2.0, c=0.2), -3.0, 0.2),
    ("QPseudoSpike-at0", QPseudoSpike(), 0.0, 1.0),
    ("QPseudoSpike-at0.5", QPseudoSpike(), 0.5, 0.25),  # (1 + 1)^-2
    ("QPseudoSpike-at-1.5", QPseudoSpike(), -1.5, 1 / 16),  # (1 + 3)^-2
    ("QPseudoSpike-alpha3-at1", QPseudoSpike(alpha=3.0), 1.0, 1 / 8),  # (1 + 1)^-3
    ("LeakyKReLU-at0", LeakyKReLU(leak=0.1, k=2.0), 0.0, 2.0),
    ("LeakyKReLU-at3", LeakyKReLU(leak=0.1, k=2.0), 3.0, 2.0),
    ("LeakyKReLU-at-1", LeakyKReLU(leak=0.1, k=2.0), -1.0, 0.1),
    ("S2NN-at0", S2NN(), 0.0, 1.0),  # beta / (0 + 1)
    ("S2NN-at1", S2NN(), 1.0, 0.5),
    ("S2NN-s=1/4", S2NN(), -LN3 / 4, 4 * 0.25 * 0.75),  # sigmoid(-ln 3) = 1/4
    ("S2NN-beta2-at1", S2NN(alpha=4.0, beta=2.0), 1.0, 1.0),
    ("NonzeroSignLogAbs-at0", NonzeroSignLogAbs(), 0.0, 1.0),
    ("NonzeroSignLogAbs-at1", NonzeroSignLogAbs(), 1.0, 0.5),
    ("NonzeroSignLogAbs-at-3", NonzeroSignLogAbs(), -3.0, 0.25),
    ("NonzeroSignLogAbs-alpha2-at0.5", NonzeroSignLogAbs(alpha=2.0), 0.5, 1.0),
    ("LogTailedReLU-at-2", LogTailedReLU(alpha=0.1), -2.0, 0.1),
    ("LogTailedReLU-at0", LogTailedReLU(alpha=0.1), 0.0, 0.1),
    ("LogTailedReLU-at0.5", LogTailedReLU(alpha=0.1), 0.5, 1.0),
    ("LogTailedReLU-at1", LogTailedReLU(alpha=0.1), 1.0, 1.0),
    ("LogTailedReLU-at4", LogTailedReLU(alpha=0.1), 4.0, 0.25),
    ("Rect-at0", Rect(), 0.0, 1.0),  # alpha
    ("Rect-at0.49", Rect(), 0.49, 1.0),
    ("Rect-edge", Rect(), 0.5, 0.0),  # |x| < 1/(2a) is strict
    ("Rect-outside", Rect(), -0.6, 0.0),
    ("Rect-alpha2-at0.2", Rect(alpha=2.0), 0.2, 2.0),
    ("Rect-alpha2-at0.3", Rect(alpha=2.0), 0.3, 0.0),
    ("Squarewave-at0", SquarewaveFourierSeries(), 0.0, 0.5),  # 4/8 * cos 0
    ("Squarewave-at2", SquarewaveFourierSeries(), 2.0, 0.0),  # cos(pi/2)
    ("Squarewave-at4", SquarewaveFourierSeries(), 4.0, -0.5),  # cos(pi)
    ("Squarewave-n3-at0", SquarewaveFourierSeries(n=3), 0.0, 1.0),  # 0.5 * (1 + 1)
    ("Squarewave-n3-at4/3", SquarewaveFourierSeries(n=3), 4 / 3, -0.25),  # .5(cos pi/3 + cos pi)
    ("Squarewave-n2-T4-at1", SquarewaveFourierSeries(T_period=4.0), 0.5, 1 / math.sqrt(2)),
    ("FakeNumerical-at0", FakeNumericalGradient(), 0.0, 0.3),  # min(inf, alpha)
    ("FakeNumerical-at1", FakeNumericalGradient(), 1.0, 0.3),
    ("FakeNumerical-at10", FakeNumericalGradient(), 10.0, 0.1),
    ("FakeNumerical-at-5", FakeNumericalGradient(), -5.0, 0.2),
]


@pytest.mark.parametrize(
    ("sg", "x", "expected"),
    [case[1:] for case in HAND_GRADIENTS],
    ids=[case[0] for case in HAND_GRADIENTS],
)
def test_gradient_hand_computed(sg: SurrogateFunctionBase, x: float, expected: float) -> None:
    got = sg.gradient(torch.tensor([x], dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


# (id, surrogate, x, primitive value at x worked out by hand from SPEC section 4)
HAND_PRIMITIVES = [
    ("Sigmoid-at0", Sigmoid(), 0.0, 0.5),
    ("Sigmoid-at-ln3/4", Sigmoid(), -LN3 / 4, 0.25),
    ("ATan-at1/pi", ATan(), 1 / math.pi, 0.75),  # atan(1)/pi + 1/2
    ("PiecewiseQuadratic-at0.5", PiecewiseQuadratic(), 0.5, 0.875),  # -1/8 + 1/2 + 1/2
    ("PiecewiseQuadratic-at-0.5", PiecewiseQuadratic(), -0.5, 0.125),  # 1/8 - 1/2 + 1/2
    ("PiecewiseQuadratic-above", PiecewiseQuadratic(), 1.5, 1.0),
    ("PiecewiseQuadratic-below", PiecewiseQuadratic(), -1.5, 0.0),
    ("PiecewiseExp-at0", PiecewiseExp(), 0.0, 0.5),
    ("PiecewiseExp-atln2", PiecewiseExp(), LN2, 0.75),  # 1 - (1/2)/2
    ("PiecewiseExp-at-ln2", PiecewiseExp(), -LN2, 0.25),
    ("SoftSign-at0.5", SoftSign(), 0.5, 0.75),  # softsign(1) = 1/2
    ("SoftSign-at-1.5", SoftSign(), -1.5, 0.125),  # softsign(-3) = -3/4
    ("Erf-at0", Erf(), 0.0, 0.5),
    ("Erf-at0.5", Erf(), 0.5, math.erfc(-1.0) / 2),
    ("PiecewiseLeakyReLU-at0.5", PiecewiseLeakyReLU(), 0.5, 0.75),
    ("PiecewiseLeakyReLU-at2", PiecewiseLeakyReLU(), 2.0, 1.01),  # 0.02 - 0.01 + 1
    ("PiecewiseLeakyReLU-at-2", PiecewiseLeakyReLU(), -2.0, -0.01),  # -0.02 + 0.01
    ("QPseudoSpike-at0", QPseudoSpike(), 0.0, 0.5),
    ("QPseudoSpike-at0.5", QPseudoSpike(), 0.5, 0.75),  # 1 - 2^-1/2
    ("QPseudoSpike-at-0.5", QPseudoSpike(), -0.5, 0.25),
    ("LeakyKReLU-at3", LeakyKReLU(leak=0.1, k=2.0), 3.0, 6.0),
    ("LeakyKReLU-at-1", LeakyKReLU(leak=0.1, k=2.0), -1.0, -0.1),
    ("S2NN-at0", S2NN(), 0.0, math.log(1 + 1e-5) + 0.5),
    ("S2NN-at-ln3/4", S2NN(), -LN3 / 4, 0.25),
    ("S2NN-at1", S2NN(beta=2.0), 1.0, 2 * math.log(2 + 1e-5) + 0.5),
    ("NonzeroSignLogAbs-at-(e-1)", NonzeroSignLogAbs(), -(math.e - 1), -1.0),
    ("NonzeroSignLogAbs-at(e-1)/2", NonzeroSignLogAbs(alpha=2.0), (math.e - 1) / 2, 1.0),
    ("LogTailedReLU-at-e", LogTailedReLU(alpha=0.1), math.e, 2.0),
    ("LogTailedReLU-at-2", LogTailedReLU(alpha=0.1), -2.0, -0.2),
    ("LogTailedReLU-at0.5", LogTailedReLU(alpha=0.1), 0.5, 0.5),
    ("Rect-at0.25", Rect(), 0.25, 0.75),
    ("Rect-at1", Rect(), 1.0, 1.0),
    ("Rect-at-1", Rect(), -1.0, 0.0),
    ("Squarewave-at2", SquarewaveFourierSeries(), 2.0, 0.5 + 2 / math.pi),  # sin(pi/2)
    ("Squarewave-n3-at2", SquarewaveFourierSeries(n=3), 2.0, 0.5 + 2 / math.pi * (1 - 1 / 3)),
]


@pytest.mark.parametrize(
    ("sg", "x", "expected"),
    [case[1:] for case in HAND_PRIMITIVES],
    ids=[case[0] for case in HAND_PRIMITIVES],
)
def test_primitive_hand_computed(sg: SurrogateFunctionBase, x: float, expected: float) -> None:
    sg.set_spiking_mode(False)
    got = sg(torch.tensor([x], dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


# -- the spiking forward and backward -----------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_class_ids(ALL_CLASSES))
def test_spiking_forward_is_heaviside_and_backward_is_surrogate(cls) -> None:
    sg = cls()
    assert sg.spiking
    x_fixed = torch.tensor([-2.0, -1e-12, 0.0, -0.0, 1e-12, 3.0], dtype=torch.float64)
    spikes_fixed = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    x_random = torch.randn(3, 50, generator=generator, dtype=torch.float64) * 2

    x = x_fixed.requires_grad_(True)
    out = sg(x)
    torch.testing.assert_close(out, spikes_fixed, rtol=0, atol=0)

    x = x_random.clone().requires_grad_(True)
    out = sg(x)
    torch.testing.assert_close(out, (x_random >= 0).double(), rtol=0, atol=0)
    grad_out = torch.randn(3, 50, generator=generator, dtype=torch.float64)
    out.backward(grad_out)
    torch.testing.assert_close(x.grad, grad_out * sg.gradient(x_random))


# -- constructor defaults, repr, kernel parameters ----------------------------------------

# SPEC section 4's defaults, by hand.
EXPECTED_DEFAULTS = {
    "Sigmoid": {"alpha": 4.0},
    "ATan": {"alpha": 2.0},
    "PiecewiseQuadratic": {"alpha": 1.0},
    "PiecewiseExp": {"alpha": 1.0},
    "SoftSign": {"alpha": 2.0},
    "SuperSpike": {"alpha": 1.0},
    "Erf": {"alpha": 2.0},
    "PiecewiseLeakyReLU": {"w": 1.0, "c": 0.01},
    "QPseudoSpike": {"alpha": 2.0},
    "LeakyKReLU": {"leak": 0.0, "k": 1.0},
    "S2NN": {"alpha": 4.0, "beta": 1.0},
    "NonzeroSignLogAbs": {"alpha": 1.0},
    "LogTailedReLU": {"alpha": 0.0},
    "Rect": {"alpha": 1.0},
    "SquarewaveFourierSeries": {"n": 2, "T_period": 8.0},
    "FakeNumericalGradient": {"alpha": 0.3},
}


def test_every_spec_surrogate_is_exported() -> None:
    exported = set(surrogate.__all__)
    assert set(EXPECTED_DEFAULTS) <= exported
    assert {cls.__name__ for cls in ALL_CLASSES} == set(EXPECTED_DEFAULTS)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_class_ids(ALL_CLASSES))
def test_defaults_and_kernel_params(cls) -> None:
    sg = cls()
    assert sg.kernel_name == cls.__name__
    assert sg.spiking is True
    assert sg.kernel_params() == EXPECTED_DEFAULTS[cls.__name__]
    assert sg.params == tuple(EXPECTED_DEFAULTS[cls.__name__].values())


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_class_ids(ALL_CLASSES))
def test_param_names_match_static_method_signatures(cls) -> None:
    # Kernel backends call the formulas with kernel_params() in param_names order.
    for method in (cls.surrogate_gradient,) + ((cls.primitive_function,) * cls.has_primitive):
        names = tuple(inspect.signature(method).parameters)[1:]
        assert names == cls.param_names


@pytest.mark.parametrize(
    ("sg", "expected"),
    [
        (Sigmoid(), "Sigmoid(alpha=4.0, spiking=True)"),
        (ATan(alpha=3, spiking=False), "ATan(alpha=3.0, spiking=False)"),
        (PiecewiseLeakyReLU(), "PiecewiseLeakyReLU(w=1.0, c=0.01, spiking=True)"),
        (LeakyKReLU(False, 0.1, 2.0), "LeakyKReLU(leak=0.1, k=2.0, spiking=False)"),
        (S2NN(), "S2NN(alpha=4.0, beta=1.0, spiking=True)"),
        (
            SquarewaveFourierSeries(n=3, T_period=4),
            "SquarewaveFourierSeries(n=3, T_period=4.0, spiking=True)",
        ),
        (FakeNumericalGradient(), "FakeNumericalGradient(alpha=0.3, spiking=True)"),
        (SuperSpike(alpha=2), "SuperSpike(alpha=2.0, spiking=True)"),
    ],
    ids=["Sigmoid", "ATan", "PiecewiseLeakyReLU", "LeakyKReLU", "S2NN", "Squarewave", "Fake", "SS"],
)
def test_repr(sg: SurrogateFunctionBase, expected: str) -> None:
    assert repr(sg) == expected


def test_kernel_params_non_default_and_types() -> None:
    assert PiecewiseLeakyReLU(w=0.5, c=0.2).kernel_params() == {"w": 0.5, "c": 0.2}
    assert LeakyKReLU(True, 0.1, 3).kernel_params() == {"leak": 0.1, "k": 3.0}
    assert S2NN(alpha=2, beta=0.5).kernel_params() == {"alpha": 2.0, "beta": 0.5}
    params = SquarewaveFourierSeries(n=4, T_period=2).kernel_params()
    assert params == {"n": 4, "T_period": 2.0}
    assert type(params["n"]) is int and type(params["T_period"]) is float
    assert type(Sigmoid(alpha=3).kernel_params()["alpha"]) is float


# -- spiking mode -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", WITH_PRIMITIVE, ids=_class_ids(WITH_PRIMITIVE))
def test_set_spiking_mode_switches_forward(cls) -> None:
    sg = cls()
    x = torch.tensor([-0.3, 0.0, 0.7], dtype=torch.float64)
    sg.set_spiking_mode(False)
    assert sg.spiking is False
    torch.testing.assert_close(sg(x), sg.primitive_function(x, *sg.params))
    assert "spiking=False" in repr(sg)
    sg.set_spiking_mode(True)
    torch.testing.assert_close(sg(x), torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    assert cls(spiking=False).spiking is False


@pytest.mark.parametrize("cls", SPIKING_ONLY, ids=_class_ids(SPIKING_ONLY))
def test_spiking_only_surrogates_refuse_primitive_mode(cls) -> None:
    assert cls.has_primitive is False
    with pytest.raises(ValueError, match="spiking=True only"):
        cls(spiking=False)
    sg = cls()
    with pytest.raises(ValueError, match="spiking=True only"):
        sg.set_spiking_mode(False)
    assert sg.spiking is True


def test_set_spiking_mode_rejects_non_bool() -> None:
    with pytest.raises(TypeError, match="spiking must be a bool"):
        Sigmoid().set_spiking_mode(1)
    with pytest.raises(TypeError, match="spiking must be a bool"):
        Sigmoid(spiking="yes")
    with pytest.raises(TypeError, match="spiking must be a bool"):
        LeakyKReLU(0.1)  # the reference's order puts spiking first


# -- invalid parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: QPseudoSpike(alpha=1.0), ValueError, "alpha must be > 1"),
        (lambda: QPseudoSpike(alpha=0.5), ValueError, "alpha must be > 1"),
        (lambda: PiecewiseLeakyReLU(w=0.0), ValueError, "w must be > 0"),
        (lambda: PiecewiseLeakyReLU(w=-1.0), ValueError, "w must be > 0"),
        (lambda: Rect(alpha=0.0), ValueError, "alpha must be > 0"),
        (lambda: SoftSign(alpha=-2.0), ValueError, "alpha must be > 0"),
        (lambda: PiecewiseQuadratic(alpha=0.0), ValueError, "alpha must be > 0"),
        (lambda: NonzeroSignLogAbs(alpha=0.0), ValueError, "alpha must be > 0"),
        (lambda: SquarewaveFourierSeries(n=1), ValueError, "n must be an int >= 2"),
        (lambda: SquarewaveFourierSeries(n=2.0), TypeError, "n must be an int >= 2"),
        (lambda: SquarewaveFourierSeries(n=True), TypeError, "n must be an int >= 2"),
        (lambda: SquarewaveFourierSeries(T_period=0.0), ValueError, "T_period must be > 0"),
        (lambda: Sigmoid(alpha="4"), TypeError, "alpha must be a real number"),
        (lambda: ATan(alpha=None), TypeError, "alpha must be a real number"),
        (lambda: Erf(alpha=True), TypeError, "alpha must be a real number"),
        (lambda: Sigmoid(alpha=math.nan), ValueError, "alpha must be finite"),
        (lambda: S2NN(beta=math.inf), ValueError, "beta must be finite"),
        (lambda: LeakyKReLU(k="1"), TypeError, "k must be a real number"),
        (lambda: PiecewiseLeakyReLU(c=None), TypeError, "c must be a real number"),
    ],
    ids=[
        "QPseudoSpike-alpha1",
        "QPseudoSpike-alpha0.5",
        "PiecewiseLeakyReLU-w0",
        "PiecewiseLeakyReLU-w-neg",
        "Rect-alpha0",
        "SoftSign-alpha-neg",
        "PiecewiseQuadratic-alpha0",
        "NonzeroSignLogAbs-alpha0",
        "Squarewave-n1",
        "Squarewave-n-float",
        "Squarewave-n-bool",
        "Squarewave-T0",
        "Sigmoid-alpha-str",
        "ATan-alpha-None",
        "Erf-alpha-bool",
        "Sigmoid-alpha-nan",
        "S2NN-beta-inf",
        "LeakyKReLU-k-str",
        "PiecewiseLeakyReLU-c-None",
    ],
)
def test_invalid_parameters_raise(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


def test_unconstrained_parameters_are_accepted() -> None:
    # Only parameters that make a formula undefined are refused.
    assert Sigmoid(alpha=-1.0).alpha == -1.0
    assert LogTailedReLU(alpha=0.0).alpha == 0.0
    assert PiecewiseLeakyReLU(c=0.0).c == 0.0
    assert QPseudoSpike(alpha=1.5).alpha == 1.5


# -- the no-grad fast path ----------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_class_ids(ALL_CLASSES))
def test_eval_fast_path_matches_autograd_path(cls, monkeypatch) -> None:
    sg = cls()
    x = torch.tensor([-1.5, -1e-6, 0.0, 1e-6, 2.0], requires_grad=True)
    with_autograd = sg(x)
    assert with_autograd.grad_fn is not None

    def refuse(*args):
        raise AssertionError("the no-grad path must not call the autograd Function")

    monkeypatch.setattr(surrogate._SpikeWithSurrogate, "apply", refuse)
    with torch.no_grad():
        fast = sg(x)
    torch.testing.assert_close(fast, with_autograd.detach(), rtol=0, atol=0)
    assert fast.grad_fn is None and fast.dtype == x.dtype
    # A tensor that does not require grad takes the fast path with grad enabled too.
    torch.testing.assert_close(sg(x.detach()), with_autograd.detach(), rtol=0, atol=0)


# -- low precision ------------------------------------------------------------------------

LOW_PRECISION = [
    pytest.param(torch.float16, 1e-2, id="float16"),
    pytest.param(torch.bfloat16, 4e-2, id="bfloat16"),
]


@pytest.mark.parametrize(("dtype", "tol"), LOW_PRECISION)
@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_class_ids(ALL_CLASSES))
def test_low_precision_dtypes(cls, dtype: torch.dtype, tol: float) -> None:
    sg = cls()
    generator = torch.Generator().manual_seed(3)
    # Points exactly representable in `dtype`, so fp64 evaluates the same inputs.
    x_low = (torch.randn(200, generator=generator) * 2).to(dtype)
    x64 = x_low.double()

    x = x_low.clone().requires_grad_(True)
    spikes = sg(x)
    assert spikes.dtype == dtype
    torch.testing.assert_close(spikes.double(), (x64 >= 0).double(), rtol=0, atol=0)
    spikes.backward(torch.ones_like(spikes))
    assert x.grad.dtype == dtype
    # Tolerance: a few roundings at `dtype`'s precision, relative to values of order 1.
    torch.testing.assert_close(x.grad.double(), sg.gradient(x64), rtol=tol, atol=tol)

    if cls.has_primitive:
        sg.set_spiking_mode(False)
        x = x_low.clone().requires_grad_(True)
        out = sg(x)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), sg(x64), rtol=tol, atol=tol)
        out.backward(torch.ones_like(out))
        assert x.grad.dtype == dtype
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", WITH_PRIMITIVE, ids=_class_ids(WITH_PRIMITIVE))
def test_primitive_gradients_finite_far_out(cls) -> None:
    # Unused piecewise branches evaluated at large |x| (log of negatives, exp overflow,
    # division by 0 at x = -1) must not leak nan/inf into the gradient.
    x = torch.tensor([-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4], requires_grad=True)
    sg = cls(spiking=False)
    out = sg(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


# -- torch.compile ------------------------------------------------------------------------

COMPILE_CASES = [
    pytest.param(lambda: Sigmoid(), id="Sigmoid"),
    pytest.param(lambda: Sigmoid(spiking=False), id="Sigmoid-primitive"),
    pytest.param(lambda: PiecewiseLeakyReLU(w=0.5, c=0.1), id="PiecewiseLeakyReLU"),
    pytest.param(lambda: LeakyKReLU(False, 0.1, 2.0), id="LeakyKReLU-primitive"),
    pytest.param(lambda: S2NN(spiking=False), id="S2NN-primitive"),
    pytest.param(lambda: QPseudoSpike(alpha=3.0), id="QPseudoSpike"),
    pytest.param(lambda: SquarewaveFourierSeries(n=4), id="Squarewave"),
    pytest.param(lambda: SquarewaveFourierSeries(n=3, spiking=False), id="Squarewave-primitive"),
    pytest.param(lambda: FakeNumericalGradient(), id="FakeNumericalGradient"),
    pytest.param(lambda: LogTailedReLU(alpha=0.1, spiking=False), id="LogTailedReLU-primitive"),
]


def _compiled_matches_eager(sg: SurrogateFunctionBase, backend: str) -> None:
    torch._dynamo.reset()  # the lambda's code object is shared: no recompile limit
    compiled = torch.compile(lambda x: sg(x).sum(), fullgraph=True, backend=backend)
    x_base = torch.linspace(-3.0, 3.0, 61)  # contains 0 and the kinks of the cases
    x_eager = x_base.clone().requires_grad_(True)
    x_compiled = x_base.clone().requires_grad_(True)
    expected = sg(x_eager).sum()
    expected.backward()
    got = compiled(x_compiled)
    got.backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)
    with torch.no_grad():  # the fast path compiles too
        torch.testing.assert_close(compiled(x_base), expected.detach())


@pytest.mark.parametrize("make", COMPILE_CASES)
def test_compile_fullgraph_aot_eager_matches_eager(make) -> None:
    _compiled_matches_eager(make(), backend="aot_eager")


@pytest.mark.slow
def test_compile_fullgraph_inductor_cpu_matches_eager() -> None:
    _compiled_matches_eager(SquarewaveFourierSeries(n=3), backend="inductor")
    _compiled_matches_eager(PiecewiseExp(spiking=False), backend="inductor")
