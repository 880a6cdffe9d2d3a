"""The module :func:`~sj_core.nir.from_nir` returns for a graph that is not a chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["NIRNetwork"]


class NIRNetwork(nn.Module):
    """A feed-forward NIR graph with branches and merges, run in topological order.

    A node's input is the **sum** of its predecessors' outputs, as NIR (and nirtorch)
    read several edges into one node; the network's output is the sum of what reaches
    the graph's ``Output`` node. Each node is an ordinary sj_core module, so
    :func:`~sj_core.functional.reset_net`, :func:`~sj_core.functional.set_step_mode` and
    :func:`~sj_core.functional.set_backend` work on it as on any network.

    Args:
        nodes: the modules by name, in an order where every node comes after its
            predecessors.
        sources: for each node, the names it sums its input from (``input_name`` for
            the graph's input).
        output_sources: the names whose outputs sum to the network's output.
        input_name: the name of the graph's input in ``sources``.

    Example::

        >>> net = NIRNetwork(
        ...     {"a": layer.Linear(4, 4), "b": layer.Linear(4, 4)},
        ...     sources={"a": ["in"], "b": ["a"]},
        ...     output_sources=["a", "b"],  # a residual connection: a(x) + b(a(x))
        ...     input_name="in",
        ... )
        >>> net(torch.rand(2, 4)).shape            # [N, 4] (or [T, N, 4] in step mode 'm')
        torch.Size([2, 4])
    """

    def __init__(
        self,
        nodes: Mapping[str, nn.Module],
        sources: Mapping[str, Sequence[str]],
        output_sources: Sequence[str],
        input_name: str,
    ) -> None:
        super().__init__()
        self.nodes = nn.ModuleDict(nodes)
        known = {input_name}
        for name in self.nodes:
            missing = [s for s in sources[name] if s not in known]
            if missing or not sources[name]:
                raise ValueError(
                    f"node {name!r} reads {list(sources[name])}, which must be non-empty and "
                    f"come earlier in the order (known so far: {sorted(known)})"
                )
            known.add(name)
        if not output_sources or any(s not in known for s in output_sources):
            raise ValueError(f"output_sources {list(output_sources)} must be known nodes")
        self.sources = {name: tuple(sources[name]) for name in self.nodes}
        self.output_sources = tuple(output_sources)
        self.input_name = input_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the input of one step ``[N, *]`` or a sequence ``[T, N, *]``, as the
        nodes' step mode expects."""
        values = {self.input_name: x}
        for name, module in self.nodes.items():
            values[name] = module(_sum(values, self.sources[name]))
        return _sum(values, self.output_sources)

    def extra_repr(self) -> str:
        edges = [f"{' + '.join(s)} -> {name}" for name, s in self.sources.items()]
        edges.append(f"{' + '.join(self.output_sources)} -> output")
        return "\n".join(edges)


def _sum(values: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    total = values[names[0]]
    for name in names[1:]:
        total = total + values[name]
    return total
