"""The fused backward loop: the reverse-time recurrences of SPEC section 5 for any neuron
statement.

It is the chain rule of :mod:`sj_core.neuron.statements.derive`, with the derivatives
that :func:`~sj_core.neuron.statements.kernel_equations` derives (the ones the kernel
backends print), evaluated on tensors (:mod:`.evaluate`). Per step, with ``sg`` the
surrogate gradient at ``H - V_th``::

    g_s  = dL/dS[t] + g_w * djump/ds
    g_h  = g_s * sg + g_v * (dreset/dh + dreset/ds * sg)   # dreset/ds: not detach_reset
    g_w' = g_w * djump/dw;  g_h += g_w' * dadapt/dh
    dL/dX[t] = g_h * dcharge/dx;  g_v <- g_h * dcharge/dv
    g_w <- g_w' * dadapt/dw + g_h * dcharge/dw;  dL/dp += sum(g_h * dcharge/dp)

``g_v`` (``dL/dV[t]``) starts at the gradient of the final ``V`` and gains
``dL/dv_seq[t]`` at each step. Only ``g_v`` and ``g_w`` carry from step to step, so
everything else is computed for a chunk of steps at once (fewer, larger operations),
and each step's recurrence is two or three operations::

    g_h[t] = A[t] + g_v * B[t] + g_w * D[t]
    A = dL/dS * sg,  B = dreset/dh + dreset/ds * sg,  D = djump/ds * sg + djump/dw * dadapt/dh

A chunk spans :data:`CHUNK_ELEMENTS` neuron-steps (at least one step), which bounds the
scratch memory of the backward pass. ``V[t-1]``, where a derivative reads it, is
recomputed from ``H[t-1]`` with the forward's own operations (bitwise the forward's
value); ``X`` is read from the saved input only where a derivative reads it (PLIF's
``dH/dr_tau``). Absent gradients are ``None`` and cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..neuron.statements import TENSOR, KernelEquations, fire_input
from ..neuron.statements.expr import Bin, Const, Expr, Sym, symbols_of
from .config import FusedConfig
from .evaluate import Value, evaluate, is_number
from .forward import heaviside_into, reset_into

__all__ = ["CHUNK_ELEMENTS", "backward_loop"]

#: Neuron-steps per chunk (512 KiB of fp32 per chunk-sized tensor): larger chunks run
#: fewer operations but leave the caches (measured on a CPU, N = 65536: 2 steps best).
CHUNK_ELEMENTS = 1 << 17

# Symbols whose values change from step to step; an expression without them is evaluated
# once per call.
_STEP_SYMBOLS = frozenset({"x", "v", "h", "s"})

Maybe = torch.Tensor | None


_NOT_FIRED = Bin("-", Const(1.0), Sym("s"))  # hard reset's dV/dH = 1 - S


class _Split:
    """A statement's derivatives split into expressions without per-step symbols
    (evaluated once per call) and those with (evaluated per chunk); computed once per
    :class:`KernelEquations` (which :func:`kernel_equations` caches)."""

    _cache: dict[int, _Split] = {}

    def __init__(self, equations: KernelEquations) -> None:
        self.equations = equations  # keeps the id valid
        self._last: tuple[tuple, dict[str, Value]] | None = None
        self.constant: dict[str, Expr] = {}
        self.per_step: dict[str, Expr] = {}
        tables = {
            "dcharge": equations.dcharge,
            "dadapt": equations.dadapt,
            "djump": equations.djump,
            "dreset": equations.dreset,
        }
        for table_name, table in tables.items():
            for name, expr in table.items():
                per_step = symbols_of(expr) & _STEP_SYMBOLS
                (self.per_step if per_step else self.constant)[f"{table_name}/{name}"] = expr

    def constants(self, values: Mapping[str, Value]) -> dict[str, Value]:
        """The derivatives without per-step symbols, at ``values``; remembered for the
        last numbers seen (a layer calls with the same parameters every time)."""
        key = tuple(values.items())
        numbers = all(is_number(v) for v in values.values())
        if numbers and self._last is not None and self._last[0] == key:
            return self._last[1]
        found = {name: evaluate(expr, values) for name, expr in self.constant.items()}
        if numbers:
            self._last = (key, found)
        return found

    @classmethod
    def of(cls, equations: KernelEquations) -> _Split:
        split = cls._cache.get(id(equations))
        if split is None or split.equations is not equations:
            split = cls._cache[id(equations)] = cls(equations)
        return split


class _Chunk:
    """Steps ``start .. end - 1`` of the backward pass: ``H`` and ``H - V_th``, the other
    symbols' values (``s``, and ``x`` and ``v`` where read) computed when first used, and
    every derivative at these steps (``chunk["dcharge/v"]``), each ``[K, *S]``, a number
    or a 0-d tensor."""

    def __init__(
        self,
        config: FusedConfig,
        split: _Split,
        constants: Mapping[str, Value],
        values: Mapping[str, Value],
        h_steps: Sequence[torch.Tensor],
        start: int,
        end: int,
        x_seq: Maybe,
        v_init: Maybe,
    ) -> None:
        self.config, self.split, self.constants, self.values = config, split, constants, values
        self.h_steps, self.start, self.end = h_steps, start, end
        self.x_seq, self.v_init = x_seq, v_init
        if end - start == 1:
            self.h = h_steps[start].unsqueeze(0)
        else:
            self.h = torch.stack(list(h_steps[start:end]))
        self.margin = fire_input(self.h, config.v_threshold)
        self.symbols: dict[str, torch.Tensor] = {"h": self.h}
        self.found: dict[str, Value] = {}

    def symbol(self, name: str) -> Value:
        if name in self.symbols:
            return self.symbols[name]
        if name not in _STEP_SYMBOLS:
            return self.values[name]
        if name == "s":
            value = heaviside_into(self.margin, out=torch.empty_like(self.margin))
        elif name == "x":
            value = self.x_seq[self.start : self.end]
        else:
            value = self._previous_v()
        self.symbols[name] = value
        return value

    def _previous_v(self) -> torch.Tensor:
        """``V[t-1]``: the forward's reset of ``H[t-1]`` (the same operations, the same
        values), and ``v_init`` before the first step."""
        config, h = self.config, self.h
        v_threshold, v_reset = config.v_threshold, config.v_reset
        v = torch.empty_like(h)
        if self.end - self.start > 1:
            v[1:] = reset_into(h[:-1], self.symbol("s")[:-1], v_threshold, v_reset)
        if self.start == 0:
            v[0] = self.v_init
        else:
            before = self.h_steps[self.start - 1]
            spiked = heaviside_into(fire_input(before, v_threshold), torch.empty_like(before))
            v[0] = reset_into(before, spiked, v_threshold, v_reset)
        return v

    def __getitem__(self, key: str) -> Value:
        if key in self.constants:
            return self.constants[key]
        if key not in self.found:
            expr = self.split.per_step[key]
            if expr == _NOT_FIRED and "s" not in self.symbols:
                # 1 - S straight from H - V_th: one pass instead of two (same values).
                value = torch.lt(self.margin, 0, out=torch.empty_like(self.margin))
            else:
                value = evaluate(expr, _Lookup(self))
            self.found[key] = value
        return self.found[key]


class _Lookup(Mapping):
    """The chunk's symbols as a mapping, for :func:`~.evaluate.evaluate`."""

    def __init__(self, chunk: _Chunk) -> None:
        self.chunk = chunk

    def __getitem__(self, name: str) -> Value:
        return self.chunk.symbol(name)

    def __iter__(self):
        raise TypeError("not iterable")

    def __len__(self) -> int:
        raise TypeError("no length")


