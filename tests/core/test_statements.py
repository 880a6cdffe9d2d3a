"""The neuron statements: the expression language, its derivatives and printing, and the
statements' own checks (sj_core.neuron.statements)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from sj_core import reference
from sj_core.neuron.statements import (
    FLAG,
    FLOAT,
    STATEMENTS,
    TENSOR,
    ExprPrinter,
    NeuronStatement,
    Parameter,
    Sym,
    exp,
    flag_settings,
    kernel_equations,
)
from sj_core.neuron.statements.expr import Expr

X, Y, Z = Sym("x"), Sym("y"), Sym("z")


def _evaluate(e: Expr, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Evaluate ``e`` by executing its printed Python source with torch's exp."""
    return eval(ExprPrinter().print(e), {"exp": torch.exp}, dict(values))


def _random_expression(rng: random.Random, depth: int) -> Expr:
    if depth == 0:
        return rng.choice([X, Y, Z, 0.5, 2.0, 3.0])
    a = _random_expression(rng, depth - 1)
    b = _random_expression(rng, depth - 1)
    op = rng.choice("+-*/n")
    if op == "n":
        return -(a if isinstance(a, Expr) else Sym("x") * a)
    if not isinstance(a, Expr) and not isinstance(b, Expr):
        a = X
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]


def test_printing_keeps_the_order_of_operations():
    # Floating-point arithmetic is not associative: the printed source must compute the
    # very same operations as the tree, in the same order (bit for bit).
    rng = random.Random(0)
    values = {name: torch.randn(64, dtype=torch.float32) + 2.5 for name in "xyz"}
    for _ in range(300):
        e = _random_expression(rng, 4)
        if not isinstance(e, Expr):
            continue
        direct = torch.as_tensor(_evaluate_tree(e, values)).expand(64)
        printed = torch.as_tensor(_evaluate(e, values)).expand(64)
        assert torch.equal(torch.nan_to_num(direct), torch.nan_to_num(printed)), str(e)


def _evaluate_tree(e, values):
    from sj_core.neuron.statements import expr as ex

    if isinstance(e, ex.Const):
        return e.value  # a Python float, as in the printed source
    if isinstance(e, ex.Sym):
        return values[e.name]
    if isinstance(e, ex.Neg):
        return -_evaluate_tree(e.a, values)
    if isinstance(e, ex.Call):
        return torch.exp(_evaluate_tree(e.a, values))
    a, b = _evaluate_tree(e.a, values), _evaluate_tree(e.b, values)
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[e.op]


@pytest.mark.parametrize(
    ("e", "text"),
    [
        (X - (Y - Z), "x - (y - z)"),
        (X / (Y * Z), "x / (y * z)"),
        (X * Y / Z, "x * y / z"),
        (-(X + Y), "-(x + y)"),
        (X + -Y, "x - y"),
        (X * 1.0 + 0.0, "x"),
        (exp(X / Y), "exp(x / y)"),
    ],
)
def test_printing_and_simplification(e, text):
    assert str(e) == text


@pytest.mark.parametrize("statement", list(STATEMENTS.values()), ids=list(STATEMENTS))
def test_derivatives_agree_with_autograd(statement):
    # The symbolic derivatives (what kernels compute in their backward) against torch's
    # autograd of the same Python function, in float64 at random points.
    generator = torch.Generator().manual_seed(1)
    for flags in flag_settings(statement):
        e = kernel_equations(statement, flags, hard_reset=True)
        params = {name: 1.5 + torch.rand((), generator=generator, dtype=torch.float64).item()
                  for name in statement.names(FLOAT)}  # fmt: skip
        point = {n: torch.randn(16, generator=generator, dtype=torch.float64, requires_grad=True)
                 for n in ("x", "v", "w", "h", "s")}  # fmt: skip
        tensors = [torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
                   for _ in statement.names(TENSOR)]  # fmt: skip
        states = [point["v"], point["w"]][: len(statement.states)]
        h = statement.charge(point["x"], *states, *tensors, **params, **flags, v_r=0.25)
        wrt = [point["x"], point["v"]] + ([point["w"]] if len(states) == 2 else []) + tensors
        grads = torch.autograd.grad(h.sum(), wrt, allow_unused=True)
        names = ["x", "v"] + (["w"] if len(states) == 2 else []) + list(statement.names(TENSOR))
        values = {**{k: t.detach() for k, t in point.items()}, **params, "v_reset": 0.25}
        values.update(
            {n: t.detach() for n, t in zip(statement.names(TENSOR), tensors, strict=True)}
        )
        for name, grad in zip(names, grads, strict=True):
            symbolic = torch.as_tensor(_evaluate(e.dcharge[name], values), dtype=torch.float64)
            expected = torch.zeros(16, dtype=torch.float64) if grad is None else grad
            if expected.dim() == 0:  # a tensor parameter: autograd summed over neurons
                symbolic = symbolic.expand(16).sum()
            torch.testing.assert_close(symbolic.expand_as(expected), expected, msg=name)


