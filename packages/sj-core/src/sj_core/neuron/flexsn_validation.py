"""Argument checks shared by :class:`~sj_core.neuron.flexsn.FlexSN` and
:class:`~sj_core.neuron.flexsn.FlexSNKernel`.

A FlexSN ``core`` is user code, so every mismatch between what it was declared to take
or return (``num_inputs``, ``num_states``, ``num_outputs``) and what it really does is
reported here with the counts, instead of surfacing later as a shape error deep inside a
time loop or a generated kernel.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "check_counts",
    "check_core",
    "check_example_inputs",
    "check_requires_grad",
    "check_example_outputs",
    "check_core_returns",
    "check_states",
]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_counts(num_inputs: Any, num_states: Any, num_outputs: Any) -> tuple[int, int, int]:
    """``num_inputs >= 1``, ``num_states >= 0``, ``num_outputs >= 0`` (a core that only
    updates its states), all ints, and at least one output or state."""
    counts = (
        _check_int("num_inputs", num_inputs, 1),
        _check_int("num_states", num_states, 0),
        _check_int("num_outputs", num_outputs, 0),
    )
    if counts[1] == counts[2] == 0:
        raise ValueError("FlexSN needs at least one output or one state, got neither")
    return counts


def _positional_range(core: Callable) -> tuple[int, int] | None:
    """``(required, accepted)`` positional-argument counts of ``core``, or ``None`` when its
    signature cannot be read or takes ``*args``."""
    target = core.forward if isinstance(core, nn.Module) else core
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # builtins, some C extensions
        return None
    required = accepted = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            accepted += 1
            if parameter.default is inspect.Parameter.empty:
                required += 1
        elif (
            parameter.kind is inspect.Parameter.KEYWORD_ONLY
            and parameter.default is inspect.Parameter.empty
        ):
            return required, -1  # can never be called with positional arguments alone
    return required, accepted


def check_core(core: Any, num_inputs: int, num_states: int) -> Callable:
    """``core`` must be callable with ``num_inputs + num_states`` positional tensors."""
    if not callable(core):
        raise TypeError(
            "core must be a callable (*inputs, *states) -> (*outputs, *new_states), got "
            f"{type(core).__name__}"
        )
    counts = _positional_range(core)
    expected = num_inputs + num_states
    if counts is not None:
        required, accepted = counts
        if accepted < 0:
            raise ValueError(
                "core has keyword-only parameters without defaults; FlexSN calls it with "
                f"{expected} positional arguments (*inputs, *states) only"
            )
        if not required <= expected <= accepted:
            takes = f"{required}" if required == accepted else f"{required} to {accepted}"
            raise ValueError(
                f"core takes {takes} positional arguments, but FlexSN calls it with "
                f"num_inputs + num_states = {num_inputs} + {num_states} = {expected} "
                "(*inputs, *states)"
            )
    return core


def check_example_inputs(
    example_inputs: Any, num_inputs: int, num_states: int
) -> tuple[torch.Tensor, ...] | None:
    """``None`` or ``num_inputs + num_states`` tensors (one step of each input and state)."""
    if example_inputs is None:
        return None
    expected = num_inputs + num_states
    if not isinstance(example_inputs, Sequence) or len(example_inputs) != expected:
        got = len(example_inputs) if isinstance(example_inputs, Sequence) else example_inputs
        raise ValueError(
            f"example_inputs must be a tuple of num_inputs + num_states = {expected} tensors "
            f"(*inputs, *states), got {got!r}"
        )
    for i, tensor in enumerate(example_inputs):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"example_inputs[{i}] must be a tensor, got {type(tensor).__name__}")
    return tuple(example_inputs)


def check_requires_grad(
    requires_grad: Any, num_inputs: int, num_states: int
) -> tuple[bool, ...] | None:
    """``None`` or ``num_inputs + num_states`` bools (which core arguments need gradients)."""
    if requires_grad is None:
        return None
    expected = num_inputs + num_states
    if not isinstance(requires_grad, Sequence) or len(requires_grad) != expected:
        got = len(requires_grad) if isinstance(requires_grad, Sequence) else requires_grad
        raise ValueError(
            f"requires_grad must be a tuple of num_inputs + num_states = {expected} bools "
            f"(*inputs, *states), got {got!r}"
        )
    for i, flag in enumerate(requires_grad):
        if not isinstance(flag, bool):
            raise TypeError(f"requires_grad[{i}] must be a bool, got {flag!r}")
    return tuple(requires_grad)


def check_example_outputs(
    example_outputs: Any, num_outputs: int
) -> tuple[torch.Tensor, ...] | None:
    """``None`` or ``num_outputs`` tensors, one step of each output (shape and dtype)."""
    if example_outputs is None:
        return None
    if not isinstance(example_outputs, Sequence) or len(example_outputs) != num_outputs:
        got = len(example_outputs) if isinstance(example_outputs, Sequence) else example_outputs
        raise ValueError(
            f"example_outputs must be a tuple of num_outputs = {num_outputs} tensors (one "
            f"step of each output), got {got!r}"
        )
    for i, tensor in enumerate(example_outputs):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"example_outputs[{i}] must be a tensor, got {type(tensor).__name__}")
    return tuple(example_outputs)


_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_elementwise_examples(
    example_inputs: tuple[torch.Tensor, ...] | None,
    example_outputs: tuple[torch.Tensor, ...] | None,
    backend: str,
) -> None:
    """What the generated element-wise kernels need of the examples: every example input
    and output a float16/bfloat16/float32 tensor, all of one shape (one step)."""
    examples = [("example_inputs", i, t) for i, t in enumerate(example_inputs or ())]
    examples += [("example_outputs", i, t) for i, t in enumerate(example_outputs or ())]
    for name, index, tensor in examples:
        if tensor.dtype not in _KERNEL_DTYPES:
            raise TypeError(
                f"FlexSN backend {backend!r} runs element-wise kernels on float16, bfloat16 "
                f"or float32 tensors; {name}[{index}] is {tensor.dtype}"
            )
    shapes = {tuple(tensor.shape) for _, _, tensor in examples}
    if len(shapes) > 1:
        found = [f"{name}[{index}]: {tuple(t.shape)}" for name, index, t in examples]
        raise ValueError(
            f"FlexSN backend {backend!r} runs an element-wise core: every example input, "
            f"state and output must have the same shape (one step), got {', '.join(found)}"
        )


def check_core_returns(returns: Any, num_outputs: int, num_states: int) -> Sequence[Any]:
    """What ``core`` returned must be a tuple/list of ``num_outputs + num_states`` tensors."""
    expected = num_outputs + num_states
    if not isinstance(returns, (tuple, list)) or len(returns) != expected:
        got = (
            f"{len(returns)} values"
            if isinstance(returns, (tuple, list))
            else f"a {type(returns).__name__}"
        )
        raise ValueError(
            f"core must return a tuple of num_outputs + num_states = {num_outputs} + "
            f"{num_states} = {expected} tensors (*outputs, *new_states), got {got}"
        )
    for i, value in enumerate(returns):
        if not isinstance(value, torch.Tensor):
            role = f"output {i}" if i < num_outputs else f"new state {i - num_outputs}"
            raise TypeError(f"core returned a {type(value).__name__} as its {role}, not a tensor")
    return returns


def check_states(states: Any, num_states: int, source: str) -> list[torch.Tensor]:
    """``states`` (from ``source``, e.g. ``init_states``) must be ``num_states`` tensors."""
    if not isinstance(states, (tuple, list)) or len(states) != num_states:
        got = f"{len(states)} values" if isinstance(states, (tuple, list)) else repr(states)
        raise ValueError(
            f"{source} must return a list of num_states = {num_states} tensors, got {got}"
        )
    for i, state in enumerate(states):
        if not isinstance(state, torch.Tensor):
            raise TypeError(
                f"{source} returned a {type(state).__name__} as state {i}, not a tensor"
            )
    return list(states)
