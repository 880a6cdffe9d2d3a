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
from ..caller import user_stacklevel
from ..functional.compact_registry import mark_module_spikes
from ..fused.operators import fused_multistep
from ..reference import empty_spikes, neuron_step
from ..surrogate import SurrogateFunctionBase
from .nonspiking import NonSpikingBaseNode
from .statements import FLAG, FLOAT, TENSOR, NeuronStatement, fire_input, reset
from .validation import check_bool, check_float, check_input, check_surrogate

__all__ = ["BaseNode", "NonSpikingBaseNode", "SimpleBaseNode"]

# Hooks that define a neuron's math. A subclass that overrides one of them computes
# something the parent's kernels do not, so it loses the parent's kernel backends
# (see BaseNode.__init_subclass__).
_MATH_HOOKS = (
    "neuronal_charge",
    "neuronal_adaptation",
    "neuronal_fire",
    "neuronal_reset",
    "single_step_forward",
)


def _fires(node: BaseNode) -> bool:
    """Whether ``node``'s spikes come from BaseNode's own firing hooks (the surrogate's
    output, stacked), which :func:`~sj_core.functional.compact_spikes` may store as bits."""
    cls = type(node)
    return all(getattr(cls, hook) is getattr(BaseNode, hook) for hook in _FIRING_HOOKS)


