"""Neurons <-> NIR neuron primitives: every parameter convention in one place.

NIR states its neurons in continuous time, with time constants in seconds:
``tau dv/dt = (v_leak - v) + r I`` (LIF, LI) and ``dv/dt = r I`` (IF, I). sj_core's
neurons are discrete, with time constants in steps. With ``dt`` seconds per step, one
forward-Euler step of NIR's LIF is

    ``v[t] = v[t-1] + (dt / tau_nir) (v_leak - v[t-1] + r I[t])``

which is :class:`~sj_core.neuron.LIFNode`'s charge exactly when ``tau_nir = dt * tau``,
``v_leak = v_reset`` and ``r = 1`` (``decay_input=True``) or ``r = tau``
(``decay_input=False``: the input is not divided by ``tau``). snnTorch writes its
``Leaky`` the same way (``tau = dt / (1 - beta)``, ``r = tau / dt``, default
``dt = 1e-4``).

IF and I (no time constant) are where the libraries disagree. NIR states
``dv/dt = r I``; integrated over one step of ``dt`` seconds that is ``v += dt * r * I``,
so a gain of 1 per step is ``r = 1 / dt``, which is what SpikingJelly writes (and the
only ``r`` its importer accepts). snnTorch (whose importer accepts only ``r = 1``), Norse
(which warns unless ``r = 1``) and Sinabs (which writes ``r = 1``) read ``r`` as the gain
per step instead. sj_core **writes** ``r = 1`` (``V[t] = V[t-1] + X[t]``), the reading
most tools share, and **reads** both: ``r = 1`` as it is, and ``r = 1 / dt`` (with
``from_nir``'s ``dt``) as SpikingJelly's way of writing the same neuron, with a warning
that says so. Any other ``r`` is ambiguous between the two readings (they differ by a
factor ``dt``) and raises ``ValueError``.

Exported (``to_nir``):

============================================  ===========  ====================================
sj_core                                       NIR          parameters (every array: the layer's
                                                           shape, float32)
============================================  ===========  ====================================
``LIFNode``, ``SimpleLIFNode``                ``LIF``      ``tau = dt*tau``, ``r = 1`` or
                                                           ``tau``, ``v_leak = v_reset``
``ParametricLIFNode``                         ``LIF``      the same with its current ``tau``
``IFNode``, ``SimpleIFNode``                  ``IF``       ``r = 1``
``NonSpikingLIFNode(decode=None)``            ``LI``       ``tau = dt*tau``, ``r = 1``,
                                                           ``v_leak = 0``
``NonSpikingIFNode(decode=None)``             ``I``        ``r = 1``
============================================  ===========  ====================================

Imported (``from_nir``): the same, backwards. Parameters must be equal for every neuron of
a layer (sj_core neurons share one value per layer). They are written as float32, as
snnTorch writes them (its importer builds float32 layers around them), and float32 values
are read back to float32's 7 significant digits, so ``tau = 2.5`` steps or
``v_reset = -0.1`` come back exactly. An ``LIF`` gain ``r`` that neither form above
matches is folded into the threshold and reset (``v_threshold / r``, ``v_reset / r``):
the dynamics are linear in ``v``, so the spikes are unchanged while the potentials are
divided by ``r``, and a warning says so. ``CubaLIF`` (a synaptic current with its own
time constant feeding a LIF) has no sj_core neuron and raises ``NotImplementedError``.

Two differences remain, by construction: NIR fires when ``v > v_threshold``, sj_core when
``v >= v_threshold`` (they differ only when the potential equals the threshold exactly);
and a spiking neuron here starts at ``v_reset`` (NIR leaves the initial state open;
snnTorch starts at 0, so they agree for the usual ``v_reset = 0``). NIR has no soft reset
(``v_reset=None``), no learnable time constant and no surrogate gradient.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType
from typing import Any

import numpy as np
from torch import nn

from ..neuron import (
    PSN,
    BaseNode,
    EIFNode,
    FlexSN,
    IFNode,
    IzhikevichNode,
    LIFNode,
    MaskedPSN,
    NonSpikingIFNode,
    NonSpikingLIFNode,
    QIFNode,
    SimpleIFNode,
    SimpleLIFNode,
    SlidingPSN,
)
from ..neuron.statements import IF, LIF, PLIF

__all__ = [
    "DEFAULT_DT",
    "EXPORTED_NEURONS",
    "IMPORTED_NEURONS",
    "NEURON_REASONS",
    "check_dt",
    "neuron_to_nir",
    "nir_to_neuron",
]

#: Seconds per time step when none is given: snnTorch's choice, so that graphs move
#: between the two libraries with the same time constants.
DEFAULT_DT = 1e-4

#: The neuron modules :func:`neuron_to_nir` converts (for error messages).
EXPORTED_NEURONS = (
    "IFNode, LIFNode, ParametricLIFNode, SimpleIFNode, SimpleLIFNode (hard reset), "
    "NonSpikingIFNode, NonSpikingLIFNode (decode=None)"
)
#: Why the neurons NIR has no primitive for cannot be exported (for error messages).
NEURON_REASONS: dict[type, str] = {
    QIFNode: "NIR has no quadratic integrate-and-fire neuron",
    EIFNode: "NIR has no exponential integrate-and-fire neuron",
    IzhikevichNode: "NIR has no Izhikevich neuron (two state variables)",
    PSN: "a PSN computes every step from the whole sequence through a [T, T] weight",
    MaskedPSN: "a PSN computes every step from the whole sequence through a [T, T] weight",
    SlidingPSN: "a SlidingPSN weighs a window of past inputs, which no NIR neuron does",
    FlexSN: "a FlexSN neuron is user code, which NIR cannot describe",
}
#: The NIR neuron nodes :func:`nir_to_neuron` converts (for error messages).
IMPORTED_NEURONS = "IF, LIF, I, LI"

# Gains and time constants read from float32 files carry float32 rounding.
_RTOL = 1e-6


def check_dt(dt: Any) -> float:
    """``dt`` as a float; ``ValueError`` unless it is a positive, finite number of seconds."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not 0.0 < dt < math.inf:
        raise ValueError(f"dt must be a positive, finite number of seconds per step, got {dt!r}")
    return float(dt)


