"""The lowering table: aten op -> Triton expression.

:data:`OP_TABLE` maps an aten op name (the overload packet, ``"add"`` for
``aten.add.Tensor`` and ``aten.add.Scalar``) to a function ``emit(ctx, node) -> str``
that returns the Triton expression computing ``node`` from its arguments;
:mod:`sj_flexsn.lowering` assigns it to a named temporary. In-place variants
(``aten.mul_``) use the functional entry.

Conventions (see :class:`Operand`): every tensor value is a Triton tensor; floating
values are fp32 (the kernels load every floating tensor as fp32 and cast only when
storing), so floating casts inside a core (``.half()``) do not change precision.
Comparisons give ``int1``. Python scalars in the graph (``aten.mul.Tensor(x, 0.5)``)
are emitted as literals; Triton, like torch, rounds them to the tensor's fp32. Division
uses ``tl.div_rn`` and square roots ``tl.sqrt_rn`` because Triton's ``/`` and
``tl.sqrt`` are approximate on the GPU and torch's are correctly rounded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import fx

__all__ = [
    "ALIAS_OPS",
    "IDENTITY_OPS",
    "OP_TABLE",
    "LoweringContext",
    "Operand",
    "literal",
    "op_name",
    "triton_dtype",
]

_TRITON_DTYPES = {
    torch.float32: "tl.float32",
    torch.float16: "tl.float32",  # computed in fp32 (see module docstring)
    torch.bfloat16: "tl.float32",
    torch.float64: "tl.float32",
    torch.bool: "tl.int1",
    torch.int8: "tl.int8",
    torch.uint8: "tl.uint8",
    torch.int16: "tl.int16",
    torch.int32: "tl.int32",
    torch.int64: "tl.int64",
}


def triton_dtype(dtype: torch.dtype) -> str:
    """The Triton dtype a value of torch ``dtype`` has inside a generated core."""
    try:
        return _TRITON_DTYPES[dtype]
    except KeyError:
        raise NotImplementedError(f"FlexSN cores cannot compute with {dtype} values") from None


def literal(value: object) -> str:
    """A Python scalar as Triton source (``float("inf")`` for infinities)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return f"({value})" if value < 0 else repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'float("nan")'
        if math.isinf(value):
            return 'float("inf")' if value > 0 else 'float("-inf")'
        text = repr(value)
        return f"({text})" if value < 0 else text
    raise TypeError(f"not a scalar literal: {value!r}")


def op_name(node: fx.Node) -> str:
    """``"mul"`` for ``aten.mul.Tensor`` and for the in-place ``aten.mul_.Tensor``."""
    name = node.target._opname
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


@dataclasses.dataclass(frozen=True)
class Operand:
    """An argument of an op as the emitter sees it.

    Attributes:
        text: a variable name (tensors) or a literal (Python scalars).
        dtype: the torch dtype of a tensor; ``None`` for a Python scalar.
        value: the Python scalar itself (``None`` for tensors).
    """

    text: str
    dtype: torch.dtype | None
    value: object = None


class LoweringContext(Protocol):
    """What :mod:`sj_flexsn.lowering` offers an emitter."""

    def operand(self, arg: object) -> Operand: ...

    def use_helper(self, name: str) -> str: ...

    def result_dtype(self, node: fx.Node) -> torch.dtype: ...

    def unsupported(self, node: fx.Node, why: str) -> Exception: ...


Emitter = Callable[[LoweringContext, fx.Node], str]

# -- operand conversions ---------------------------------------------------------------


def _is_float(dtype: torch.dtype | None) -> bool:
    return dtype is not None and dtype.is_floating_point


def _as_float(op: Operand) -> str:
    if op.dtype is None:
        return literal(float(op.value))
    if op.dtype.is_floating_point:
        return op.text
    return f"{op.text}.to(tl.float32)"


def _as_bool(op: Operand) -> str:
    if op.dtype is None:
        return literal(bool(op.value))
    if op.dtype == torch.bool:
        return op.text
    return f"({op.text} != 0)"


