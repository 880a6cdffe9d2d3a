"""The symbolic form of a statement, and its derivatives: what kernel generators print.

:func:`kernel_equations` calls a statement's functions with :class:`~.expr.Sym`
placeholders for one setting of its flags and one reset mode, and differentiates the
results. The backward pass of every kernel is the chain rule over these pieces (SPEC
section 5), with ``g_v = dL/dV[t]``, ``g_w = dL/dW[t]`` and ``sg`` the surrogate
gradient at ``H - V_th``::

    g_s  = dL/dS[t] + g_w * djump/ds
    g_h  = g_s * sg + g_v * dreset/dh + g_v * dreset/ds * sg   # last term: not detach_reset
    g_w' = g_w * djump/dw
    g_h += g_w' * dadapt/dh
    dL/dX[t]   = g_h * dcharge/dx
    dL/dV[t-1] = g_h * dcharge/dv
    dL/dW[t-1] = g_w' * dadapt/dw + g_h * dcharge/dw
    dL/dp     += g_h * dcharge/dp          # each tensor parameter, summed over t and neurons

Symbols: ``x``, ``v``, ``w`` (the previous states), ``h``, ``s``, the parameters by name,
``v_reset`` (``V_r``: 0 for soft reset) and ``v_threshold``.

Example::

    >>> eq = kernel_equations(PLIF, {"decay_input": True}, hard_reset=True)
    >>> str(eq.dcharge["r_tau"])         # from X: no cancellation (see PLIF below)
    'x - (v - v_reset)'
    >>> sorted(eq.backward_reads)
    ['v', 'x']
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .expr import Expr, Sym, diff, symbols_of
from .statement import FLAG, FLOAT, TENSOR, NeuronStatement, reset

__all__ = ["KernelEquations", "flag_settings", "kernel_equations"]

X, V, W, H, S = Sym("x"), Sym("v"), Sym("w"), Sym("h"), Sym("s")
V_THRESHOLD, V_RESET = Sym("v_threshold"), Sym("v_reset")


@dataclass(frozen=True)
class KernelEquations:
    """One neuron with its flags fixed and one reset mode, as expressions.

    Attributes:
        charge, adapt, jump, reset: the step (``adapt``/``jump`` ``None`` without ``W``).
        dcharge: ``d charge / d`` each of ``x``, ``v``, (``w``) and each tensor parameter.
        dadapt: ``d adapt / d`` ``h`` and ``w`` (empty without ``W``).
        djump: ``d jump / d`` ``w`` and ``s`` (empty without ``W``).
        dreset: ``d reset / d`` ``h`` and ``s``.
        backward_reads: which of ``x`` and ``v`` (``V[t-1]``) the derivatives use: the
            backward pass must load ``X`` or recompute ``V[t-1]`` from the stored
            ``H[t-1]`` for them.
        floats: the float parameters the expressions use, in statement order.
    """

    charge: Expr
    adapt: Expr | None
    jump: Expr | None
    reset: Expr
    dcharge: Mapping[str, Expr]
    dadapt: Mapping[str, Expr]
    djump: Mapping[str, Expr]
    dreset: Mapping[str, Expr]
    backward_reads: frozenset[str]
    floats: tuple[str, ...]

    def expressions(self) -> Iterator[Expr]:
        """Every expression a kernel prints."""
        for e in (self.charge, self.adapt, self.jump, self.reset):
            if e is not None:
                yield e
        for table in (self.dcharge, self.dadapt, self.djump, self.dreset):
            yield from table.values()


def flag_settings(statement: NeuronStatement) -> list[dict[str, bool]]:
    """Every setting of the statement's flags (one empty setting when it has none)."""
    names = statement.names(FLAG)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*[(True, False)] * len(names))
    ]


def kernel_equations(
    statement: NeuronStatement, flags: Mapping[str, bool], hard_reset: bool
) -> KernelEquations:
    """The symbolic step of ``statement`` with ``flags`` set (see the module docstring).

    Raises:
        NotImplementedError: a derivative uses ``W``. Kernels keep only ``H`` for the
            backward pass and recompute ``V[t-1]`` from it; ``W[t-1]`` cannot be.
    """
    return _kernel_equations(statement, tuple(sorted(flags.items())), hard_reset)


@functools.cache
def _kernel_equations(
    statement: NeuronStatement, flags: tuple[tuple[str, bool], ...], hard_reset: bool
) -> KernelEquations:
    params: dict[str, object] = {name: Sym(name) for name in statement.names(FLOAT)}
    params.update(flags)
    params["v_r"] = V_RESET
    tensors = [Sym(name) for name in statement.names(TENSOR)]
    states = (V, W) if statement.adaptation is not None else (V,)
    charge = statement.charge(X, *states, *tensors, **params)
    adapt = jump = None
    dcharge = {"x": diff(charge, "x"), "v": diff(charge, "v")}
    dadapt: dict[str, Expr] = {}
    djump: dict[str, Expr] = {}
    if statement.adaptation is not None:
        adapt = statement.adaptation.adapt(H, W, **params)
        jump = statement.adaptation.jump(W, S, **params)
        dcharge["w"] = diff(charge, "w")
        dadapt = {"h": diff(adapt, "h"), "w": diff(adapt, "w")}
        djump = {"w": diff(jump, "w"), "s": diff(jump, "s")}
    for tensor in tensors:
        dcharge[tensor.name] = diff(charge, tensor.name)
    after = reset(H, S, V_THRESHOLD, V_RESET if hard_reset else None)
    dreset = {"h": diff(after, "h"), "s": diff(after, "s")}

    derivatives = [*dcharge.values(), *dadapt.values(), *djump.values()]
    used = frozenset().union(*(symbols_of(e) for e in derivatives))
    if "w" in used:
        raise NotImplementedError(
            f"{statement.title}: a derivative of its equations uses W[t-1]; kernels can only "
            "recompute V[t-1] (from the stored H) in the backward pass"
        )
    everything = [charge, after, *derivatives, *(e for e in (adapt, jump) if e is not None)]
    symbols = frozenset().union(*(symbols_of(e) for e in everything))
    return KernelEquations(
        charge=charge,
        adapt=adapt,
        jump=jump,
        reset=after,
        dcharge=dcharge,
        dadapt=dadapt,
        djump=djump,
        dreset=dreset,
        backward_reads=used & {"x", "v"},
        floats=tuple(name for name in statement.names(FLOAT) if name in symbols),
    )