def _spiking_kind(module: nn.Module) -> str | None:
    """``'if'`` or ``'lif'`` for the spiking neurons NIR can describe, else ``None``.

    A ``BaseNode`` is judged by its statement, so a subclass that overrides a math hook
    (and so loses its statement) is not mistaken for the neuron it started from.
    """
    if isinstance(module, BaseNode):
        statement = type(module).statement
        if statement is IF:
            return "if"
        if statement is LIF or statement is PLIF:
            return "lif"
        return None
    return {SimpleIFNode: "if", SimpleLIFNode: "lif"}.get(type(module))


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    # float32, as snnTorch writes its nodes: its importer builds float32 layers around them.
    return np.full(shape, value, dtype=np.float32)


def neuron_to_nir(
    module: nn.Module, shape: tuple[int, ...], dt: float, nir: ModuleType
) -> Any | None:
    """The NIR node of neuron ``module`` whose layer has per-sample ``shape``, or ``None``
    when ``module`` is none of :data:`EXPORTED_NEURONS`. Raises ``NotImplementedError``
    for a configuration NIR cannot describe (soft reset, ``spiking=False``, a decode)."""
    kind = _spiking_kind(module)
    if kind is not None:
        return _spiking_to_nir(module, kind, shape, dt, nir)
    if type(module) in (NonSpikingIFNode, NonSpikingLIFNode):
        if module.decode is not None:
            raise NotImplementedError(
                f"{type(module).__name__}(decode={module.decode!r}) decodes over time, which "
                "NIR cannot describe; only decode=None (the potential at every step) exports"
            )
        if isinstance(module, NonSpikingIFNode):
            return nir.I(r=_full(shape, 1.0))
        return nir.LI(
            tau=_full(shape, dt * float(module.tau)), r=_full(shape, 1.0), v_leak=_full(shape, 0.0)
        )
    return None


