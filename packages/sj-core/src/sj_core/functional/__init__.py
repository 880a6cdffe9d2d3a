"""Whole-network helpers: reset, step mode, backend, detach, and time folding.

A spiking network is an ordinary ``nn.Module`` tree whose stateful parts are
:class:`~sj_core.base.MemoryModule` instances. These functions walk that tree:

* :func:`reset_net` / :func:`detach_net`: clear state between sequences, or cut its
  autograd history (truncated BPTT).
* :func:`set_step_mode` / :func:`set_backend`: configure every module at once.
* :func:`multi_step_forward` / :func:`seq_to_ann_forward`: run single-step or stateless
  modules over a ``[T, N, *]`` sequence.
* the pure per-step neuron functions of :mod:`sj_core.functional.neuron` (``if_step``,
  ``lif_step``, ...), re-exported here.

Example::

    >>> from torch import nn
    >>> from sj_core import functional, layer, neuron
    >>> net = nn.Sequential(layer.Linear(4, 3), neuron.LIFNode())
    >>> functional.set_step_mode(net, "m")
    >>> net(torch.rand(5, 2, 4)).shape           # [T, N, features]
    torch.Size([5, 2, 3])
    >>> functional.reset_net(net)                # before the next sequence
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from .. import backends
from ..base import MemoryModule
from . import neuron
from .compact import compact_spikes
from .neuron import (
    eif_step,
    if_step,
    izhikevich_step,
    lif_charge,
    lif_step,
    masked_psn_step,
    plif_step,
    qif_step,
    sliding_psn_step,
    voltage_reset,
)

__all__ = [
    "compact_spikes",
    "detach_net",
    "eif_step",
    "if_step",
    "izhikevich_step",
    "lif_charge",
    "lif_step",
    "masked_psn_step",
    "multi_step_forward",
    "neuron",
    "plif_step",
    "qif_step",
    "reset_net",
    "seq_to_ann_forward",
    "set_backend",
    "set_step_mode",
    "sliding_psn_step",
    "voltage_reset",
]

StepFunction = Callable[[torch.Tensor], torch.Tensor]


def reset_net(net: nn.Module) -> None:
    """Call ``reset()`` on ``net`` and every submodule that has one.

    Call it between independent input sequences. It is traceable by
    ``torch.compile(fullgraph=True)``, so it may sit inside a compiled training step.

    A ``reset`` attribute that is not callable is skipped. A module with a ``reset()``
    that is not a :class:`~sj_core.base.MemoryModule` is reset too, with a
    :class:`UserWarning` naming its class (once per class and call site, by Python's
    default warning filter; not while ``torch.compile`` traces). An exception raised by
    a module's ``reset()`` propagates.

    Example::

        >>> for x_seq, y in loader:
        ...     functional.reset_net(net)
        ...     loss = criterion(net(x_seq).mean(0), y)
    """
    for module in net.modules():
        reset = getattr(module, "reset", None)
        if not callable(reset):
            continue
        if not isinstance(module, MemoryModule) and not torch.compiler.is_compiling():
            warnings.warn(
                f"reset_net: calling reset() of {type(module).__qualname__}, which is not "
                "a sj_core.base.MemoryModule",
                UserWarning,
                stacklevel=2,
            )
        reset()


def detach_net(net: nn.Module) -> None:
    """Call ``detach()`` on ``net`` and every submodule that has one (a ``detach``
    attribute that is not callable is skipped).

    Cuts the autograd history of every memory while keeping its value: call it between
    chunks of one long sequence for truncated backpropagation through time.
    """
    for module in net.modules():
        detach = getattr(module, "detach", None)
        if callable(detach):
            detach()


def _manages_time(module: nn.Module) -> bool:
    """Whether ``module`` runs its children over time itself (and keeps their modes)."""
    return bool(getattr(type(module), "manages_time", False))


def _step_mode_targets(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """``(qualified name, module)`` for every module :func:`set_step_mode` must set."""
    if hasattr(module, "step_mode"):
        yield prefix, module
        if _manages_time(module):
            return  # its children keep their own step modes
    for name, child in module.named_children():
        yield from _step_mode_targets(child, f"{prefix}.{name}" if prefix else name)


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    """Set ``step_mode`` (``'s'`` or ``'m'``) on every module of ``net`` that has one.

    Containers that run their children over time themselves (classes with
    ``manages_time = True``, such as :class:`~sj_core.layer.MultiStepContainer` and
    :class:`~sj_core.layer.SeqToANNContainer`) are set but not descended into: their
    children keep their own modes.

    The change is all or nothing: if any module refuses the mode (a multi-step-only
    container asked for ``'s'``, a neuron whose backend has no operator for that mode),
    every module keeps its old mode and :class:`ValueError` names the module.

    Example::

        >>> net = nn.Sequential(layer.Conv2d(1, 4, 3), neuron.IFNode())
        >>> functional.set_step_mode(net, "m")     # input is now [T, N, C, H, W]
    """
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
    done: list[tuple[nn.Module, str]] = []
    for name, module in _step_mode_targets(net):
        old = module.step_mode
        try:
            module.step_mode = step_mode
        except (ValueError, backends.BackendError) as exc:
            for changed, previous in reversed(done):
                changed.step_mode = previous
            where = repr(name) if name else "the root module"
            raise ValueError(
                f"set_step_mode({step_mode!r}) failed at {where} ({type(module).__name__}); "
                f"no module was changed: {exc}"
            ) from exc
        done.append((module, old))


def _check_backend_name(backend: str) -> None:
    """Raise once, before touching any module, if ``backend`` names no usable backend.

    An unknown name is a typo, and a backend that is not installed (or whose plugin is
    broken) cannot serve any module: neither is a per-module limitation to warn about.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend not in ("torch", "auto"):
        backends.get_backend(backend)


