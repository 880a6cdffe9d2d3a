"""``to_nir``: describe a trained network as a NIR graph.

The network's structure comes from ``torch.fx`` symbolic tracing, whose leaves are the
modules NIR can describe (layers and neurons); the per-sample shapes, which NIR records
and which spiking layers need, come from running ``sample_input`` through a copy.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..__about__ import __version__
from ..base import MemoryModule
from ..layer import Dropout, MultiStepContainer, SeqToANNContainer
from ..neuron import NonSpikingBaseNode
from .dependency import import_nir
from .layers import EXPORTED_LAYERS, layer_to_nir
from .neurons import DEFAULT_DT, EXPORTED_NEURONS, NEURON_REASONS, check_dt, neuron_to_nir

__all__ = ["to_nir"]

# Identity at inference: NIR describes a trained network, so these are left out.
_SKIPPED = (Dropout, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)
# Containers whose children run one after the other (time handling aside).
_CHAINS = (SeqToANNContainer, MultiStepContainer)
_ADDITIONS = (operator.add, torch.add, "add")

INPUT, OUTPUT = "input", "output"


def to_nir(module: nn.Module, sample_input: torch.Tensor, dt: float = DEFAULT_DT) -> Any:
    """Describe ``module`` as a NIR graph (a ``nir.NIRGraph``).

    ``sample_input`` is run once through a copy of ``module`` (``module`` itself, its
    state and its mode are left untouched) to find each layer's per-sample shape: a
    sequence ``[T, N, *]`` for a network in step mode ``'m'``, one step ``[N, *]`` in
    ``'s'``. NIR shapes leave out ``T`` and ``N``.

    Supported: ``Linear``, ``Conv2d``, ``AvgPool2d``, ``Flatten`` (``sj_core.layer`` or
    ``torch.nn``), ``nn.Conv1d``, sum pooling (``AvgPool2d(divisor_override=1)``,
    ``nn.LPPool2d(norm_type=1)``); ``IFNode``, ``LIFNode``, ``ParametricLIFNode``,
    ``SimpleIFNode``, ``SimpleLIFNode`` with hard reset; ``NonSpikingIFNode``,
    ``NonSpikingLIFNode`` with ``decode=None``; ``nn.Sequential``, ``SeqToANNContainer``,
    ``MultiStepContainer``, and any module whose ``forward`` calls these and adds their
    outputs (NIR sums the edges into a node). Dropout and ``nn.Identity`` are left out
    (identity at inference). Anything else raises ``NotImplementedError`` naming the
    module and why (soft reset, QIF, PSN, ...). How each parameter is
    converted (``tau`` in seconds is ``dt * tau``, ...) is in :mod:`sj_core.nir.neurons`.

    Args:
        module: the network.
        sample_input: an input the network accepts (its values do not matter).
        dt: seconds per time step, to express time constants in seconds (default
            ``1e-4``, snnTorch's).

    Returns:
        A ``nir.NIRGraph`` with nodes named after the modules (``"0"``, ``"1"``, ... in an
        ``nn.Sequential``), plus ``"input"`` and ``"output"``; ``nir.write(path, graph)``
        saves it.

    Example::

        >>> net = nn.Sequential(layer.Linear(64, 10, step_mode="m"),
        ...                     neuron.LIFNode(tau=2.0, step_mode="m"))
        >>> graph = to_nir(net, torch.rand(8, 1, 64))     # [T, N, features]
        >>> sorted(graph.nodes), type(graph.nodes["1"]).__name__
        (['0', '1', 'input', 'output'], 'LIF')
        >>> graph.nodes["1"].tau[0]                          # 2 steps of 1e-4 s
        0.0002
        >>> nir.write("net.nir", graph)
    """
    nir = import_nir("sj_core.nir.to_nir")
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_nir expects a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(sample_input, torch.Tensor):
        raise TypeError(f"sample_input must be a tensor, got {type(sample_input).__name__}")
    dt = check_dt(dt)

    # Work on a copy: tracing runs the containers' forward code, and the sample run
    # changes neuron state.
    network = copy.deepcopy(module).eval()
    tracer = _Tracer()
    if isinstance(network, _CHAINS) or tracer.is_leaf_module(network, ""):
        # fx traces into the root's own forward: make the root a plain container.
        network = nn.Sequential(network)
    traced = tracer.trace(network)
    targets = [node.target for node in traced.nodes if node.op == "call_module"]
    if len(set(targets)) != len(targets):
        shared = sorted({t for t in targets if targets.count(t) > 1})
        raise NotImplementedError(
            f"modules {shared} are called more than once (shared weights); a NIR graph "
            "node is called once"
        )
    shapes = _per_sample_shapes(network, targets, sample_input)
    nodes, edges = _nodes_and_edges(traced, network, shapes, dt, nir)
    nodes[INPUT] = nir.Input(input_type=np.array(_graph_input_shape(edges, shapes)))
    nodes[OUTPUT] = nir.Output(output_type=None)  # NIR infers it from what feeds it
    graph = nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={"source": f"sj-core {__version__}", "dt": float(dt)},
    )
    _check_shapes(graph, shapes)
    return graph


def _nodes_and_edges(
    traced: fx.Graph, network: nn.Module, shapes: dict, dt: float, nir: Any
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """NIR nodes named after the modules, and the edges between them, from the trace."""
    owner = type(network).__name__
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    sources: dict[fx.Node, list[str]] = {}  # the NIR nodes whose outputs sum to each value
    for node in traced.nodes:
        if node.op == "placeholder":
            if sources:
                raise NotImplementedError(
                    f"to_nir supports a forward with one input; {owner}.forward also takes "
                    f"{node.target!r}"
                )
            sources[node] = [INPUT]
        elif node.op == "call_module":
            name = _nir_name(node.target)
            inputs = _single_argument(node, sources)
            submodule = network.get_submodule(node.target)
            nodes[name] = _to_node(submodule, shapes[name][0], dt, nir, node.target)
            edges += [(source, name) for source in inputs]
            sources[node] = [name]
        elif node.op in ("call_function", "call_method") and node.target in _ADDITIONS:
            sources[node] = _summands(node, sources)
        elif node.op == "output":
            if not isinstance(node.args[0], fx.Node):
                raise NotImplementedError("to_nir supports a forward that returns one tensor")
            edges += [(source, OUTPUT) for source in sources[node.args[0]]]
        else:
            raise NotImplementedError(
                f"{owner}.forward calls {_describe(node)}, which NIR cannot describe; the "
                f"layers that export are {EXPORTED_LAYERS}; the neurons {EXPORTED_NEURONS}; "
                "and sums of their outputs"
            )
    if len(set(edges)) != len(edges):
        raise NotImplementedError(
            "a forward that feeds one output into the same node twice (such as x + x) has "
            "no NIR equivalent"
        )
    return nodes, edges


class _Tracer(fx.Tracer):
    """Stops at the modules NIR describes; walks through containers; drops dropout."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # Neurons hold a surrogate function as a child module, but are one NIR node.
        if isinstance(m, (MemoryModule, NonSpikingBaseNode, *NEURON_REASONS)):
            return True
        # A module with weights of its own (PSN's [T, T] matrix, ...) is one node too: its
        # forward is not a wiring of other modules.
        if any(True for _ in m.parameters(recurse=False)) or any(
            True for _ in m.buffers(recurse=False)
        ):
            return True
        return not isinstance(m, nn.Sequential) and next(m.children(), None) is None

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        if isinstance(m, _SKIPPED):
            return args[0]
        if isinstance(m, _CHAINS):
            # Folding time into the batch (or looping over it) is the container's business;
            # for NIR its children simply follow one another.
            x = args[0]
            for child in m:
                x = self.call_module(child, child.forward, (x,), {})
            return x
        return super().call_module(m, forward, args, kwargs)


def _nir_name(target: str) -> str:
    # The reserved names of the graph's ends; a module called "input" gets a suffix.
    return f"{target}_" if target in (INPUT, OUTPUT) else target


def _single_argument(node: fx.Node, sources: dict[fx.Node, list[str]]) -> list[str]:
    if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
        raise NotImplementedError(
            f"module {node.target!r} is called with {len(node.args)} positional and "
            f"{len(node.kwargs)} keyword arguments; NIR nodes take one input"
        )
    return sources[node.args[0]]


def _summands(node: fx.Node, sources: dict[fx.Node, list[str]]) -> list[str]:
    operands = list(node.args) + list(node.kwargs.values())
    if len(operands) != 2 or not all(isinstance(a, fx.Node) for a in operands):
        raise NotImplementedError(
            f"{_describe(node)} adds something other than two module outputs (a constant, "
            "or alpha=...), which NIR cannot describe"
        )
    return sources[operands[0]] + sources[operands[1]]


def _describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else node.target.__name__
    return {"call_method": f"the tensor method .{target}()", "get_attr": f"attribute {target}"}.get(
        node.op, f"{target}()"
    )


def _to_node(module: nn.Module, in_shape: tuple[int, ...], dt: float, nir: Any, path: str) -> Any:
    try:
        converted = layer_to_nir(module, in_shape, nir)
        if converted is None:
            converted = neuron_to_nir(module, in_shape, dt, nir)
    except NotImplementedError as exc:
        # The converters say what cannot be expressed and why; say where it is.
        raise NotImplementedError(f"module {path!r}: {exc}") from None
    if converted is None:
        reason = next((why for kind, why in NEURON_REASONS.items() if isinstance(module, kind)), "")
        raise NotImplementedError(
            f"module {path!r} ({type(module).__name__}) has no NIR equivalent"
            f"{f' ({reason})' if reason else ''}; the layers that export are "
            f"{EXPORTED_LAYERS}; the neurons {EXPORTED_NEURONS}"
        )
    return converted


def _sample_shape(x: torch.Tensor, module: nn.Module) -> tuple[int, ...]:
    """``x``'s shape without the leading ``[T, N]`` (step mode ``'m'``) or ``[N]``
    (``'s'``, and plain torch modules, which see time folded into the batch)."""
    leading = 2 if getattr(module, "step_mode", "s") == "m" else 1
    return tuple(x.shape[leading:])


def _run(network: nn.Module, sample_input: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = network(sample_input)
    if not isinstance(out, torch.Tensor):
        raise NotImplementedError("to_nir supports a forward that returns one tensor")
    return out


def _per_sample_shapes(
    network: nn.Module, targets: list[str], sample_input: torch.Tensor
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each leaf's per-sample (input, output) shape by NIR name, from one run of
    ``sample_input``."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(target: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            name = _nir_name(target)
            if name in shapes or not args:  # a child of MultiStepContainer runs once per step
                return
            shapes[name] = (_sample_shape(args[0], module), _sample_shape(output, module))

        return hook

    handles = [network.get_submodule(t).register_forward_hook(record(t)) for t in targets]
    try:
        _run(network, sample_input)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _graph_input_shape(edges: list[tuple[str, str]], shapes: dict) -> tuple[int, ...]:
    firsts = {dst for src, dst in edges if src == INPUT}
    found = {shapes[name][0] for name in firsts if name != OUTPUT}
    if OUTPUT in firsts or len(found) != 1:
        raise NotImplementedError(
            "to_nir needs a network whose input feeds layers only, all with inputs of one "
            f"shape; found per-sample input shapes {sorted(found)}"
            + (" and the input going straight to the output" if OUTPUT in firsts else "")
        )
    return found.pop()


def _check_shapes(graph: Any, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
    """NIR's own shape inference must agree with what the modules did with the sample."""
    for name, (_, out_shape) in shapes.items():
        inferred = graph.nodes[name].output_type["output"]
        if inferred is None or tuple(int(n) for n in inferred) != out_shape:
            raise NotImplementedError(
                f"module {name!r} ({type(graph.nodes[name]).__name__} in NIR) produced "
                f"per-sample outputs of shape {list(out_shape)}, but NIR infers "
                f"{None if inferred is None else list(inferred)}"
            )