def _spiking_to_nir(
    module: nn.Module, kind: str, shape: tuple[int, ...], dt: float, nir: ModuleType
) -> Any:
    name = type(module).__name__
    if module.v_reset is None:
        raise NotImplementedError(
            f"{name} with soft reset (v_reset=None) has no NIR equivalent: NIR neurons reset "
            "to v_reset; export a neuron with a float v_reset"
        )
    if not getattr(module.surrogate_function, "spiking", True):
        raise NotImplementedError(
            f"{name} outputs its surrogate's smooth primitive (spiking=False), which NIR "
            "cannot describe; export it in spiking mode"
        )
    v_threshold = _full(shape, module.v_threshold)
    v_reset = _full(shape, module.v_reset)
    if kind == "if":
        return nir.IF(r=_full(shape, 1.0), v_threshold=v_threshold, v_reset=v_reset)
    tau = float(module.tau)
    return nir.LIF(
        tau=_full(shape, dt * tau),
        r=_full(shape, 1.0 if module.decay_input else tau),
        v_leak=_full(shape, module.v_reset),
        v_threshold=v_threshold,
        v_reset=v_reset,
    )


# -- import --------------------------------------------------------------------------------


def _read(values: np.ndarray, value: float) -> float:
    """``value`` to the precision ``values`` holds it in.

    float32 holds about 7 significant digits; reading to that precision gives back the
    decimal value that was written (tau = 2.5 steps, not 2.5000002, after ``dt * 2.5``
    went through float32).
    """
    return float(f"{value:.7g}") if values.dtype == np.float32 else value


def _uniform(node_name: str, node: Any, field: str) -> float:
    """The one value of ``node.field`` across its neurons, or a ``ValueError``."""
    values = np.asarray(getattr(node, field))
    if values.size == 0:
        raise ValueError(f"NIR node {node_name!r} ({type(node).__name__}): {field} is empty")
    low, high = values.min(), values.max()
    if low != high:
        raise ValueError(
            f"NIR node {node_name!r} ({type(node).__name__}): {field} differs between neurons "
            f"(from {low} to {high}); sj_core neurons share one value per layer"
        )
    return _read(values, float(low))


def _steps(node_name: str, node: Any, field: str, dt: float) -> float:
    """A time constant in steps, ``tau / dt``, which sj_core's leaky neurons need > 1."""
    steps = _read(np.asarray(getattr(node, field)), _uniform(node_name, node, field) / dt)
    if not steps > 1.0:
        raise ValueError(
            f"NIR node {node_name!r} ({type(node).__name__}): {field} = {steps * dt:g} s is "
            f"{steps:g} steps of dt = {dt:g} s; sj_core's leaky neurons need more than one "
            "step (pass a smaller dt to from_nir)"
        )
    return steps


def _close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=_RTOL, atol=0.0))


def _gain_scale(node_name: str, node: Any, r: float) -> float:
    """The factor the state is divided by to bring an input gain ``r`` other than 1 to 1."""
    if _close(r, 1.0):
        return 1.0
    if not r > 0.0:
        raise ValueError(
            f"NIR node {node_name!r} ({type(node).__name__}): the input gain r = {r:g} must be > 0"
        )
    warnings.warn(
        f"NIR node {node_name!r} ({type(node).__name__}): input gain r = {r:g} is folded "
        "into the threshold and reset (both divided by it); the spikes are unchanged, the "
        "membrane potentials are divided by it",
        UserWarning,
        stacklevel=2,
    )
    return r


def nir_to_neuron(
    node_name: str, node: Any, dt: float, step_mode: str, backend: str, nir: ModuleType
) -> nn.Module | None:
    """The sj_core neuron of NIR neuron ``node``, or ``None`` when it is not one of
    ``IF``, ``LIF``, ``I``, ``LI``."""
    if isinstance(node, nir.IF):
        _check_integrator_gain(node_name, node, dt)
        return IFNode(
            v_threshold=_uniform(node_name, node, "v_threshold"),
            v_reset=_uniform(node_name, node, "v_reset"),
            step_mode=step_mode,
            backend=backend,
        )
    if isinstance(node, nir.LIF):
        return _lif(node_name, node, dt, step_mode, backend)
    if isinstance(node, (nir.I, nir.LI)):
        return _non_spiking(node_name, node, dt, step_mode, nir)
    if isinstance(node, nir.CubaLIF):
        raise NotImplementedError(
            f"NIR node {node_name!r} (CubaLIF) integrates a synaptic current with its own "
            "time constant (tau_syn) before its LIF membrane; sj_core's neurons have a "
            "membrane potential only, so it has no exact sj_core equivalent"
        )
    return None


