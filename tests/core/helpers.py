"""Shared utilities of the sj-core foundation tests (base, backends, IF/LIF/PLIF neurons).

* :class:`FakePlugins`: a fake ``sj.backends`` entry-point table. It replaces the
  registry's ``_entry_points`` seam, provides an in-memory module for fake operators, and
  calls :func:`sj_core.backends.refresh` whenever the table changes.
* :class:`Recorder`: a fake operator that records its calls.
* :class:`NeuronConfig` and :func:`run_node`: build an IF/LIF/PLIF node and drive it over a
  sequence in either step mode from a given initial ``v`` (and PLIF ``w``).
* :func:`explicit_forward_backward`: the forward pass and the reverse-time gradient
  recurrences of SPEC section 5, written out independently of sj-core's autograd graph.
* Surrogate factories: every surrogate of SPEC section 4, in spiking or primitive mode.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from neuron_cases import (  # noqa: F401 (re-exported for the test modules)
    ALL_SURROGATES,
    PRIMITIVE_SURROGATES,
    SPIKING_ONLY_SURROGATES,
    SURROGATE_FACTORIES,
)

from sj_core import backends, surrogate
from sj_core.backends import BackendSpec, registry
from sj_core.neuron import BaseNode, IFNode, LIFNode, ParametricLIFNode

# -- fake plugins ---------------------------------------------------------------------------

FAKE_OPS_MODULE = "sj_core_tests_fake_ops"


@dataclass
class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint``: ``.name``, ``.value``, ``.load()``.

    ``target`` is what ``load()`` returns, or an exception instance it raises.
    """

    name: str
    value: str
    target: Any = None
    group: str = registry.ENTRY_POINT_GROUP

    def load(self) -> Any:
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


def make_spec(
    name: str,
    operators: dict[str, str],
    *,
    distribution: str | None = None,
    devices: tuple[str, ...] = ("cpu",),
    priority: int = 0,
    requirements: tuple[str, ...] = (),
    check: Callable[[], tuple[bool, str]] | None = None,
) -> BackendSpec:
    """A :class:`BackendSpec` with test-friendly defaults (a CPU backend, always available)."""
    return BackendSpec(
        name=name,
        distribution=distribution or f"sj-{name}",
        operators=operators,
        requirements=requirements,
        check=check,
        devices=devices,
        priority=priority,
        description=f"fake backend {name}",
    )


