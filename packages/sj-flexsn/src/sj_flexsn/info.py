"""Metadata of a traced forward graph: which values the generated kernel reads and writes.

A forward graph has the signature ``[*inputs, *states, *captured] -> [*outputs,
*new_states, *intermediates]``: ``captured`` are the tensors ``core`` captured (lifted
into arguments by :mod:`sj_flexsn.capture`), ``intermediates`` the per-step values the
backward pass needs (empty for inference graphs).

Example: the training forward graph of a LIF core, whose backward pass needs the charge
``H`` (the node ``add``, ``H = v + (x - v) / tau``)::

    >>> info = extract_info(fwd_graph, num_inputs=1, num_states=1, num_outputs=1)
    >>> info.fwd_core_args, info.fwd_core_returns
    (('in0', 'state0'), ('_to_copy', 'mul', 'add'))
    >>> info.fwd_core_recipients, info.fwd_kernel_returns, info.c2k_return_mapping
    (('out0', 'new_state0', 'saved0'), ('out0', 'new_state0', 'saved0'), (0, 1, 2))
"""

from __future__ import annotations

from typing import NamedTuple

from torch import fx

__all__ = ["FlexSNInfo", "extract_info"]


class FlexSNInfo(NamedTuple):
    """What the time-loop templates need to know about a forward graph.

    Attributes:
        num_inputs, num_outputs, num_states: the core's signature.
        fwd_core_args: names of the graph's arguments: inputs, states, then captured
            tensors (``len(fwd_core_args) - num_inputs - num_states`` of them).
        fwd_core_returns: names of the values the graph returns, in order (outputs, new
            states, intermediates); a value may appear more than once.
        fwd_core_recipients: the variable the template binds each return to:
            ``out{j}``, ``new_state{k}``, ``saved{i}``.
        fwd_kernel_returns: the recipients the kernel writes to memory, without
            duplicates: every output and state, and each intermediate that is not
            already written as an output or readable from an input sequence.
        num_fwd_kernel_returns: ``len(fwd_kernel_returns)``.
        c2k_return_mapping: for each core return, where the backward pass finds it:
            ``k >= 0`` is ``fwd_kernel_returns[k]``; ``-(i + 1)`` is input sequence
            ``i`` (an intermediate that is just an input is re-read, not stored).
    """

    num_inputs: int
    num_outputs: int
    num_states: int
    fwd_core_args: tuple[str, ...]
    fwd_core_returns: tuple[str, ...]
    fwd_core_recipients: tuple[str, ...]
    fwd_kernel_returns: tuple[str, ...]
    num_fwd_kernel_returns: int
    c2k_return_mapping: tuple[int, ...]

    @property
    def num_captured(self) -> int:
        """Number of captured tensors the core takes after its inputs and states."""
        return len(self.fwd_core_args) - self.num_inputs - self.num_states

    @property
    def num_intermediates(self) -> int:
        """Number of per-step values the forward graph returns for the backward pass."""
        return len(self.fwd_core_returns) - self.num_outputs - self.num_states

    @property
    def stored_intermediates(self) -> tuple[int, ...]:
        """Indices (among intermediates) of those the forward kernel writes itself."""
        base = self.num_outputs + self.num_states
        return tuple(
            i for i in range(self.num_intermediates) if self.c2k_return_mapping[base + i] >= base
        )


def _graph_of(graph: fx.Graph | fx.GraphModule) -> fx.Graph:
    return graph.graph if isinstance(graph, fx.GraphModule) else graph


def extract_info(
    fwd_graph: fx.Graph | fx.GraphModule,
    num_inputs: int = 1,
    num_states: int = 0,
    num_outputs: int = 1,
) -> FlexSNInfo:
    """Extract :class:`FlexSNInfo` from a forward graph.

    Args:
        fwd_graph: ``[*inputs, *states, *captured] -> [*outputs, *new_states,
            *intermediates]`` (an ``fx.Graph`` or ``fx.GraphModule``).
        num_inputs, num_states, num_outputs: the core's signature.

    Raises:
        ValueError: the graph has fewer arguments or returns than the signature says.
    """
    graph = _graph_of(fwd_graph)
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    output_node = next(node for node in graph.nodes if node.op == "output")
    returns = output_node.args[0]
    returns = list(returns) if isinstance(returns, (tuple, list)) else [returns]
    if len(placeholders) < num_inputs + num_states:
        raise ValueError(
            f"forward graph takes {len(placeholders)} arguments, fewer than "
            f"num_inputs + num_states = {num_inputs + num_states}"
        )
    if len(returns) < num_outputs + num_states:
        raise ValueError(
            f"forward graph returns {len(returns)} values, fewer than "
            f"num_outputs + num_states = {num_outputs + num_states}"
        )
    num_intermediates = len(returns) - num_outputs - num_states
    recipients = (
        [f"out{j}" for j in range(num_outputs)]
        + [f"new_state{k}" for k in range(num_states)]
        + [f"saved{i}" for i in range(num_intermediates)]
    )
    kernel_returns = recipients[: num_outputs + num_states]
    mapping = list(range(num_outputs + num_states))
    input_index = {node: i for i, node in enumerate(placeholders[:num_inputs])}
    output_index = {}
    for j, node in enumerate(returns[:num_outputs]):
        output_index.setdefault(node, j)
    for i, node in enumerate(returns[num_outputs + num_states :]):
        if node in input_index:
            mapping.append(-(input_index[node] + 1))
        elif node in output_index:
            mapping.append(output_index[node])
        else:
            mapping.append(len(kernel_returns))
            kernel_returns.append(recipients[num_outputs + num_states + i])
    return FlexSNInfo(
        num_inputs=num_inputs,
        num_outputs=num_outputs,
        num_states=num_states,
        fwd_core_args=tuple(node.name for node in placeholders),
        fwd_core_returns=tuple(_return_name(node) for node in returns),
        fwd_core_recipients=tuple(recipients),
        fwd_kernel_returns=tuple(kernel_returns),
        num_fwd_kernel_returns=len(kernel_returns),
        c2k_return_mapping=tuple(mapping),
    )


def _return_name(value: object) -> str:
    return value.name if isinstance(value, fx.Node) else repr(value)
