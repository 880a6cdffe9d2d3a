"""The neuron families as C expressions (SPEC sections 3 and 5): pure data.

Names in scope in the expressions:

* forward: ``x`` (``X[t]``), ``v`` (``V[t-1]``), ``w`` (``W[t-1]``, Izhikevich), ``h``
  (``H[t]``, in the adaptation), ``r_tau`` (PLIF's ``1/tau``), ``v_reset`` (the ``V_r``
  of the charge equations: ``v_reset``, or 0 for soft reset) and the neuron's scalars;
* backward: ``g_h`` (``dL/dH[t]``), ``h`` and ``v`` (``V[t-1]``, recomputed from
  ``H[t-1]``), ``r_tau`` and the scalars.

Charges are written with the operations of :mod:`sj_core.neuron.dynamics` in the same
order, so the fp32 forward agrees with the reference bit for bit (kernels are compiled
without FMA contraction). Backward expressions are the derivatives of the charge:
``grad_x = g_h dH/dX``, ``grad_v = g_h dH/dV`` (``dL/dV[t-1]``) and, for PLIF,
``g_h dH/d(1/tau)``. Izhikevich's adaptation ``W`` is linear, so its backward needs no
``W`` values (see ``tests/core/test_nonlinear_neurons.py`` for the derivation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["NEURONS", "NeuronKernelSpec", "AdaptationSpec"]


@dataclass(frozen=True)
class AdaptationSpec:
    """A second state ``W`` (Izhikevich): ``W' = adapt(W, H)``, ``W = W' + jump`` on a spike.

    Backward terms (``g_w = dL/dW[t]``): ``dL/dS += dw_ds g_w`` (the jump's spike is never
    detached), ``dL/dH += dw_dh g_w``, and ``dL/dW[t-1] = dw_dw g_w + dh_dw g_h``.
    """

    adapt: str
    jump: str
    dw_ds: str
    dw_dh: str
    dw_dw: str
    dh_dw: str


@dataclass(frozen=True)
class NeuronKernelSpec:
    """One neuron family. Mappings keyed by ``decay_input`` have only ``False`` for
    neurons without that option."""

    name: str
    title: str
    scalars: tuple[str, ...]  # float kernel arguments after v_threshold and v_reset
    charge: Mapping[bool, str]
    grad_x: Mapping[bool, str]
    grad_v: str
    needs_v_prev: bool  # grad_v / grad_r_tau use V[t-1]
    has_r_tau: bool = False  # PLIF: a learnable 1/tau read from a device scalar
    grad_r_tau: Mapping[bool, str] | None = None
    adaptation: AdaptationSpec | None = None

    @property
    def has_decay_input(self) -> bool:
        return True in self.charge

    @property
    def has_w(self) -> bool:
        return self.adaptation is not None


_QUADRATIC = "v + (x + a0 * (v - v_rest) * (v - v_c)) / tau"
_QUADRATIC_GRAD_V = "g_h * (1.0f + a0 * (2.0f * v - v_rest - v_c) / tau)"

_SPECS = (
    NeuronKernelSpec(
        name="if",
        title="IF",
        scalars=(),
        charge={False: "v + x"},
        grad_x={False: "g_h"},
        grad_v="g_h",
        needs_v_prev=False,
    ),
    NeuronKernelSpec(
        name="lif",
        title="LIF",
        scalars=("tau",),
        charge={True: "v + (x - (v - v_reset)) / tau", False: "v - (v - v_reset) / tau + x"},
        grad_x={True: "g_h / tau", False: "g_h"},
        grad_v="g_h - g_h / tau",
        needs_v_prev=False,
    ),
    NeuronKernelSpec(
        name="plif",
        title="Parametric LIF",
        scalars=(),
        charge={
            True: "v + (x - (v - v_reset)) * r_tau",
            False: "v - (v - v_reset) * r_tau + x",
        },
        grad_x={True: "g_h * r_tau", False: "g_h"},
        grad_v="g_h - g_h * r_tau",
        needs_v_prev=True,
        has_r_tau=True,
        # dH/d(1/tau): X - (V - V_r) = (H - V) tau with decay_input, V_r - V without.
        grad_r_tau={True: "g_h * (h - v) / r_tau", False: "g_h * (v_reset - v)"},
    ),
    NeuronKernelSpec(
        name="qif",
        title="QIF",
        scalars=("tau", "v_c", "a0", "v_rest"),
        charge={False: _QUADRATIC},
        grad_x={False: "g_h / tau"},
        grad_v=_QUADRATIC_GRAD_V,
        needs_v_prev=True,
    ),
    NeuronKernelSpec(
        name="eif",
        title="EIF",
        scalars=("tau", "delta_T", "theta_rh", "v_rest"),
        charge={False: "v + (x + v_rest - v + delta_T * expf((v - theta_rh) / delta_T)) / tau"},
        grad_x={False: "g_h / tau"},
        grad_v="g_h * (1.0f + (expf((v - theta_rh) / delta_T) - 1.0f) / tau)",
        needs_v_prev=True,
    ),
    NeuronKernelSpec(
        name="izhikevich",
        title="Izhikevich",
        scalars=("tau", "v_c", "a0", "v_rest", "a", "b", "tau_w"),
        charge={False: "v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau"},
        grad_x={False: "g_h / tau"},
        grad_v=_QUADRATIC_GRAD_V,
        needs_v_prev=True,
        adaptation=AdaptationSpec(
            adapt="w + (a * (h - v_rest) - w) / tau_w",
            jump="w + b",
            dw_ds="b",
            dw_dh="a / tau_w",
            dw_dw="1.0f - 1.0f / tau_w",
            dh_dw="-1.0f / tau",
        ),
    ),
)

#: operator-key neuron name -> spec.
NEURONS: dict[str, NeuronKernelSpec] = {spec.name: spec for spec in _SPECS}
