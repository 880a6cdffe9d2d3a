"""The neurons as CUDA C expressions, printed from sj-core's statements.

Every expression comes from :mod:`sj_core.neuron.statements` (:func:`~sj_core.neuron.
statements.kernel_equations`): the charge, the adaptation and their exact derivatives,
printed with the statements' order of operations (and compiled without FMA contraction),
so that the fp32 forward agrees with the torch reference bit for bit. Nothing about a
neuron's math is written here.

Names in scope in the expressions (see :mod:`.kernels`): ``x`` (``X[t]``), ``v``
(``V[t-1]``), ``w`` (``W[t-1]``), ``h`` (``H[t]``), ``s`` (the spike, 0 or 1), ``r_tau``
(the tensor parameter, read from a device scalar), ``v_reset`` (``V_r``: 0 for soft
reset), ``v_threshold`` and the float parameters by name (kernel arguments).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from sj_core.neuron.statements import (
    FLAG,
    FLOAT,
    STATEMENTS,
    TENSOR,
    ExprPrinter,
    NeuronStatement,
    kernel_equations,
)

__all__ = ["NEURONS", "CPrinter", "NeuronKernelSpec", "PrintedEquations"]


class CPrinter(ExprPrinter):
    """Prints statement expressions as CUDA C on ``float`` values."""

    def __init__(self, statement: NeuronStatement | None = None) -> None:
        tensors = statement.names(TENSOR) if statement is not None else ()
        super().__init__({name: "r_tau" for name in tensors})

    def literal(self, value: float) -> str:
        if math.isinf(value) or math.isnan(value):
            raise ValueError(f"cannot print the constant {value}")
        text = repr(float(value))
        return f"{text}f" if ("." in text or "e" in text) else f"{text}.0f"

    def call(self, fn: str, argument: str) -> str:
        return f"{fn}f({argument})"  # expf: the single-precision function


@dataclass(frozen=True)
class PrintedEquations:
    """One neuron with its flag set, as C expressions (``None``: not applicable).

    ``dreset_dh``/``dreset_ds`` are per reset mode: ``{True: hard, False: soft}``.
    """

    charge: str
    adapt: str | None
    jump: str | None
    dh_dx: str
    dh_dv: str
    dh_dw: str | None
    dh_dr: str | None
    da_dh: str | None
    da_dw: str | None
    dj_dw: str | None
    dj_ds: str | None
    reset: dict[bool, str]
    dreset_dh: dict[bool, str]
    dreset_ds: dict[bool, str]
    needs_v_prev: bool  # the derivatives use V[t-1], recomputed from H[t-1]
    needs_x: bool  # the derivatives use X[t]: the backward reads the input


@dataclass(frozen=True)
class NeuronKernelSpec:
    """One neuron family as the CUDA generator sees it."""

    name: str
    title: str
    scalars: tuple[str, ...]  # float kernel arguments after v_threshold and v_reset
    has_decay_input: bool
    has_w: bool
    has_r_tau: bool

    @functools.cache  # noqa: B019 (a handful of frozen specs live for the process)
    def equations(self, decay_input: bool) -> PrintedEquations:
        statement = STATEMENTS[self.name]
        flags = {"decay_input": decay_input} if self.has_decay_input else {}
        hard = kernel_equations(statement, flags, hard_reset=True)
        soft = kernel_equations(statement, flags, hard_reset=False)
        p = CPrinter(statement).print

        def maybe(e) -> str | None:
            return None if e is None else p(e)

        tensor = statement.names(TENSOR)
        return PrintedEquations(
            charge=p(hard.charge),
            adapt=maybe(hard.adapt),
            jump=maybe(hard.jump),
            dh_dx=p(hard.dcharge["x"]),
            dh_dv=p(hard.dcharge["v"]),
            dh_dw=maybe(hard.dcharge.get("w")),
            dh_dr=maybe(hard.dcharge[tensor[0]]) if tensor else None,
            da_dh=maybe(hard.dadapt.get("h")),
            da_dw=maybe(hard.dadapt.get("w")),
            dj_dw=maybe(hard.djump.get("w")),
            dj_ds=maybe(hard.djump.get("s")),
            reset={True: p(hard.reset), False: p(soft.reset)},
            dreset_dh={True: p(hard.dreset["h"]), False: p(soft.dreset["h"])},
            dreset_ds={True: p(hard.dreset["s"]), False: p(soft.dreset["s"])},
            needs_v_prev="v" in hard.backward_reads,
            needs_x="x" in hard.backward_reads,
        )


def _spec(statement: NeuronStatement) -> NeuronKernelSpec:
    flags = statement.names(FLAG)
    if flags not in ((), ("decay_input",)):
        raise NotImplementedError(
            f"{statement.title}: the CUDA generator handles the flag decay_input only, got {flags}"
        )
    if len(statement.names(TENSOR)) > 1:
        raise NotImplementedError(f"{statement.title}: at most one tensor parameter")
    return NeuronKernelSpec(
        name=statement.name,
        title=statement.title,
        scalars=statement.names(FLOAT),
        has_decay_input=bool(flags),
        has_w=statement.adaptation is not None,
        has_r_tau=bool(statement.names(TENSOR)),
    )


#: operator-key neuron name -> spec, for every statement of sj-core.
NEURONS: dict[str, NeuronKernelSpec] = {name: _spec(s) for name, s in STATEMENTS.items()}