def _as_tensor(op: Operand) -> str:
    """A Python scalar as a 0-d fp32 tensor (for functions that need tensor arguments)."""
    if op.dtype is None:
        return f"tl.full([], {_as_float(op)}, tl.float32)"
    return _as_float(op)


def _numeric(ctx: LoweringContext, node: fx.Node, *args: object) -> list[str]:
    """Operands converted for an arithmetic op whose result has ``node``'s dtype."""
    ops = [ctx.operand(a) for a in args]
    if _is_float(ctx.result_dtype(node)):
        return [_as_float(op) for op in ops]
    return [op.text for op in ops]


def _alpha(node: fx.Node) -> object:
    return node.kwargs.get("alpha", 1)


# -- arithmetic ------------------------------------------------------------------------


def _add(ctx: LoweringContext, node: fx.Node) -> str:
    if ctx.result_dtype(node) == torch.bool:
        return f"{_as_bool(ctx.operand(node.args[0]))} | {_as_bool(ctx.operand(node.args[1]))}"
    a, b = _numeric(ctx, node, node.args[0], node.args[1])
    alpha = _alpha(node)
    return f"{a} + {b}" if alpha == 1 else f"{a} + {literal(alpha)} * {b}"


def _sub(ctx: LoweringContext, node: fx.Node) -> str:
    a, b = _numeric(ctx, node, node.args[0], node.args[1])
    alpha = _alpha(node)
    return f"{a} - {b}" if alpha == 1 else f"{a} - {literal(alpha)} * {b}"


def _rsub(ctx: LoweringContext, node: fx.Node) -> str:
    a, b = _numeric(ctx, node, node.args[0], node.args[1])
    alpha = _alpha(node)
    return f"{b} - {a}" if alpha == 1 else f"{b} - {literal(alpha)} * {a}"


def _mul(ctx: LoweringContext, node: fx.Node) -> str:
    if ctx.result_dtype(node) == torch.bool:
        return f"{_as_bool(ctx.operand(node.args[0]))} & {_as_bool(ctx.operand(node.args[1]))}"
    a, b = _numeric(ctx, node, node.args[0], node.args[1])
    return f"{a} * {b}"


def _div_rn(a: Operand, b: Operand) -> str:
    # tl.div_rn needs tensors; a Python scalar becomes a 0-d fp32 tensor.
    return f"tl.div_rn({_as_tensor(a)}, {_as_tensor(b)})"


def _div(ctx: LoweringContext, node: fx.Node) -> str:
    a, b = ctx.operand(node.args[0]), ctx.operand(node.args[1])
    mode = node.kwargs.get("rounding_mode")
    if mode is None:
        return _div_rn(a, b)
    if not _is_float(ctx.result_dtype(node)):
        raise ctx.unsupported(node, "integer division with a rounding mode")
    if mode == "trunc":
        return f"{ctx.use_helper('_sj_trunc')}({_div_rn(a, b)})"
    if mode == "floor":
        return f"tl.floor({_div_rn(a, b)})"
    raise ctx.unsupported(node, f"rounding_mode={mode!r}")


def _reciprocal(ctx: LoweringContext, node: fx.Node) -> str:
    return f"tl.div_rn(1.0, {_as_float(ctx.operand(node.args[0]))})"


def _neg(ctx: LoweringContext, node: fx.Node) -> str:
    return f"-{ctx.operand(node.args[0]).text}"


def _pow(ctx: LoweringContext, node: fx.Node) -> str:
    base, exponent = ctx.operand(node.args[0]), ctx.operand(node.args[1])
    if exponent.dtype is None and base.dtype is not None:
        # The same special cases as ATen's pow(Tensor, Scalar), so results match bitwise.
        x = _as_float(base)
        e = float(exponent.value)
        special = {
            0.0: f"tl.full({x}.shape, 1.0, tl.float32)",
            1.0: x,
            2.0: f"{x} * {x}",
            3.0: f"{x} * {x} * {x}",
            0.5: f"tl.sqrt_rn({x})",
            -0.5: f"tl.rsqrt({x})",
            -1.0: f"tl.div_rn(1.0, {x})",
            -2.0: f"tl.div_rn(1.0, {x} * {x})",
        }
        if e in special:
            return special[e]
    return f"{ctx.use_helper('_sj_pow')}({_as_tensor(base)}, {_as_tensor(exponent)})"


