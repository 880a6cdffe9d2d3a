"""A network's state as explicit values: list it, read it, write it, and run the network
as a pure function of its inputs and states.

The state of a network is the memories of every :class:`~sj_core.base.MemoryModule` in
it, in the order of :func:`named_memories`: a module's own memories (in registration
order), then its children's, depth first, like ``named_parameters()``. These functions
are re-exported by :mod:`sj_core.base`, where the reference system has them.

Example::

    >>> net = nn.Sequential(nn.Linear(4, 3), neuron.LIFNode(step_mode="m"))
    >>> step = base.to_functional_forward(net)
    >>> states = (torch.zeros(2, 3),)                       # one per memory: the LIF's v
    >>> (spikes,), states = step((torch.rand(8, 2, 4),), states)
    >>> (spikes,), states = step((torch.rand(8, 2, 4),), states)   # continues
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from .base import MemoryModule, _as_tuple, _overrides, _unpack

__all__ = [
    "extract_memories",
    "load_memories",
    "memories",
    "named_memories",
    "to_functional_forward",
]

#: ``(inputs, states, **kwargs) -> (outputs, new_states)``, each a tuple.
FunctionalForward = Callable[..., tuple[tuple[Any, ...], tuple[Any, ...]]]


def named_memories(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every memory of the module tree as ``(dotted name, value)``, like
    ``named_parameters()``: ``"0.v"``, ``"block.lif.v"``, ... (``prefix`` is put in
    front, with a dot)."""
    _check_module(module, "named_memories")
    if isinstance(module, MemoryModule):
        for name, value in module.named_memories():
            yield (f"{prefix}.{name}" if prefix else name), value
    for child_name, child in module.named_children():
        yield from named_memories(child, f"{prefix}.{child_name}" if prefix else child_name)


def memories(module: nn.Module) -> Iterator[Any]:
    """Every memory value of the module tree, in :func:`named_memories` order."""
    for _, value in named_memories(module):
        yield value


def extract_memories(module: nn.Module) -> list[Any]:
    """The network's state: a list of every memory value, in :func:`named_memories`
    order (the values themselves, not copies)."""
    return list(memories(module))


def load_memories(module: nn.Module, memory_list: list[Any] | tuple[Any, ...]) -> None:
    """Set every memory of the module tree from ``memory_list`` (the layout of
    :func:`extract_memories`).

    Raises:
        TypeError: ``memory_list`` is not a list or tuple.
        ValueError: when the list's length differs from the number of memories.
    """
    _check_module(module, "load_memories")
    if not isinstance(memory_list, (list, tuple)):
        raise TypeError(
            "load_memories expects a list or tuple of memory values (the layout of "
            f"extract_memories), got {type(memory_list).__name__}"
        )
    named = list(named_memories(module))
    if len(named) != len(memory_list):
        raise ValueError(
            f"Memory length mismatch: model has {len(named)} memories but list contains "
            f"{len(memory_list)}"
        )
    for (name, _), value in zip(named, memory_list, strict=True):
        *path, attribute = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, attribute, value)


def _check_module(module: Any, function: str) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{function} expects a torch.nn.Module, got {type(module).__name__}")


def _has_functional_forward(module: MemoryModule) -> bool:
    """Whether ``module`` runs purely without its memories being swapped in."""
    return (
        _overrides(module, "functional_forward")
        or _overrides(module, "single_step_functional_forward")
        or (module.step_mode == "m" and _overrides(module, "multi_step_functional_forward"))
    )


def to_functional_forward(module: nn.Module, fn: Callable | None = None) -> FunctionalForward:
    """The pure form of ``module``: ``f(inputs, states, **kwargs) -> (outputs,
    new_states)``.

    ``inputs`` are ``forward``'s positional arguments and ``outputs`` its results, each
    as a tuple (also when there is one); ``states`` are the values of every memory in
    :func:`extract_memories` order, and ``new_states`` the same after the call. The
    module's own memories are left as they were, also when the call raises.

    A memory module with a functional forward is called directly, a flat
    ``nn.Sequential`` chains its children's functional forwards, and anything else runs
    its stateful ``forward`` (or ``fn``, if given) with the states loaded into its
    memories for the duration of the call. States must not be modified in place by
    ``forward``.

    Args:
        module: the module or network.
        fn: the stateful function to convert instead of ``module.forward`` (for example
            another method of the module); its memories are swapped in around it.

    Raises:
        ValueError: (when called) the number of states differs from the memories'.
    """
    _check_module(module, "to_functional_forward")
    if fn is not None and not callable(fn):
        raise TypeError(f"to_functional_forward: fn must be callable, got {type(fn).__name__}")
    memory_modules = [m for m in module.modules() if isinstance(m, MemoryModule)]
    num_states = sum(len(m._memories_rv) for m in memory_modules)

    def check_state_count(states: tuple[Any, ...]) -> None:
        if len(states) != num_states:
            raise ValueError(
                f"{type(module).__name__} expected {num_states} states, but got {len(states)}."
            )

    direct = isinstance(module, MemoryModule) and len(memory_modules) == 1
    if fn is None and direct and _has_functional_forward(module):

        def direct_forward(inputs, states, **kwargs):
            check_state_count(tuple(states))
            return module.functional_forward(tuple(inputs), tuple(states), **kwargs)

        return direct_forward

    if fn is None and isinstance(module, nn.Sequential):
        sequential = _sequential_forward(module, num_states, check_state_count)
        if sequential is not None:
            return sequential
        forward_fn: Callable = _chained(module)
    else:
        forward_fn = module.forward if fn is None else fn

    def swapped_forward(inputs, states, **kwargs):
        check_state_count(tuple(states))
        original = extract_memories(module)
        load_memories(module, list(states))
        try:
            outputs = _as_tuple(forward_fn(*inputs, **kwargs))
            new_states = tuple(extract_memories(module))
        finally:
            load_memories(module, original)
        return outputs, new_states

    return swapped_forward


def _chained(sequential: nn.Sequential) -> Callable:
    """``sequential``'s forward, generalised to several inputs and outputs: each child
    gets the previous one's outputs as positional arguments; keyword arguments go to the
    first child."""

    def forward(*inputs: Any, **kwargs: Any) -> Any:
        outputs = inputs
        for index, child in enumerate(sequential):
            outputs = _as_tuple(child(*outputs, **(kwargs if index == 0 else {})))
        return _unpack(outputs)

    return forward


def _sequential_forward(
    sequential: nn.Sequential, num_states: int, check_state_count: Callable
) -> FunctionalForward | None:
    """The pure form of a flat ``nn.Sequential`` whose state lives only in children
    with a functional forward (``None`` when some state is elsewhere)."""
    children = list(sequential)
    counts = [
        len(child._memories_rv)
        if isinstance(child, MemoryModule) and _has_functional_forward(child)
        else 0
        for child in children
    ]
    if sum(counts) != num_states:
        return None

    def sequential_forward(inputs, states, **kwargs):
        states = tuple(states)
        check_state_count(states)
        outputs = tuple(inputs)
        new_states: list[Any] = []
        offset = 0
        for index, (child, count) in enumerate(zip(children, counts, strict=True)):
            child_kwargs = kwargs if index == 0 else {}
            if count:
                outputs, child_states = child.functional_forward(
                    outputs, states[offset : offset + count], **child_kwargs
                )
                outputs = tuple(outputs)
                new_states.extend(child_states)
                offset += count
            else:
                outputs = _as_tuple(child(*outputs, **child_kwargs))
        return outputs, tuple(new_states)

    return sequential_forward