def backward_loop(
    config: FusedConfig,
    h_steps: Sequence[torch.Tensor],
    x_seq: Maybe,
    v_init: Maybe,
    tensors: Sequence[torch.Tensor],
    grads: Sequence[Maybe],
    needs: Sequence[bool],
) -> list[Maybe]:
    """Gradients of ``(x_seq, *initial states, *tensor parameters)`` from those of
    ``(spike_seq, *final states, v_seq)`` (``None``: no gradient), in reverse time.

    Args:
        h_steps: the forward's pre-reset potentials, ``T >= 1`` tensors ``[*S]``.
        x_seq, v_init: the input and the initial ``V``, where the derivatives read them
            (see :meth:`FusedConfig.backward_reads`), else ``None``.
        tensors: the tensor parameters (one element each).
        needs: which inputs need a gradient; others are returned as ``None``.
    """
    statement = config.statement
    has_w = statement.adaptation is not None
    split = _Split.of(config.equations)
    values = config.symbol_values(tensors)
    constants = split.constants(values)
    grad_spike, grad_v, *rest = grads
    grad_w = rest[0] if has_w else None
    grad_v_seq = rest[-1] if config.store_v_seq else None
    names = statement.names(TENSOR)
    need_tensor = needs[len(needs) - len(names) :]

    T, like = len(h_steps), h_steps[0]
    grad_x = like.new_empty((T, *like.shape)) if needs[0] else None
    grad_tensors: list[Maybe] = [None] * len(names)
    per_chunk = max(1, min(T, CHUNK_ELEMENTS // max(like.numel(), 1)))
    g_v, g_w = grad_v, grad_w
    for end in range(T, 0, -per_chunk):
        start = max(0, end - per_chunk)
        d = _Chunk(config, split, constants, values, h_steps, start, end, x_seq, v_init)
        margin = d.margin
        sg = config.surrogate_gradient(margin, *config.surrogate_params)
        b = d["dreset/h"]
        if not config.detach_reset:
            b = _plus_product_values(b, d["dreset/s"], sg)
        if has_w:
            d_w = _plus_values(_times_values(d["djump/s"], sg),
                               _times_values(d["djump/w"], d["dadapt/h"]))  # fmt: skip
            e_w = _times_values(d["djump/w"], d["dadapt/w"])
        # g_h of the chunk's steps, row by row: A's buffer when there is an A.
        if grad_spike is not None:
            g_h = grad_spike[start:end] * sg
        else:
            g_h = torch.empty_like(margin)
        for i in range(end - start - 1, -1, -1):
            if grad_v_seq is not None:
                g_v = g_v + grad_v_seq[start + i] if g_v is not None else grad_v_seq[start + i]
            row = g_h[i]
            written = grad_spike is not None
            written = _accumulate(row, written, g_v, _row(b, i))
            if has_w:
                written = _accumulate(row, written, g_w, _row(d_w, i))
            if not written:
                row.zero_()
            g_v_next = _times(row, _row(d["dcharge/v"], i))
            if has_w:
                g_w = _times(g_w, _row(e_w, i))
                dcharge_w = _row(d["dcharge/w"], i)
                g_w = _times(row, dcharge_w) if g_w is None else _plus_product(g_w, row, dcharge_w)
            g_v = g_v_next
        if grad_x is not None:
            _store(grad_x[start:end], g_h, d["dcharge/x"])
        for j, name in enumerate(names):
            if need_tensor[j]:
                total = (g_h * d[f"dcharge/{name}"]).sum()
                grad_tensors[j] = total if grad_tensors[j] is None else grad_tensors[j] + total

    results: list[Maybe] = [grad_x]
    finals = [g_v, g_w] if has_w else [g_v]
    for need, g in zip(needs[1 : 1 + len(finals)], finals, strict=True):
        results.append(_materialised(g, like) if need else None)
    for need, g, tensor in zip(need_tensor, grad_tensors, tensors, strict=True):
        if not need:
            results.append(None)
        elif g is None:
            results.append(torch.zeros_like(tensor))
        else:
            results.append(g.reshape(tensor.shape).to(tensor.dtype))
    return results


def _row(value: Value, i: int) -> Value:
    """Step ``i`` of a chunk's value: a row of a ``[K, *S]`` tensor; a number or a 0-d
    tensor (a parameter) is the same at every step."""
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value[i]
    return value


def _is(value: Value, number: float) -> bool:
    return is_number(value) and value == number


def _times(a: Maybe, b: Value) -> Maybe:
    """``a * b``; ``None`` (zero) if ``a`` is absent or ``b`` is the number 0 (a
    derivative that is identically zero: "does not depend on")."""
    if a is None or _is(b, 0.0):
        return None
    if _is(b, 1.0):
        return a
    return a * b


def _times_values(a: Value, b: Value) -> Value:
    if _is(a, 0.0) or _is(b, 0.0):
        return 0.0
    if _is(a, 1.0):
        return b
    if _is(b, 1.0):
        return a
    return a * b


def _plus_values(a: Value, b: Value) -> Value:
    if _is(a, 0.0):
        return b
    if _is(b, 0.0):
        return a
    return a + b


def _plus_product_values(acc: Value, a: Value, b: Value) -> Value:
    """``acc + a * b``, in one operation where all three are tensors."""
    if all(isinstance(t, torch.Tensor) for t in (acc, a, b)):
        return torch.addcmul(acc, a, b)
    return _plus_values(acc, _times_values(a, b))


def _plus_product(acc: torch.Tensor, a: torch.Tensor, b: Value) -> torch.Tensor:
    """``acc + a * b`` in one operation where it can be."""
    if _is(b, 0.0):
        return acc
    if is_number(b):
        return acc + a if b == 1.0 else torch.add(acc, a, alpha=b)
    return torch.addcmul(acc, a, b)


def _accumulate(row: torch.Tensor, written: bool, g: Maybe, coefficient: Value) -> bool:
    """``row += g * coefficient`` in place (``row = ...`` when not ``written`` yet);
    returns whether ``row`` holds a value now."""
    if g is None or _is(coefficient, 0.0):
        return written
    if not written:
        if _is(coefficient, 1.0):
            row.copy_(g)
        else:
            torch.mul(g, coefficient, out=row)
    elif is_number(coefficient):
        row.add_(g, alpha=coefficient)
    else:
        row.addcmul_(g, coefficient)
    return True


def _store(out: torch.Tensor, a: torch.Tensor, b: Value) -> None:
    """``out[...] = a * b``."""
    if _is(b, 0.0):
        out.zero_()
    elif _is(b, 1.0):
        out.copy_(a)
    else:
        torch.mul(a, b, out=out)


def _materialised(g: Maybe, like: torch.Tensor) -> torch.Tensor:
    if g is None:
        return torch.zeros_like(like)
    return g.expand(like.shape).contiguous() if g.shape != like.shape else g