def _fmod(ctx: LoweringContext, node: fx.Node) -> str:
    a, b = ctx.operand(node.args[0]), ctx.operand(node.args[1])
    return f"{ctx.use_helper('_sj_fmod')}({_as_tensor(a)}, {_as_tensor(b)})"


def _remainder(ctx: LoweringContext, node: fx.Node) -> str:
    # Python's %: fmod, then shifted by the divisor when the signs differ (as ATen does).
    a, b = ctx.operand(node.args[0]), ctx.operand(node.args[1])
    fmod = f"{ctx.use_helper('_sj_fmod')}({_as_tensor(a)}, {_as_tensor(b)})"
    bb = _as_float(b)
    return f"tl.where(({fmod} != 0.0) & (({fmod} < 0.0) != ({bb} < 0.0)), {fmod} + {bb}, {fmod})"


# -- element-wise math -----------------------------------------------------------------


def _unary(template: str, helper: str | None = None) -> Emitter:
    def emit(ctx: LoweringContext, node: fx.Node) -> str:
        x = _as_float(ctx.operand(node.args[0]))
        if helper is not None:
            return f"{ctx.use_helper(helper)}({x})"
        return template.format(x=x)

    return emit


def _abs(ctx: LoweringContext, node: fx.Node) -> str:
    op = ctx.operand(node.args[0])
    if op.dtype == torch.bool:
        return op.text
    return f"tl.abs({op.text})"


def _round(ctx: LoweringContext, node: fx.Node) -> str:
    if node.kwargs.get("decimals", 0) != 0 or len(node.args) > 1:
        raise ctx.unsupported(node, "round with decimals != 0")
    return f"{ctx.use_helper('_sj_round')}({_as_float(ctx.operand(node.args[0]))})"


def _min_max(fn: str) -> Emitter:
    def emit(ctx: LoweringContext, node: fx.Node) -> str:
        a, b = _numeric(ctx, node, node.args[0], node.args[1])
        return f"tl.{fn}({a}, {b}, propagate_nan=tl.PropagateNan.ALL)"

    return emit


def _clamp(ctx: LoweringContext, node: fx.Node) -> str:
    name = op_name(node)
    x = _as_float(ctx.operand(node.args[0]))
    if name == "clamp_min":
        low, high = node.args[1], None
    elif name == "clamp_max":
        low, high = None, node.args[1]
    else:
        low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
        high = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
    expr = x
    if low is not None:
        expr = (
            f"tl.maximum({expr}, {_as_float(ctx.operand(low))}, propagate_nan=tl.PropagateNan.ALL)"
        )
    if high is not None:
        expr = (
            f"tl.minimum({expr}, {_as_float(ctx.operand(high))}, propagate_nan=tl.PropagateNan.ALL)"
        )
    return expr


def _sign(ctx: LoweringContext, node: fx.Node) -> str:
    x = _as_float(ctx.operand(node.args[0]))
    # x * 0.0 keeps a NaN (and the sign of zero) where x is neither > 0 nor < 0.
    return f"tl.where({x} > 0.0, 1.0, tl.where({x} < 0.0, -1.0, {x} * 0.0))"


def _relu(ctx: LoweringContext, node: fx.Node) -> str:
    x = _as_float(ctx.operand(node.args[0]))
    return f"tl.where({x} < 0.0, 0.0, {x})"  # keeps NaN, like torch.relu


def _threshold(ctx: LoweringContext, node: fx.Node) -> str:
    x = _as_float(ctx.operand(node.args[0]))
    threshold, value = (_as_float(ctx.operand(a)) for a in node.args[1:3])
    return f"tl.where({x} <= {threshold}, {value}, {x})"


