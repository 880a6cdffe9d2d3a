"""Host-side launch configuration: block sizes, the device, fp16/bf16 thresholds, scalars.

Everything here is pure Python on plain numbers, so it is safe inside the traced body
of a ``triton_op`` (no tensor data is read on the host).
"""

from __future__ import annotations

import contextlib
import functools
import struct
from collections.abc import Iterator

import torch

from sj_core.kernels import NeuronKernelConfig

from .equations import SCALAR_SLOTS

__all__ = [
    "LOW_PRECISION",
    "PREFETCH",
    "MAX_RECOMPUTE_T",
    "RECOMPUTE_MAX_T",
    "block_config",
    "device_guard",
    "h_tile_rows",
    "recompute_short_sequences",
    "recomputes_h",
    "scalar_slots",
    "threshold_neighbours",
]

LOW_PRECISION = (torch.float16, torch.bfloat16)


def block_config(ncl: int, training: bool = False) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for ``ncl`` neurons per step.

    Large layers use 1024 neurons per program (8 fp32 per thread: two 16-byte accesses);
    small ones use 256 so that more programs spread over the multiprocessors. Only these
    variants exist, so a new width never triggers a compilation.

    ``training``: the kernels of a training step (the forward that keeps ``H``, and the
    backward) run large layers with 8 warps, inference with 4. Measured on an H200 (LIF,
    4M neurons per step, graph timing, % of the copy-bandwidth floor), 8 warps against 4
    for forward + backward: fp32 82.5/88.9/94.2% against 82.1/88.1/93.3% at T = 4/8/64;
    bf16 73.0/82.0/93.0% against 68.6/77.0/85.1%. For inference 4 warps measured equal or
    better (bf16 T=64: 91.1% against 89.4%). See docs/benchmarks.md.
    """
    if ncl >= 1 << 18:
        return 1024, (8 if training else 4)
    return 256, 2


#: Whether the forward kernel loads step t + 1's input before computing step t. Off
#: until a GPU measurement shows it pays (``bench_neurons.py --sweep`` compares both).
PREFETCH = False

#: Training launches of a neuron without a second state (IF, LIF, PLIF, QIF, EIF) with
#: ``T <= RECOMPUTE_MAX_T`` keep ``X`` instead of ``H`` for the backward, which
#: recomputes ``H`` (``neuron_backward_recompute_kernel``): 20 bytes per fp32
#: element-step instead of 24, the same memory kept. ``0`` (off) until a GPU measurement
#: shows where it pays (``bench_neurons.py --sweep`` compares both); values above
#: :data:`MAX_RECOMPUTE_T` count as it.
RECOMPUTE_MAX_T = 0


#: The longest sequence whose ``H`` the recomputing backward holds in registers.
MAX_RECOMPUTE_T = 16


@contextlib.contextmanager
def recompute_short_sequences(max_t: int = MAX_RECOMPUTE_T) -> Iterator[None]:
    """Within the block, training launches with ``T <= max_t`` use the recomputing
    backward (sets :data:`RECOMPUTE_MAX_T`, process-wide, and restores it after)::

        with launch_config.recompute_short_sequences():
            loss = net(x_seq).mean()  # the forward decides what it keeps
        loss.backward()  # follows what the forward kept, inside the block or not
    """
    global RECOMPUTE_MAX_T
    previous, RECOMPUTE_MAX_T = RECOMPUTE_MAX_T, max_t
    try:
        yield
    finally:
        RECOMPUTE_MAX_T = previous


def recomputes_h(config: NeuronKernelConfig, T: int) -> bool:
    """Whether a training forward of ``config`` over ``T`` steps keeps ``X`` instead of
    ``H`` (the forward decides; the backward sees what was kept). With a symbolic ``T``
    (``torch.compile``, dynamic shapes) the comparison guards on its range."""
    if RECOMPUTE_MAX_T <= 0 or config.statement.adaptation is not None:
        return False
    return 1 <= T <= min(RECOMPUTE_MAX_T, MAX_RECOMPUTE_T)


def h_tile_rows(T: int) -> int:
    """The recomputing backward's ``T_PAD``: the power of two >= ``T``; for a symbolic
    ``T``, :data:`MAX_RECOMPUTE_T` (one variant for every length, so new lengths reuse
    a compiled graph)."""
    if not isinstance(T, int):
        return MAX_RECOMPUTE_T
    return 1 << (T - 1).bit_length()


def device_guard(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``tensor``'s GPU the current one while launching (Triton launches on the
    current device and stream)."""
    if tensor.is_cuda and tensor.device.index != torch.cuda.current_device():
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def _fp32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def _bits_fp32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def _round_to_bf16_bits(value: float) -> int:
    bits = _fp32_bits(value)
    # Round to nearest, ties to even, on the upper 16 bits.
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16) & 0xFFFF


def _to_float(bits16: int, dtype: torch.dtype) -> float:
    if dtype == torch.bfloat16:
        return _bits_fp32(bits16 << 16)
    return struct.unpack("<e", struct.pack("<H", bits16 & 0xFFFF))[0]


def _round_bits(value: float, dtype: torch.dtype) -> int:
    if dtype == torch.bfloat16:
        return _round_to_bf16_bits(value)
    return struct.unpack("<H", struct.pack("<e", value))[0]


def _step(bits16: int, up: bool) -> int:
    """The neighbouring 16-bit float (sign-magnitude encoding)."""
    negative = bits16 & 0x8000
    magnitude = bits16 & 0x7FFF
    if magnitude == 0:
        return 0x0001 if up else 0x8001
    if (not negative) == up:
        return bits16 + 1
    return bits16 - 1


@functools.lru_cache(maxsize=256)
def threshold_neighbours(v_threshold: float, dtype: torch.dtype) -> tuple[float, float]:
    """The two ``dtype`` values around ``v_threshold``: ``(largest < v_th, smallest >= v_th)``.

    The forward stores the pre-reset potential in the input dtype and the backward
    recomputes the spike as ``H >= v_threshold``; storing these values instead of a
    rounded ``H`` that crossed the threshold keeps both passes consistent.
    """
    if dtype not in LOW_PRECISION:
        return v_threshold, v_threshold
    largest = torch.finfo(dtype).max
    if v_threshold > largest:  # every finite H of this dtype is below the threshold
        return largest, float("inf")
    if v_threshold < -largest:
        return float("-inf"), -largest
    bits = _round_bits(v_threshold, dtype)
    value = _to_float(bits, dtype)
    if value >= v_threshold:
        at_or_above = value
        below = _to_float(_step(bits, up=False), dtype)
    else:
        below = value
        at_or_above = _to_float(_step(bits, up=True), dtype)
    return below, at_or_above


def _round_to_fp32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


@functools.lru_cache(maxsize=1024)
def scalar_slots(config: NeuronKernelConfig) -> tuple[float, ...]:
    """The values of the kernels' scalar arguments ``c0 .. c7`` for ``config``
    (:data:`~sj_triton.neuron_kernel.equations.SCALAR_SLOTS` names them).

    ``"1/p"`` is the fp32 reciprocal of the fp32 ``p``, as torch computes it when it
    divides a CUDA tensor by a Python scalar.
    """
    params = config.param_values()
    values = []
    for key in SCALAR_SLOTS[config.neuron]:
        if key.startswith("1/"):
            values.append(_round_to_fp32(1.0 / _round_to_fp32(params[key[2:]])))
        else:
            values.append(params[key])
    return tuple(values) + (0.0,) * (8 - len(values))
