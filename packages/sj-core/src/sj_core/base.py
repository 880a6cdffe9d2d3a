"""Step modes and stateful ("memory") modules.

Every spiking module runs in one of two step modes:

* ``'s'`` (single-step): the input is one time step, ``[N, *]``; the module keeps its
  state between calls.
* ``'m'`` (multi-step): the input is a whole sequence, ``[T, N, *]`` (time first); the
  output keeps that layout.

A :class:`MemoryModule` holds state variables ("memories", e.g. the membrane potential
``v``). Memories are ordinary Python attributes, so ``self.v = ...`` updates one and
``torch.compile`` sees plain attribute reads and writes. They are not parameters or
buffers, so they never appear in ``state_dict``; they do follow ``.to()``, ``.cuda()``
and ``.half()``.

Explicit state: every ``MemoryModule`` also has a pure form, ``functional_forward(inputs,
states) -> (outputs, new_states)`` (states in the order of its memories), which its
``forward`` is built on; :func:`to_functional_forward` gives the same for a whole network,
and :func:`named_memories`, :func:`extract_memories` and :func:`load_memories` read and
write a network's state as a flat list (see the "Explicit state" docs page).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "StepModule",
    "SingleStepModule",
    "MultiStepModule",
    "MemoryModule",
    "named_memories",
    "memories",
    "extract_memories",
    "load_memories",
    "to_functional_forward",
]

STEP_MODES = ("s", "m")


class StepModule:
    """Mixin giving a module a validated ``step_mode`` attribute (``'s'`` or ``'m'``).

    Subclasses restrict the allowed modes by overriding :meth:`supported_step_mode`.
    Setting an unsupported mode raises :class:`ValueError`.
    """

    def supported_step_mode(self) -> tuple[str, ...]:
        """The step modes this module can run in."""
        return STEP_MODES

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        supported = self.supported_step_mode()
        if value not in supported:
            raise ValueError(
                f"{type(self).__name__} supports step_mode in {supported}, got {value!r}"
            )
        self._validate_step_mode(value)
        self._step_mode = value

    def _validate_step_mode(self, value: str) -> None:
        """Hook: raise to refuse a step mode that other settings (a backend) cannot run."""


class SingleStepModule(StepModule):
    """A module that only runs in single-step mode (``'s'``)."""

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s",)


class MultiStepModule(StepModule):
    """A module that only runs in multi-step mode (``'m'``)."""

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("m",)


def _fresh_reset_value(value: Any) -> Any:
    """A new object equal to a memory's reset value, safe to mutate.

    Python scalars are immutable and returned as they are; tensors are cloned; lists get
    a shallow copy (their reset value is normally empty). Anything else is deep-copied.
    Avoiding ``copy.deepcopy`` on the common paths keeps ``reset()`` traceable by
    ``torch.compile(fullgraph=True)``.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return list(value)
    return copy.deepcopy(value)