def _square(ctx: LoweringContext, node: fx.Node) -> str:
    x = _numeric(ctx, node, node.args[0])[0]
    return f"{x} * {x}"


# -- autograd formulas ------------------------------------------------------------------


def _sigmoid_backward(ctx: LoweringContext, node: fx.Node) -> str:
    g, y = (_as_float(ctx.operand(a)) for a in node.args[:2])
    return f"{g} * (1.0 - {y}) * {y}"  # ATen's order of operations


def _tanh_backward(ctx: LoweringContext, node: fx.Node) -> str:
    g, y = (_as_float(ctx.operand(a)) for a in node.args[:2])
    return f"{g} * (1.0 - {y} * {y})"


def _threshold_backward(ctx: LoweringContext, node: fx.Node) -> str:
    g, x, threshold = (_as_float(ctx.operand(a)) for a in node.args[:3])
    return f"tl.where({x} <= {threshold}, 0.0, {g})"


# -- comparisons and logic ---------------------------------------------------------------


def _compare(symbol: str) -> Emitter:
    def emit(ctx: LoweringContext, node: fx.Node) -> str:
        ops = [ctx.operand(a) for a in node.args[:2]]
        if all(op.dtype is None or not op.dtype.is_floating_point for op in ops):
            a, b = (op.text for op in ops)
        else:
            a, b = (_as_float(op) for op in ops)
        return f"{a} {symbol} {b}"

    return emit


def _logical(symbol: str) -> Emitter:
    def emit(ctx: LoweringContext, node: fx.Node) -> str:
        a, b = (_as_bool(ctx.operand(x)) for x in node.args[:2])
        return f"{a} {symbol} {b}"

    return emit


def _logical_not(ctx: LoweringContext, node: fx.Node) -> str:
    return f"{_as_bool(ctx.operand(node.args[0]))} == 0"


def _bitwise(symbol: str) -> Emitter:
    def emit(ctx: LoweringContext, node: fx.Node) -> str:
        if ctx.result_dtype(node) == torch.bool:
            return _logical(symbol)(ctx, node)
        a, b = (ctx.operand(x).text for x in node.args[:2])
        return f"{a} {symbol} {b}"

    return emit


def _bitwise_not(ctx: LoweringContext, node: fx.Node) -> str:
    op = ctx.operand(node.args[0])
    return f"{op.text} == 0" if op.dtype == torch.bool else f"~{op.text}"


def _isnan(ctx: LoweringContext, node: fx.Node) -> str:
    x = ctx.operand(node.args[0]).text
    return f"{x} != {x}"


def _isinf(ctx: LoweringContext, node: fx.Node) -> str:
    return f'tl.abs({_as_float(ctx.operand(node.args[0]))}) == float("inf")'


def _isfinite(ctx: LoweringContext, node: fx.Node) -> str:
    return f'tl.abs({_as_float(ctx.operand(node.args[0]))}) < float("inf")'


# -- selection -----------------------------------------------------------------------------


def _select(ctx: LoweringContext, node: fx.Node, cond: object, a: object, b: object) -> str:
    c = _as_bool(ctx.operand(cond))
    x, y = _numeric(ctx, node, a, b)
    if ctx.result_dtype(node) == torch.bool:
        x, y = _as_bool(ctx.operand(a)), _as_bool(ctx.operand(b))
    return f"tl.where({c}, {x}, {y})"


def _where(ctx: LoweringContext, node: fx.Node) -> str:
    return _select(ctx, node, *node.args[:3])


def _masked_fill(ctx: LoweringContext, node: fx.Node) -> str:
    x, mask, value = node.args[:3]
    return _select(ctx, node, mask, value, x)


