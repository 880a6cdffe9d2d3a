"""The statements of the built-in neurons (SPEC section 3).

Each equation is written once, here, with the operations in the order the torch
reference computes them; kernels print these same functions (see
:mod:`sj_core.neuron.statements`). ``v_r`` is ``v_reset``, or 0 for soft reset.
"""

from __future__ import annotations

from typing import Any

from ..validation import check_positive, check_tau
from .expr import exp
from .statement import FLAG, FLOAT, TENSOR, Adaptation, NeuronStatement, Parameter

__all__ = ["EIF", "IF", "IZHIKEVICH", "LIF", "PLIF", "QIF", "STATEMENTS"]


def check_hard_reset_order(params: dict[str, Any], v_threshold: float, v_reset: float | None):
    """Hard reset needs ``v_threshold > v_reset`` and ``v_rest >= v_reset``.

    A neuron reset above its threshold, or above its resting potential, would fire again
    at once or be pushed upwards by its own leak; the reference system rejects both.
    """
    if v_reset is None:
        return
    if not v_threshold > v_reset:
        raise ValueError(
            f"with hard reset, v_threshold must be > v_reset, got v_threshold={v_threshold}, "
            f"v_reset={v_reset} (or use v_reset=None for soft reset)"
        )
    if not params["v_rest"] >= v_reset:
        raise ValueError(
            f"with hard reset, v_rest must be >= v_reset, got v_rest={params['v_rest']}, "
            f"v_reset={v_reset}"
        )


_TAU = Parameter("tau", FLOAT, check_tau, "membrane time constant, > 1")
_DECAY_INPUT = Parameter("decay_input", FLAG, doc="whether the input is divided by tau too")
_V_C = Parameter("v_c", FLOAT, doc="critical voltage of the quadratic term")
_A0 = Parameter("a0", FLOAT, check_positive, "sharpness of the quadratic term, > 0")
_V_REST = Parameter("v_rest", FLOAT, doc="resting potential")


def _if_charge(x, v, **_):
    return v + x


def _lif_charge(x, v, *, tau, decay_input, v_r):
    if decay_input:
        return v + (x - (v - v_r)) / tau
    return v - (v - v_r) / tau + x


def _plif_charge(x, v, r_tau, *, decay_input, v_r):
    # 1/tau = r_tau = sigmoid(w): a tensor, so that w learns.
    if decay_input:
        return v + (x - (v - v_r)) * r_tau
    return v - (v - v_r) * r_tau + x


def _qif_charge(x, v, *, tau, v_c, a0, v_rest, **_):
    return v + (x + a0 * (v - v_rest) * (v - v_c)) / tau


def _eif_charge(x, v, *, tau, delta_T, theta_rh, v_rest, **_):
    return v + (x + v_rest - v + delta_T * exp((v - theta_rh) / delta_T)) / tau


def _izhikevich_charge(x, v, w, *, tau, v_c, a0, v_rest, **_):
    return v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau


def _izhikevich_adapt(h, w, *, a, v_rest, tau_w, **_):
    return w + (a * (h - v_rest) - w) / tau_w


def _izhikevich_jump(w, s, *, b, **_):
    return w + b * s


IF = NeuronStatement(name="if", title="IF", parameters=(), charge=_if_charge)

LIF = NeuronStatement(name="lif", title="LIF", parameters=(_TAU, _DECAY_INPUT), charge=_lif_charge)

PLIF = NeuronStatement(
    name="plif",
    title="Parametric LIF",
    parameters=(
        Parameter("r_tau", TENSOR, doc="1/tau = sigmoid(w), a one-element tensor"),
        _DECAY_INPUT,
    ),
    charge=_plif_charge,
)

QIF = NeuronStatement(
    name="qif",
    title="QIF",
    parameters=(_TAU, _V_C, _A0, _V_REST),
    charge=_qif_charge,
    checks=(check_hard_reset_order,),
)

EIF = NeuronStatement(
    name="eif",
    title="EIF",
    parameters=(
        _TAU,
        Parameter("delta_T", FLOAT, check_positive, "sharpness of the exponential, > 0"),
        Parameter("theta_rh", FLOAT, doc="rheobase threshold"),
        _V_REST,
    ),
    charge=_eif_charge,
    checks=(check_hard_reset_order,),
)

IZHIKEVICH = NeuronStatement(
    name="izhikevich",
    title="Izhikevich",
    parameters=(
        _TAU,
        _V_C,
        _A0,
        _V_REST,
        Parameter("a", FLOAT, doc="sub-threshold coupling of w to the potential"),
        Parameter("b", FLOAT, doc="spike-triggered jump of w"),
        # The reference system only asserts a float; tau_w <= 0 would divide by zero or
        # make the adaptation grow without bound.
        Parameter("tau_w", FLOAT, check_positive, "adaptation time constant, > 0"),
    ),
    charge=_izhikevich_charge,
    adaptation=Adaptation(adapt=_izhikevich_adapt, jump=_izhikevich_jump),
)

#: Every built-in statement, by operator-key prefix.
STATEMENTS: dict[str, NeuronStatement] = {s.name: s for s in (IF, LIF, PLIF, QIF, EIF, IZHIKEVICH)}