def set_backend(
    net: nn.Module,
    backend: str,
    instance: type | tuple[type, ...] | None = nn.Module,
) -> None:
    """Set ``backend`` on every module of ``net`` that is an ``instance`` and has one.

    A module that cannot run on ``backend`` (e.g. a neuron in step mode ``'s'`` asked for
    a backend with only multi-step kernels) keeps its old backend, and a
    :class:`UserWarning` names it, the backend and the module's ``supported_backends``.

    Args:
        net: the network.
        backend: an installed backend name, ``'torch'`` or ``'auto'``.
        instance: only modules of this type (or tuple of types) are changed, e.g.
            ``neuron.LIFNode``; ``None``: every module (as ``nn.Module``).

    Raises:
        UnknownBackendError: no backend of that name is installed (listing those that
            are); nothing is changed.
        BackendNotInstalledError, BackendLoadError: a first-party backend that is not
            installed, or a plugin that failed to load; nothing is changed.
        TypeError: ``instance`` is not a type, a tuple of types or ``None``.

    Example::

        >>> functional.set_backend(net, "triton", instance=neuron.LIFNode)
    """
    if instance is None:
        instance = nn.Module
    types = instance if isinstance(instance, tuple) else (instance,)
    if not types or not all(isinstance(t, type) for t in types):
        raise TypeError(
            f"set_backend: instance must be a type, a tuple of types or None, got {instance!r}"
        )
    _check_backend_name(backend)
    for name, module in net.named_modules():
        if not isinstance(module, types) or not hasattr(module, "backend"):
            continue
        old = module.backend
        try:
            module.backend = backend
        except (backends.BackendError, ValueError, ImportError) as exc:
            supported = getattr(module, "supported_backends", "unknown")
            where = repr(name) if name else "the root module"
            warnings.warn(
                f"set_backend: {where} ({type(module).__name__}) cannot use backend "
                f"{backend!r} and keeps backend {old!r}; it supports {supported}: {exc}",
                UserWarning,
                stacklevel=2,
            )


def _check_sequence(x_seq: torch.Tensor, caller: str) -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{caller} expects a tensor x_seq, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(
            f"{caller} expects x_seq of shape [T, N, *] (at least 2-D), "
            f"got shape {tuple(x_seq.shape)}"
        )


