"""The ``inductor`` backend: the reference time loops compiled by ``torch.compile``.

Each operator (``<neuron>.multi_step`` for every neuron statement, same signatures as in
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
import functools
import logging
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import torch

from . import reference
from .backends.errors import UnsupportedByBackendError
from .kernels.kernel_op import functorch_transform_active
from .neuron.statements import EIF, IF, IZHIKEVICH, LIF, PLIF, QIF, NeuronStatement
from .surrogate import SurrogateFunctionBase
from .waiting import long_work

__all__ = [
    "MAX_CACHE_ENTRIES",
    "CacheInfo",
    "cache_info",
    "clear_cache",
    "multistep_eif",
    "multistep_if",
    "multistep_izhikevich",
    "multistep_lif",
    "multistep_plif",
    "multistep_qif",
]

#: The most compiled callables kept at once (least recently used dropped first).
MAX_CACHE_ENTRIES = 64
_LOG = logging.getLogger(__name__)


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
        raise UnsupportedByBackendError(
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


def _run(statement: NeuronStatement, tensors: tuple[torch.Tensor, ...], kwargs: dict) -> tuple:
    surrogate_key = _surrogate_key(kwargs.get("surrogate_function"))
    # Bad arguments must raise here, not from inside Dynamo's trace of the loop.
    reference.split_operator_tensors(statement, tensors[0], tensors[1:])
    params = {k: v for k, v in kwargs.items() if k not in _COMMON_KEYWORDS}
    statement.validate(params, kwargs.get("v_threshold"), kwargs.get("v_reset"))
    if torch.compiler.is_compiling() or tensors[0].shape[0] == 0 or functorch_transform_active():
        # Already inside torch.compile: the outer compiler fuses the plain loop. T == 0:
        # nothing to compile. Inside torch.func transforms (grad, vmap), which cannot
        # call a compiled function: the same loop, eagerly.
        return reference.multistep(statement, *tensors, **kwargs)
    scalars = tuple(
        (name, _scalar_key(name, value))
        for name, value in sorted(kwargs.items())
        if name != "surrogate_function"
    )
    key = (statement.name, scalars, surrogate_key, _signature(tensors))
    compiled = _CACHE.get(key)
    if compiled is not None:
        return compiled(*tensors)
    # The closure owns a private copy of the surrogate: a later change to the caller's
    # instance changes the key, and must not change what an existing entry computes.
    bound = dict(kwargs, surrogate_function=copy.deepcopy(kwargs["surrogate_function"]))
    compiled = _compile(_bind(functools.partial(reference.multistep, statement), bound))
    _CACHE.put(key, compiled)
    try:
        with long_work(
            _LOG,
            f"compiling {statement.operator_key} with torch.compile (inductor) for "
            f"{tensors[0].dtype} inputs of shape {tuple(tensors[0].shape)} on {tensors[0].device}",
            hint="each configuration compiles once per process; later calls reuse it",
        ):
            return compiled(*tensors)  # the first call compiles
    except BaseException:
        _CACHE.discard(key)  # let a later call retry from scratch
        raise


_COMMON_KEYWORDS = ("v_threshold", "v_reset", "detach_reset", "surrogate_function", "store_v_seq")


def _operator(statement: NeuronStatement) -> Callable[..., tuple]:
    return statement.operator_function(
        lambda x_seq, *tensors, **kwargs: _run(statement, (x_seq, *tensors), kwargs),
        name=f"multistep_{statement.name}",
        module=__name__,
        doc=f"{statement.title} neuron over ``T`` steps, compiled (operator "
        f"``{statement.operator_key}``); arguments as in :mod:`sj_core.reference`.",
    )


multistep_if = _operator(IF)
multistep_lif = _operator(LIF)
multistep_plif = _operator(PLIF)
multistep_qif = _operator(QIF)
multistep_eif = _operator(EIF)
multistep_izhikevich = _operator(IZHIKEVICH)
