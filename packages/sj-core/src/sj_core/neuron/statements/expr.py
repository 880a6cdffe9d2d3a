"""A small symbolic expression language for the neuron equations.

A neuron statement (:mod:`sj_core.neuron.statements`) writes its equations as ordinary
Python functions of ``+ - * /``, unary minus and :func:`exp`. Called with tensors they
*are* the torch reference; called with :class:`Sym` placeholders they build an
expression tree (:class:`Expr`) that keeps the exact order of operations, which

* :func:`diff` differentiates (the gradient forms every kernel uses are these
  derivatives, never rewritten by hand), and
* :class:`ExprPrinter` prints as source code of another language (Triton, CUDA C), so a
  kernel computes the same operations, in the same order, as the torch reference.

Construction applies only simplifications that are exact in IEEE arithmetic for finite
values (``a + 0``, ``a * 1``, ``a * 0``, double negation, folding two constants): the
derivatives of real equations then print as readably as hand-written ones.

Example::

    >>> x, v, tau = Sym("x"), Sym("v"), Sym("tau")
    >>> h = v + (x - v) / tau
    >>> str(diff(h, v))
    '1.0 - 1.0 / tau'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = [
    "Const",
    "Expr",
    "ExprPrinter",
    "Sym",
    "as_expr",
    "diff",
    "exp",
    "symbols_of",
]


class Expr:
    """A node of an expression tree. Build trees with Python operators on :class:`Sym`."""

    __slots__ = ()

    def __add__(self, other: object) -> Expr:
        return _add(self, as_expr(other))

    def __radd__(self, other: object) -> Expr:
        return _add(as_expr(other), self)

    def __sub__(self, other: object) -> Expr:
        return _sub(self, as_expr(other))

    def __rsub__(self, other: object) -> Expr:
        return _sub(as_expr(other), self)

    def __mul__(self, other: object) -> Expr:
        return _mul(self, as_expr(other))

    def __rmul__(self, other: object) -> Expr:
        return _mul(as_expr(other), self)

    def __truediv__(self, other: object) -> Expr:
        return _div(self, as_expr(other))

    def __rtruediv__(self, other: object) -> Expr:
        return _div(as_expr(other), self)

    def __neg__(self) -> Expr:
        return _neg(self)

    def __str__(self) -> str:
        return ExprPrinter().print(self)


@dataclass(frozen=True, eq=True, repr=True)
class Const(Expr):
    """A number (kept as a Python float, i.e. a double, until printed)."""

    value: float


@dataclass(frozen=True, eq=True, repr=True)
class Sym(Expr):
    """A named placeholder: a variable (``x``, ``v``), a parameter (``tau``)..."""

    name: str


@dataclass(frozen=True, eq=True, repr=True)
class Bin(Expr):
    """``a <op> b`` with ``op`` one of ``+ - * /``."""

    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True, eq=True, repr=True)
class Neg(Expr):
    """``-a``."""

    a: Expr


@dataclass(frozen=True, eq=True, repr=True)
class Call(Expr):
    """``fn(a)`` for the elementary functions the equations use (``exp``)."""

    fn: str
    a: Expr


ZERO = Const(0.0)
ONE = Const(1.0)


def as_expr(value: object) -> Expr:
    """``value`` as an :class:`Expr` (Python numbers become :class:`Const`)."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"cannot use {value!r} ({type(value).__name__}) in a neuron equation")
    return Const(float(value))


def _is(e: Expr, value: float) -> bool:
    return isinstance(e, Const) and e.value == value


def _fold(op: str, a: Expr, b: Expr) -> Expr | None:
    if isinstance(a, Const) and isinstance(b, Const):
        x, y = a.value, b.value
        return Const({"+": x + y, "-": x - y, "*": x * y}[op] if op != "/" else x / y)
    return None


def _add(a: Expr, b: Expr) -> Expr:
    if _is(b, 0.0):
        return a
    if _is(a, 0.0):
        return b
    negative, magnitude = _split_sign(b)
    if negative:
        return _sub(a, magnitude)
    negative, magnitude = _split_sign(a)
    if negative:
        return _sub(b, magnitude)  # exact: IEEE addition is commutative
    return _fold("+", a, b) or Bin("+", a, b)


def _sub(a: Expr, b: Expr) -> Expr:
    if _is(b, 0.0):
        return a
    if _is(a, 0.0):
        return _neg(b)
    if isinstance(b, Neg):
        return _add(a, b.a)
    return _fold("-", a, b) or Bin("-", a, b)


def _split_sign(e: Expr) -> tuple[bool, Expr]:
    """``(negative, magnitude)``: a negative constant counts as a negation, so that
    ``a + (-1) * b`` prints as ``a - b``."""
    if isinstance(e, Neg):
        return True, e.a
    if isinstance(e, Const) and e.value < 0:
        return True, Const(-e.value)
    return False, e


def _mul(a: Expr, b: Expr) -> Expr:
    # ``0 * a -> 0`` is only used where ``a`` is finite: derivatives, where a zero means
    # "does not depend on", never on the values a neuron computes.
    if _is(a, 0.0) or _is(b, 0.0):
        return ZERO
    if _is(b, 1.0):
        return a
    if _is(a, 1.0):
        return b
    if isinstance(b, Bin) and b.op == "/" and _is(b.a, 1.0):
        return _div(a, b.b)  # a * (1 / b) -> a / b: one rounding instead of two
    negative_a, a = _split_sign(a)
    negative_b, b = _split_sign(b)
    if negative_a != negative_b:
        return _neg(_mul(a, b))
    return _fold("*", a, b) or Bin("*", a, b)


