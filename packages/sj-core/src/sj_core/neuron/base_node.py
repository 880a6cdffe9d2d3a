"""Base classes of spiking neurons.

:class:`BaseNode` implements the charge -> fire -> reset cycle of SPEC section 2 with
overridable hooks, both step modes, backend dispatch, ``store_v_seq`` and lazy state
materialisation. :class:`SimpleBaseNode` is the same cycle in a few lines, torch only,
for users to copy and modify.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from .. import backends
from ..base import MemoryModule
from ..surrogate import SurrogateFunctionBase
from .dynamics import reset_potential
from .nonspiking import NonSpikingBaseNode
from .validation import check_bool, check_float, check_input, check_surrogate

__all__ = ["BaseNode", "NonSpikingBaseNode", "SimpleBaseNode", "check_bool", "check_float"]

# Hooks that define a neuron's math. A subclass that overrides one of them computes
# something the parent's kernels do not, so it loses the parent's kernel backends
# (see BaseNode.__init_subclass__).
_MATH_HOOKS = ("neuronal_charge", "neuronal_fire", "neuronal_reset", "single_step_forward")


def step_like(x_seq: torch.Tensor) -> torch.Tensor:
    """A tensor shaped like one step of ``x_seq`` (``x_seq[0]``, or empty when ``T == 0``)."""
    return x_seq[0] if x_seq.shape[0] > 0 else x_seq.new_empty(x_seq.shape[1:])


class BaseNode(MemoryModule):
    """Base class of differentiable spiking neurons.

    Each step: ``H = neuronal_charge(X, V)``, ``S = surrogate(H - V_th)`` (Heaviside
    forward, spike at equality), then reset (hard: ``V = S_d V_reset + (1 - S_d) H``;
    soft: ``V = H - S_d V_th``; ``S_d = S.detach()`` when ``detach_reset``).

    Args:
        v_threshold: firing threshold ``V_th``.
        v_reset: reset potential (hard reset), or ``None`` for soft reset.
        surrogate_function: the surrogate gradient (default ``Sigmoid(alpha=4.0)``).
        detach_reset: detach the reset from the graph (changes gradients only).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).
        backend: ``'torch'``, another installed backend that supports this neuron in
            this step mode (see :attr:`supported_backends`), or ``'auto'`` (the
            fastest available for the input's device and configuration; the only
            setting that may fall back to another backend).
        store_v_seq: in ``'m'`` mode, keep the post-reset potentials of every step in
            ``v_seq`` (``[T, N, *]``); otherwise only the last one in ``v``.

    Subclasses implement :meth:`neuronal_charge` (update ``self.v`` from ``x`` to
    ``H``); that alone works in both step modes on the ``torch`` backend. Built-in
    neurons set :attr:`operator_name` to use kernel backends.
    """

    #: Neuron name in operator keys (``"lif"`` -> ``"lif.multi_step"``); ``None`` means
    #: the neuron runs on the torch backend only.
    operator_name: ClassVar[str | None] = None
    #: Memories that kernel operators take as initial states and return updated.
    kernel_states: ClassVar[tuple[str, ...]] = ("v",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "operator_name" not in cls.__dict__ and any(h in cls.__dict__ for h in _MATH_HOOKS):
            cls.operator_name = None

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        v_threshold = check_float("v_threshold", v_threshold)
        v_reset = check_float("v_reset", v_reset, allow_none=True)
        detach_reset = check_bool("detach_reset", detach_reset)
        store_v_seq = check_bool("store_v_seq", store_v_seq)
        surrogate_function = check_surrogate(surrogate_function)
        super().__init__()
        self.register_memory("v", 0.0 if v_reset is None else v_reset)
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.detach_reset = detach_reset
        self.surrogate_function = surrogate_function
        self._backend = "torch"
        self._operator: Any = None
        #: The backend the last forward call ran on (useful with ``backend='auto'``).
        self.last_backend: str | None = None
        self.step_mode = step_mode
        self.backend = backend
        self.store_v_seq = store_v_seq

    # -- configuration -----------------------------------------------------------------

    @property
    def store_v_seq(self) -> bool:
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        self._store_v_seq = check_bool("store_v_seq", value)
        if value and "v_seq" not in self._memory_reset_values:
            self.register_memory("v_seq", None)

    def operator_key(self, step_mode: str | None = None) -> str | None:
        """The operator this neuron needs from a kernel backend in ``step_mode``."""
        if self.operator_name is None:
            return None
        mode = self.step_mode if step_mode is None else step_mode
        return f"{self.operator_name}.{'single_step' if mode == 's' else 'multi_step'}"

    def supported_backends_for(self, step_mode: str) -> tuple[str, ...]:
        key = self.operator_key(step_mode)
        others = backends.supported_backends(key) if key is not None else ()
        return ("torch",) + tuple(name for name in others if name != "torch")

    @property
    def supported_backends(self) -> tuple[str, ...]:
        """Installed backends that can run this neuron in its current step mode."""
        return self.supported_backends_for(self.step_mode)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._operator = self._resolve_operator(name, self.step_mode)
        self._backend = name

    def _check_backend(self, name: str, step_mode: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"backend must be a string, got {type(name).__name__}")
        if name in ("torch", "auto"):
            return
        info = backends.get_backend(name)  # unknown / not installed / broken: raises
        key = self.operator_key(step_mode)
        if key is None or key not in info.operators:
            provides = f"no {key!r} operator" if key else "no operator for custom neurons"
            raise backends.UnsupportedOperatorError(
                f"{type(self).__name__} in step_mode {step_mode!r} supports backends "
                f"{self.supported_backends_for(step_mode)} (or 'auto'); backend {name!r} "
                f"provides {provides}"
            )

    def _resolve_operator(self, name: str, step_mode: str) -> Any:
        """Look up (and import) what ``forward`` will call for ``name`` in ``step_mode``.

        Resolving when the backend or step mode is *set* keeps the registry (entry
        points, imports) out of ``forward``, which ``torch.compile`` then traces as
        plain attribute reads; it also reports an unusable backend at once. Returns
        ``None`` for torch, the operator function for a named backend, and for ``'auto'``
        a tuple of ``(name, device_types, function)`` candidates, best first.
        """
        self._check_backend(name, step_mode)
        key = self.operator_key(step_mode)
        if name == "torch" or key is None:
            return None if name == "torch" else ()
        if name != "auto":
            return backends.get_operator(name, key)
        candidates = []
        for candidate in backends.available_backends(key):
            if candidate in ("torch", "inductor"):  # torch is the final fallback
                continue
            try:
                function = backends.get_operator(candidate, key)
            except backends.BackendError as exc:
                warnings.warn(
                    f"backend='auto' skips {candidate!r}: {exc}", RuntimeWarning, stacklevel=3
                )
                continue
            devices = backends.get_backend(candidate).spec_for(key).devices
            candidates.append((candidate, devices, function))
        return tuple(candidates)

    def _validate_step_mode(self, value: str) -> None:
        if hasattr(self, "_backend"):
            self._operator = self._resolve_operator(self._backend, value)

    # -- the hooks (torch backend) -------------------------------------------------------

    def v_float_to_tensor(self, x: torch.Tensor) -> None:
        """Make ``self.v`` a tensor shaped, typed and placed like ``x`` (one step)."""
        self.materialize_memory("v", x)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        """Update ``self.v`` from ``V[t-1]`` to ``H[t]``. Subclasses must implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge")

    def neuronal_fire(self) -> torch.Tensor:
        """Spikes from the charged potential: ``surrogate(H - V_th)``."""
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        """Reset ``self.v`` after firing ``spike`` (hard or soft, see the class doc)."""
        self.v = reset_potential(self.v, spike, self.v_threshold, self.v_reset, self.detach_reset)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step on the torch backend: charge, fire, reset. ``x``: ``[N, *]``."""
        self.v_float_to_tensor(x)
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``T`` steps on the torch backend. ``x_seq``: ``[T, N, *]`` -> spikes ``[T, N, *]``."""
        self.v_float_to_tensor(step_like(x_seq))
        spikes = []
        v_seq = []
        for t in range(x_seq.shape[0]):
            spikes.append(self.single_step_forward(x_seq[t]))
            if self.store_v_seq:
                v_seq.append(self.v)
        if self.store_v_seq:
            self.v_seq = torch.stack(v_seq) if v_seq else torch.empty_like(x_seq)
        return torch.stack(spikes) if spikes else torch.empty_like(x_seq)

    # -- kernel backends -----------------------------------------------------------------

    def kernel_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of this neuron's kernel operators (see operator keys)."""
        return {
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "detach_reset": self.detach_reset,
            "surrogate_function": self.surrogate_function,
        }

    def kernel_tensors(self) -> tuple[torch.Tensor, ...]:
        """Extra tensor arguments after the states (PLIF: ``r_tau``)."""
        return ()

    def _kernel_single_step(self, operator: Callable, x: torch.Tensor) -> torch.Tensor:
        v = self.materialize_memory("v", x)
        spike, self.v = operator(x, v, *self.kernel_tensors(), **self.kernel_kwargs())
        return spike

    def _kernel_multi_step(self, operator: Callable, x_seq: torch.Tensor) -> torch.Tensor:
        like = step_like(x_seq)
        states = [self.materialize_memory(name, like) for name in self.kernel_states]
        outputs = operator(
            x_seq,
            *states,
            *self.kernel_tensors(),
            store_v_seq=self.store_v_seq,
            **self.kernel_kwargs(),
        )
        # Indexing, not zip(): torch 2.6's Dynamo treats zip(..., strict=False) over
        # sequences of different lengths as an error.
        for i, name in enumerate(self.kernel_states):
            setattr(self, name, outputs[1 + i])
        if self.store_v_seq:
            self.v_seq = outputs[-1]
        return outputs[0]

    def _run_torch(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)

    def _run_kernel(self, operator: Callable, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self._kernel_single_step(operator, x)
        return self._kernel_multi_step(operator, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, *]`` in step mode ``'s'``, ``[T, N, *]`` in ``'m'``; returns spikes
        of the same shape (or the surrogate's primitive when it has ``spiking=False``)."""
        check_input(self, x, self.step_mode)
        backend = self._backend
        if backend == "torch":
            self.last_backend = "torch"
            return self._run_torch(x)
        if backend != "auto":
            self.last_backend = backend
            return self._run_kernel(self._operator, x)
        for name, device_types, operator in self._operator:
            if x.device.type not in device_types:
                continue
            try:
                out = self._run_kernel(operator, x)
            except NotImplementedError:
                # Only 'auto' may fall back: this backend cannot run this configuration.
                continue
            self.last_backend = name
            return out
        self.last_backend = "torch"
        return self._run_torch(x)

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
            f"detach_reset={self.detach_reset}, step_mode={self.step_mode}, "
            f"backend={self.backend}"
        )


class SimpleBaseNode(MemoryModule):
    """A minimal spiking neuron: the plain charge -> fire -> reset cycle, torch only.

    Same equations as :class:`BaseNode`, with none of its machinery; copy it to write
    your own neuron. Subclasses implement :meth:`neuronal_charge`.

    Args:
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode: as in
            :class:`BaseNode`.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
    ) -> None:
        super().__init__()
        self.v_threshold = check_float("v_threshold", v_threshold)
        self.v_reset = check_float("v_reset", v_reset, allow_none=True)
        self.surrogate_function = check_surrogate(surrogate_function)
        self.detach_reset = check_bool("detach_reset", detach_reset)
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))
        self.step_mode = step_mode

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge")

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        spike_d = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            self.v = self.v - spike_d * self.v_threshold
        else:
            self.v = spike_d * self.v_reset + (1.0 - spike_d) * self.v

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.v, float):
            self.v = torch.full_like(x, self.v)
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.step_mode)
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
            f"detach_reset={self.detach_reset}, step_mode={self.step_mode}"
        )