class FakePlugins:
    """The registry's entry points, replaced by a list the test fills.

    Use through a fixture::

        @pytest.fixture
        def plugins(monkeypatch):
            with FakePlugins(monkeypatch) as fake:
                yield fake
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entry_points: list[FakeEntryPoint] = []
        self.ops = types.ModuleType(FAKE_OPS_MODULE)
        monkeypatch.setitem(sys.modules, FAKE_OPS_MODULE, self.ops)
        monkeypatch.setattr(registry, "_entry_points", lambda: list(self.entry_points))
        backends.refresh()

    def __enter__(self) -> FakePlugins:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Forget everything discovered from the fake table before monkeypatch restores the
        # real seam, so the next test discovers the real entry points again.
        backends.refresh()

    def operator(self, attribute: str, function: Callable) -> str:
        """Put ``function`` in the fake operator module; return its ``"module:function"``."""
        setattr(self.ops, attribute, function)
        return f"{FAKE_OPS_MODULE}:{attribute}"

    def add_entry_point(self, entry_point: FakeEntryPoint, *, refresh: bool = True) -> None:
        self.entry_points.append(entry_point)
        if refresh:
            backends.refresh()

    def add(self, spec: BackendSpec, *, refresh: bool = True) -> FakeEntryPoint:
        """Register ``spec`` under its own name, as its distribution would."""
        module = spec.distribution.replace("-", "_")
        entry_point = FakeEntryPoint(spec.name, f"{module}._backend:BACKEND", spec)
        self.add_entry_point(entry_point, refresh=refresh)
        return entry_point


@dataclass
class Recorder:
    """A fake operator: records ``(args, kwargs)`` of each call, then runs ``impl``."""

    impl: Callable
    calls: list[tuple[tuple, dict]] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.impl(*args, **kwargs)


def raising(message: str) -> Callable:
    """A fake operator that cannot run this configuration (``NotImplementedError``)."""

    def operator(*args: Any, **kwargs: Any) -> Any:
        raise backends.UnsupportedByBackendError(message)

    return operator


def operator_keywords(signature: str) -> tuple[list[str], list[str]]:
    """Positional and keyword parameter names of an ``OPERATORS`` signature string.

    ``"(x_seq, v_init, *, tau: float, ...) -> (...)"`` -> ``(["x_seq", "v_init"], ["tau", ...])``.
    """
    parameters = signature.split(" -> ")[0].strip().removeprefix("(").removesuffix(")")
    positional, _, keywords = parameters.partition("*,")

    def names(text: str) -> list[str]:
        return [p.split(":")[0].strip() for p in text.split(",") if p.strip()]

    return names(positional), names(keywords)


# -- surrogates -----------------------------------------------------------------------------

# The surrogate tables come from tests/support/neuron_cases.py (one for every folder).


# -- node configurations --------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronConfig:
    """One IF/LIF/PLIF configuration. ``tau`` is LIF's tau or PLIF's init_tau."""

    kind: str  # "if" | "lif" | "plif"
    v_reset: float | None
    detach_reset: bool
    decay_input: bool = True
    tau: float = 2.0
    v_threshold: float = 1.0

    @property
    def id(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard{self.v_reset:g}"
        parts = [self.kind, reset, "detach" if self.detach_reset else "nodetach"]
        if self.kind != "if":
            parts.append("decay" if self.decay_input else "nodecay")
        return "-".join(parts)

    def make(
        self,
        surrogate_function: surrogate.SurrogateFunctionBase,
        step_mode: str,
        store_v_seq: bool = False,
        backend: str = "torch",
    ) -> BaseNode:
        common = dict(
            v_threshold=self.v_threshold,
            v_reset=self.v_reset,
            surrogate_function=surrogate_function,
            detach_reset=self.detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
        if self.kind == "if":
            return IFNode(**common)
        if self.kind == "lif":
            return LIFNode(tau=self.tau, decay_input=self.decay_input, **common)
        return ParametricLIFNode(init_tau=self.tau, decay_input=self.decay_input, **common)


def neuron_configs(
    v_resets: Iterable[float | None] = (-0.25, None), tau: float = 3.0, v_threshold: float = 0.8
) -> list[NeuronConfig]:
    """IF/LIF/PLIF x reset (hard to ``v_reset`` / soft) x detach_reset x decay_input.

    The defaults are chosen so that no term vanishes: ``v_reset != 0`` (it enters LIF's
    charge), ``v_threshold != 1`` (the soft reset subtracts it), ``tau != 2``.
    """
    configs = []
    for kind in ("if", "lif", "plif"):
        for v_reset in v_resets:
            for detach_reset in (False, True):
                for decay_input in (True, False) if kind != "if" else (True,):
                    configs.append(
                        NeuronConfig(kind, v_reset, detach_reset, decay_input, tau, v_threshold)
                    )
    return configs


def run_node(
    node: BaseNode,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    w: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Reset ``node``, start it from ``v_init`` and feed ``x_seq`` ``[T, *S]``.

    In step mode ``'s'`` the steps are fed one by one. ``w`` (PLIF) replaces the node's
    parameter through ``torch.func.functional_call`` so it can be a gradcheck input.

    Returns ``(spike_seq [T, *S], v_last [*S], v_seq [T, *S] | None)``; ``v_seq`` holds the
    post-reset potentials: the node's ``v_seq`` in mode ``'m'`` (``None`` unless
    ``store_v_seq``), the stacked per-step ``v`` in mode ``'s'``.
    """
    node.reset()
    node.v = v_init

    def call(x: torch.Tensor) -> torch.Tensor:
        if w is None:
            return node(x)
        return torch.func.functional_call(node, {"w": w}, (x,))

    if node.step_mode == "m":
        spike_seq = call(x_seq)
        return spike_seq, node.v, node.v_seq if node.store_v_seq else None
    spikes, v_seq = [], []
    for x in x_seq:
        spikes.append(call(x))
        v_seq.append(node.v)
    return torch.stack(spikes), node.v, torch.stack(v_seq)


