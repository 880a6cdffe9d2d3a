"""Kernel builders: core function -> compiled Triton scan kernels.

Three entry points (the pipeline: :mod:`~sj_flexsn.capture` ->
:mod:`~sj_flexsn.partition` -> :mod:`~sj_flexsn.lowering` -> :mod:`~sj_flexsn.template`
-> :mod:`~sj_flexsn.compile`):

* :func:`build_inference_kernel`: no-grad path, output and state sequences;
* :func:`build_inference_final_state_kernel`: no-grad path, final states only;
* :func:`build_training_kernels`: forward kernel (also saving what the backward needs)
  and reverse-time backward kernel.

Each kernel launches once per call whatever ``T`` is. The ``*_for_spec`` variants take
a :class:`~sj_flexsn.capture.CoreSpec`, so that every kernel of one core sees its
captured tensors in the same order (the factory uses them).

Example::

    >>> kernel, info = build_inference_kernel(lif_core, 1, 1, 1)
    >>> spikes, v_seq = flexsn_inference(kernel, info, x_seq, v_init)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sj_core.kernels import interpreter_enabled

from .capture import CoreSpec, make_core_spec, trace_inference_graph, trace_joint_graph
from .info import FlexSNInfo, extract_info
from .lowering import LoweredCore, lower_graph
from .partition import partition_joint_graph, rename_inference_graph
from .template import (
    get_flexsn_backward_kernel,
    get_flexsn_forward_kernel,
    get_flexsn_inference_final_state_kernel,
    get_flexsn_inference_kernel,
)
from .triton_helpers import helper_source

__all__ = [
    "build_inference_final_state_kernel",
    "build_inference_final_state_kernel_for_spec",
    "build_inference_kernel",
    "build_inference_kernel_for_spec",
    "build_inference_kernels_for_spec",
    "build_training_kernels",
    "build_training_kernels_for_spec",
    "check_example_inputs",
    "core_source",
    "normalize_requires_grad",
]

STEP_FN = "flexsn_step"
FORWARD_STEP_FN = "flexsn_step_forward"
BACKWARD_STEP_FN = "flexsn_step_backward"


def core_source(lowered: LoweredCore) -> str:
    """The ``core_str`` for a template: the helpers the function calls, then the function."""
    interpreter = interpreter_enabled()
    helpers = [helper_source(name, interpreter) for name in sorted(lowered.helpers)]
    return "\n\n".join([*helpers, lowered.source])


def check_example_inputs(
    example_inputs: Sequence[torch.Tensor] | None, num_inputs: int, num_states: int
) -> None:
    """Validate ``example_inputs`` (``[*inputs, *states]``).

    The kernels are traced with fake tensors (a core is element-wise, so shapes do not
    matter); example inputs are only checked to be floating-point tensors.
    """
    if example_inputs is None:
        return
    if not isinstance(example_inputs, (tuple, list)) or len(example_inputs) != (
        num_inputs + num_states
    ):
        raise ValueError(
            f"example_inputs must be a tuple of num_inputs + num_states = "
            f"{num_inputs + num_states} tensors, got {example_inputs!r:.80}"
        )
    for index, example in enumerate(example_inputs):
        if not isinstance(example, torch.Tensor) or not example.is_floating_point():
            raise TypeError(
                f"example_inputs[{index}] must be a floating-point tensor (FlexSN inputs and "
                f"states are float16, bfloat16 or float32), got {example!r:.80}"
            )


def normalize_requires_grad(
    requires_grad: Sequence[bool] | None, num_inputs: int, num_states: int
) -> tuple[bool, ...]:
    """One flag per core argument; ``None`` means every input and state."""
    count = num_inputs + num_states
    if requires_grad is None:
        return (True,) * count
    flags = tuple(requires_grad)
    if len(flags) != count or not all(isinstance(f, bool) for f in flags):
        raise ValueError(
            f"requires_grad must be a tuple of num_inputs + num_states = {count} bools, "
            f"got {requires_grad!r}"
        )
    return flags


def _lower(
    spec: CoreSpec,
    gm: torch.fx.GraphModule,
    fn_name: str,
    kind: str,
    round_nodes: frozenset | None = None,
) -> str:
    lowered = lower_graph(
        gm, fn_name, core_name=spec.name, graph_kind=kind, round_nodes=round_nodes
    )
    return core_source(lowered)


def _reread_values(gm: torch.fx.GraphModule, spec: CoreSpec) -> frozenset:
    """The forward graph's values the backward pass reads back from memory (stored in
    the input dtype): every saved value except the input sequences, which are re-read
    as they were loaded."""
    output = next(node for node in gm.graph.nodes if node.op == "output")
    saved = output.args[0][spec.num_results :]
    inputs = [node for node in gm.graph.nodes if node.op == "placeholder"][: spec.num_inputs]
    return frozenset(node for node in saved if node not in inputs)


def _inference_source(spec: CoreSpec) -> tuple[str, FlexSNInfo]:
    gm = rename_inference_graph(trace_inference_graph(spec), spec)
    info = extract_info(gm, spec.num_inputs, spec.num_states, spec.num_outputs)
    return _lower(spec, gm, STEP_FN, "inference"), info


def build_inference_kernel_for_spec(spec: CoreSpec) -> tuple[object, FlexSNInfo]:
    """:func:`build_inference_kernel` for an already captured core."""
    core_str, info = _inference_source(spec)
    return get_flexsn_inference_kernel(core_str, STEP_FN, info), info


def build_inference_final_state_kernel_for_spec(spec: CoreSpec) -> tuple[object, FlexSNInfo]:
    """:func:`build_inference_final_state_kernel` for an already captured core."""
    core_str, info = _inference_source(spec)
    return get_flexsn_inference_final_state_kernel(core_str, STEP_FN, info), info


def build_inference_kernels_for_spec(
    spec: CoreSpec,
) -> tuple[tuple[object, FlexSNInfo], tuple[object, FlexSNInfo]]:
    """Both inference kernels from one trace: ``((kernel, info), (final_state_kernel, info))``."""
    core_str, info = _inference_source(spec)
    return (
        (get_flexsn_inference_kernel(core_str, STEP_FN, info), info),
        (get_flexsn_inference_final_state_kernel(core_str, STEP_FN, info), info),
    )


def build_training_kernels_for_spec(
    spec: CoreSpec, requires_grad: Sequence[bool]
) -> tuple[object, object, FlexSNInfo]:
    """:func:`build_training_kernels` for an already captured core."""
    graphs = partition_joint_graph(trace_joint_graph(spec, requires_grad))
    info = extract_info(graphs.fwd_gm, spec.num_inputs, spec.num_states, spec.num_outputs)
    forward_str = _lower(
        spec, graphs.fwd_gm, FORWARD_STEP_FN, "forward", _reread_values(graphs.fwd_gm, spec)
    )
    forward = get_flexsn_forward_kernel(forward_str, FORWARD_STEP_FN, info)
    backward = get_flexsn_backward_kernel(
        _lower(spec, graphs.bwd_gm, BACKWARD_STEP_FN, "backward"), BACKWARD_STEP_FN, info
    )
    return forward, backward, info


def build_inference_kernel(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
) -> tuple[object, FlexSNInfo]:
    """Build the single-launch inference kernel of ``core_fn``.

    Args:
        core_fn: ``(*inputs, *states) -> (*outputs, *new_states)``, element-wise.
        num_inputs, num_states, num_outputs: its signature.
        example_inputs: optional ``[*inputs, *states]`` (checked only; see
            :func:`check_example_inputs`).

    Returns:
        ``(kernel, info)`` for :func:`sj_flexsn.wrapper.flexsn_inference`.
    """
    check_example_inputs(example_inputs, num_inputs, num_states)
    spec = make_core_spec(core_fn, num_inputs, num_states, num_outputs)
    return build_inference_kernel_for_spec(spec)


def build_inference_final_state_kernel(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
) -> tuple[object, FlexSNInfo]:
    """Build the inference kernel that returns output sequences and final states.

    Returns:
        ``(kernel, info)`` for :func:`sj_flexsn.wrapper.flexsn_inference_final_state`.
    """
    check_example_inputs(example_inputs, num_inputs, num_states)
    spec = make_core_spec(core_fn, num_inputs, num_states, num_outputs)
    return build_inference_final_state_kernel_for_spec(spec)


def build_training_kernels(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    requires_grad: tuple[bool, ...] | None = None,
) -> tuple[object, object, FlexSNInfo]:
    """Build the forward and backward kernels for training (BPTT).

    The forward kernel also writes the per-step intermediates the backward graph needs
    (a minimum cut, see :mod:`sj_flexsn.partition`); the backward kernel runs in
    reverse time. Outputs that are not differentiable (a hard threshold) simply get no
    gradient.

    Args:
        requires_grad: one flag per ``[*inputs, *states]``: whether its gradient is
            built (``None``: all). Captured tensors follow their own ``requires_grad``.

    Returns:
        ``(forward_kernel, backward_kernel, info)`` for
        :func:`~sj_flexsn.wrapper.flexsn_forward` / :func:`~sj_flexsn.wrapper.flexsn_backward`.
    """
    check_example_inputs(example_inputs, num_inputs, num_states)
    flags = normalize_requires_grad(requires_grad, num_inputs, num_states)
    spec = make_core_spec(core_fn, num_inputs, num_states, num_outputs, flags)
    return build_training_kernels_for_spec(spec, flags)
