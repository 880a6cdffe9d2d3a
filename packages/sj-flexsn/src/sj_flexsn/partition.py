"""Partition: split a joint forward/backward graph into the two graphs the kernels run.

The forward kernel runs the forward graph at every step and writes, besides the outputs
and states, the *intermediates* the backward graph needs; the backward kernel runs the
backward graph in reverse time. Which values to keep is a minimum cut, as in
``aot_autograd``'s rematerializing partitioner, with costs that fit a time scan (bytes
moved per neuron per step, assuming fp32 storage):

* re-reading an input sequence ``x[t]`` in the backward pass costs one read (4),
* re-reading an output sequence (already written by the forward pass) costs 4,
* saving any other floating or bool value costs a write plus a read (8; intermediates
  are stored in the input dtype),
* captured tensors and constants are always available (free); the states of the
  previous step are not (they cost 8 like any intermediate).

Everything upstream of the cut is recomputed in the backward graph (element-wise ops are
cheap; the kernels are bound by memory). For a LIF neuron the cut is the charge ``H``:
one saved tensor, as in a hand-written kernel.

Example::

    >>> graphs = partition_joint_graph(trace_joint_graph(spec, (True, True)))
    >>> graphs.fwd_gm   # [in0, state0, cap...] -> [out..., new_state..., saved...]
    >>> graphs.bwd_gm   # [grad_out..., grad_state..., saved..., cap...] -> [grad per primal]
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence

import torch
from torch import fx

from .capture import CoreSpec, JointGraph

__all__ = [
    "TrainingGraphs",
    "copy_graph",
    "input_names",
    "partition_joint_graph",
    "rename_inference_graph",
]

_INF = 1 << 40
_REREAD_COST = 4
_SAVE_COST = 8


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingGraphs:
    """Forward and backward graphs of one step.

    ``fwd_gm``: ``[*inputs, *states, *captured] -> [*outputs, *new_states, *saved]``.
    ``bwd_gm``: ``[*grad_outputs, *grad_new_states, *saved, *captured] ->
    [*grad_inputs, *grad_states, *grad_captured]`` (``None`` where no gradient is traced).
    """

    fwd_gm: fx.GraphModule
    bwd_gm: fx.GraphModule
    spec: CoreSpec
    num_saved: int
    primal_requires_grad: tuple[bool, ...]


def input_names(spec: CoreSpec) -> list[str]:
    """Placeholder names of a forward graph: ``in{i}``, ``state{k}``, ``cap{c}``."""
    return (
        [f"in{i}" for i in range(spec.num_inputs)]
        + [f"state{k}" for k in range(spec.num_states)]
        + [f"cap{c}" for c in range(spec.num_captured)]
    )


def _placeholders(gm: fx.GraphModule) -> list[fx.Node]:
    return [node for node in gm.graph.nodes if node.op == "placeholder"]


def _returns(gm: fx.GraphModule) -> list[fx.Node | None]:
    output = next(node for node in gm.graph.nodes if node.op == "output")
    values = output.args[0]
    return list(values) if isinstance(values, (tuple, list)) else [values]


def copy_graph(
    src: fx.GraphModule,
    inputs: Sequence[tuple[str, fx.Node]],
    outputs: Sequence[fx.Node | None],
) -> fx.GraphModule:
    """A new graph computing ``outputs`` of ``src`` from the nodes named in ``inputs``.

    Each ``(name, node)`` becomes a placeholder ``name`` standing for ``node``; only the
    nodes needed between them and ``outputs`` are copied (dead code is dropped).

    Raises:
        RuntimeError: an output depends on a placeholder of ``src`` not in ``inputs``.
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for name, node in inputs:
        placeholder = graph.placeholder(name)
        placeholder.meta = dict(node.meta)
        env[node] = placeholder
    needed = _ancestors([o for o in outputs if o is not None], stop=env.keys())
    for node in src.graph.nodes:
        if node not in needed or node in env:
            continue
        if node.op == "placeholder":
            raise RuntimeError(f"internal error: {node.name} is needed but not available")
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[o] if o is not None else None for o in outputs))
    return fx.GraphModule(src, graph)


def _ancestors(roots: Iterable[fx.Node], stop: Iterable[fx.Node] = ()) -> set[fx.Node]:
    stop = set(stop)
    seen: set[fx.Node] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if node not in stop:
            pending.extend(node.all_input_nodes)
    return seen


def rename_inference_graph(gm: fx.GraphModule, spec: CoreSpec) -> fx.GraphModule:
    """The inference trace with placeholders renamed ``in{i}``, ``state{k}``, ``cap{c}``."""
    names = input_names(spec)
    return copy_graph(gm, list(zip(names, _placeholders(gm), strict=True)), _returns(gm))