def placed_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` in ``like``'s dtype and on its device (itself when it already is):
    a state follows its input when the input's dtype or device changes."""
    if value.dtype != like.dtype or value.device != like.device:
        return value.to(dtype=like.dtype, device=like.device)
    return value


def _detached(value: Any) -> Any:
    """A memory's value cut from the autograd graph: a tensor, or a list/tuple of them."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(item) for item in value)
    return value


class _MemoryView(MutableMapping):
    """``module._memories``: a live ``name -> current value`` mapping of a module's
    memories, in registration order (the layout the reference system exposes)."""

    __slots__ = ("_module",)

    def __init__(self, module: MemoryModule) -> None:
        self._module = module

    def __getitem__(self, name: str) -> Any:
        if name not in self._module._memories_rv:
            raise KeyError(name)
        return getattr(self._module, name)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self._module._memories_rv:
            raise KeyError(f"{name!r} is not a memory; register it with register_memory()")
        setattr(self._module, name, value)

    def __delitem__(self, name: str) -> None:
        del self._module._memories_rv[name]
        self._module.__dict__.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._module._memories_rv))

    def __len__(self) -> int:
        return len(self._module._memories_rv)


def _overrides(module: nn.Module, name: str) -> bool:
    """Whether ``module``'s class replaces :class:`MemoryModule`'s method ``name``."""
    return getattr(type(module), name) is not getattr(MemoryModule, name)


def _as_tuple(result: Any) -> tuple[Any, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _unpack(outputs: tuple[Any, ...]) -> Any:
    return outputs[0] if len(outputs) == 1 else outputs


class MemoryModule(nn.Module, StepModule):
    """Base class of stateful modules.

    Register each state variable with :meth:`register_memory`; :meth:`reset` restores
    all of them, :meth:`detach` cuts their autograd history (truncated BPTT).

    ``forward`` dispatches on the step mode to :meth:`single_step_forward` or
    :meth:`multi_step_forward`. Implement either of these (reading and writing the
    memories as attributes), or the pure :meth:`single_step_functional_forward` (and
    optionally :meth:`multi_step_functional_forward`), from which the stateful methods
    are then derived: they read the memories, run the pure step and write the new
    states back. Without a multi-step implementation, step mode ``'m'`` runs the single
    step over the time axis.

    Example::

        class Counter(MemoryModule):
            def __init__(self):
                super().__init__()
                self.register_memory("count", 0.0)

            def single_step_functional_forward(self, inputs, states):
                (x,), (count,) = inputs, states
                count = count + x
                return (count,), (count,)

        counter = Counter()
        counter(torch.ones(3))                    # tensor([1., 1., 1.]); counter.count too
        counter.functional_forward((torch.ones(3),), (torch.zeros(3),))  # pure
    """

    def __init__(self) -> None:
        super().__init__()
        self._memories_rv: dict[str, Any] = {}
        self._step_mode = self.supported_step_mode()[0]

    # -- registration and access -------------------------------------------------------

    def register_memory(self, name: str, value: Any) -> None:
        """Register a state variable ``name`` whose reset value is a copy of ``value``.

        Raises:
            AttributeError: if ``name`` is already an attribute of the module.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"memory name must be a Python identifier, got {name!r}")
        if hasattr(self, name):
            raise AttributeError(
                f"cannot register memory {name!r}: {type(self).__name__} already has an "
                f"attribute of that name"
            )
        self._memories_rv[name] = copy.deepcopy(value)
        setattr(self, name, _fresh_reset_value(self._memories_rv[name]))

    def memories(self) -> Iterator[Any]:
        """Iterate over the current values of this module's memories."""
        for name in self._memories_rv:
            yield getattr(self, name)

    def named_memories(self) -> Iterator[tuple[str, Any]]:
        """Iterate over ``(name, value)`` for this module's memories."""
        for name in self._memories_rv:
            yield name, getattr(self, name)

    @property
    def _memories(self) -> _MemoryView:
        """The memories as a live mapping (name -> value), in registration order."""
        return _MemoryView(self)

    def get_reset_value(self, name: str) -> Any:
        """The value that :meth:`reset` restores memory ``name`` to (a fresh copy)."""
        if name not in self._memories_rv:
            raise KeyError(f"{name} has no reset value")
        return _fresh_reset_value(self._memories_rv[name])

    def materialize_memory(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Return memory ``name`` as a tensor shaped, typed and placed like ``like`` (and
        store it).

        A scalar memory becomes ``torch.full_like(like, value)``. A tensor memory whose
        shape differs from ``like`` (the batch size changed) is re-initialised from its
        reset value; one that differs only in dtype or device is converted.
        """
        value = getattr(self, name)
        materialized = self.materialized_value(name, value, like)
        if materialized is not value:
            setattr(self, name, materialized)
        return materialized

    def materialized_value(self, name: str, value: Any, like: torch.Tensor) -> torch.Tensor:
        """:meth:`materialize_memory` without storing: ``value`` (a value of memory
        ``name``) as a tensor like ``like``."""
        if isinstance(value, torch.Tensor):
            if value.shape == like.shape:
                return placed_like(value, like)
            value = self._memories_rv[name]
        if isinstance(value, torch.Tensor):
            return value.to(dtype=like.dtype, device=like.device).expand_as(like).clone()
        if not isinstance(value, (int, float)):
            raise TypeError(
                f"{type(self).__name__}: state {name!r} must be a tensor or a number, got "
                f"{type(value).__name__}"
            )
        return torch.full_like(like, value)

    # -- state management --------------------------------------------------------------

    def reset(self) -> None:
        """Restore every memory to its reset value."""
        for name, value in self._memories_rv.items():
            setattr(self, name, _fresh_reset_value(value))

    def detach(self) -> None:
        """Detach every tensor memory from the autograd graph (for truncated BPTT)."""
        for name in self._memories_rv:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.detach())

    def set_reset_value(self, name: str, value: Any) -> None:
        """Change the value that :meth:`reset` restores memory ``name`` to."""
        if name not in self._memories_rv:
            raise KeyError(f"{type(self).__name__} has no memory {name!r}")
        self._memories_rv[name] = copy.deepcopy(value)

    # -- explicit state ----------------------------------------------------------------

    def materialize_states(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str
    ) -> tuple[Any, ...]:
        """The states a functional forward starts from, given the call's ``inputs``.

        The default returns ``states`` as they are. Modules whose memories start as
        scalars or ``None`` override it to build tensors shaped like one step of the
        input (``inputs[0]`` in step mode ``'s'``, ``inputs[0][0]`` in ``'m'``). It must
        not modify the module's memories or ``states``.
        """
        return tuple(states)

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """One step with explicit state: ``(outputs, new_states)`` from the step's
        ``inputs`` (each ``[N, *]``) and ``states`` (this module's own memories, in
        registration order; not its children's). Pure: the module's memories and
        ``states`` are left as they are. Subclasses implement it; the default raises
        :class:`NotImplementedError` (:func:`to_functional_forward` still converts such
        a module, by loading the states into it for the call).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement single_step_functional_forward; "
            "base.to_functional_forward(module) converts it through its stateful forward"
        )

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """``T`` steps with explicit state: inputs ``[T, N, *]`` each -> ``(outputs
        [T, N, *] each, final states)``. The default runs
        :meth:`single_step_functional_forward` at every step and stacks the outputs."""
        T = inputs[0].shape[0]
        steps = []
        for t in range(T):
            outputs, states = self.single_step_functional_forward(
                tuple(x[t] for x in inputs), states, **kwargs
            )
            steps.append(outputs)
        if not steps:
            raise ValueError(
                f"{type(self).__name__}: the default multi-step functional forward needs "
                "at least one time step (T >= 1)"
            )
        return tuple(torch.stack(seq) for seq in zip(*steps, strict=True)), tuple(states)

    def functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """:meth:`materialize_states`, then the single- or multi-step functional forward
        of the current step mode. Returns ``(outputs, new_states)``; pure."""
        inputs, states = tuple(inputs), tuple(states)
        if self.step_mode == "s":
            states = self.materialize_states(inputs, states, "s")
            return self.single_step_functional_forward(inputs, states, **kwargs)
        if self.step_mode == "m":
            states = self.materialize_states(inputs, states, "m")
            return self.multi_step_functional_forward(inputs, states, **kwargs)
        raise ValueError(f"step_mode must be 's' or 'm', got {self.step_mode!r}")

    def _functional_step(self, mode: str, inputs: tuple[Any, ...], kwargs: dict) -> Any:
        """The stateful form of a functional forward: read the memories, run the pure
        step, write the new states back; returns the outputs (one tensor when single)."""
        names = list(self._memories_rv)
        states = self.materialize_states(inputs, tuple(getattr(self, n) for n in names), mode)
        if mode == "s":
            outputs, new_states = self.single_step_functional_forward(inputs, states, **kwargs)
        else:
            outputs, new_states = self.multi_step_functional_forward(inputs, states, **kwargs)
        if len(new_states) != len(names):
            raise ValueError(
                f"{type(self).__name__}'s functional forward returned {len(new_states)} "
                f"states for its {len(names)} memories {tuple(names)}"
            )
        for name, value in zip(names, new_states, strict=True):
            setattr(self, name, value)
        return _unpack(tuple(outputs))

    def single_step_forward(self, *args: Any, **kwargs: Any) -> Any:
        """One step, input ``[N, *]``: by default derived from
        :meth:`single_step_functional_forward` (the memories are read, the new states
        written back)."""
        if not _overrides(self, "single_step_functional_forward"):
            raise NotImplementedError(
                f"{type(self).__name__} implements neither single_step_forward nor "
                "single_step_functional_forward"
            )
        return self._functional_step("s", args, kwargs)

    def multi_step_forward(self, *args: Any, **kwargs: Any) -> Any:
        """``T`` steps, inputs ``[T, N, *]``: by default derived from the functional
        forward; a module that implements only :meth:`single_step_forward` runs it at
        every step and stacks the outputs."""
        if _overrides(self, "multi_step_functional_forward") or _overrides(
            self, "single_step_functional_forward"
        ):
            return self._functional_step("m", args, kwargs)
        if not _overrides(self, "single_step_forward"):
            raise NotImplementedError(
                f"{type(self).__name__} implements none of single_step_forward, "
                "multi_step_forward and single_step_functional_forward"
            )
        steps = [
            _as_tuple(self.single_step_forward(*(x[t] for x in args), **kwargs))
            for t in range(args[0].shape[0])
        ]
        if not steps:
            raise ValueError(f"{type(self).__name__} got an empty sequence (T == 0)")
        return _unpack(tuple(torch.stack(seq) for seq in zip(*steps, strict=True)))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`single_step_forward` in step mode ``'s'``, :meth:`multi_step_forward`
        in ``'m'``."""
        if self.step_mode == "s":
            return self.single_step_forward(*args, **kwargs)
        if self.step_mode == "m":
            return self.multi_step_forward(*args, **kwargs)
        raise ValueError(f"step_mode must be 's' or 'm', got {self.step_mode!r}")

    def __deepcopy__(self, memo: dict) -> MemoryModule:
        # After a training forward a memory can be a non-leaf tensor of the autograd
        # graph (or a list of them), which Tensor.__deepcopy__ refuses; copy memories'
        # values detached, as pickling does, and everything else as usual.
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        memory_names = self.__dict__["_memories_rv"]
        for key, value in self.__dict__.items():
            if key in memory_names:
                new.__dict__[key] = copy.deepcopy(_detached(value), memo)
            else:
                new.__dict__[key] = copy.deepcopy(value, memo)
        return new

    def _apply(self, fn, recurse=True):
        # Memories are plain attributes, so nn.Module does not move them; do it here so
        # that .to(), .cuda(), .half() and .double() carry the state along.
        module = super()._apply(fn, recurse)
        for store in (self.__dict__, self._memories_rv):
            for name in self._memories_rv:
                value = store.get(name)
                if isinstance(value, torch.Tensor):
                    store[name] = fn(value)
        return module

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


# The network-level functions (named_memories, ..., to_functional_forward) need
# MemoryModule; they live in their own file and are re-exported here, where the reference
# system has them.
from .explicit_state import (  # noqa: E402
    extract_memories,
    load_memories,
    memories,
    named_memories,
    to_functional_forward,
)
