"""The one statement of each neuron that every backend derives from.

A neuron is stated once (:mod:`.zoo`): its parameters with their checks, and its
equations as Python functions of ``+ - * /`` and :func:`~.expr.exp`. From that:

* the torch reference (:mod:`sj_core.reference`, the neuron modules' hooks) calls the
  functions on tensors;
* kernel generators (sj-triton, sj-cupy) call them on symbols (:mod:`.derive`), get
  expression trees with the same order of operations and their exact derivatives, and
  print them as Triton or CUDA C (:class:`~.expr.ExprPrinter`);
* what every neuron shares (firing, reset, their non-finite behaviour) is stated once in
  :mod:`.statement`.

Adding a neuron is one :class:`NeuronStatement` in :mod:`.zoo` plus one entry in the
conformance grid (``tests/conformance``); see the "Backends" documentation page.
"""

from .derive import KernelEquations, flag_settings, kernel_equations
from .expr import Expr, ExprPrinter, Sym, diff, exp
from .statement import (
    FLAG,
    FLOAT,
    TENSOR,
    Adaptation,
    NeuronStatement,
    Parameter,
    fire_input,
    reset,
)
from .zoo import EIF, IF, IZHIKEVICH, LIF, PLIF, QIF, STATEMENTS

__all__ = [
    "EIF",
    "FLAG",
    "FLOAT",
    "IF",
    "IZHIKEVICH",
    "LIF",
    "PLIF",
    "QIF",
    "STATEMENTS",
    "TENSOR",
    "Adaptation",
    "Expr",
    "ExprPrinter",
    "KernelEquations",
    "NeuronStatement",
    "Parameter",
    "Sym",
    "diff",
    "exp",
    "fire_input",
    "flag_settings",
    "kernel_equations",
    "reset",
]
