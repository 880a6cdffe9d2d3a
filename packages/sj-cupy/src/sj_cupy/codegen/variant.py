"""Kernel variants: everything baked into one generated kernel, as hashable data.

A *variant* fixes the neuron family, the direction (forward or backward), the reset mode,
``decay_input``, the storage dtype, the neurons per thread (``vec``) and, for the
backward, ``detach_reset`` and the surrogate. Float parameters (thresholds, ``tau``,
surrogate ``alpha``...) are kernel arguments, so they are not part of the variant: a new
``alpha`` never compiles anything. The forward does not depend on ``detach_reset`` or the
surrogate, so forward variants normalise them away and are shared by every backward
configuration.

Every configuration comes in two layouts: ``vec = 1`` (one neuron per thread, any size and
alignment) and ``vec = DTYPES[dtype].vec`` (4 fp32 or 8 16-bit neurons per thread, each
step one 16-byte access per tensor; needs ``N % vec == 0`` and 16-byte aligned tensors).
The host picks one per call (:func:`sj_cupy.launch.choose_variant`).

Example::

    >>> v = make_variant("lif", "backward", soft_reset=False, decay_input=True,
    ...                  dtype="float32", detach_reset=True, surrogate="ATan")
    >>> v.kernel_name
    'sj_lif_decay_hard_detach_f32_backward_ATan'
    >>> vector_variant(v).kernel_name
    'sj_lif_decay_hard_detach_f32x4_backward_ATan'
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from .neurons import NEURONS
from .prelude import DTYPES
from .surrogates import SURROGATES

__all__ = ["DIRECTIONS", "KernelVariant", "all_variants", "make_variant", "vector_variant"]

DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class KernelVariant:
    """One generated kernel. Build it with :func:`make_variant` (which validates and
    normalises); the fields are the variant's identity and its cache key."""

    neuron: str
    direction: str
    soft_reset: bool
    decay_input: bool
    dtype: str
    detach_reset: bool = False
    surrogate: str | None = None
    vec: int = 1  # neurons per thread: 1, or DTYPES[dtype].vec (16-byte accesses)

    @property
    def kernel_name(self) -> str:
        """A C identifier unique to the variant."""
        parts = ["sj", self.neuron]
        if NEURONS[self.neuron].has_decay_input:
            parts.append("decay" if self.decay_input else "nodecay")
        parts.append("soft" if self.soft_reset else "hard")
        if self.direction == "backward":
            parts.append("detach" if self.detach_reset else "attach")
        suffix = DTYPES[self.dtype].suffix
        parts += [suffix if self.vec == 1 else f"{suffix}x{self.vec}", self.direction]
        if self.surrogate is not None:
            parts.append(self.surrogate)
        return "_".join(parts)

    def describe(self) -> str:
        """One line for comments and messages."""
        spec = NEURONS[self.neuron]
        words = [spec.title]
        if spec.has_decay_input:
            words.append("decay_input" if self.decay_input else "no decay_input")
        words.append("soft reset" if self.soft_reset else "hard reset")
        if self.direction == "backward":
            words.append("detach_reset" if self.detach_reset else "attached reset")
            words.append(f"surrogate {self.surrogate}")
        words.append(self.dtype)
        if self.vec > 1:
            words.append(f"{self.vec} neurons per thread")
        return f"{', '.join(words)}: {self.direction}"


def _supported(kind: str, names) -> str:
    return f"supported {kind}: {', '.join(names)}"


@functools.lru_cache(maxsize=4096)
def make_variant(
    neuron: str,
    direction: str,
    *,
    soft_reset: bool,
    decay_input: bool,
    dtype: str,
    detach_reset: bool = False,
    surrogate: str | None = None,
    vec: int = 1,
) -> KernelVariant:
    """Validate and normalise a configuration into a :class:`KernelVariant`.

    Raises:
        NotImplementedError: an unknown neuron, dtype or surrogate, naming the
            supported ones.
        ValueError: an unknown direction, a backward without a surrogate, or a ``vec``
            other than 1 and the dtype's vector width.
    """
    if neuron not in NEURONS:
        raise NotImplementedError(
            f"the cupy backend has no kernel for neuron {neuron!r}; "
            + _supported("neurons", NEURONS)
        )
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if dtype not in DTYPES:
        raise NotImplementedError(
            f"the cupy backend does not support dtype {dtype}; " + _supported("dtypes", DTYPES)
        )
    if vec not in (1, DTYPES[dtype].vec):
        raise ValueError(
            f"vec (neurons per thread) must be 1 or {DTYPES[dtype].vec} for {dtype}, got {vec!r}"
        )
    if not NEURONS[neuron].has_decay_input:
        decay_input = False
    if direction == "forward":
        detach_reset, surrogate = False, None
    elif surrogate not in SURROGATES:
        raise NotImplementedError(
            f"the cupy backend has no kernel for surrogate {surrogate!r}; "
            + _supported("surrogates", SURROGATES)
        )
    return KernelVariant(
        neuron=neuron,
        direction=direction,
        soft_reset=bool(soft_reset),
        decay_input=bool(decay_input),
        dtype=dtype,
        detach_reset=bool(detach_reset),
        surrogate=surrogate,
        vec=vec,
    )


@functools.cache
def vector_variant(variant: KernelVariant) -> KernelVariant:
    """The vector form of ``variant``: the same kernel with ``DTYPES[dtype].vec`` neurons
    per thread."""
    return dataclasses.replace(variant, vec=DTYPES[variant.dtype].vec)


def all_variants() -> Iterator[KernelVariant]:
    """Every distinct variant: the forwards, then the backwards; within each, every
    configuration one neuron per thread, then every configuration vectorized."""
    for direction in DIRECTIONS:
        for vectorized in (False, True):
            yield from _configurations(direction, vectorized)


def _configurations(direction: str, vectorized: bool) -> Iterator[KernelVariant]:
    detaches = (False, True) if direction == "backward" else (False,)
    surrogates = tuple(SURROGATES) if direction == "backward" else (None,)
    for neuron, spec in NEURONS.items():
        decays = (True, False) if spec.has_decay_input else (False,)
        for decay_input, soft_reset, dtype, detach_reset, surrogate in itertools.product(
            decays, (False, True), DTYPES, detaches, surrogates
        ):
            yield make_variant(
                neuron,
                direction,
                soft_reset=soft_reset,
                decay_input=decay_input,
                dtype=dtype,
                detach_reset=detach_reset,
                surrogate=surrogate,
                vec=DTYPES[dtype].vec if vectorized else 1,
            )