def _index_put(ctx: LoweringContext, node: fx.Node) -> str:
    # x[mask] = value with one full-shape bool mask is an element-wise select.
    x, indices, value = node.args[:3]
    accumulate = node.args[3] if len(node.args) > 3 else node.kwargs.get("accumulate", False)
    if (
        not isinstance(indices, (list, tuple))
        or len(indices) != 1
        or not isinstance(indices[0], fx.Node)
        or ctx.operand(indices[0]).dtype != torch.bool
    ):
        raise ctx.unsupported(node, "indexing other than x[bool_mask] = value")
    mask_val = indices[0].meta.get("val")
    x_val = x.meta.get("val")
    if mask_val is None or x_val is None or tuple(mask_val.shape) != tuple(x_val.shape):
        raise ctx.unsupported(node, "a bool mask that does not cover every neuron")
    value_val = value.meta.get("val") if isinstance(value, fx.Node) else None
    if value_val is not None and value_val.numel() != 1:
        raise ctx.unsupported(node, "x[mask] = tensor (only scalar values are element-wise)")
    if accumulate:
        summed = f"{_as_float(ctx.operand(x))} + {_as_float(ctx.operand(value))}"
        return (
            f"tl.where({_as_bool(ctx.operand(indices[0]))}, {summed}, {_as_float(ctx.operand(x))})"
        )
    return _select(ctx, node, indices[0], value, x)


# -- creation, casts and identities -----------------------------------------------------------


def _full_like_value(ctx: LoweringContext, node: fx.Node, like: str, value: object) -> str:
    dtype = triton_dtype(ctx.result_dtype(node))
    return f"tl.full({like}.shape, {literal(value)}, {dtype})"


def _zeros_like(ctx: LoweringContext, node: fx.Node) -> str:
    return _full_like_value(ctx, node, ctx.operand(node.args[0]).text, 0)


def _ones_like(ctx: LoweringContext, node: fx.Node) -> str:
    return _full_like_value(ctx, node, ctx.operand(node.args[0]).text, 1)


def _full_like(ctx: LoweringContext, node: fx.Node) -> str:
    return _full_like_value(ctx, node, ctx.operand(node.args[0]).text, node.args[1])


def _fill(ctx: LoweringContext, node: fx.Node) -> str:
    value = node.args[1]
    if isinstance(value, fx.Node):
        return _convert(ctx, node, value)
    return _full_like_value(ctx, node, ctx.operand(node.args[0]).text, value)


def _zero(ctx: LoweringContext, node: fx.Node) -> str:
    return _full_like_value(ctx, node, ctx.operand(node.args[0]).text, 0)


def _scalar_full(ctx: LoweringContext, node: fx.Node, value: object) -> str:
    # A constant the same at every neuron is a 0-d tensor; stores and loop-carried states
    # broadcast it to the block.
    return f"tl.full([], {literal(value)}, {triton_dtype(ctx.result_dtype(node))})"


def _scalar_tensor(ctx: LoweringContext, node: fx.Node) -> str:
    return _scalar_full(ctx, node, node.args[0])


def _new_full(value_index: int | None, fixed: object = None) -> Emitter:
    """``zeros(size)``, ``ones(size)``, ``full(size, v)``, ``new_*``: a constant."""

    def emit(ctx: LoweringContext, node: fx.Node) -> str:
        value = fixed if value_index is None else node.args[value_index]
        return _scalar_full(ctx, node, value)

    return emit


def _convert(ctx: LoweringContext, node: fx.Node, arg: object) -> str:
    op = ctx.operand(arg)
    target = ctx.result_dtype(node)
    if target == torch.bool:
        return _as_bool(op)
    if target.is_floating_point:
        return _as_tensor(op)
    if op.dtype is None:
        return f"tl.full([], {literal(int(op.value))}, {triton_dtype(target)})"
    return f"{op.text}.to({triton_dtype(target)})"


def _to_copy(ctx: LoweringContext, node: fx.Node) -> str:
    return _convert(ctx, node, node.args[0])


def _copy(ctx: LoweringContext, node: fx.Node) -> str:
    return _convert(ctx, node, node.args[1])


def _identity(ctx: LoweringContext, node: fx.Node) -> str:
    return ctx.operand(node.args[0]).text


