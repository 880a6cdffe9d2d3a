"""Lowering: an element-wise aten FX graph -> the source of one ``@triton.jit`` function.

Each FX node becomes one assignment to a temporary named after the node, with the aten
op in a trailing comment; the Triton expression comes from :data:`OP_TABLE` in
:mod:`sj_flexsn.op_table`. The function takes the graph's placeholders as arguments and
returns its outputs (a missing gradient, ``None`` in the graph, becomes zeros). An op
that has no entry raises :class:`~sj_flexsn.errors.UnsupportedOpError` naming the op, the
FX node, the graph and the core: FlexSN never falls back silently to another backend.

Example::

    >>> lowered = lower_graph(gm, "flexsn_core_fwd", core_name="lif", graph_kind="forward")
    >>> print(lowered.source)
    @triton.jit
    def flexsn_core_fwd(in0, state0):
        sub = in0 - state0  # aten.sub.Tensor
        ...
        return _to_copy, mul_1
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import fx

from .capture import TRACE_SHAPE
from .errors import FlexSNTraceError, UnsupportedOpError
from .op_table import ALIAS_OPS, IDENTITY_OPS, OP_TABLE, Operand, literal, op_name, triton_dtype

__all__ = ["LoweredCore", "lower_graph", "supported_ops"]

_TRACE_NUMEL = math.prod(TRACE_SHAPE)
# Names a temporary must not take inside a generated function.
_RESERVED = frozenset(
    {"tl", "triton", "libdevice", "float", "int", "bool", "range", "True", "False", "None"}
)


def supported_ops() -> list[str]:
    """The aten op names (overload packets) the lowering table covers."""
    return sorted(OP_TABLE)


@dataclasses.dataclass(frozen=True)
class LoweredCore:
    """A single-step function as Triton source.

    Attributes:
        name: the function name.
        source: ``@triton.jit`` + ``def name(args): ... return ...``.
        helpers: the :mod:`sj_flexsn.triton_helpers` functions it calls.
        arg_names: its arguments (the graph's placeholders).
        num_returns: how many values it returns.
    """

    name: str
    source: str
    helpers: frozenset[str]
    arg_names: tuple[str, ...]
    num_returns: int


class _Lowering:
    def __init__(
        self,
        gm: fx.GraphModule,
        core_name: str,
        graph_kind: str,
        round_nodes: frozenset[fx.Node] | None,
    ) -> None:
        self.gm = gm
        self.core_name = core_name
        self.graph_kind = graph_kind
        self.round_nodes = round_nodes
        self.values: dict[fx.Node, Operand] = {}
        self.lines: list[str] = []
        self.helpers: set[str] = set()
        self.order = {node: i for i, node in enumerate(gm.graph.nodes)}

    # -- the LoweringContext protocol used by op_table emitters ---------------------------

    def operand(self, arg: object) -> Operand:
        if isinstance(arg, fx.Node):
            return self.values[arg]
        if isinstance(arg, (bool, int, float)):
            return Operand(literal(arg), None, arg)
        raise TypeError(f"unsupported argument {arg!r}")

    def use_helper(self, name: str) -> str:
        self.helpers.add(name)
        return name

    def result_dtype(self, node: fx.Node) -> torch.dtype:
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise self.unsupported(node, "an op that does not produce a tensor")
        return value.dtype

    def unsupported(self, node: fx.Node, why: str) -> UnsupportedOpError:
        where = (
            f"FX node {node.name!r} in the {self.graph_kind} graph of FlexSN core "
            f"{self.core_name!r}"
        )
        return UnsupportedOpError(
            f"FlexSN cannot lower {node.target} ({where}): {why}."
            + f"\n  FX node: {node.format_node()}"
            + "\nSupported ops: "
            + ", ".join(supported_ops())
            + ".\nRewrite the core with supported element-wise ops, or use backend='torch'."
        )

    # -- the walk ----------------------------------------------------------------------------

    def _name(self, node: fx.Node) -> str:
        return f"v_{node.name}" if node.name in _RESERVED else node.name

    def _argument(self, node: fx.Node) -> None:
        # The kernels load every tensor as fp32; bool and integer arguments (captured
        # masks, saved comparison results) get their type back here.
        dtype = self.result_dtype(node)
        if dtype == torch.bool:
            self.lines.append(f"{node.name} = {node.name} != 0  # bool argument")
        elif not dtype.is_floating_point:
            self.lines.append(
                f"{node.name} = {node.name}.to({triton_dtype(dtype)})  # integer argument"
            )
        self.values[node] = Operand(node.name, dtype)

    def _constant(self, node: fx.Node) -> None:
        value = getattr(self.gm, node.target)
        if isinstance(value, torch.nn.Parameter) or (
            isinstance(value, torch.Tensor) and value.requires_grad
        ):
            raise FlexSNTraceError(
                f"FlexSN core {self.core_name!r}: a tensor that requires grad was baked into "
                "the graph as a constant instead of being lifted to a kernel argument"
            )
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise self.unsupported(
                node, f"a constant tensor of shape {shape} (only one-element constants)"
            )
        name = self._name(node)
        self.lines.append(
            f"{name} = tl.full([], {literal(value.item())}, {triton_dtype(value.dtype)})"
            "  # constant"
        )
        self.values[node] = Operand(name, value.dtype)

    def _check_elementwise(self, node: fx.Node, name: str) -> None:
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor) or value.numel() not in (1, _TRACE_NUMEL):
            raise self.unsupported(node, "it is not element-wise (the shape changes)")
        if name in IDENTITY_OPS:
            source = self._example(node.args[0])
            if source is None or source.numel() not in (1, value.numel()):
                raise self.unsupported(node, "it moves values between neurons")

    def _example(self, arg: object) -> torch.Tensor | None:
        """The traced value of ``arg``: its ``meta["val"]``, or for a constant (a
        ``get_attr`` node, which torch 2.6's tracer leaves without one) the tensor itself."""
        if not isinstance(arg, fx.Node):
            return None
        if arg.op == "get_attr" and "val" not in arg.meta:
            value = getattr(self.gm, arg.target, None)
            return value if isinstance(value, torch.Tensor) else None
        return arg.meta.get("val")

    def _check_in_place(self, node: fx.Node) -> None:
        target = node.args[0] if node.args else None
        if not isinstance(target, fx.Node):
            return
        if target.op == "placeholder":
            raise FlexSNTraceError(
                f"FlexSN core {self.core_name!r} updates its argument {target.name!r} in "
                f"place ({node.target}); return new tensors instead"
            )
        if target.op == "call_function" and op_name(target) in ALIAS_OPS:
            raise FlexSNTraceError(
                f"FlexSN core {self.core_name!r} updates a view or alias in place "
                f"({node.target} on {target.name!r}); use out-of-place ops"
            )
        later = [u for u in target.users if self.order[u] > self.order[node]]
        if later:
            raise FlexSNTraceError(
                f"FlexSN core {self.core_name!r} reads {target.name!r} after updating it "
                f"in place ({node.target}); use out-of-place ops"
            )

    def _call(self, node: fx.Node) -> None:
        target = node.target
        if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
            raise self.unsupported(node, "not an aten op")
        name = op_name(node)
        emit = OP_TABLE.get(name)
        if emit is None:
            raise self.unsupported(node, "no Triton lowering for this op")
        self._check_elementwise(node, name)
        if target._opname != name:
            self._check_in_place(node)
        if name in IDENTITY_OPS:
            self.values[node] = self.operand(node.args[0])
            return
        expression = emit(self, node)
        var = self._name(node)
        self.lines.append(f"{var} = {expression}  # {target}")
        self.values[node] = Operand(var, self.result_dtype(node))

    def _round(self, node: fx.Node) -> None:
        # A value the backward pass re-reads from memory (stored in the input dtype) is
        # rounded to that dtype here too, so that the forward pass computes with exactly
        # what the backward pass will see (a comparison cannot come out differently).
        operand = self.values[node]
        if (
            self.round_nodes
            and node in self.round_nodes
            and operand.dtype is not None
            and operand.dtype.is_floating_point
        ):
            self.lines.append(
                f"{operand.text} = {operand.text}.to(ROUND_TO).to(tl.float32)"
                "  # as the backward pass will read it"
            )

    def _return_value(self, value: fx.Node | None, first_arg: str) -> str:
        if value is None:  # a gradient the graph does not compute; args[0] is a block
            return f"tl.zeros_like({first_arg})"
        operand = self.values[value]
        if operand.dtype is not None and not operand.dtype.is_floating_point:
            # Every result is stored as a float (a bool as 0/1): convert here, where the
            # type is known (a bool cannot be cast to bf16 directly under the interpreter).
            return f"{operand.text}.to(tl.float32)"
        return operand.text

    def run(self, fn_name: str) -> LoweredCore:
        args: list[str] = []
        returns: list[str] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                args.append(node.name)
                self._argument(node)
                self._round(node)
            elif node.op == "get_attr":
                self._constant(node)
            elif node.op == "call_function":
                self._call(node)
                self._round(node)
            elif node.op == "output":
                outputs = node.args[0]
                outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
                returns = [self._return_value(o, args[0]) for o in outputs]
            else:
                raise self.unsupported(node, f"FX node kind {node.op!r}")
        if self.round_nodes is not None:
            args.append("ROUND_TO: tl.constexpr")
        body = "\n".join(f"    {line}" for line in self.lines)
        source = (
            f"# FlexSN core {self.core_name!r}, {self.graph_kind} graph\n"
            "@triton.jit\n"
            f"def {fn_name}({', '.join(args)}):\n"
            + (body + "\n" if body else "")
            + f"    return {', '.join(returns)}\n"
        )
        return LoweredCore(
            name=fn_name,
            source=source,
            helpers=frozenset(self.helpers),
            arg_names=tuple(args),
            num_returns=len(returns),
        )


def lower_graph(
    gm: fx.GraphModule,
    fn_name: str,
    *,
    core_name: str,
    graph_kind: str,
    round_nodes: frozenset[fx.Node] | None = None,
) -> LoweredCore:
    """Lower an element-wise aten graph to a ``@triton.jit`` function named ``fn_name``.

    Args:
        gm: the graph (placeholders become the function's arguments, in order).
        fn_name: the generated function's name.
        core_name: the user's core, for error messages.
        graph_kind: ``"inference"``, ``"forward"`` or ``"backward"``, for messages.
        round_nodes: if given, the function takes an extra last argument
            ``ROUND_TO: tl.constexpr`` (a dtype) and rounds these floating values to it
            right where they are computed: the training forward graph's values that the
            backward pass reads back from memory in the input dtype.

    Raises:
        UnsupportedOpError: an op without a Triton lowering, or one that is not
            element-wise.
        FlexSNTraceError: the core updates its arguments or a view in place.
    """
    nodes = frozenset(round_nodes) if round_nodes is not None else None
    return _Lowering(gm, core_name, graph_kind, nodes).run(fn_name)
