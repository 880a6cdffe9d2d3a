"""Which tensors are spikes: the registry behind :func:`~sj_core.functional.compact_spikes`.

While the switch is on (in this thread), a neuron that emits binary spikes registers its
output (:func:`mark_spikes`). The registry knows a spike tensor by identity, never by
its values, and recognises two kinds of saved tensors as spikes (:func:`find_spikes`):

* **views** of a registered tensor (a reshape, a transpose, a slice: what
  ``seq_to_ann_forward`` and layers make): the same storage, inside the registered
  elements, the registered tensor still alive and still owning that storage, and its
  version counter (shared with its views) unchanged since it was emitted;
* **copies and views found through the autograd history** (``contiguous()`` of a
  transposed view, the copies ``matmul`` makes when it folds a multi-head batch, a cast
  to another floating dtype, max pooling, a view of a spike tensor since freed): a
  tensor whose history leads back to a registered output through views (:data:`VIEWS`)
  and value-preserving copies (:data:`COPIES`) only, and which was not modified in
  place (a copy still at version 0; a view at the registered tensor's version).
  Registering marks the output's autograd node (``grad_fn.metadata``), so the mark
  lives and dies with the graph.

A storage registration goes with its tensor (a weak reference), so memory that a freed
spike tensor leaves behind is never mistaken for spikes. With the switch off, the
``mark_*`` functions return at their first test; inside ``torch.compile`` they do
nothing.

Neurons call :func:`mark_module_spikes` (built-in neurons and the PSN family: binary by
construction when their surrogate's forward is the Heaviside step) or
:func:`mark_checked_spikes` (FlexSN, whose outputs are the user's: registered only if
every element is exactly 0 or 1).

Example::

    >>> with compacting():                    # what compact_spikes() does
    ...     spikes = mark_spikes(node(x_seq))
    ...     find_spikes(spikes.flatten(0, 1)) is not None
    True
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..surrogate import SurrogateFunctionBase

__all__ = [
    "COPIES",
    "VIEWS",
    "Found",
    "SpikeEntry",
    "compacting",
    "find_spikes",
    "heaviside_surrogate",
    "is_compacting",
    "mark_checked_spikes",
    "mark_module_spikes",
    "mark_spikes",
    "spikes_emitted_by",
]

_PLAIN = (torch.Tensor, torch.nn.Parameter)

#: Autograd nodes (names without their numeric suffix) whose output is a view of their one
#: differentiable input: the same values, sharing its version counter.
VIEWS = frozenset(
    {
        "AliasBackward",
        "ExpandBackward",
        "PermuteBackward",
        "ReshapeAliasBackward",
        "SelectBackward",
        "SliceBackward",
        "SplitBackward",
        "SplitWithSizesBackward",
        "SqueezeBackward",
        "TBackward",
        "TransposeBackward",
        "UnbindBackward",
        "UnfoldBackward",
        "UnsafeViewBackward",
        "UnsqueezeBackward",
        "ViewBackward",
    }
)
#: ... and those whose output is a new tensor holding only values of their one
#: differentiable input, rearranged, selected or cast to another floating dtype (a max
#: pool's output is elements of its input): a copy of spikes made by them is spikes.
#: Anything else (arithmetic, averaging, padding, concatenation with other tensors, an
#: in-place operation) ends the search.
COPIES = frozenset(
    {
        "AdaptiveMaxPool2DBackward",
        "AdaptiveMaxPool3DBackward",
        "CloneBackward",
        "FlipBackward",
        "GatherBackward",
        "IndexBackward",
        "IndexSelectBackward",
        "MaxPool2DWithIndicesBackward",
        "MaxPool3DWithIndicesBackward",
        "PixelShuffleBackward",
        "PixelUnshuffleBackward",
        "RepeatBackward",
        "RollBackward",
        "ToCopyBackward",
    }
)
_SUFFIX = re.compile(r"\d+$")
_MAX_HOPS = 32
#: The key of a spike-emitting node's ``metadata``: ``{output_nr: version at emission}``.
_MARK = "sj_core.compact_spikes"


@dataclass(eq=False)
class SpikeEntry:
    """One registered spike tensor (contiguous, ``numel`` elements from element
    ``offset`` of its storage)."""

    ref: weakref.ReferenceType
    storage: int
    offset: int
    numel: int
    dtype: torch.dtype
    version: int
    #: Its bits (:func:`~.compact_bits.pack_bits`), once packed; shared by every saved
    #: view of it.
    bits: torch.Tensor | None = field(default=None, repr=False)

    def alive_and_unchanged(self) -> torch.Tensor | None:
        """The registered tensor, if it is alive, still owns its storage and was not
        modified in place since it was registered; else ``None``."""
        base = self.ref()
        if base is None or base._version != self.version:
            return None
        # Not re-pointed (set_(), .data =): then the address cannot be a new allocation.
        if base.untyped_storage().data_ptr() != self.storage:
            return None
        return base


@dataclass(frozen=True)
class Found:
    """A saved tensor recognised as spikes: a view of the registered ``entry``'s tensor
    ``base`` (whose bits it can share), or (both ``None``) a tensor found through its
    history, packed on its own."""

    entry: SpikeEntry | None = None
    base: torch.Tensor | None = None


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        self.by_storage: dict[int, list[SpikeEntry]] = {}


_STATE = _ThreadState()


def is_compacting() -> bool:
    """Whether :func:`~sj_core.functional.compact_spikes` is on in this thread."""
    return _STATE.depth > 0


def registered_count() -> int:
    """How many spike tensors are registered in this thread (for tests)."""
    return sum(len(entries) for entries in _STATE.by_storage.values())


@contextlib.contextmanager
def compacting() -> Iterator[None]:
    """Turn registration on in this thread (nested uses count); the registry is emptied
    when the outermost use ends."""
    _STATE.depth += 1
    try:
        yield
    finally:
        _STATE.depth -= 1
        if _STATE.depth == 0:
            _STATE.by_storage.clear()


def _forget(state: _ThreadState, entry: SpikeEntry) -> None:
    entries = state.by_storage.get(entry.storage)
    if entries is not None:
        entries[:] = [e for e in entries if e is not entry]
        if not entries:
            state.by_storage.pop(entry.storage, None)
    # The callback and the entry refer to each other: let go of the bits now rather than
    # at the next garbage collection.
    entry.bits = None


def mark_spikes(spikes: torch.Tensor) -> torch.Tensor:
    """Register ``spikes`` (every element exactly 0 or 1) while the switch is on; returns
    it unchanged. What cannot be tracked safely (a tensor subclass, a traced value, a
    non-contiguous, empty or non-float tensor) is left out."""
    if _STATE.depth == 0:
        return spikes
    if (
        type(spikes) not in _PLAIN
        or torch.compiler.is_compiling()
        or spikes.layout != torch.strided
        or spikes.numel() == 0
        or not spikes.is_contiguous()
        or not spikes.is_floating_point()
    ):
        return spikes
    state = _STATE
    entry = SpikeEntry(
        ref=None,  # set below: the callback needs the entry
        storage=spikes.untyped_storage().data_ptr(),
        offset=spikes.storage_offset(),
        numel=spikes.numel(),
        dtype=spikes.dtype,
        version=spikes._version,
    )
    # The entry goes with the tensor, whichever thread drops it last: its address may
    # then be reused by any other allocation.
    entry.ref = weakref.ref(spikes, lambda _, s=state, e=entry: _forget(s, e))
    state.by_storage.setdefault(entry.storage, []).append(entry)
    if spikes.grad_fn is not None:
        marks = spikes.grad_fn.metadata.setdefault(_MARK, {})
        marks[spikes.output_nr] = spikes._version
    return spikes


def find_spikes(tensor: torch.Tensor) -> Found | None:
    """How ``tensor`` (being saved for backward) is spikes, or ``None`` if it is not
    known to be (see the module docstring)."""
    state = _STATE
    if type(tensor) not in _PLAIN or tensor.layout != torch.strided:
        return None
    # (A 0-d tensor has no strides: default=0.)
    if tensor.numel() == 0 or not tensor.is_floating_point() or min(tensor.stride(), default=0) < 0:
        return None
    found = _as_view(state, tensor)
    if found is None and tensor.grad_fn is not None:
        found = _through_history(tensor)
    return found


def _as_view(state: _ThreadState, tensor: torch.Tensor) -> Found | None:
    storage = tensor.untyped_storage().data_ptr()
    for entry in state.by_storage.get(storage, ()):
        if tensor.dtype != entry.dtype or tensor._version != entry.version:
            continue
        base = entry.alive_and_unchanged()
        if base is None or tensor.device != base.device:
            continue
        first = tensor.storage_offset()
        last = first + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True))
        if entry.offset <= first and last < entry.offset + entry.numel:
            return Found(entry, base)
    return None


def _through_history(tensor: torch.Tensor) -> Found | None:
    node, output_nr = tensor.grad_fn, tensor.output_nr
    copied = False
    for _ in range(_MAX_HOPS):
        marks = node.metadata.get(_MARK)
        if marks is not None and output_nr in marks:
            # A copy has its own version counter, unmodified at 0; a view shares the
            # registered tensor's, unchanged since it was registered.
            expected = 0 if copied else marks[output_nr]
            return Found() if tensor._version == expected else None
        name = _SUFFIX.sub("", type(node).__name__)
        if name in COPIES:
            copied = True
        elif name not in VIEWS:
            return None
        inputs = [edge for edge in node.next_functions if edge[0] is not None]
        if len(inputs) != 1:
            return None
        node, output_nr = inputs[0]
    return None


def spikes_emitted_by(node: Any) -> bool:
    """Whether an output of the autograd ``node`` was registered as spikes."""
    return _MARK in node.metadata


def heaviside_surrogate(surrogate_function: object) -> bool:
    """Whether ``surrogate_function``'s forward is the Heaviside step (its output is
    binary): a :class:`~sj_core.surrogate.SurrogateFunctionBase` with ``spiking=True``
    whose ``forward`` is the base class's."""
    return (
        isinstance(surrogate_function, SurrogateFunctionBase)
        and surrogate_function.spiking
        and type(surrogate_function).forward is SurrogateFunctionBase.forward
    )


def mark_module_spikes(spikes: torch.Tensor, surrogate_function: object) -> torch.Tensor:
    """A neuron module's output, registered while the switch is on when
    ``surrogate_function`` makes it binary (:func:`heaviside_surrogate`); returns it."""
    # is_compiling() first: under Dynamo it is a constant, and the thread-local state
    # below is never traced.
    if torch.compiler.is_compiling() or _STATE.depth == 0:
        return spikes
    if heaviside_surrogate(surrogate_function):
        mark_spikes(spikes)
    return spikes


def mark_checked_spikes(output: torch.Tensor) -> torch.Tensor:
    """``output`` registered while the switch is on if every element is exactly ``1`` or
    ``+0.0`` (a user-defined neuron's output, e.g. FlexSN's): one check over the tensor,
    which waits for the device on a GPU. Returns it."""
    if torch.compiler.is_compiling() or _STATE.depth == 0:
        return output
    if type(output) not in _PLAIN or not output.is_floating_point() or output.numel() == 0:
        return output
    # -0.0 would come back as +0.0: not bitwise, so not binary here.
    binary = (output == 1) | ((output == 0) & ~torch.signbit(output))
    if bool(binary.all()):
        mark_spikes(output)
    return output
