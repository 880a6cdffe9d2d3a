"""Neuron configurations, surrogates and inputs shared by the test folders.

* :data:`SURROGATE_FACTORIES`: every surrogate of SPEC section 4 (spiking or primitive).
* :class:`NeuronCase`: one neuron statement with its parameters, reset mode and
  ``detach_reset``, and inputs that make it fire sometimes; :func:`statement_cases` lists
  a grid of them for every statement of sj-core.
* :func:`make_inputs`: ``(x_seq, states, tensors)`` for a case.

Nothing here imports a kernel backend.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sj_core import surrogate
from sj_core.neuron.statements import FLAG, STATEMENTS, TENSOR, NeuronStatement

# -- surrogates ---------------------------------------------------------------------------

# Every surrogate of SPEC section 4, at parameters that give non-trivial gradients over the
# range of ``H - V_th`` the tests produce (roughly [-1.5, 1.5]).
SURROGATE_FACTORIES: dict[str, Callable[[bool], surrogate.SurrogateFunctionBase]] = {
    "Sigmoid": lambda spiking: surrogate.Sigmoid(alpha=4.0, spiking=spiking),
    "ATan": lambda spiking: surrogate.ATan(alpha=2.0, spiking=spiking),
    "PiecewiseQuadratic": lambda spiking: surrogate.PiecewiseQuadratic(alpha=1.0, spiking=spiking),
    "PiecewiseExp": lambda spiking: surrogate.PiecewiseExp(alpha=1.5, spiking=spiking),
    "SoftSign": lambda spiking: surrogate.SoftSign(alpha=2.0, spiking=spiking),
    "SuperSpike": lambda spiking: surrogate.SuperSpike(alpha=1.0, spiking=spiking),
    "Erf": lambda spiking: surrogate.Erf(alpha=2.0, spiking=spiking),
    "PiecewiseLeakyReLU": lambda spiking: surrogate.PiecewiseLeakyReLU(
        w=1.0, c=0.05, spiking=spiking
    ),
    "QPseudoSpike": lambda spiking: surrogate.QPseudoSpike(alpha=2.5, spiking=spiking),
    "LeakyKReLU": lambda spiking: surrogate.LeakyKReLU(spiking=spiking, leak=0.1, k=0.8),
    "S2NN": lambda spiking: surrogate.S2NN(alpha=4.0, beta=1.0, spiking=spiking),
    "NonzeroSignLogAbs": lambda spiking: surrogate.NonzeroSignLogAbs(alpha=1.0, spiking=spiking),
    "LogTailedReLU": lambda spiking: surrogate.LogTailedReLU(alpha=0.1, spiking=spiking),
    "Rect": lambda spiking: surrogate.Rect(alpha=0.5, spiking=spiking),
    "SquarewaveFourierSeries": lambda spiking: surrogate.SquarewaveFourierSeries(
        n=3, T_period=8.0, spiking=spiking
    ),
    "FakeNumericalGradient": lambda spiking: surrogate.FakeNumericalGradient(
        alpha=0.3, spiking=spiking
    ),
}
SPIKING_ONLY_SURROGATES = ("SuperSpike", "FakeNumericalGradient")
PRIMITIVE_SURROGATES = tuple(n for n in SURROGATE_FACTORIES if n not in SPIKING_ONLY_SURROGATES)
ALL_SURROGATES = tuple(SURROGATE_FACTORIES)


def make_surrogate(name: str, spiking: bool = True) -> surrogate.SurrogateFunctionBase:
    return SURROGATE_FACTORIES[name](spiking)


# -- neuron cases -------------------------------------------------------------------------

#: Float parameters of each statement: values that keep the dynamics interesting.
PARAMS: dict[str, dict[str, float]] = {
    "if": {},
    "lif": {"tau": 2.5},
    "plif": {},
    "qif": {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": 0.0},
    "eif": {"tau": 2.0, "delta_T": 1.0, "theta_rh": 0.8, "v_rest": 0.0},
    "izhikevich": {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": -0.1, "a": 0.5, "b": 0.2,
                   "tau_w": 2.0},
}  # fmt: skip

#: ``(mean, std)`` of inputs that make about 20-40% of the steps fire, per statement.
INPUT_SCALE: dict[str, tuple[float, float]] = {
    "if": (0.4, 0.6),
    "lif": (0.9, 0.9),
    "plif": (0.9, 0.9),
    "qif": (0.45, 0.6),
    "eif": (0.45, 0.6),
    "izhikevich": (0.5, 0.6),
}

#: PLIF's ``1/tau`` (``sigmoid(w)`` of a module with ``init_tau = 2.5``).
R_TAU = 0.4

#: The hard resets of the grid: 0, and a negative one (so that ``V_r`` matters in LIF's
#: charge), each with its own threshold (a kernel that dropped ``V_th`` from the soft
#: reset gradient would otherwise pass).
RESETS: tuple[tuple[float | None, float], ...] = ((0.0, 1.0), (-0.3, 0.9), (None, 1.25))


@dataclass(frozen=True)
class NeuronCase:
    """One neuron statement in one configuration."""

    name: str  # statement name
    v_reset: float | None = 0.0
    v_threshold: float = 1.0
    detach_reset: bool = False
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def statement(self) -> NeuronStatement:
        return STATEMENTS[self.name]

    @property
    def params(self) -> dict[str, Any]:
        return {**PARAMS[self.name], **self.flags}

    @property
    def has_w(self) -> bool:
        return self.statement.adaptation is not None

    @property
    def has_tensor(self) -> bool:
        return bool(self.statement.names(TENSOR))

    @property
    def id(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard{self.v_reset:g}"
        parts = [self.name, reset]
        if self.detach_reset:
            parts.append("detach")
        parts += [name if value else f"no_{name}" for name, value in self.flags.items()]
        return "-".join(parts)

    def kwargs(self, surrogate_function: Any, store_v_seq: bool) -> dict[str, Any]:
        """Keyword arguments of the ``<name>.multi_step`` operator."""
        return {
            **self.params,
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "detach_reset": self.detach_reset,
            "surrogate_function": surrogate_function,
            "store_v_seq": store_v_seq,
        }


def flag_settings(name: str) -> list[dict[str, bool]]:
    names = STATEMENTS[name].names(FLAG)
    return [
        dict(zip(names, v, strict=True))
        for v in itertools.product((True, False), repeat=len(names))
    ]


def statement_cases(detach: tuple[bool, ...] = (False, True)) -> list[NeuronCase]:
    """Every statement x flag setting x reset of :data:`RESETS` x ``detach``."""
    cases = []
    for name in STATEMENTS:
        for flags in flag_settings(name):
            for (v_reset, v_threshold), detach_reset in itertools.product(RESETS, detach):
                cases.append(NeuronCase(name, v_reset, v_threshold, detach_reset, flags))
    return cases


def one_case_per_statement() -> list[NeuronCase]:
    """Each statement once (hard reset at -0.3, its first flag setting)."""
    return [NeuronCase(name, -0.3, 0.9, False, flag_settings(name)[0]) for name in STATEMENTS]


# -- inputs -------------------------------------------------------------------------------


def make_inputs(
    case: NeuronCase,
    T: int,
    step_shape: tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """``(x_seq [T, *S], initial states [*S] each, tensor parameters [1] each)``.

    Values are drawn in fp32 and rounded to ``dtype``; tensor parameters stay fp32.
    """
    generator = torch.Generator().manual_seed(seed)
    mean, std = INPUT_SCALE[case.name]
    x_seq = torch.randn((T, *step_shape), generator=generator) * std + mean
    states = [torch.rand(step_shape, generator=generator) * 1.0 - 0.3]
    if case.has_w:
        states.append(torch.rand(step_shape, generator=generator) * 0.2)
    tensors = (torch.tensor([R_TAU], device=device),) if case.has_tensor else ()
    return (
        x_seq.to(device=device, dtype=dtype),
        tuple(s.to(device=device, dtype=dtype) for s in states),
        tensors,
    )


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    """Reproducible standard-normal values shaped, typed and placed like ``t``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=generator).to(t.device, t.dtype)