# -- SPEC section 5, written out ------------------------------------------------------------


@dataclass
class ExplicitResult:
    spike_seq: torch.Tensor
    v_seq: torch.Tensor
    grad_x_seq: torch.Tensor
    grad_v_init: torch.Tensor
    grad_r_tau: torch.Tensor  # d loss / d (1/tau), a 0-d tensor (PLIF only; 0 otherwise)


@torch.no_grad()
def explicit_forward_backward(
    config: NeuronConfig,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: float,
    surrogate_gradient: Callable[[torch.Tensor], torch.Tensor],
    grad_spike_seq: torch.Tensor,
    grad_v_last: torch.Tensor,
    grad_v_seq: torch.Tensor | None,
    primitive: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ExplicitResult:
    """Forward pass and the reverse-time gradient recurrence of SPEC section 5.

    ``r_tau`` is ``1/tau`` (LIF: ``1/config.tau``; PLIF: ``sigmoid(w)``; unused by IF).
    The incoming gradients are those of a loss on the spikes, on the final ``V`` and (if
    not ``None``) on every post-reset ``V[t]``.

    ``primitive``: for a surrogate in ``spiking=False`` mode, the smooth ``S = g(H - V_th)``
    that replaces the Heaviside step in the forward; the recurrence is unchanged with
    ``S`` that value (its derivative is ``surrogate_gradient``).
    """
    v_th = config.v_threshold
    soft = config.v_reset is None
    v_r = 0.0 if soft else config.v_reset
    steps = x_seq.shape[0]

    # Forward: keep H[t] and V[t-1], what the backward needs.
    h_seq, v_prev_seq, spikes, v_seq = [], [], [], []  # all [N] per step
    v = v_init.clone()
    for t in range(steps):
        x = x_seq[t]
        if config.kind == "if":
            h = v + x
        elif config.decay_input:
            h = v + (x - (v - v_r)) * r_tau
        else:
            h = v - (v - v_r) * r_tau + x
        s = (h >= v_th).to(x.dtype) if primitive is None else primitive(h - v_th)
        v_prev_seq.append(v)
        h_seq.append(h)
        spikes.append(s)
        v = h - s * v_th if soft else s * v_r + (1 - s) * h
        v_seq.append(v)

    # Backward: one accumulator g = dL/dV[t], from the last step to the first.
    g = grad_v_last.clone()
    grad_x_seq = torch.zeros_like(x_seq)
    grad_r_tau = torch.zeros((), dtype=x_seq.dtype)
    for t in reversed(range(steps)):
        if grad_v_seq is not None:
            g = g + grad_v_seq[t]
        h = h_seq[t]
        sg = surrogate_gradient(h - v_th)
        s = spikes[t]
        if soft:
            grad_h = grad_spike_seq[t] * sg + (g if config.detach_reset else g * (1 - v_th * sg))
        else:
            grad_h = grad_spike_seq[t] * sg + g * (1 - s)
            if not config.detach_reset:
                grad_h = grad_h + g * (v_r - h) * sg
        if config.kind == "if":
            grad_x_seq[t] = grad_h
            g = grad_h
            continue
        grad_x_seq[t] = grad_h * r_tau if config.decay_input else grad_h
        g = grad_h * (1 - r_tau)
        if config.kind == "plif":
            if config.decay_input:
                grad_r_tau += (grad_h * (h - v_prev_seq[t]) / r_tau).sum()
            else:
                grad_r_tau += (grad_h * (v_r - v_prev_seq[t])).sum()
    return ExplicitResult(
        spike_seq=torch.stack(spikes),
        v_seq=torch.stack(v_seq),
        grad_x_seq=grad_x_seq,
        grad_v_init=g,
        grad_r_tau=grad_r_tau,
    )
