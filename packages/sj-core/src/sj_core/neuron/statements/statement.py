"""What a neuron statement is, and the parts of every neuron's step that are written once.

A :class:`NeuronStatement` holds a neuron's parameters (with their checks) and its
equations as plain Python functions. Every spiking neuron steps the same way (SPEC
sections 2, 3 and 5)::

    H    = charge(X, V[t-1], [W[t-1]], params)     # the statement's equation
    W'   = adapt(H, W[t-1], params)                # neurons with an adaptation state W
    S    = Heaviside(H - V_th)                     # surrogate gradient in the backward
    V[t] = reset(H, S)                             # hard or soft, below
    W[t] = jump(W', S, params)                     # S never detached here

The reset, the firing condition and their behaviour on non-finite values are stated here
once for every neuron and every backend:

* a spike is ``H - V_th >= 0``: at equality it fires; a NaN ``H`` never fires;
* hard reset is the arithmetic blend ``V = S V_reset + (1 - S) H`` and soft reset
  ``V = H - S V_th``. With ``S`` in {0, 1} and a finite ``H`` the blend is exactly
  ``V_reset`` or ``H``; with ``H = +inf`` the neuron fires and ``V = V_reset + 0 * inf``
  is NaN, after which it never fires again (NaN propagates as in IEEE arithmetic). Every
  backend computes these same operations, so all agree on such inputs as well.

Example::

    >>> from sj_core.neuron.statements import LIF
    >>> LIF.charge(torch.tensor([1.5]), torch.tensor([0.0]), tau=2.0,
    ...            decay_input=True, v_r=0.0)
    tensor([0.7500])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..validation import check_bool, check_float

__all__ = [
    "FLAG",
    "FLOAT",
    "TENSOR",
    "Adaptation",
    "NeuronStatement",
    "Parameter",
    "fire_input",
    "reset",
]

FLOAT, FLAG, TENSOR = "float", "flag", "tensor"


@dataclass(frozen=True)
class Parameter:
    """One parameter of a neuron's equations.

    Attributes:
        name: as in the equations, the module attribute and the operator keyword.
        kind: ``"float"`` (a number, a run-time kernel argument), ``"flag"`` (a bool
            that selects an equation, a compile-time constant of kernels) or
            ``"tensor"`` (a one-element tensor that receives a gradient, e.g. PLIF's
            ``r_tau``; passed positionally after the states).
        check: ``(name, value) -> value`` validation; raises ``TypeError``/``ValueError``.
        doc: one line for documentation.
    """

    name: str
    kind: str
    check: Callable[[str, Any], Any] | None = None
    doc: str = ""

    def validate(self, value: Any) -> Any:
        if self.kind == FLAG:
            return check_bool(self.name, value)
        if self.kind == FLOAT:
            return (self.check or check_float)(self.name, value)
        return value


@dataclass(frozen=True)
class Adaptation:
    """A second state ``W`` that follows the potential (Izhikevich).

    Attributes:
        adapt: ``(h, w, **params) -> W'``, from the charged ``H`` before firing.
        jump: ``(w, s, **params) -> W``, after firing; the spike is never detached here.
    """

    adapt: Callable[..., Any]
    jump: Callable[..., Any]


@dataclass(frozen=True)
class NeuronStatement:
    """The one statement of a spiking neuron that every backend derives from.

    Attributes:
        name: the operator-key prefix (``"lif"`` -> ``"lif.multi_step"``).
        title: for messages and generated comments.
        parameters: the neuron's own parameters (besides ``v_threshold``, ``v_reset``,
            ``detach_reset`` and the surrogate, which every neuron has).
        charge: ``(x, v, [w,] *, **params, v_r) -> H``, with ``v_r`` the ``V_r`` of the
            equations (``v_reset``, or 0 for soft reset). Written with ``+ - * /`` and
            :func:`~sj_core.neuron.statements.expr.exp` only, so that it runs on tensors
            and on symbols alike.
        adaptation: the second state's equations, or ``None``.
        checks: cross-parameter checks ``(params, v_threshold, v_reset) -> None``.
    """

    name: str
    title: str
    parameters: tuple[Parameter, ...]
    charge: Callable[..., Any]
    adaptation: Adaptation | None = None
    checks: tuple[Callable[[Mapping[str, Any], float, float | None], None], ...] = field(default=())

    @property
    def states(self) -> tuple[str, ...]:
        """The state variables, in the order operators take and return them."""
        return ("v", "w") if self.adaptation is not None else ("v",)

    @property
    def operator_key(self) -> str:
        return f"{self.name}.multi_step"

    def names(self, kind: str) -> tuple[str, ...]:
        """The parameter names of one ``kind`` (``"float"``, ``"flag"``, ``"tensor"``)."""
        return tuple(p.name for p in self.parameters if p.kind == kind)

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate(
        self, params: Mapping[str, Any], v_threshold: Any, v_reset: Any
    ) -> tuple[dict[str, Any], float, float | None]:
        """Check every float and flag parameter and the cross checks.

        Returns ``(params, v_threshold, v_reset)`` normalised (ints become floats).

        Raises:
            TypeError: a missing or unknown parameter, or one of the wrong type.
            ValueError: a value outside its range.
        """
        expected = self.names(FLOAT) + self.names(FLAG)
        unknown = sorted(set(params) - set(expected))
        missing = [name for name in expected if name not in params]
        if unknown or missing:
            details = []
            if missing:
                details.append(f"missing {missing}")
            if unknown:
                details.append(f"unexpected {unknown}")
            raise TypeError(
                f"{self.title} takes the parameters {list(expected)}: {', '.join(details)}"
            )
        checked = {name: self.parameter(name).validate(params[name]) for name in expected}
        v_threshold = check_float("v_threshold", v_threshold)
        v_reset = check_float("v_reset", v_reset, allow_none=True)
        for check in self.checks:
            check(checked, v_threshold, v_reset)
        return checked, v_threshold, v_reset

    def operator_function(
        self, implementation: Callable[..., Any], *, name: str, module: str, doc: str
    ) -> Callable[..., Any]:
        """``implementation`` (any ``(*args, **kwargs)`` callable) as a function named
        ``name`` in ``module`` (so that it pickles by name), with this neuron's operator
        signature (for ``help()``) and ``doc``."""

        def operator(*args: Any, **kwargs: Any) -> Any:
            return implementation(*args, **kwargs)

        operator.__name__ = operator.__qualname__ = name
        operator.__module__ = module
        operator.__signature__ = self.signature()
        operator.__doc__ = doc
        return operator

    def signature(self) -> inspect.Signature:
        """The signature of this neuron's ``multi_step`` operators (for ``help()``)."""
        P = inspect.Parameter
        positional = ["x_seq", *(f"{s}_init" for s in self.states), *self.names(TENSOR)]
        parameters = [P(name, P.POSITIONAL_OR_KEYWORD) for name in positional]
        keywords = [*self.names(FLOAT), *self.names(FLAG)]
        keywords += ["v_threshold", "v_reset", "detach_reset", "surrogate_function"]
        parameters += [P(name, P.KEYWORD_ONLY) for name in keywords]
        parameters.append(P("store_v_seq", P.KEYWORD_ONLY, default=False))
        return inspect.Signature(parameters)


def fire_input(h, v_threshold):
    """What the surrogate (Heaviside) sees: ``H - V_th``; a spike where it is ``>= 0``."""
    return h - v_threshold


def reset(h, s, v_threshold, v_reset: Any | None):
    """The potential after firing: ``S V_reset + (1 - S) H`` (hard reset, ``v_reset``
    given) or ``H - S V_th`` (soft reset, ``v_reset is None``).

    ``s`` is the spike, or ``spike.detach()`` for ``detach_reset`` (which changes
    gradients only). Kernels call it with symbols to print the same arithmetic.
    """
    if v_reset is None:
        return h - s * v_threshold
    return s * v_reset + (1.0 - s) * h