def _save_cost(node: fx.Node, output_nodes: set[fx.Node], input_nodes: set[fx.Node]) -> int:
    if node in input_nodes:
        return _REREAD_COST
    if node in output_nodes:
        return _REREAD_COST
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return _INF
    if value.dtype == torch.bool or value.is_floating_point():
        return _SAVE_COST
    return _INF  # integer intermediates are always recomputed


def _min_cut(
    candidates: set[fx.Node],
    sources: set[fx.Node],
    sinks: set[fx.Node],
    cost: dict[fx.Node, int],
) -> set[fx.Node]:
    """Cheapest set of nodes separating ``sources`` from ``sinks`` (Edmonds-Karp).

    Each node is split into ``(node, 0) -> (node, 1)`` with capacity ``cost[node]``;
    data edges and the source/sink edges are unbounded.
    """
    capacity: dict[object, dict[object, int]] = collections.defaultdict(dict)

    def edge(a: object, b: object, c: int) -> None:
        capacity[a][b] = capacity[a].get(b, 0) + c
        capacity[b].setdefault(a, 0)

    for node in candidates:
        edge((node, 0), (node, 1), cost[node])
        for user in node.users:
            if user in candidates:
                edge((node, 1), (user, 0), _INF)
        if node in sources:
            edge("source", (node, 0), _INF)
        if node in sinks:
            edge((node, 1), "sink", _INF)

    def reachable_from_source() -> dict[object, object]:
        parent: dict[object, object] = {"source": None}
        queue = collections.deque(["source"])
        while queue:
            here = queue.popleft()
            for there, left in capacity[here].items():
                if left > 0 and there not in parent:
                    parent[there] = here
                    queue.append(there)
        return parent

    while True:
        parent = reachable_from_source()
        if "sink" not in parent:
            break
        path = []
        here: object = "sink"
        while parent[here] is not None:
            path.append((parent[here], here))
            here = parent[here]
        flow = min(capacity[a][b] for a, b in path)
        if flow >= _INF:
            raise RuntimeError("internal error: the backward graph needs an unsaveable value")
        for a, b in path:
            capacity[a][b] -= flow
            capacity[b][a] += flow
    reached = reachable_from_source()
    return {node for node in candidates if (node, 0) in reached and (node, 1) not in reached}


def partition_joint_graph(joint: JointGraph) -> TrainingGraphs:
    """Split ``joint`` into forward and backward graphs with a minimal set of saved values."""
    spec = joint.spec
    gm = joint.gm
    placeholders = _placeholders(gm)
    num_primals = len(joint.primal_requires_grad)
    primals, tangents = placeholders[:num_primals], placeholders[num_primals:]
    returns = _returns(gm)
    results, grads = returns[: spec.num_results], returns[spec.num_results :]

    tangent_dependent = _descendants(tangents)
    # Forward values the backward reads directly: inputs of tangent-dependent nodes,
    # and gradients that happen not to depend on any tangent.
    frontier = {
        arg
        for node in tangent_dependent
        for arg in node.all_input_nodes
        if arg not in tangent_dependent
    }
    frontier |= {g for g in grads if g is not None and g not in tangent_dependent}
    candidates = _ancestors(frontier) - tangent_dependent
    per_step_primals = set(primals[: spec.num_args])
    input_nodes = set(primals[: spec.num_inputs])
    output_nodes = {r for r in results[: spec.num_outputs] if r is not None}
    cost = {node: _save_cost(node, output_nodes, input_nodes) for node in candidates}
    saved_set = _min_cut(candidates, per_step_primals & candidates, frontier, cost)
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    saved = sorted(saved_set, key=order.__getitem__)

    names = input_names(spec)
    fwd_gm = copy_graph(gm, list(zip(names, primals, strict=True)), [*results, *saved])
    captured = primals[spec.num_args :]
    bwd_inputs = (
        [(f"grad_out{j}", t) for j, t in enumerate(tangents[: spec.num_outputs])]
        + [(f"grad_state{k}", t) for k, t in enumerate(tangents[spec.num_outputs :])]
        + [(f"saved{i}", node) for i, node in enumerate(saved)]
        + [(f"cap{c}", node) for c, node in enumerate(captured)]
    )
    present = iter(grads)
    grad_per_primal = [next(present) if p else None for p in joint.grad_present]
    bwd_gm = copy_graph(gm, bwd_inputs, grad_per_primal)
    return TrainingGraphs(
        fwd_gm=fwd_gm,
        bwd_gm=bwd_gm,
        spec=spec,
        num_saved=len(saved),
        primal_requires_grad=joint.primal_requires_grad,
    )


def _descendants(roots: Iterable[fx.Node]) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        pending.extend(user for user in node.users if user.op != "output")
    return seen
