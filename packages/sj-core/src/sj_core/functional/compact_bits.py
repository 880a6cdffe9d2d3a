"""Binary tensors stored at one bit per element, and restored exactly.

:func:`pack_bits` keeps whether each element is non-zero, eight elements per byte;
:func:`unpack_bits` gives back ``0.0``/``1.0`` in the original dtype. For a tensor whose
elements are all exactly ``0`` or ``1`` (spikes) the round trip is exact, bit for bit.

The packing uses only shifts and ORs on 64-bit words (no multiplication that could
overflow), so it is the same on every device.

Example::

    >>> spikes = (torch.rand(10) > 0.5).float()
    >>> bits = pack_bits(spikes)              # uint8 [2]
    >>> torch.equal(unpack_bits(bits, 10, torch.float32), spikes)
    True
"""

from __future__ import annotations

import torch

__all__ = ["pack_bits", "packed_nbytes", "unpack_bits"]

_SHIFTS_CACHE: dict[torch.device, torch.Tensor] = {}


def packed_nbytes(numel: int) -> int:
    """Bytes that :func:`pack_bits` uses for ``numel`` elements: ``ceil(numel / 8)``."""
    return (numel + 7) // 8


def pack_bits(values: torch.Tensor) -> torch.Tensor:
    """``values`` (any shape and dtype) as ``uint8 [ceil(numel / 8)]``: bit ``i`` of byte
    ``k`` says whether element ``8k + i`` (in row-major order) is non-zero."""
    flat = values.reshape(-1) != 0
    padding = (-flat.numel()) % 8
    if padding:
        flat = torch.cat([flat, flat.new_zeros(padding)])
    # Eight bools are eight bytes of one 64-bit word, little-endian: element 8k + i is
    # bit 8i of word k. Shifting right by 7i brings it to bit i, and no other element
    # lands in bits 0..7 (i + 7j is a multiple of 8 only for j = i), so three shift-ORs
    # (by 7, 14, 28: every multiple of 7 up to 49) gather the byte.
    words = flat.view(torch.uint8).view(torch.int64)
    words = words | (words >> 7)
    words = words | (words >> 14)
    words = words | (words >> 28)
    return (words & 0xFF).to(torch.uint8)


def unpack_bits(bits: torch.Tensor, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """The ``numel`` elements packed in ``bits``, as ``0``/``1`` of ``dtype``, ``[numel]``."""
    shifts = _SHIFTS_CACHE.get(bits.device)
    if shifts is None:
        shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
        _SHIFTS_CACHE[bits.device] = shifts
    ones = (bits.unsqueeze(-1) >> shifts) & 1
    return ones.reshape(-1)[:numel].to(dtype)