def _chain(modules: StepFunction | Sequence[StepFunction]) -> StepFunction:
    """One callable from a module, a callable, or a sequence of them applied in order."""
    if isinstance(modules, nn.Module) and not isinstance(modules, nn.ModuleList):
        return modules
    if isinstance(modules, (list, tuple, nn.ModuleList)):
        stages = tuple(modules)

        def run(*args: torch.Tensor) -> torch.Tensor:
            # The first stage takes every input; each next one the previous result.
            for stage in stages:
                args = (stage(*args),)
            return args[0]

        return run
    if not callable(modules):
        raise TypeError(
            f"expected a module, a callable, or a list/tuple of them; got {type(modules).__name__}"
        )
    return modules


def multi_step_forward(
    x_seq: torch.Tensor, single_step_module: StepFunction | Sequence[StepFunction]
) -> torch.Tensor:
    """Run single-step modules over a sequence, one step at a time.

    Shapes: ``x_seq`` ``[T, N, *]`` -> ``[T, N, *out]``, where ``[N, *out]`` is what
    the module(s) return for one step ``[N, *]``. Stateful modules keep their state from
    step to step (call :func:`reset_net` between sequences).

    Args:
        x_seq: the input sequence, time first; ``T >= 1``.
        single_step_module: a module (or callable), or a list/tuple of them applied in
            order at each step.

    Example::

        >>> node = neuron.LIFNode()                          # step_mode 's'
        >>> functional.multi_step_forward(torch.rand(4, 2, 3), node).shape
        torch.Size([4, 2, 3])
    """
    _check_sequence(x_seq, "multi_step_forward")
    if x_seq.shape[0] == 0:
        # Nothing to run, so no output shape to infer: refuse rather than guess one.
        raise ValueError(
            "multi_step_forward needs at least one time step to know the output shape; "
            f"got x_seq of shape {tuple(x_seq.shape)}"
        )
    step = _chain(single_step_module)
    return torch.stack([step(x_seq[t]) for t in range(x_seq.shape[0])])


def seq_to_ann_forward(
    x_seq: torch.Tensor | tuple[torch.Tensor, ...],
    stateless_module: StepFunction | Sequence[StepFunction],
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Run stateless modules on a whole sequence at once, time folded into the batch.

    Shapes: ``x_seq`` ``[T, N, *]`` is reshaped to ``[T * N, *]``, the module(s) map it
    to ``[T * N, *out]``, and the result is unfolded to ``[T, N, *out]``. Only correct
    for modules without state across steps (convolutions, linear layers, pooling; batch
    norm then pools its statistics over ``T * N``).

    ``x_seq`` may be a tuple of sequences with the same ``[T, N]`` leading dimensions:
    each is folded and the first module gets them as positional arguments. A module that
    returns a tuple (``MaxPool2d(return_indices=True)``) gives a tuple of sequences.

    Args:
        x_seq: the input sequence, time first, or a tuple of them.
        stateless_module: a module (or callable), or a list/tuple of them applied in
            order.

    Raises:
        ValueError: sequences of a tuple whose ``[T, N]`` leading dimensions differ.

    Example::

        >>> conv = nn.Conv2d(3, 8, 3, padding=1)
        >>> functional.seq_to_ann_forward(torch.rand(4, 2, 3, 5, 5), conv).shape
        torch.Size([4, 2, 8, 5, 5])
    """
    sequences = x_seq if isinstance(x_seq, tuple) else (x_seq,)
    for sequence in sequences:
        _check_sequence(sequence, "seq_to_ann_forward")
    leading = sequences[0].shape[:2]
    if any(sequence.shape[:2] != leading for sequence in sequences[1:]):
        raise ValueError(
            "seq_to_ann_forward expects every tensor of x_seq to share the same "
            "[T, batch_size] leading dimensions, got shapes "
            f"{[tuple(sequence.shape) for sequence in sequences]}"
        )
    y = _chain(stateless_module)(*(sequence.flatten(0, 1) for sequence in sequences))
    if isinstance(y, tuple):
        return tuple(item.unflatten(0, tuple(leading)) for item in y)
    return y.unflatten(0, tuple(leading))