#: Ops that do not change values. They are legal only while every neuron keeps its own
#: element (same number of elements, or a scalar being broadcast); lowering checks that.
IDENTITY_OPS = frozenset(
    {
        "alias",
        "clone",
        "contiguous",
        "detach",
        "expand",
        "expand_as",
        "flatten",
        "lift_fresh_copy",
        "reshape",
        "squeeze",
        "unsqueeze",
        "view",
        "view_as",
        "_unsafe_view",
        "positive",
    }
)

#: Identity ops whose result shares storage with their input: an in-place update of
#: their result would also change the input, which the lowering cannot express.
ALIAS_OPS = IDENTITY_OPS - {"clone", "lift_fresh_copy"}

OP_TABLE: dict[str, Emitter] = {
    # arithmetic
    "add": _add,
    "sub": _sub,
    "rsub": _rsub,
    "mul": _mul,
    "div": _div,
    "true_divide": _div,
    "reciprocal": _reciprocal,
    "neg": _neg,
    "pow": _pow,
    "fmod": _fmod,
    "remainder": _remainder,
    "square": _square,
    # element-wise math
    "abs": _abs,
    "sign": _sign,
    "exp": _unary("tl.exp({x})"),
    "exp2": _unary("tl.exp2({x})"),
    "expm1": _unary("", helper="_sj_expm1"),
    "log": _unary("tl.log({x})"),
    "log2": _unary("tl.log2({x})"),
    "log1p": _unary("", helper="_sj_log1p"),
    "sqrt": _unary("tl.sqrt_rn({x})"),
    "rsqrt": _unary("tl.rsqrt({x})"),
    "tanh": _unary("", helper="_sj_tanh"),
    "sigmoid": _unary("tl.div_rn(1.0, 1.0 + tl.exp(-{x}))"),
    "sin": _unary("tl.sin({x})"),
    "atan": _unary("", helper="_sj_atan"),
    "cos": _unary("tl.cos({x})"),
    "erf": _unary("tl.erf({x})"),
    "floor": _unary("tl.floor({x})"),
    "ceil": _unary("tl.ceil({x})"),
    "round": _round,
    "trunc": _unary("", helper="_sj_trunc"),
    "relu": _relu,
    "threshold": _threshold,
    "minimum": _min_max("minimum"),
    "maximum": _min_max("maximum"),
    "clamp": _clamp,
    "clamp_min": _clamp,
    "clamp_max": _clamp,
    # autograd formulas
    "sigmoid_backward": _sigmoid_backward,
    "tanh_backward": _tanh_backward,
    "threshold_backward": _threshold_backward,
    # comparisons and logic
    "eq": _compare("=="),
    "ne": _compare("!="),
    "ge": _compare(">="),
    "gt": _compare(">"),
    "le": _compare("<="),
    "lt": _compare("<"),
    "logical_and": _logical("&"),
    "logical_or": _logical("|"),
    "logical_xor": _logical("^"),
    "logical_not": _logical_not,
    "bitwise_and": _bitwise("&"),
    "bitwise_or": _bitwise("|"),
    "bitwise_xor": _bitwise("^"),
    "bitwise_not": _bitwise_not,
    "isnan": _isnan,
    "isinf": _isinf,
    "isfinite": _isfinite,
    # selection
    "where": _where,
    "masked_fill": _masked_fill,
    "index_put": _index_put,
    # creation, casts, copies
    "_to_copy": _to_copy,
    "to": _to_copy,
    "copy": _copy,
    "fill": _fill,
    "zero": _zero,
    "scalar_tensor": _scalar_tensor,
    "zeros_like": _zeros_like,
    "ones_like": _ones_like,
    "full_like": _full_like,
    "zeros": _new_full(None, 0),
    "ones": _new_full(None, 1),
    "full": _new_full(1),
    "new_zeros": _new_full(None, 0),
    "new_ones": _new_full(None, 1),
    "new_full": _new_full(2),
    **dict.fromkeys(IDENTITY_OPS, _identity),
}
