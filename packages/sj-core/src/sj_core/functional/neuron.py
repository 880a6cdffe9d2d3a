"""Pure per-step neuron functions: the spike and the new state, nothing mutated.

Each function is one time step of a neuron, with the reference system's name and
argument order, computed from the neuron's statement (:mod:`sj_core.neuron.statements`)
exactly as the modules compute it: the same operations in the same order, so a step
function and the module's ``forward`` (torch backend) give the same bits. Shapes: ``x``
and each state ``[N, *]`` (any shape, the same for all); parameters are Python floats
(``plif_step``'s ``w`` is the module's parameter tensor, ``1/tau = sigmoid(w)``).

Example::

    >>> v = torch.zeros(2, 3)
    >>> for x in torch.rand(8, 2, 3):
    ...     spike, v = lif_step(x, v, 2.0, True, 1.0, 0.0, surrogate.Sigmoid())

The PSN steps carry their recent inputs as a tuple ``queue`` of flattened steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..neuron.statements import EIF, IF, IZHIKEVICH, LIF, PLIF, QIF, NeuronStatement, reset
from ..reference import neuron_step
from .psn_steps import masked_psn_step, sliding_psn_step

__all__ = [
    "eif_step",
    "if_step",
    "izhikevich_step",
    "lif_charge",
    "lif_step",
    "masked_psn_step",
    "plif_step",
    "qif_step",
    "sliding_psn_step",
    "voltage_reset",
]

SurrogateFunction = Callable[[torch.Tensor], torch.Tensor]


def _step(
    statement: NeuronStatement,
    x: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    tensors: tuple[torch.Tensor, ...],
    params: Mapping[str, Any],
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    if not torch.compiler.is_compiling():
        # The modules check their parameters once, at construction; a step function
        # checks at every call (outside compiled code, where they are constants).
        params, v_threshold, v_reset = statement.validate(dict(params), v_threshold, v_reset)
        _check_tensors(statement, x, states)
    return neuron_step(
        statement,
        x,
        states,
        tensors,
        params,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
    )


def _check_tensors(
    statement: NeuronStatement, x: torch.Tensor, states: tuple[torch.Tensor, ...]
) -> None:
    """``x`` and the states: floating-point tensors whose shapes broadcast together."""
    step = f"{statement.name}_step"
    names = ("x", *statement.states)
    for name, value in zip(names, (x, *states), strict=True):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(
                f"{step}: {name} must be a floating-point tensor (float16, bfloat16, float32 "
                f"or float64), got {got}"
            )
        try:
            torch.broadcast_shapes(value.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{step}: {name} must have the shape of x, {tuple(x.shape)} (or one that "
                f"broadcasts with it), got {tuple(value.shape)}"
            ) from None


def voltage_reset(
    v: torch.Tensor,
    spike: torch.Tensor,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
) -> torch.Tensor:
    """The potential after the reset: hard ``S V_reset + (1 - S) H``, soft
    (``v_reset=None``) ``H - S V_th``, with ``S`` detached when ``detach_reset``."""
    return reset(v, spike.detach() if detach_reset else spike, v_threshold, v_reset)


def lif_charge(
    x: torch.Tensor, v: torch.Tensor, tau: float, decay_input: bool, v_reset: float | None
) -> torch.Tensor:
    """LIF charge ``H`` from ``X`` and ``V[t-1]``: ``V + (X - (V - V_r)) / tau`` with
    ``decay_input``, else ``V - (V - V_r) / tau + X`` (``V_r`` = ``v_reset``, 0 for soft
    reset)."""
    params, _, v_reset = LIF.validate({"tau": tau, "decay_input": decay_input}, 1.0, v_reset)
    return LIF.charge(x, v, **params, v_r=0.0 if v_reset is None else v_reset)


def if_step(
    x: torch.Tensor,
    v: torch.Tensor,
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One IF step: ``(spike, v_next)``."""
    spike, (v,) = _step(IF, x, (v,), (), {}, v_threshold, v_reset, surrogate_function, detach_reset)
    return spike, v


def lif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    tau: float,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step (charge :func:`lif_charge`, fire, :func:`voltage_reset`):
    ``(spike, v_next)``."""
    params = {"tau": tau, "decay_input": decay_input}
    spike, (v,) = _step(
        LIF, x, (v,), (), params, v_threshold, v_reset, surrogate_function, detach_reset
    )
    return spike, v


def plif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One parametric-LIF step with ``1/tau = sigmoid(w)`` (``w``: the module's
    one-element parameter, gradients flow into it): ``(spike, v_next)``."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a tensor (1/tau = sigmoid(w)), got {type(w).__name__}")
    params = {"decay_input": decay_input}
    spike, (v,) = _step(
        PLIF,
        x,
        (v,),
        (w.sigmoid(),),
        params,
        v_threshold,
        v_reset,
        surrogate_function,
        detach_reset,
    )
    return spike, v


def qif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    tau: float,
    a0: float,
    v_rest: float,
    v_c: float,
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One QIF step: ``(spike, v_next)``."""
    params = {"tau": tau, "a0": a0, "v_rest": v_rest, "v_c": v_c}
    spike, (v,) = _step(
        QIF, x, (v,), (), params, v_threshold, v_reset, surrogate_function, detach_reset
    )
    return spike, v


def eif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    tau: float,
    delta_t: float,
    theta_rh: float,
    v_rest: float,
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One EIF step (``delta_t`` is the modules' ``delta_T``): ``(spike, v_next)``."""
    params = {"tau": tau, "delta_T": delta_t, "theta_rh": theta_rh, "v_rest": v_rest}
    spike, (v,) = _step(
        EIF, x, (v,), (), params, v_threshold, v_reset, surrogate_function, detach_reset
    )
    return spike, v


def izhikevich_step(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    tau: float,
    a0: float,
    v_rest: float,
    v_c: float,
    tau_w: float,
    a: float,
    b: float,
    v_threshold: float,
    v_reset: float | None,
    surrogate_function: SurrogateFunction,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Izhikevich step: ``(spike, v_next, w_next)``.

    With hard reset and ``detach_reset`` the spike is detached in both terms of the
    reset (the reference system detaches only one; see the neurons docs).
    """
    params = {"tau": tau, "a0": a0, "v_rest": v_rest, "v_c": v_c, "tau_w": tau_w, "a": a, "b": b}
    spike, (v, w) = _step(
        IZHIKEVICH, x, (v, w), (), params, v_threshold, v_reset, surrogate_function, detach_reset
    )
    return spike, v, w
