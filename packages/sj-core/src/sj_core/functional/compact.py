"""``compact_spikes()``: spikes kept for the backward pass at one bit per element.

A layer that receives spikes (``Linear``, ``Conv*``, the ``matmul`` of spiking attention,
pooling...) saves them for its backward pass at the size of their dtype (4 bytes in
fp32), though each is exactly 0 or 1. Inside :func:`compact_spikes` every tensor that
autograd saves passes through a pack hook
(:class:`torch.autograd.graph.saved_tensors_hooks`): a spike tensor that one of our
neurons emitted (see :mod:`.compact_registry`), or a view of one, is kept as bits
(:mod:`.compact_bits`), packed once however many layers save it, and restored exactly
when the backward pass asks for it; anything else is kept as it is. Gradients are
bitwise the same as without the switch.

What autograd checks without hooks, this keeps checking: a tensor saved for backward and
then modified in place raises at the backward pass, spikes or not.

``torch.compile``: inside a compiled region neurons do not register their spikes, so
nothing there is compacted (the compiled graph chooses what it saves itself, and runs
unchanged); the first backward pass through such a region warns once.

Example::

    >>> with functional.compact_spikes():
    ...     loss = criterion(net(x_seq).mean(0), y)
    >>> loss.backward()                       # may run outside the block
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import torch

from .compact_bits import pack_bits, unpack_bits
from .compact_registry import Found, compacting, find_spikes, spikes_emitted_by

__all__ = ["compact_spikes"]


class _Kept:
    """A saved tensor that is not spikes: itself, and its version when it was saved."""

    __slots__ = ("tensor", "version")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.version = tensor._version


class _PackedSpikes:
    """A saved spike tensor as bits: the bits of the storage span it lies in (for a view
    of a registered spike tensor, that tensor's bits, shared by all its saved views), and
    where in that span it lies (size, stride, offset in elements)."""

    __slots__ = ("bits", "numel", "dtype", "size", "stride", "offset", "version", "refs")

    def __init__(self, tensor: torch.Tensor, found: Found) -> None:
        entry, base = found.entry, found.base
        if entry is not None and base is not None:
            if entry.bits is None:
                entry.bits = pack_bits(base)
            self.bits, self.numel = entry.bits, base.numel()
            self.offset = tensor.storage_offset() - base.storage_offset()
        else:
            # A copy: its own elements, from the first to the last it covers (elements a
            # stride skips are never read back, whatever their bits).
            span = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True))
            flat = tensor.as_strided((span,), (1,), tensor.storage_offset())
            self.bits, self.numel, self.offset = pack_bits(flat), span, 0
        self.dtype = tensor.dtype
        self.size = tensor.size()
        self.stride = tensor.stride()
        self.version = tensor._version
        # Weak: keeping them would keep the 32-bit spikes alive. Alive at the backward
        # pass, they tell whether the spikes were modified in place after being saved.
        self.refs = [weakref.ref(tensor)]
        if base is not None:
            self.refs.append(weakref.ref(base))


def _pack(tensor: torch.Tensor) -> Any:
    found = find_spikes(tensor)
    if found is None:
        return _Kept(tensor)
    return _PackedSpikes(tensor, found)


def _modified(shape: torch.Size, saved: int, now: int) -> RuntimeError:
    return RuntimeError(
        f"one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: a tensor of shape {list(shape)} was saved for backward at "
        f"version {saved} and is now at version {now} (under "
        "sj_core.functional.compact_spikes(), which reports what autograd would); modify "
        "a copy instead, e.g. x = x.clone()"
    )


def _unpack(packed: Any) -> torch.Tensor:
    if isinstance(packed, _Kept):
        if not _compile_warned:
            _note_compiled_region()
        if packed.tensor._version != packed.version:
            raise _modified(packed.tensor.shape, packed.version, packed.tensor._version)
        return packed.tensor
    for ref in packed.refs:
        alive = ref()
        if alive is not None and alive._version != packed.version:
            raise _modified(packed.size, packed.version, alive._version)
    base = unpack_bits(packed.bits, packed.numel, packed.dtype)
    return base.as_strided(packed.size, packed.stride, packed.offset)


_compile_warned = False


def _note_compiled_region() -> None:
    """Warn once when a compiled region's backward unpacks what it saved under the
    switch (its forward saved it there; nothing in it was compacted)."""
    global _compile_warned
    node = torch._C._current_autograd_node()
    if node is None or type(node).__name__ != "CompiledFunctionBackward":
        return
    # A compiled function whose outputs were registered as spikes (backend='inductor'
    # neurons) compacted what matters; a compiled network did not register its spikes.
    if not spikes_emitted_by(node):
        _compile_warned = True
        warnings.warn(
            "a torch.compile region ran under sj_core.functional.compact_spikes(): spikes "
            "inside compiled regions are not compacted (the compiled graph chooses what it "
            "saves for backward; it runs as compiled, with the same results); spikes "
            "saved by eager code still are",
            UserWarning,
            stacklevel=2,
        )


@contextlib.contextmanager
def compact_spikes() -> Iterator[None]:
    """Keep our neurons' spikes for the backward pass at 1 bit per element.

    Wrap the forward pass (the backward pass may run outside). Every spike tensor that a
    neuron of this library emits while the block is active (binary by construction: a
    spiking surrogate, any backend, both step modes), and every view of it, is stored
    packed by whatever layer saves it, and restored exactly for the backward pass:
    gradients are bitwise the same as without it. Saved tensors that are not spikes,
    spike tensors modified in place after they were emitted, and copies of spikes
    (``.contiguous()`` of a transposed view, ``.float()`` of another dtype) are kept as
    they are. Thread-local, like ``saved_tensors_hooks``; nesting is allowed.

    Example::

        >>> net = nn.Sequential(layer.Conv2d(3, 8, 3), neuron.LIFNode(), layer.Flatten(),
        ...                     layer.Linear(8 * 30 * 30, 10))
        >>> functional.set_step_mode(net, "m")
        >>> with functional.compact_spikes():
        ...     loss = net(torch.rand(4, 2, 3, 32, 32)).sum()   # Linear keeps 1 bit/spike
        >>> loss.backward()
    """
    with compacting(), torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
        yield
