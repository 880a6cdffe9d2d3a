"""Evaluating the statements' symbolic expressions on tensors and numbers.

The fused backward loop (:mod:`sj_core.fused.backward`) computes the derivatives that
:func:`~sj_core.neuron.statements.kernel_equations` derives, the same expressions the
kernel backends print. Here they are evaluated directly: every symbol is bound to a
tensor (``H[t]``, ``V[t-1]``...) or a Python number (a float parameter), and a subtree
whose operands are all numbers is folded in Python (double precision), so that a
derivative such as LIF's ``1 - 1/tau`` costs no tensor operation at all. An operation
whose number operand leaves every tensor value unchanged, bit for bit (``v - v_reset``
with ``v_reset = 0.0``), is skipped: evaluated on tensors, an expression gives exactly
what the statement's own function computes.

Example::

    >>> from sj_core.neuron.statements import LIF, kernel_equations
    >>> eq = kernel_equations(LIF, {"decay_input": True}, hard_reset=True)
    >>> evaluate(eq.dcharge["v"], {"tau": 2.0})
    0.5
    >>> evaluate(eq.dreset["h"], {"s": torch.tensor([0.0, 1.0])})
    tensor([1., 0.])
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..neuron.statements.expr import Bin, Call, Const, Expr, Neg, Sym

__all__ = ["Value", "evaluate", "is_number"]

#: What an expression evaluates to: a Python number or a tensor.
Value = float | torch.Tensor

_BINARY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def is_number(value: object) -> bool:
    """Whether ``value`` is a Python number (folded on the host), not a tensor."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def evaluate(expr: Expr, values: Mapping[str, Value]) -> Value:
    """``expr`` with each symbol replaced by ``values[name]``.

    Raises:
        KeyError: a symbol that ``values`` does not bind.
        NotImplementedError: a function other than ``exp``.
    """
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Sym):
        return values[expr.name]
    if isinstance(expr, Neg):
        return -evaluate(expr.a, values)
    if isinstance(expr, Call):
        argument = evaluate(expr.a, values)
        if expr.fn != "exp":
            raise NotImplementedError(f"cannot evaluate the function {expr.fn!r}")
        return math.exp(argument) if is_number(argument) else torch.exp(argument)
    if isinstance(expr, Bin):
        a, b = evaluate(expr.a, values), evaluate(expr.b, values)
        if is_number(b) and not is_number(a) and _is_identity(expr.op, b):
            return a
        # Two numbers fold in Python; with a tensor operand the same operator is torch's.
        return _BINARY[expr.op](a, b)
    raise TypeError(f"not an expression node: {expr!r}")


def _is_identity(op: str, b: float) -> bool:
    """Whether ``a <op> b`` is ``a`` itself for every ``a`` (NaN, infinities and -0.0
    included), so the operation can be skipped: ``a - (+0.0)``, ``a + (-0.0)``,
    ``a * 1.0``, ``a / 1.0``. (``a + 0.0`` is not: it turns -0.0 into +0.0.)"""
    if op in ("*", "/"):
        return b == 1.0
    if b != 0.0:
        return False
    positive_zero = math.copysign(1.0, b) > 0
    return positive_zero if op == "-" else not positive_zero
