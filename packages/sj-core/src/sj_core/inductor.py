"""The ``inductor`` backend: the reference time loops compiled by ``torch.compile``.

Each operator (``if``/``lif``/``plif.multi_step``, same signatures as in
:mod:`sj_core.reference`) binds every non-tensor argument into a closure around the
reference loop, compiles it with ``torch.compile(fullgraph=True, dynamic=False)`` (the
loop over ``T`` is unrolled, so Inductor fuses all ``T`` steps into a few kernels) and
caches the compiled callable. The compiled function takes only tensors
(``x_seq, v_init[, r_tau]``).

Cache: an LRU of at most :data:`MAX_CACHE_ENTRIES` (64) compiled callables, keyed by the
operator, every scalar hyper-parameter, ``store_v_seq``, the surrogate (class,
``kernel_name``, ``kernel_params()``, ``spiking``) and the input signature (shape, stride,
dtype, device and ``requires_grad`` of each tensor, grad mode, inference mode). A new
``T``, layer width or dtype therefore compiles once more (seconds); the least recently
used entry is dropped beyond the bound. :func:`cache_info` and :func:`clear_cache`
inspect and empty it.

Inside an outer ``torch.compile`` region the operators run the plain reference loop and
let the outer compiler fuse it (compiling inside a compile would be redundant).

Example::

    >>> from sj_core.surrogate import Sigmoid
    >>> x_seq = torch.rand(4, 64)
    >>> spike_seq, v_last, _ = multistep_lif(
    ...     x_seq, torch.zeros(64), tau=2.0, decay_input=True, v_threshold=1.0,
    ...     v_reset=0.0, detach_reset=False, surrogate_function=Sigmoid())
    >>> cache_info().currsize
    1
"""

from __future__ import annotations

import copy
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import torch

from . import reference
from .surrogate import SurrogateFunctionBase

__all__ = [
    "MAX_CACHE_ENTRIES",
    "CacheInfo",
    "cache_info",
    "clear_cache",
    "multistep_if",
    "multistep_lif",
    "multistep_plif",
]

#: The most compiled callables kept at once (least recently used dropped first).
MAX_CACHE_ENTRIES = 64

_REFERENCE_LOOPS: dict[str, Callable[..., tuple]] = {
    "if": reference.multistep_if,
    "lif": reference.multistep_lif,
    "plif": reference.multistep_plif,
}


