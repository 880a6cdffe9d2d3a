"""``from_nir``: build an sj_core network from a NIR graph (or a NIR file)."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from torch import nn

from .dependency import import_nir
from .layers import IMPORTED_LAYERS, nir_to_layer
from .network import NIRNetwork
from .neurons import DEFAULT_DT, IMPORTED_NEURONS, check_dt, nir_to_neuron

__all__ = ["from_nir"]


def from_nir(
    graph_or_path: Any,
    step_mode: str = "m",
    backend: str = "auto",
    dt: float = DEFAULT_DT,
) -> nn.Module:
    """Build an sj_core network from a NIR graph, such as one that snnTorch, Norse, Sinabs
    or :func:`~sj_core.nir.to_nir` wrote.

    NIR ``Affine``/``Linear``, ``Conv2d``, ``AvgPool2d``, ``SumPool2d`` and ``Flatten``
    become ``sj_core.layer`` layers (``SumPool2d``: ``AvgPool2d(divisor_override=1)``);
    ``Conv1d`` an ``nn.Conv1d`` (in a ``SeqToANNContainer`` in step mode ``'m'``); ``LIF``
    and ``IF`` become :class:`~sj_core.neuron.LIFNode` and
    :class:`~sj_core.neuron.IFNode`; ``LI`` and ``I`` become
    :class:`~sj_core.neuron.NonSpikingLIFNode` and
    :class:`~sj_core.neuron.NonSpikingIFNode` (multi-step only). Time constants in
    seconds become steps of ``dt`` seconds; an ``IF`` may give its gain as ``r = 1`` or
    as SpikingJelly's ``r = 1/dt`` (a warning says which); :mod:`sj_core.nir.neurons`
    gives every convention. ``CubaLIF``, other nodes, recurrent connections (cycles) and
    nested graphs raise ``NotImplementedError`` naming them and why.

    Args:
        graph_or_path: a ``nir.NIRGraph`` (or a single NIR node), or the path of a file
            written by ``nir.write``.
        step_mode: ``'m'`` (inputs ``[T, N, *]``) or ``'s'`` (one step ``[N, *]``).
        backend: the spiking neurons' backend (``'auto'`` picks the fastest installed one
            for each input; see :doc:`/backends`).
        dt: seconds per time step (default ``1e-4``, what snnTorch assumes).

    Returns:
        An ``nn.Sequential`` when the graph is a chain (modules named after the NIR
        nodes, ``.`` replaced by ``_``), else a :class:`~sj_core.nir.NIRNetwork`. Reset it
        between sequences with :func:`~sj_core.functional.reset_net`.

    Example::

        >>> net = from_nir("net.nir")                 # or from_nir(graph)
        >>> spikes = net(torch.rand(8, 1, 64))        # [T, N, features]
        >>> functional.reset_net(net)
    """
    nir = import_nir("sj_core.nir.from_nir")
    graph = _as_graph(graph_or_path, nir)
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    dt = check_dt(dt)

    input_name, output_name = _ends(graph, nir)
    predecessors = {name: [src for src, dst in graph.edges if dst == name] for name in graph.nodes}
    order = _topological_order(graph, input_name, output_name, predecessors)
    names = _module_names(order)
    modules = OrderedDict(
        (names[n], _to_module(n, graph.nodes[n], dt, step_mode, backend, nir)) for n in order
    )
    if _is_chain(graph, order, input_name, predecessors):
        return nn.Sequential(modules)
    return NIRNetwork(
        modules,
        sources={names[n]: [names.get(p, p) for p in predecessors[n]] for n in order},
        output_sources=[names.get(p, p) for p in predecessors[output_name]],
        input_name=input_name,
    )


def _as_graph(graph_or_path: Any, nir: Any) -> Any:
    if isinstance(graph_or_path, (str, os.PathLike)):
        return nir.read(graph_or_path)
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    if isinstance(graph_or_path, nir.NIRNode):
        return nir.NIRGraph.from_list(graph_or_path)
    raise TypeError(
        "from_nir expects a nir.NIRGraph, a NIR node, or the path of a NIR file, got "
        f"{type(graph_or_path).__name__}"
    )


def _ends(graph: Any, nir: Any) -> tuple[str, str]:
    """The names of the graph's one ``Input`` and one ``Output`` node."""
    found = {}
    for kind in (nir.Input, nir.Output):
        names = [name for name, node in graph.nodes.items() if isinstance(node, kind)]
        if len(names) != 1:
            raise NotImplementedError(
                f"from_nir supports graphs with one {kind.__name__} node; this one has "
                f"{len(names)}: {names}"
            )
        found[kind] = names[0]
    return found[nir.Input], found[nir.Output]


def _topological_order(
    graph: Any, input_name: str, output_name: str, predecessors: dict[str, list[str]]
) -> list[str]:
    """The computing nodes, each after its predecessors; refuses cycles and loose ends."""
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise ValueError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
        if dst == input_name or src == output_name:
            raise ValueError(f"edge ({src!r}, {dst!r}) goes into the input or out of the output")
    successors = {name: [dst for src, dst in graph.edges if src == name] for name in graph.nodes}
    pending = {name: len(set(predecessors[name])) for name in graph.nodes}
    ready = [input_name]
    order = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for successor in dict.fromkeys(successors[name]):
            pending[successor] -= 1
            if pending[successor] == 0:
                ready.append(successor)
    left = [name for name in graph.nodes if name not in order]
    if left:
        cyclic = [name for name in left if pending[name] > 0 and predecessors[name]]
        raise NotImplementedError(
            f"nodes {left} are not reached from the input in a feed-forward order: recurrent "
            f"connections (cycles through {cyclic}) and unconnected nodes are not supported"
        )
    reaching = {output_name}
    for name in reversed(order):
        if any(s in reaching for s in successors[name]):
            reaching.add(name)
    dead = [name for name in order if name not in reaching]
    if dead:
        raise ValueError(f"nodes {dead} do not lead to the graph's output")
    return [name for name in order if name not in (input_name, output_name)]


def _module_names(order: list[str]) -> dict[str, str]:
    """Module names from NIR names: ``.`` is not allowed in a module name (nirtorch's
    replacement, ``_``, is used); clashes get a numeric suffix."""
    names: dict[str, str] = {}
    for name in order:
        candidate = name.replace(".", "_") or "node"
        unique, i = candidate, 1
        while unique in names.values():
            unique, i = f"{candidate}_{i}", i + 1
        names[name] = unique
    return names


def _to_module(
    name: str, node: Any, dt: float, step_mode: str, backend: str, nir: Any
) -> nn.Module:
    if isinstance(node, nir.NIRGraph):
        raise NotImplementedError(
            f"NIR node {name!r} is a nested graph (how snnTorch writes its recurrent layers, "
            "RLeaky and RSynaptic); sj_core imports flat feed-forward graphs"
        )
    module = nir_to_layer(name, node, step_mode, nir)
    if module is None:
        module = nir_to_neuron(name, node, dt, step_mode, backend, nir)
    if module is None:
        raise NotImplementedError(
            f"NIR node {name!r} ({type(node).__name__}) has no sj_core equivalent; "
            f"from_nir converts {IMPORTED_LAYERS}, {IMPORTED_NEURONS}"
        )
    return module


def _is_chain(
    graph: Any, order: list[str], input_name: str, predecessors: dict[str, list[str]]
) -> bool:
    chain = [input_name, *order]
    return len(graph.edges) == len(order) + 1 and all(
        predecessors[name] == [chain[i]] for i, name in enumerate(order)
    )