_FIRING_HOOKS = ("neuronal_fire", "single_step_forward", "multi_step_forward")


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

    Built-in neurons set :attr:`statement` (their equations, see
    :mod:`sj_core.neuron.statements`): the hooks below then compute it on the ``torch``
    backend and kernel backends run it. A subclass may instead implement
    :meth:`neuronal_charge` (update ``self.v`` from ``x`` to ``H``); that alone works in
    both step modes on the ``torch`` backend.
    """

    #: The neuron's statement; ``None`` means a custom neuron that runs on the torch
    #: backend only (its hooks define the math).
    statement: ClassVar[NeuronStatement | None] = None

    @property
    def _statement(self) -> NeuronStatement | None:
        """:attr:`statement`, read through a property: Dynamo before torch 2.7 cannot read
        a class attribute holding an object from a module it traces ("class property"),
        but follows properties."""
        return type(self).statement

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "statement" not in cls.__dict__ and any(h in cls.__dict__ for h in _MATH_HOOKS):
            cls.statement = None

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
        # An observation, not a state: outside the memories (so outside the explicit
        # state layout), cleared here and by reset().
        self.v_seq = None

    def reset(self) -> None:
        """Restore every memory to its reset value, and clear ``v_seq``."""
        super().reset()
        self.v_seq = None

    def _apply(self, fn, recurse=True):
        # v_seq follows .to()/.half() like the memories do, though it is not one.
        module = super()._apply(fn, recurse)
        if isinstance(self.v_seq, torch.Tensor):
            self.v_seq = fn(self.v_seq)
        return module

    @property
    def kernel_states(self) -> tuple[str, ...]:
        """Memories that kernel operators take as initial states and return updated."""
        return ("v",) if self._statement is None else self._statement.states

    def operator_key(self, step_mode: str | None = None) -> str | None:
        """The operator this neuron needs from a kernel backend in ``step_mode``."""
        if self._statement is None:
            return None
        mode = self.step_mode if step_mode is None else step_mode
        return f"{self._statement.name}.{'single_step' if mode == 's' else 'multi_step'}"

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
                    f"backend='auto' skips {candidate!r}: {exc}",
                    RuntimeWarning,
                    stacklevel=user_stacklevel(),
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

    def neuron_params(self) -> dict[str, Any]:
        """The statement's float and flag parameters, read from this module's attributes."""
        statement = self._statement
        return {
            name: getattr(self, name) for name in statement.names(FLOAT) + statement.names(FLAG)
        }

    def _equation_arguments(self) -> dict[str, Any]:
        v_r = 0.0 if self.v_reset is None else self.v_reset
        return {**self.neuron_params(), "v_r": v_r}

    def neuronal_charge(self, x: torch.Tensor) -> None:
        """Update ``self.v`` from ``V[t-1]`` to ``H[t]`` (the statement's charge).
        A custom neuron without a :attr:`statement` must implement it."""
        if self._statement is None:
            raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge")
        states = [getattr(self, name) for name in self._statement.states]
        tensors = [t.reshape(()) for t in self.kernel_tensors()]
        self.v = self._statement.charge(x, *states, *tensors, **self._equation_arguments())

    def neuronal_adaptation(self) -> None:
        """Update the adaptation state from the charged ``H`` (``self.v``), before firing;
        nothing for neurons without one."""
        adaptation = self._statement.adaptation if self._statement is not None else None
        if adaptation is not None:
            self.w = adaptation.adapt(self.v, self.w, **self._equation_arguments())

    def neuronal_fire(self) -> torch.Tensor:
        """Spikes from the charged potential: ``surrogate(H - V_th)``."""
        return self.surrogate_function(fire_input(self.v, self.v_threshold))

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        """Reset ``self.v`` after firing ``spike`` (hard or soft, see the class doc), then
        apply the adaptation's spike-triggered jump (never detached)."""
        spike_d = spike.detach() if self.detach_reset else spike
        self.v = reset(self.v, spike_d, self.v_threshold, self.v_reset)
        adaptation = self._statement.adaptation if self._statement is not None else None
        if adaptation is not None:
            self.w = adaptation.jump(self.w, spike, **self._equation_arguments())

    def _materialize_states(self, like: torch.Tensor) -> None:
        self.v_float_to_tensor(like)
        for name in self.kernel_states[1:]:
            self.materialize_memory(name, like)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step on the torch backend: charge, adapt, fire, reset. ``x``: ``[N, *]``."""
        self._materialize_states(x)
        self.neuronal_charge(x)
        self.neuronal_adaptation()
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``T`` steps on the torch backend. ``x_seq``: ``[T, N, *]`` -> spikes ``[T, N, *]``."""
        # Materialised up front so that every state is a tensor even when T == 0.
        self._materialize_states(step_like(x_seq))
        spikes = []
        v_seq = []
        for t in range(x_seq.shape[0]):
            spikes.append(self.single_step_forward(x_seq[t]))
            if self.store_v_seq:
                v_seq.append(self.v)
        if self.store_v_seq:
            self.v_seq = torch.stack(v_seq) if v_seq else empty_spikes(x_seq)
        return torch.stack(spikes) if spikes else empty_spikes(x_seq)

    # -- kernel backends -----------------------------------------------------------------

    def kernel_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of this neuron's kernel operators (see operator keys)."""
        return {
            **self.neuron_params(),
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "detach_reset": self.detach_reset,
            "surrogate_function": self.surrogate_function,
        }

    def kernel_tensors(self) -> tuple[torch.Tensor, ...]:
        """The statement's tensor parameters, one element each (PLIF: ``r_tau``), read
        from this module's attributes; they follow the states in operator calls."""
        if self._statement is None:
            return ()
        return tuple(getattr(self, name).reshape(1) for name in self._statement.names(TENSOR))

    def _run_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The hooks' cycle (custom neurons, whose hooks define the math)."""
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)

    def _call_operator(
        self, operator: Callable, x: torch.Tensor, states: tuple, step_mode: str, v_seq: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """One operator call: ``(spikes, new states, v_seq | None)``."""
        n = len(states)
        if step_mode == "s":
            outputs = operator(x, *states, *self.kernel_tensors(), **self.kernel_kwargs())
            return outputs[0], tuple(outputs[1 : 1 + n]), None
        outputs = operator(
            x, *states, *self.kernel_tensors(), store_v_seq=v_seq, **self.kernel_kwargs()
        )
        return outputs[0], tuple(outputs[1 : 1 + n]), outputs[-1] if v_seq else None

    def _reference_transition(
        self, x: torch.Tensor, states: tuple, step_mode: str, v_seq: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """The statement on the torch backend (the hooks' numbers, without the module)."""
        kwargs = self.kernel_kwargs()
        if step_mode == "s":
            params = {name: kwargs.pop(name) for name in self.neuron_params()}
            spike, new_states = neuron_step(
                self._statement, x, states, self.kernel_tensors(), params, **kwargs
            )
            return spike, new_states, None
        # T steps as one autograd node (sj_core.fused); the per-step reference loop where
        # that does not apply.
        outputs = fused_multistep(
            self._statement, x, *states, *self.kernel_tensors(), store_v_seq=v_seq, **kwargs
        )
        return outputs[0], tuple(outputs[1:-1]), outputs[-1]

    def _transition(
        self, x: torch.Tensor, states: tuple, step_mode: str, v_seq: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """The neuron as a pure function on this module's backend: ``(spikes, new
        kernel states, v_seq | None)`` from ``x`` and the kernel states (materialized)."""
        backend = self._backend
        if backend == "auto":
            for name, device_types, operator in self._operator:
                if x.device.type not in device_types:
                    continue
                try:
                    result = self._call_operator(operator, x, states, step_mode, v_seq)
                except backends.UnsupportedByBackendError:
                    # Only 'auto' may fall back: this backend cannot run this input.
                    continue
                self.last_backend = name
                return result
        elif backend != "torch":
            self.last_backend = backend
            return self._call_operator(self._operator, x, states, step_mode, v_seq)
        self.last_backend = "torch"
        return self._reference_transition(x, states, step_mode, v_seq)

    # -- explicit state --------------------------------------------------------------------

    def _kernel_state_indices(self) -> list[int]:
        names = list(self._memories_rv)
        return [names.index(name) for name in self.kernel_states]

    def materialize_states(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str
    ) -> tuple[Any, ...]:
        """The neuron's states as tensors like one step of ``inputs[0]`` (pure): a scalar
        becomes a filled tensor, a tensor of another step shape restarts from its reset
        value, one of another dtype or device is converted. Other memories pass as they
        are."""
        x = inputs[0]
        like = x if step_mode == "s" else step_like(x)
        states = list(states)
        names = list(self._memories_rv)
        for i in self._kernel_state_indices():
            states[i] = self.materialized_value(names[i], states[i], like)
        return tuple(states)

    def _functional(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str, kwargs: dict
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}'s functional forward takes no keyword arguments, "
                f"got {sorted(kwargs)}"
            )
        if len(inputs) != 1:
            raise TypeError(
                f"{type(self).__name__} takes one input tensor, got {len(inputs)} inputs"
            )
        (x,) = inputs
        check_input(self, x, step_mode)
        if self._statement is None:
            return self._swapped_functional(x, states, step_mode)
        states = tuple(states)
        if len(states) != len(self._memories_rv):
            raise ValueError(
                f"{type(self).__name__} expects {len(self._memories_rv)} states "
                f"{tuple(self._memories_rv)}, got {len(states)}"
            )
        indices = self._kernel_state_indices()
        spike, new, _ = self._transition(x, tuple(states[i] for i in indices), step_mode)
        new_states = list(states)
        for i, value in zip(indices, new, strict=True):
            new_states[i] = value
        return (spike,), tuple(new_states)

    def _swapped_functional(
        self, x: torch.Tensor, states: tuple[Any, ...], step_mode: str
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """A custom neuron (its hooks define the math): run the hooks with ``states``
        loaded into the memories, and put the module's own state back afterwards, also
        when the hooks raise."""
        names = list(self._memories_rv)
        if len(states) != len(names):
            raise ValueError(
                f"{type(self).__name__} expects {len(names)} states {tuple(names)}, "
                f"got {len(states)}"
            )
        saved = [getattr(self, name) for name in names], self.v_seq, self.last_backend
        try:
            for name, value in zip(names, states, strict=True):
                setattr(self, name, value)
            if step_mode == "s":
                spike = self.single_step_forward(x)
            else:
                spike = self.multi_step_forward(x)
            new_states = tuple(getattr(self, name) for name in names)
        finally:
            for name, value in zip(names, saved[0], strict=True):
                setattr(self, name, value)
            self.v_seq, self.last_backend = saved[1], saved[2]
        return (spike,), new_states

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """One step, pure: ``((spike [N, *],), new_states)`` from ``(x [N, *],)`` and the
        states (this neuron's memories in order: ``v``, and ``w`` for Izhikevich, as
        tensors like ``x``; see :meth:`materialize_states`). Runs on the module's
        backend, with the numbers of its ``forward``."""
        return self._functional(inputs, states, "s", kwargs)

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """``T`` steps, pure: ``((spike_seq [T, N, *],), final states)`` from ``(x_seq
        [T, N, *],)`` and the states. ``v_seq`` is not produced (it is an observation,
        not a state)."""
        return self._functional(inputs, states, "m", kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, *]`` in step mode ``'s'``, ``[T, N, *]`` in ``'m'``; returns spikes
        of the same shape (or the surrogate's primitive when it has ``spiking=False``)."""
        check_input(self, x, self.step_mode)
        if self._statement is None:
            self.last_backend = "torch"
            spike = self._run_torch(x)
            # For compact_spikes(): binary only if BaseNode's own hooks made it.
            return mark_module_spikes(spike, self.surrogate_function) if _fires(self) else spike
        mode = self.step_mode
        names = list(self._memories_rv)
        indices = self._kernel_state_indices()
        like = x if mode == "s" else step_like(x)
        states = tuple(self.materialize_memory(names[i], like) for i in indices)
        store = self.store_v_seq and mode == "m"
        spike, new_states, v_seq = self._transition(x, states, mode, store)
        for i, value in zip(indices, new_states, strict=True):
            setattr(self, names[i], value)
        if store:
            self.v_seq = v_seq
        return mark_module_spikes(spike, self.surrogate_function)

    # -- pickling --------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # The resolved operator is looked up again on load: the backend may be installed
        # differently there, and 'auto' candidates are not worth storing.
        state = super().__getstate__()
        state["_operator"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._operator = self._resolve_operator(self._backend, self._step_mode)

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
        # 0.0 whatever v_reset is, as in the reference system (BaseNode starts at v_reset).
        self.register_memory("v", 0.0)
        self.step_mode = step_mode

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge")

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(fire_input(self.v, self.v_threshold))

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        spike_d = spike.detach() if self.detach_reset else spike
        self.v = reset(self.v, spike_d, self.v_threshold, self.v_reset)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.materialize_memory("v", x)  # a tensor like x (a new batch size starts afresh)
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.materialize_memory("v", step_like(x_seq))
        spikes = [self.single_step_forward(x) for x in x_seq]
        return torch.stack(spikes) if spikes else empty_spikes(x_seq)

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