def test_izhikevich_adaptation_derivatives():
    e = kernel_equations(STATEMENTS["izhikevich"], {}, hard_reset=True)
    values = {"a": 0.5, "tau_w": 2.0, "b": 0.2}
    assert _evaluate(e.dadapt["h"], values) == pytest.approx(0.25)
    assert _evaluate(e.dadapt["w"], values) == pytest.approx(0.5)
    assert _evaluate(e.djump["s"], values) == pytest.approx(0.2)


def test_backward_reads_what_the_derivatives_use():
    reads = {
        (name, tuple(flags.values())): kernel_equations(s, flags, True).backward_reads
        for name, s in STATEMENTS.items()
        for flags in flag_settings(s)
    }
    assert reads[("if", ())] == frozenset()
    assert reads[("lif", (True,))] == frozenset()
    assert reads[("plif", (True,))] == {"x", "v"}  # dH/d(1/tau) = X - (V - V_r)
    assert reads[("plif", (False,))] == {"v"}
    assert reads[("qif", ())] == reads[("izhikevich", ())] == {"v"}


def test_a_derivative_that_needs_the_second_state_is_refused():
    def charge(x, v, w, **_):
        return v + x * w  # dH/dV is fine, but dH/dX = W: kernels cannot recompute W

    from sj_core.neuron.statements import Adaptation

    toy = NeuronStatement(
        name="toy",
        title="Toy",
        parameters=(),
        charge=charge,
        adaptation=Adaptation(adapt=lambda h, w, **_: w, jump=lambda w, s, **_: w),
    )
    with pytest.raises(NotImplementedError, match="W\\[t-1\\]"):
        kernel_equations(toy, {}, hard_reset=True)


def test_validation_names_what_is_wrong():
    lif = STATEMENTS["lif"]
    with pytest.raises(TypeError, match="missing \\['tau'\\]"):
        lif.validate({"decay_input": True}, 1.0, 0.0)
    with pytest.raises(TypeError, match="unexpected \\['x'\\]"):
        lif.validate({"tau": 2.0, "decay_input": True, "x": 1}, 1.0, 0.0)
    params, v_th, v_reset = lif.validate({"tau": 2, "decay_input": False}, 1, None)
    assert params == {"tau": 2.0, "decay_input": False} and (v_th, v_reset) == (1.0, None)
    with pytest.raises(ValueError, match="v_rest must be >= v_reset"):
        STATEMENTS["qif"].validate({"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": -1.0}, 1.0, 0.0)


def test_parameter_kinds():
    assert Parameter("p", FLAG).validate(True) is True
    with pytest.raises(TypeError):
        Parameter("p", FLAG).validate(1)
    assert STATEMENTS["plif"].names(TENSOR) == ("r_tau",)


def test_the_step_written_once_is_what_the_modules_compute():
    # reference.neuron_step (the pure step) and a module's hooks give the same numbers.
    from sj_core import neuron, surrogate

    node = neuron.IzhikevichNode(a=0.5, b=0.2, step_mode="s")
    x = torch.rand(5) * 2
    spike = node(x)
    statement = STATEMENTS["izhikevich"]
    params = {name: getattr(node, name) for name in statement.names(FLOAT)}
    v0 = torch.zeros(5)
    w0 = torch.zeros(5)
    ref_spike, (v, w) = reference.neuron_step(
        statement, x, (v0, w0), (), params, v_threshold=1.0, v_reset=0.0,
        detach_reset=False, surrogate_function=surrogate.Sigmoid(),
    )  # fmt: skip
    assert torch.equal(spike, ref_spike) and torch.equal(node.v, v) and torch.equal(node.w, w)
    assert math.isfinite(v.sum().item())
