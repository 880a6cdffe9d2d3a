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
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["StepModule", "SingleStepModule", "MultiStepModule", "MemoryModule"]

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


class MemoryModule(nn.Module, StepModule):
    """Base class of stateful modules.

    Register each state variable with :meth:`register_memory`; :meth:`reset` restores
    all of them, :meth:`detach` cuts their autograd history (truncated BPTT).

    Example::

        class Counter(MemoryModule):
            def __init__(self):
                super().__init__()
                self.register_memory("count", 0.0)

            def forward(self, x):
                self.count = self.count + x
                return self.count
    """

    def __init__(self) -> None:
        super().__init__()
        self._memory_reset_values: dict[str, Any] = {}
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
        self._memory_reset_values[name] = copy.deepcopy(value)
        setattr(self, name, _fresh_reset_value(self._memory_reset_values[name]))

    def memories(self) -> Iterator[Any]:
        """Iterate over the current values of this module's memories."""
        for name in self._memory_reset_values:
            yield getattr(self, name)

    def named_memories(self) -> Iterator[tuple[str, Any]]:
        """Iterate over ``(name, value)`` for this module's memories."""
        for name in self._memory_reset_values:
            yield name, getattr(self, name)

    def materialize_memory(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Return memory ``name`` as a tensor shaped, typed and placed like ``like``.

        A scalar memory becomes ``torch.full_like(like, value)``. A tensor memory whose
        shape differs from ``like`` (the batch size changed) is re-initialised from its
        reset value; one that differs only in dtype or device is converted.
        """
        value = getattr(self, name)
        if isinstance(value, torch.Tensor):
            if value.shape == like.shape:
                converted = placed_like(value, like)
                if converted is not value:
                    setattr(self, name, converted)
                return converted
            value = self._memory_reset_values[name]
        if isinstance(value, torch.Tensor):
            value = value.to(dtype=like.dtype, device=like.device).expand_as(like).clone()
        else:
            value = torch.full_like(like, value)
        setattr(self, name, value)
        return value

    # -- state management --------------------------------------------------------------

    def reset(self) -> None:
        """Restore every memory to its reset value."""
        for name, value in self._memory_reset_values.items():
            setattr(self, name, _fresh_reset_value(value))

    def detach(self) -> None:
        """Detach every tensor memory from the autograd graph (for truncated BPTT)."""
        for name in self._memory_reset_values:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.detach())

    def set_reset_value(self, name: str, value: Any) -> None:
        """Change the value that :meth:`reset` restores memory ``name`` to."""
        if name not in self._memory_reset_values:
            raise KeyError(f"{type(self).__name__} has no memory {name!r}")
        self._memory_reset_values[name] = copy.deepcopy(value)

    def __deepcopy__(self, memo: dict) -> MemoryModule:
        # After a training forward a memory can be a non-leaf tensor of the autograd
        # graph (or a list of them), which Tensor.__deepcopy__ refuses; copy memories'
        # values detached, as pickling does, and everything else as usual.
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        memory_names = self.__dict__["_memory_reset_values"]
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
        for store in (self.__dict__, self._memory_reset_values):
            for name in self._memory_reset_values:
                value = store.get(name)
                if isinstance(value, torch.Tensor):
                    store[name] = fn(value)
        return module

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"