def _check_integrator_gain(node_name: str, node: Any, dt: float) -> None:
    """An IF or I node's ``r`` must mean a gain of 1 per step: ``r = 1`` (the gain per
    step, as snnTorch, Norse, Sinabs and sj_core write it) or ``r = 1 / dt`` (SpikingJelly's
    ``dv/dt = r I`` over ``dt`` seconds)."""
    kind = type(node).__name__
    r = _uniform(node_name, node, "r")
    if _close(r, 1.0):
        return
    if _close(r * dt, 1.0):
        warnings.warn(
            f"NIR node {node_name!r} ({kind}) has r = {r:g} = 1/dt: read as SpikingJelly "
            f"writes it (dv/dt = r I over dt = {dt:g} s, a gain of 1 per step), the same "
            "neuron as r = 1",
            UserWarning,
            stacklevel=3,
        )
        return
    hint = (
        f" If the graph was written with dt = 1/r = {1 / r:g} s, pass that dt to from_nir"
        if r > 0
        else ""
    )
    raise ValueError(
        f"NIR node {node_name!r} ({kind}) has r = {r:g}, neither 1 (a gain of 1 per step, "
        f"as snnTorch, Norse and Sinabs write {kind}) nor 1/dt = {1 / dt:g} (SpikingJelly's "
        "form, dv/dt = r I); the two readings of r differ by a factor dt, so sj_core does "
        f"not guess.{hint}"
    )


def _lif(node_name: str, node: Any, dt: float, step_mode: str, backend: str) -> LIFNode:
    tau = _steps(node_name, node, "tau", dt)
    r = _uniform(node_name, node, "r")
    v_reset = _uniform(node_name, node, "v_reset")
    if not _close(_uniform(node_name, node, "v_leak"), v_reset):
        raise NotImplementedError(
            f"NIR node {node_name!r} (LIF) leaks towards v_leak = "
            f"{_uniform(node_name, node, 'v_leak'):g} but resets to v_reset = {v_reset:g}; "
            "sj_core's LIFNode leaks towards its v_reset, so the two must be equal"
        )
    if _close(r / tau, 1.0):  # a per-step input gain of 1: snnTorch's form
        decay_input, scale = False, 1.0
    else:
        decay_input, scale = True, _gain_scale(node_name, node, r)
    return LIFNode(
        tau=tau,
        decay_input=decay_input,
        v_threshold=_uniform(node_name, node, "v_threshold") / scale,
        v_reset=v_reset / scale,
        step_mode=step_mode,
        backend=backend,
    )


def _non_spiking(
    node_name: str, node: Any, dt: float, step_mode: str, nir: ModuleType
) -> nn.Module:
    kind = type(node).__name__
    if step_mode != "m":
        raise ValueError(
            f"NIR node {node_name!r} ({kind}) becomes a non-spiking node, which is multi-step "
            f"only; use from_nir(..., step_mode='m') (got step_mode={step_mode!r})"
        )
    if isinstance(node, nir.I):
        _check_integrator_gain(node_name, node, dt)
        return NonSpikingIFNode()
    # The output is the potential itself, so a gain cannot be folded away as for spikes.
    if not _close(_uniform(node_name, node, "r"), 1.0):
        raise NotImplementedError(
            f"NIR node {node_name!r} (LI) has r = {_uniform(node_name, node, 'r'):g}; "
            "sj_core's NonSpikingLIFNode needs r = 1"
        )
    if not _uniform(node_name, node, "v_leak") == 0.0:
        raise NotImplementedError(
            f"NIR node {node_name!r} (LI) leaks towards v_leak = "
            f"{_uniform(node_name, node, 'v_leak'):g}; NonSpikingLIFNode leaks towards 0"
        )
    return NonSpikingLIFNode(tau=_steps(node_name, node, "tau", dt))
