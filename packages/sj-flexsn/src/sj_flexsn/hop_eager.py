"""The FlexSN time scan as a plain Python loop: the semantics every other scan path matches.

A FlexSN ``core`` is one time step of a neuron::

    core(*step_inputs, *states, *lifted) -> (*step_outputs, *new_states)

The scan runs it over the leading time dimension ``T``. Its arguments come as one flat
tuple, so a tracer can treat them uniformly::

    flat_args = (*input_seqs, *init_states, *lifted)
    input_seqs   [T, *S] each   (num_inputs of them, the same T)
    init_states  [*S]    each   (num_states of them)
    lifted       any tensors passed unchanged to every step (e.g. captured parameters)

:func:`eager_scan` returns ``(*output_seqs, *state_seqs)``, every one ``[T, ...]``;
:func:`eager_scan_final_state` returns ``(*output_seqs, *final_states)`` without stacking
the states. Gradients come from autograd through the loop (``unbind`` and ``stack`` are
differentiable), so captured tensors and parameters receive gradients too.

``T == 0`` runs nothing: the output shapes and dtypes come from ``output_template_specs``,
one ``(shape, dtype)`` or ``(shape, dtype, device)`` per output (the device defaults to the
first input's). The empty results stay attached to the autograd graph, so a backward
pass through them works and gives zero gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, TypeAlias

import torch
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

from sj_core.neuron.flexsn_validation import check_core_returns, check_counts

__all__ = [
    "OutputTemplateSpecs",
    "check_scan_args",
    "eager_scan",
    "eager_scan_final_state",
    "empty_scan_results",
    "probe_output_template_specs",
    "run_scan",
    "split_scan_args",
]

OutputTemplateSpec: TypeAlias = (
    tuple[Sequence[int], torch.dtype] | tuple[Sequence[int], torch.dtype, torch.device | str]
)
OutputTemplateSpecs: TypeAlias = Sequence[OutputTemplateSpec]


def check_scan_args(
    num_inputs: Any, num_states: Any, num_outputs: Any, flat_args: Sequence[Any], owner: str
) -> tuple[int, int, int]:
    """Validate the counts and ``flat_args`` of a scan call; returns the counts.

    Raises:
        TypeError: a count is not an int, or an argument is not a tensor.
        ValueError: a count is out of range, there are too few tensors, an input
            sequence has no time dimension, or the inputs disagree on ``T``.
    """
    num_inputs, num_states, num_outputs = check_counts(num_inputs, num_states, num_outputs)
    needed = num_inputs + num_states
    if len(flat_args) < needed:
        raise ValueError(
            f"{owner} needs at least num_inputs + num_states = {needed} tensors "
            f"(*input_seqs, *init_states, *lifted), got {len(flat_args)}"
        )
    for i, arg in enumerate(flat_args):
        if not isinstance(arg, torch.Tensor):
            raise TypeError(f"{owner}: flat_args[{i}] must be a tensor, got {type(arg).__name__}")
    input_seqs = flat_args[:num_inputs]
    # Compared pairwise, not through a set: under torch.compile T may be a SymInt.
    if any(x.dim() == 0 for x in input_seqs) or any(
        x.shape[0] != input_seqs[0].shape[0] for x in input_seqs
    ):
        shapes = [tuple(x.shape) for x in input_seqs]
        raise ValueError(
            f"{owner}: every input sequence must be [T, ...] with the same T, got {shapes}"
        )
    return num_inputs, num_states, num_outputs


def split_scan_args(
    num_inputs: int, num_states: int, flat_args: Sequence[torch.Tensor]
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """``flat_args`` -> ``(input_seqs, init_states, lifted)``."""
    return (
        tuple(flat_args[:num_inputs]),
        tuple(flat_args[num_inputs : num_inputs + num_states]),
        tuple(flat_args[num_inputs + num_states :]),
    )


def _check_template_specs(specs: Any, num_outputs: int, device: torch.device) -> list[tuple]:
    """Normalise ``output_template_specs`` to ``[(shape, dtype, device), ...]``."""
    accepted = "one (shape, dtype) or (shape, dtype, device) tuple per output"
    if not isinstance(specs, (tuple, list)) or len(specs) != num_outputs:
        got = f"{len(specs)} items" if isinstance(specs, (tuple, list)) else repr(specs)
        raise ValueError(
            f"output_template_specs must hold num_outputs = {num_outputs} items ({accepted}), "
            f"got {got}"
        )
    normalised = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
            raise ValueError(f"output_template_specs[{i}] must be {accepted}, got {spec!r}")
        shape, dtype = spec[0], spec[1]
        if not isinstance(dtype, torch.dtype):
            raise TypeError(
                f"output_template_specs[{i}]: dtype must be a torch.dtype, got {dtype!r}"
            )
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(
                f"output_template_specs[{i}]: shape must be a sequence of ints, got {shape!r}"
            ) from None
        normalised.append((shape, dtype, torch.device(spec[2]) if len(spec) == 3 else device))
    return normalised


def _empty_sequence(
    shape: Sequence[int], dtype: torch.dtype, device: torch.device, anchors: Sequence[torch.Tensor]
) -> torch.Tensor:
    """An empty ``[0, *shape]`` tensor that autograd links to ``anchors``.

    With ``T == 0`` nothing depends on the inputs, but a training loop still calls
    ``backward`` through the outputs; adding ``0 * anchor.sum()`` (a no-op on an empty
    tensor) makes that work and gives every anchor a zero gradient.
    """
    empty = torch.empty((0, *shape), dtype=dtype, device=device)
    if not (dtype.is_floating_point and torch.is_grad_enabled()):
        return empty
    for anchor in anchors:
        if anchor.requires_grad:
            empty = empty + (anchor.sum() * 0).to(device=device, dtype=dtype)
    return empty


def empty_scan_results(
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    flat_args: Sequence[torch.Tensor],
    output_template_specs: OutputTemplateSpecs,
    final_state: bool,
) -> tuple[torch.Tensor, ...]:
    """The results of a scan over ``T == 0`` steps, without running ``core``.

    Outputs are ``[0, *shape]`` from the templates; state sequences are ``[0, *S]`` like
    the initial states, or (``final_state``) clones of the initial states.
    """
    input_seqs, init_states, lifted = split_scan_args(num_inputs, num_states, flat_args)
    device = input_seqs[0].device
    anchors = (*input_seqs, *init_states, *lifted)
    specs = _check_template_specs(output_template_specs, num_outputs, device)
    outputs = tuple(_empty_sequence(*spec, anchors) for spec in specs)
    if final_state:
        return (*outputs, *(state.clone() for state in init_states))
    state_seqs = tuple(
        _empty_sequence(state.shape, state.dtype, state.device, anchors) for state in init_states
    )
    return (*outputs, *state_seqs)


def probe_output_template_specs(
    core_fn: Callable, num_inputs: int, num_states: int, num_outputs: int, flat_args: Sequence
) -> tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...]:
    """Learn ``(shape, dtype, device)`` of each output by running ``core`` once on zeros.

    Used by the higher-order op for ``T == 0``, where no template is given: the probe runs
    without autograd and outside any proxy tracer, so it leaves no trace in a graph.
    """
    input_seqs, init_states, lifted = split_scan_args(num_inputs, num_states, flat_args)
    # Dynamo cannot trace the tracer switch; the probe's ops are dead code it drops anyway.
    untraced = (
        nullcontext() if torch.compiler.is_dynamo_compiling() else disable_proxy_modes_tracing()
    )
    with torch.no_grad(), untraced:
        steps = [x.new_zeros(x.shape[1:]) for x in input_seqs]
        returns = check_core_returns(
            core_fn(*steps, *init_states, *lifted), num_outputs, num_states
        )
        return tuple((tuple(o.shape), o.dtype, o.device) for o in returns[:num_outputs])


def run_scan(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    flat_args: Sequence[torch.Tensor],
    final_state: bool,
) -> tuple[torch.Tensor, ...]:
    """The time loop for ``T >= 1`` (validated arguments); see the module docstring."""
    input_seqs, states, lifted = split_scan_args(num_inputs, num_states, flat_args)
    # unbind once: T views and a single backward node, instead of T select nodes.
    steps_per_input = [x.unbind(0) for x in input_seqs]
    output_steps: list[list[torch.Tensor]] = [[] for _ in range(num_outputs)]
    state_steps: list[list[torch.Tensor]] = [[] for _ in range(num_states)]
    for step_inputs in zip(*steps_per_input, strict=True):
        returns = check_core_returns(
            core_fn(*step_inputs, *states, *lifted), num_outputs, num_states
        )
        states = tuple(returns[num_outputs:])
        for steps, output in zip(output_steps, returns[:num_outputs], strict=True):
            steps.append(output)
        if not final_state:
            for steps, state in zip(state_steps, states, strict=True):
                steps.append(state)
    outputs = tuple(torch.stack(steps) for steps in output_steps)
    if final_state:
        return (*outputs, *states)
    return (*outputs, *(torch.stack(steps) for steps in state_steps))


def _eager(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    flat_args: Sequence[torch.Tensor],
    output_template_specs: OutputTemplateSpecs | None,
    final_state: bool,
    owner: str,
) -> tuple[torch.Tensor, ...]:
    counts = check_scan_args(num_inputs, num_states, num_outputs, flat_args, owner)
    if flat_args[0].shape[0] == 0:
        if output_template_specs is None:
            raise ValueError(
                f"{owner} got T == 0 and cannot run core to learn the output shapes: pass "
                "output_template_specs=((shape, dtype), ...) with one item per output"
            )
        return empty_scan_results(*counts, flat_args, output_template_specs, final_state)
    return run_scan(core_fn, *counts, flat_args, final_state)


def eager_scan(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    *flat_args: torch.Tensor,
    output_template_specs: OutputTemplateSpecs | None = None,
) -> tuple[torch.Tensor, ...]:
    """Run ``core_fn`` over time with a Python loop: ``(*output_seqs, *state_seqs)``.

    Args:
        core_fn: ``(*step_inputs, *states, *lifted) -> (*step_outputs, *new_states)``,
            returning a tuple or list of ``num_outputs + num_states`` tensors.
        num_inputs, num_states, num_outputs: how ``flat_args`` and the returns split.
        flat_args: ``(*input_seqs [T, *S], *init_states [*S], *lifted)``.
        output_template_specs: for ``T == 0`` only (required then): one ``(shape, dtype)``
            or ``(shape, dtype, device)`` per output.

    Returns:
        ``num_outputs`` output sequences then ``num_states`` state sequences, ``[T, ...]``.

    Example::

        >>> def lif(x, v):
        ...     h = v + (x - v) / 2.0
        ...     s = (h >= 1.0).to(h.dtype)
        ...     return s, h * (1.0 - s)
        >>> spike_seq, v_seq = eager_scan(lif, 1, 1, 1, torch.rand(8, 4), torch.zeros(4))
    """
    return _eager(
        core_fn,
        num_inputs,
        num_states,
        num_outputs,
        flat_args,
        output_template_specs,
        False,
        "eager_scan",
    )


def eager_scan_final_state(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    *flat_args: torch.Tensor,
    output_template_specs: OutputTemplateSpecs | None = None,
) -> tuple[torch.Tensor, ...]:
    """Like :func:`eager_scan`, but returns ``(*output_seqs, *final_states)``.

    The state sequences are never stacked. With ``T == 0`` the final states are clones
    of the initial states.

    Example::

        >>> spike_seq, v_last = eager_scan_final_state(lif, 1, 1, 1, x_seq, v_init)
    """
    return _eager(
        core_fn,
        num_inputs,
        num_states,
        num_outputs,
        flat_args,
        output_template_specs,
        True,
        "eager_scan_final_state",
    )
