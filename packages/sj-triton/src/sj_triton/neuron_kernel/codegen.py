"""Generate :mod:`sj_triton.neuron_kernel.equations` from the neuron statements.

Triton reads a kernel's source from its file, so the per-neuron equations are printed
once into a checked-in module rather than at run time; a test regenerates the text and
compares, so it can never drift from :mod:`sj_core.neuron.statements`. After adding or
changing a statement, run::

    python -m sj_triton.neuron_kernel.codegen

The printer keeps the statements' order of operations. Two Triton-specific choices:

* a division by a float parameter (``x / tau``) is a multiplication by its fp32
  reciprocal, computed on the host (Triton's ``/`` is approximate on GPUs; torch's CUDA
  kernels divide by a Python scalar this same way);
* the float parameters arrive in run-time scalar slots ``c0 .. c7``
  (:data:`~sj_triton.neuron_kernel.equations.SCALAR_SLOTS` says which is which), so
  every neuron shares one kernel signature and no value recompiles anything.

This module imports neither Triton nor the kernels.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from sj_core.neuron.statements import (
    FLOAT,
    STATEMENTS,
    TENSOR,
    ExprPrinter,
    KernelEquations,
    NeuronStatement,
    flag_settings,
    kernel_equations,
)
from sj_core.neuron.statements.expr import Const, Expr, Sym

__all__ = ["MAX_SCALARS", "TritonPrinter", "generate", "output_path"]

#: Run-time scalar slots of every kernel (the most float parameters a neuron may have,
#: counting reciprocals).
MAX_SCALARS = 8

_SCALARS = ", ".join(f"c{i}" for i in range(MAX_SCALARS))


class TritonPrinter(ExprPrinter):
    """Prints statement expressions as Triton code; records the scalar slots it uses."""

    def __init__(self, statement: NeuronStatement, slots: list[str]) -> None:
        names = {"v_reset": "v_reset", "v_threshold": "v_threshold"}
        names.update({name: "r" for name in statement.names(TENSOR)})
        super().__init__(names)
        self.floats = set(statement.names(FLOAT))
        self.slots = slots

    def _slot(self, key: str) -> str:
        if key not in self.slots:
            self.slots.append(key)
        index = self.slots.index(key)
        if index >= MAX_SCALARS:
            raise ValueError(f"a neuron may use at most {MAX_SCALARS} scalars, needs {self.slots}")
        return f"c{index}"

    def symbol(self, name: str) -> str:
        return self._slot(name) if name in self.floats else super().symbol(name)

    def call(self, fn: str, argument: str) -> str:
        return f"tl.{fn}({argument})"

    def divide(self, a: Expr, b: Expr, wrap) -> tuple[str, int] | None:
        if isinstance(b, Sym) and b.name in self.floats:
            reciprocal = self._slot(f"1/{b.name}")
            if isinstance(a, Const) and a.value == 1.0:
                return reciprocal, 4
            return f"{wrap(a, 2, False)} * {reciprocal}", 2
        # Any other division: correctly rounded, as torch's.
        return f"tl.div_rn({self.print(a)}, {self.print(b)})", 4


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, text: str = "") -> None:
        self.lines.append("    " * self.depth + text if text else "")

    def indent(self) -> _Source:
        self.depth += 1
        return self

    def dedent(self) -> None:
        self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _flags_value(flags: dict[str, bool]) -> int:
    return sum(int(value) << i for i, value in enumerate(flags.values()))


def _describe(flags: dict[str, bool]) -> str:
    return ", ".join(name if value else f"no {name}" for name, value in flags.items())


# A body prints the assignments of one neuron and flag setting:
# (out, printer, equations, statement) -> None.
Body = Callable[[_Source, TritonPrinter, KernelEquations, NeuronStatement], None]


def _neuron_chain(
    out: _Source,
    printers: dict[str, TritonPrinter],
    body: Body,
    only: Callable[[NeuronStatement], bool] = lambda statement: True,
    default: str | None = None,
) -> None:
    """``if NEURON == 0: ... elif ...`` over the statements ``only`` accepts, with one
    branch per flag setting inside each; ``default`` is the ``else`` branch."""
    first = True
    for index, statement in enumerate(STATEMENTS.values()):
        if not only(statement):
            continue
        out(f"{'if' if first else 'elif'} NEURON == {index}:  # {statement.title}")
        first = False
        out.indent()
        settings = flag_settings(statement)
        for j, flags in enumerate(settings):
            if len(settings) > 1:
                keyword = "else" if j == len(settings) - 1 else ("if" if j == 0 else "elif")
                condition = "" if keyword == "else" else f" FLAGS == {_flags_value(flags)}"
                out(f"{keyword}{condition}:  # {_describe(flags)}")
                out.indent()
            e = kernel_equations(statement, flags, hard_reset=True)
            body(out, printers[statement.name], e, statement)
            if len(settings) > 1:
                out.dedent()
        out.dedent()
    if default is not None:
        out("else:")
        out(f"    {default}")


def _charge(out, p, e, statement):
    out(f"h = {p.print(e.charge)}")


def _adapt(out, p, e, statement):
    out(f"w_next = {p.print(e.adapt)}")


def _jump(out, p, e, statement):
    out(f"w_next = {p.print(e.jump)}")


def _charge_grads(out, p, e, statement):
    tensors = statement.names(TENSOR)
    partials = (
        ("dh_dx", e.dcharge["x"]),
        ("dh_dv", e.dcharge["v"]),
        ("dh_dw", e.dcharge.get("w")),
        ("dh_dr", e.dcharge[tensors[0]] if tensors else None),
    )
    for target, partial in partials:
        out(f"{target} = {'0.0' if partial is None else p.print(partial)}")


def _adaptation_grads(out, p, e, statement):
    out(f"da_dh = {p.print(e.dadapt['h'])}")
    out(f"da_dw = {p.print(e.dadapt['w'])}")
    out(f"dj_dw = {p.print(e.djump['w'])}")
    out(f"dj_ds = {p.print(e.djump['s'])}")


def _has_w(statement: NeuronStatement) -> bool:
    return statement.adaptation is not None


_COMMON = f"r, {_SCALARS}, v_reset, NEURON: tl.constexpr, FLAGS: tl.constexpr"

# (signature, docstring, body, statements, else branch, returned names)
_FUNCTIONS: tuple[tuple[str, str, Body, Callable, str | None, str], ...] = (
    (f"charge(x, v, w, {_COMMON})", "``H[t]`` from ``X[t]`` and the previous states.",
     _charge, lambda s: True, None, "h"),
    (f"adapt(h, w, {_COMMON})", "The adaptation state after charging, before firing.",
     _adapt, _has_w, "w_next = w", "w_next"),
    (f"jump(w, s, {_COMMON})", "The adaptation state after firing ``s`` (never detached).",
     _jump, _has_w, "w_next = w", "w_next"),
    (f"charge_grads(x, v, w, {_COMMON})",
     "``(dH/dX, dH/dV, dH/dW, dH/dr)`` at ``X[t]`` and the previous states.",
     _charge_grads, lambda s: True, None, "dh_dx, dh_dv, dh_dw, dh_dr"),
    (f"adaptation_grads(h, w, s, {_COMMON})",
     "``(dW'/dH, dW'/dW, dW/dW', dW/dS)``: the adaptation's and the jump's derivatives.",
     _adaptation_grads, _has_w, "da_dh, da_dw, dj_dw, dj_ds = 0.0, 0.0, 1.0, 0.0",
     "da_dh, da_dw, dj_dw, dj_ds"),
)  # fmt: skip


def _jit(out: _Source, signature: str, doc: str) -> None:
    out()
    out()
    out("@triton.jit")
    out(f"def {signature}:")
    out.indent()
    out(f'"""{doc}"""')


def _shared(out: _Source) -> None:
    """Reset and firing: the same for every neuron, printed from the statement module."""
    hard = kernel_equations(STATEMENTS["if"], {}, hard_reset=True)
    soft = kernel_equations(STATEMENTS["if"], {}, hard_reset=False)
    plain = ExprPrinter()
    _jit(out, "reset(h, s, v_threshold, v_reset, HARD_RESET: tl.constexpr)",
         "``V[t]`` after firing ``s`` (hard or soft reset).")  # fmt: skip
    out("if HARD_RESET:")
    out(f"    v = {plain.print(hard.reset)}")
    out("else:")
    out(f"    v = {plain.print(soft.reset)}")
    out("return v")
    out.dedent()
    _jit(out, "reset_grads(h, s, v_threshold, v_reset, HARD_RESET: tl.constexpr)",
         "``(dV/dH, dV/dS)`` of :func:`reset`.")  # fmt: skip
    out("if HARD_RESET:")
    out(f"    dv_dh, dv_ds = {plain.print(hard.dreset['h'])}, {plain.print(hard.dreset['s'])}")
    out("else:")
    out(f"    dv_dh, dv_ds = {plain.print(soft.dreset['h'])}, {plain.print(soft.dreset['s'])}")
    out("return dv_dh, dv_ds")
    out.dedent()
    _jit(out, "fires(h, v_threshold)", "The spike condition ``H - V_th >= 0`` (NaN never fires).")
    out("return h - v_threshold >= 0.0")
    out.dedent()


_HEADER = '''# Generated by sj_triton.neuron_kernel.codegen from sj_core.neuron.statements.
# Do not edit: change the statement, then run python -m sj_triton.neuron_kernel.codegen
"""The neuron equations as Triton functions, one branch per neuron (``NEURON``) and
flag setting (``FLAGS``, bit ``i`` = the statement's ``i``-th flag), printed from
:mod:`sj_core.neuron.statements` (see :mod:`sj_triton.neuron_kernel.codegen`).

Arguments: ``x`` (``X[t]``), ``v``/``w`` (the previous states), ``h`` (``H[t]``), ``s``
(the spike, 0.0 or 1.0), ``r`` (the tensor parameter), ``c0 .. c7`` (the float
parameters, see :data:`SCALAR_SLOTS`), ``v_threshold`` and ``v_reset`` (``V_r``).
All arithmetic is fp32.
"""

import triton
import triton.language as tl
'''


def generate() -> str:
    """The text of ``equations.py``."""
    slots: dict[str, list[str]] = {name: [] for name in STATEMENTS}
    printers = {name: TritonPrinter(s, slots[name]) for name, s in STATEMENTS.items()}
    functions = _Source()
    for signature, doc, body, only, default, returns in _FUNCTIONS:
        _jit(functions, signature, doc)
        _neuron_chain(functions, printers, body, only, default)
        functions(f"return {returns}")
        functions.dedent()
    _shared(functions)

    tables = _Source()
    tables()
    ids = ", ".join(f'"{name}": {i}' for i, name in enumerate(STATEMENTS))
    tables("#: Statement name -> the ``NEURON`` constant of the kernels.")
    tables(f"NEURON_IDS = {{{ids}}}")
    tables("#: Statement name -> what ``c0, c1, ...`` hold (``1/tau``: the reciprocal of tau).")
    tables("SCALAR_SLOTS = {")
    for name, keys in slots.items():
        tables(f'    "{name}": {tuple(keys)!r},')
    tables("}")
    tables("#: (statement name, FLAGS) -> which of X and V[t-1] the backward pass reads.")
    tables("BACKWARD_READS = {")
    for name, statement in STATEMENTS.items():
        for flags in flag_settings(statement):
            reads = kernel_equations(statement, flags, hard_reset=True).backward_reads
            tables(f'    ("{name}", {_flags_value(flags)}): {tuple(sorted(reads))!r},')
    tables("}")
    return _HEADER + tables.text() + functions.text()


def output_path() -> Path:
    """Where ``equations.py`` lives."""
    return Path(__file__).with_name("equations.py")


if __name__ == "__main__":
    output_path().write_text(generate())
    sys.stdout.write(f"wrote {output_path()}\n")