def _div(a: Expr, b: Expr) -> Expr:
    if _is(b, 0.0):
        raise ZeroDivisionError("division by the constant 0 in a neuron equation")
    if _is(a, 0.0):
        return ZERO
    if _is(b, 1.0):
        return a
    negative, a = _split_sign(a)
    if negative:
        return _neg(_div(a, b))
    return _fold("/", a, b) or Bin("/", a, b)


def _neg(a: Expr) -> Expr:
    if isinstance(a, Neg):
        return a.a
    if isinstance(a, Const):
        return Const(-a.value)
    return Neg(a)


def exp(value):
    """``e ** value`` for a tensor (``torch.exp``) or an :class:`Expr`."""
    if isinstance(value, Expr):
        return Call("exp", value)
    return torch.exp(value)


def diff(e: Expr, name: str) -> Expr:
    """``d e / d name`` by the rules of calculus, simplified as trees are built."""
    if isinstance(e, Const):
        return ZERO
    if isinstance(e, Sym):
        return ONE if e.name == name else ZERO
    if isinstance(e, Neg):
        return _neg(diff(e.a, name))
    if isinstance(e, Call):
        if e.fn == "exp":
            return _mul(e, diff(e.a, name))
        raise NotImplementedError(f"no derivative rule for {e.fn}")
    da, db = diff(e.a, name), diff(e.b, name)
    if e.op == "+":
        return _add(da, db)
    if e.op == "-":
        return _sub(da, db)
    if e.op == "*":
        return _add(_mul(da, e.b), _mul(e.a, db))
    # Quotient rule; the usual case (a constant denominator) keeps the plain ``da / b``.
    if _is(db, 0.0):
        return _div(da, e.b)
    return _sub(_div(da, e.b), _div(_mul(e.a, db), _mul(e.b, e.b)))


def symbols_of(e: Expr) -> frozenset[str]:
    """The names of every :class:`Sym` in ``e``."""
    if isinstance(e, Sym):
        return frozenset((e.name,))
    if isinstance(e, Const):
        return frozenset()
    if isinstance(e, (Neg, Call)):
        return symbols_of(e.a)
    return symbols_of(e.a) | symbols_of(e.b)


# -- printing --------------------------------------------------------------------------

# Binding strength: a child binds weaker than its parent needs parentheses.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_UNARY = 3
_ATOM = 4


class ExprPrinter:
    """Prints an :class:`Expr` as infix source with the fewest parentheses that keep its
    order of operations (left to right for ``+ -`` and ``* /``).

    Subclasses adapt it to a language by overriding :meth:`literal`, :meth:`symbol`,
    :meth:`call` and, to print a division another way, :meth:`divide`.

    Args:
        names: how to spell each symbol (default: its own name).
    """

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self.names = dict(names or {})

    def print(self, e: Expr) -> str:
        return self._print(e)[0]

    # -- hooks ---------------------------------------------------------------------

    def literal(self, value: float) -> str:
        """A number in the target language."""
        if math.isinf(value) or math.isnan(value):
            raise ValueError(f"cannot print the constant {value} in a neuron equation")
        return repr(float(value))

    def symbol(self, name: str) -> str:
        return self.names.get(name, name)

    def call(self, fn: str, argument: str) -> str:
        return f"{fn}({argument})"

    def divide(
        self, a: Expr, b: Expr, wrap: Callable[[Expr, int, bool], str]
    ) -> tuple[str, int] | None:
        """Print ``a / b`` another way, as ``(text, binding strength)``, or return ``None``
        for the plain ``a / b``. ``wrap(e, strength, right)`` prints an operand,
        parenthesised as needed; strengths: 1 ``+ -``, 2 ``* /``, 3 unary, 4 atom."""
        return None

    # -- the walk ------------------------------------------------------------------

    def _print(self, e: Expr) -> tuple[str, int]:
        if isinstance(e, Const):
            text = self.literal(e.value)
            return text, (_UNARY if text.startswith("-") else _ATOM)
        if isinstance(e, Sym):
            return self.symbol(e.name), _ATOM
        if isinstance(e, Call):
            return self.call(e.fn, self._print(e.a)[0]), _ATOM
        if isinstance(e, Neg):
            return "-" + self._wrap(e.a, _UNARY, right=True), _UNARY
        precedence = _PRECEDENCE[e.op]
        if e.op == "/":
            special = self.divide(e.a, e.b, self._wrap)
            if special is not None:
                return special
        left = self._wrap(e.a, precedence, right=False)
        right = self._wrap(e.b, precedence, right=True)
        return f"{left} {e.op} {right}", precedence

    def _wrap(self, e: Expr, parent: int, right: bool) -> str:
        text, own = self._print(e)
        # The right operand of a left-associative operator needs parentheses at equal
        # precedence too: a - (b - c), a / (b * c).
        if own < parent or (right and own == parent and isinstance(e, Bin)):
            return f"({text})"
        return text