class CacheInfo(NamedTuple):
    """Statistics of the compiled-callable cache (like ``functools.lru_cache``)."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class _CompiledCache:
    """A thread-safe LRU mapping of configuration keys to compiled callables."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, Callable] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Callable | None:
        with self._lock:
            fn = self._entries.get(key)
            if fn is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return fn

    def put(self, key: Hashable, fn: Callable) -> None:
        with self._lock:
            self._entries[key] = fn
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, self.maxsize, len(self._entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = 0
            self.misses = 0


_CACHE = _CompiledCache(MAX_CACHE_ENTRIES)


def cache_info() -> CacheInfo:
    """Hits, misses, bound and current size of the compiled-callable cache."""
    return _CACHE.info()


def clear_cache() -> None:
    """Drop every compiled callable and reset the statistics."""
    _CACHE.clear()


# -- cache keys ---------------------------------------------------------------------------


def _surrogate_key(surrogate_function: Any) -> tuple:
    if not isinstance(surrogate_function, SurrogateFunctionBase):
        raise NotImplementedError(
            "the 'inductor' backend needs a sj_core.surrogate.SurrogateFunctionBase "
            "instance (it keys its compile cache on the surrogate's kernel_name, "
            f"kernel_params() and spiking), got {type(surrogate_function).__name__}; "
            "use backend='torch' for other callables"
        )
    params = tuple(sorted(surrogate_function.kernel_params().items()))
    return (
        type(surrogate_function),
        surrogate_function.kernel_name,
        params,
        surrogate_function.spiking,
    )


def _scalar_key(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(
        f"{name} must be a Python float, int, bool or None for the 'inductor' backend, "
        f"got {type(value).__name__}"
    )


def _signature(tensors: tuple[torch.Tensor, ...]) -> tuple:
    # Dynamo specialises on each of these (stride too), so they belong in the key: one
    # cache entry then never needs a second compilation.
    return (
        tuple((tuple(t.shape), t.stride(), t.dtype, t.device, t.requires_grad) for t in tensors),
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
    )


# -- compiling ----------------------------------------------------------------------------


def _with_own_code(fn: Callable) -> Callable:
    """A copy of the closure ``fn`` with its own code object.

    TorchDynamo keeps compiled graphs, and its recompile limit (8 by default), per code
    object, and every closure made by :func:`_bind` shares one. With a private code
    object per cache entry, each entry holds exactly one graph: no guard chain to walk
    per call, and no silent fall back to eager after 8 configurations.
    """
    code = fn.__code__.replace()
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _bind(loop: Callable[..., tuple], kwargs: dict[str, Any]) -> Callable[..., tuple]:
    """``loop`` with its keyword arguments fixed: a function of tensors only."""

    def run(*tensors: torch.Tensor) -> tuple:
        return loop(*tensors, **kwargs)

    return _with_own_code(run)


def _compile(fn: Callable[..., tuple]) -> Callable[..., tuple]:
    """Compile ``fn``; replaced in tests by a counting backend."""
    return torch.compile(fn, fullgraph=True, dynamic=False)


def _run(operator: str, tensors: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> tuple:
    surrogate_key = _surrogate_key(kwargs["surrogate_function"])
    # Bad shapes must raise here, not from inside Dynamo's trace of the loop.
    reference._check_shapes(tensors[0], tensors[1])
    loop = _REFERENCE_LOOPS[operator]
    if torch.compiler.is_compiling() or tensors[0].shape[0] == 0:
        # Already inside torch.compile: the outer compiler fuses the plain loop. T == 0:
        # nothing to compile.
        return loop(*tensors, **kwargs)
    scalars = tuple(
        (name, _scalar_key(name, value))
        for name, value in sorted(kwargs.items())
        if name != "surrogate_function"
    )
    key = (operator, scalars, surrogate_key, _signature(tensors))
    compiled = _CACHE.get(key)
    if compiled is not None:
        return compiled(*tensors)
    # The closure owns a private copy of the surrogate: a later change to the caller's
    # instance changes the key, and must not change what an existing entry computes.
    bound = dict(kwargs, surrogate_function=copy.deepcopy(kwargs["surrogate_function"]))
    compiled = _compile(_bind(loop, bound))
    _CACHE.put(key, compiled)
    try:
        return compiled(*tensors)  # the first call compiles
    except BaseException:
        _CACHE.discard(key)  # let a later call retry from scratch
        raise


# -- operators (signatures as in sj_core.reference) ---------------------------------------


def multistep_if(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    *,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: SurrogateFunctionBase,
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """IF neuron over ``T`` steps, compiled (operator ``if.multi_step``).

    ``x_seq`` ``[T, *S]``, ``v_init`` ``[*S]`` -> ``(spike_seq, v_last, v_seq | None)``.
    """
    return _run(
        "if",
        (x_seq, v_init),
        dict(
            v_threshold=v_threshold,
            v_reset=v_reset,
            detach_reset=detach_reset,
            surrogate_function=surrogate_function,
            store_v_seq=store_v_seq,
        ),
    )


def multistep_lif(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    *,
    tau: float,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: SurrogateFunctionBase,
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """LIF neuron over ``T`` steps, compiled (operator ``lif.multi_step``).

    ``x_seq`` ``[T, *S]``, ``v_init`` ``[*S]`` -> ``(spike_seq, v_last, v_seq | None)``.
    """
    return _run(
        "lif",
        (x_seq, v_init),
        dict(
            tau=tau,
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            detach_reset=detach_reset,
            surrogate_function=surrogate_function,
            store_v_seq=store_v_seq,
        ),
    )


def multistep_plif(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor,
    *,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: SurrogateFunctionBase,
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Parametric LIF over ``T`` steps, compiled (operator ``plif.multi_step``).

    ``r_tau`` is a one-element tensor ``1/tau`` (``sigmoid(w)``); gradients flow to it.
    """
    if r_tau.numel() != 1:
        raise ValueError(f"r_tau must have one element, got shape {tuple(r_tau.shape)}")
    return _run(
        "plif",
        (x_seq, v_init, r_tau),
        dict(
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            detach_reset=detach_reset,
            surrogate_function=surrogate_function,
            store_v_seq=store_v_seq,
        ),
    )
