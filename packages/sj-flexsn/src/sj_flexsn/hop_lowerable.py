"""Experimental: the FlexSN scan through PyTorch's own loop operators.

``flex_sn_scan`` unrolls into ``T`` copies of ``core`` when compiled. These helpers keep
the loop as one PyTorch control-flow node instead, which a compiler may lower as a loop:

* :func:`lowerable_scan` / :func:`lowerable_scan_final_state` use
  ``torch.ops.higher_order.scan`` (through ``torch._higher_order_ops.scan.scan``), which
  supports autograd from torch 2.7 (on older torch, gradients are refused: torch 2.6's
  scan returns outputs cut off from the autograd graph).
* :func:`lowerable_while_loop_scan` / :func:`lowerable_while_loop_scan_final_state` use
  ``torch.ops.higher_order.while_loop``. The body cannot index ``x[t]`` with a Python
  int, so it carries a 0-dim int64 step counter and reads step ``t`` with
  ``index_select``, writing outputs into fixed-shape ``[T, ...]`` buffers with
  ``index_copy`` (an out-of-place copy of each buffer per step in eager mode). Forward
  only: it raises ``NotImplementedError`` when a gradient would be needed (on this torch,
  gradients through ``while_loop`` came out wrong for this body, so none are offered).

Both return exactly what :func:`~sj_flexsn.hop_eager.eager_scan` (and its final-state
form) returns, take the same arguments, and handle ``T == 0`` the same way (templates
required). Outside ``torch.compile`` PyTorch runs these operators by compiling them with
Dynamo on every call, so they are slow in eager mode; they are tools for studying
compiled loops, not the default path. Restrictions of the PyTorch operators apply: each
new state must keep its initial state's shape and dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sj_core.neuron.flexsn_validation import check_core_returns

from .hop_eager import (
    OutputTemplateSpecs,
    check_scan_args,
    empty_scan_results,
    probe_output_template_specs,
    split_scan_args,
)

__all__ = [
    "lowerable_scan",
    "lowerable_scan_available",
    "lowerable_scan_differentiable",
    "lowerable_scan_final_state",
    "lowerable_while_loop_available",
    "lowerable_while_loop_scan",
    "lowerable_while_loop_scan_final_state",
]


def _higher_order_op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.higher_order, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def lowerable_scan_available() -> bool:
    """Whether this torch provides ``torch.ops.higher_order.scan`` and its Python API."""
    try:
        from torch._higher_order_ops.scan import scan  # noqa: F401
    except ImportError:
        return False
    return _higher_order_op_exists("scan")


def lowerable_scan_differentiable() -> bool:
    """Whether this torch's ``scan`` operator has autograd (torch >= 2.7)."""
    if not lowerable_scan_available():
        return False
    from torch._higher_order_ops import scan as scan_module

    # The private class appeared with scan's autograd; the version covers a rename.
    return hasattr(scan_module, "ScanAutogradOp") or _torch_version() >= (2, 8)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def lowerable_while_loop_available() -> bool:
    """Whether this torch provides ``torch.ops.higher_order.while_loop`` and its API."""
    try:
        from torch._higher_order_ops.while_loop import while_loop  # noqa: F401
    except ImportError:
        return False
    return _higher_order_op_exists("while_loop")


def _require(available: bool, name: str, op: str) -> None:
    if not available:
        raise NotImplementedError(
            f"{name} needs torch.ops.higher_order.{op}, which torch {torch.__version__} "
            "does not provide; use eager_scan or flex_sn_scan instead"
        )


def _prepare(
    name: str,
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    flat_args: Sequence[torch.Tensor],
    output_template_specs: OutputTemplateSpecs | None,
    final_state: bool,
) -> tuple[tuple[int, int, int], tuple[torch.Tensor, ...] | None]:
    """Check the arguments; for ``T == 0`` also return the (empty) results."""
    counts = check_scan_args(num_inputs, num_states, num_outputs, flat_args, name)
    if flat_args[0].shape[0] != 0:
        return counts, None
    if output_template_specs is None:
        raise ValueError(
            f"{name} got T == 0 and cannot run core to learn the output shapes: pass "
            "output_template_specs=((shape, dtype), ...) with one item per output"
        )
    return counts, empty_scan_results(*counts, flat_args, output_template_specs, final_state)


def _scan(core_fn, num_inputs, num_states, num_outputs, flat_args, final_state):
    from torch._higher_order_ops.scan import scan

    input_seqs, init_states, lifted = split_scan_args(num_inputs, num_states, flat_args)
    # scan needs at least one carry; a stateless core gets a dummy one.
    carry_init = list(init_states) or [input_seqs[0].new_zeros(())]

    def combine(carry, step_inputs):
        states = carry if num_states else []
        returns = check_core_returns(
            core_fn(*step_inputs, *states, *lifted), num_outputs, num_states
        )
        new_states = list(returns[num_outputs:])
        next_carry = [s.clone() for s in new_states] if num_states else [carry[0].clone()]
        # scan forbids aliasing between its inputs and outputs and among its outputs;
        # the clones are free once compiled.
        ys = [o.clone() for o in returns[:num_outputs]]
        if not final_state:
            ys += [s.clone() for s in new_states]
        return next_carry, ys

    final_carry, ys = scan(combine, carry_init, list(input_seqs))
    if final_state:
        return (*ys, *(final_carry if num_states else ()))
    return tuple(ys)


def lowerable_scan(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    *flat_args: torch.Tensor,
    output_template_specs: OutputTemplateSpecs | None = None,
) -> tuple[torch.Tensor, ...]:
    """:func:`~sj_flexsn.hop_eager.eager_scan` through ``torch.ops.higher_order.scan``.

    Returns ``(*output_seqs, *state_seqs)``, ``[T, ...]`` each.

    Raises:
        NotImplementedError: this torch has no ``scan`` operator, or gradients are needed
            and its ``scan`` has no autograd (torch < 2.7).

    Example::

        >>> spike_seq, v_seq = lowerable_scan(lif_core, 1, 1, 1, x_seq, v_init)
    """
    _require(lowerable_scan_available(), "lowerable_scan", "scan")
    _require_scan_gradients("lowerable_scan", core_fn, flat_args)
    counts, empty = _prepare(
        "lowerable_scan",
        core_fn,
        num_inputs,
        num_states,
        num_outputs,
        flat_args,
        output_template_specs,
        False,
    )
    return empty if empty is not None else _scan(core_fn, *counts, flat_args, False)


def lowerable_scan_final_state(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    *flat_args: torch.Tensor,
    output_template_specs: OutputTemplateSpecs | None = None,
) -> tuple[torch.Tensor, ...]:
    """Like :func:`lowerable_scan`, but returns ``(*output_seqs, *final_states)``."""
    _require(lowerable_scan_available(), "lowerable_scan_final_state", "scan")
    _require_scan_gradients("lowerable_scan_final_state", core_fn, flat_args)
    counts, empty = _prepare(
        "lowerable_scan_final_state",
        core_fn,
        num_inputs,
        num_states,
        num_outputs,
        flat_args,
        output_template_specs,
        True,
    )
    return empty if empty is not None else _scan(core_fn, *counts, flat_args, True)


def _require_scan_gradients(
    name: str, core_fn: Callable, flat_args: Sequence[torch.Tensor]
) -> None:
    if _needs_grad(core_fn, flat_args) and not lowerable_scan_differentiable():
        raise NotImplementedError(
            f"{name}: gradients through torch.ops.higher_order.scan need torch >= 2.7 "
            f"(torch {torch.__version__} would return none); call it under "
            "torch.no_grad(), or use flex_sn_scan for training"
        )


def _forward_only_error(name: str) -> NotImplementedError:
    return NotImplementedError(
        f"{name} is forward-only (inference): call it under torch.no_grad(), or use "
        "flex_sn_scan / lowerable_scan for training"
    )


def _needs_grad(core_fn: Callable, flat_args: Sequence[torch.Tensor]) -> bool:
    if not torch.is_grad_enabled():
        return False
    if any(t.requires_grad for t in flat_args):
        return True
    params = core_fn.parameters() if isinstance(core_fn, torch.nn.Module) else ()
    return any(p.requires_grad for p in params)


def _while_loop_scan(core_fn, num_inputs, num_states, num_outputs, flat_args, final_state):
    from torch._higher_order_ops.while_loop import while_loop

    input_seqs, init_states, lifted = split_scan_args(num_inputs, num_states, flat_args)
    T = input_seqs[0].shape[0]
    specs = probe_output_template_specs(core_fn, num_inputs, num_states, num_outputs, flat_args)
    buffers = [
        torch.empty((T, *shape), dtype=dtype, device=device) for shape, dtype, device in specs
    ]
    if not final_state:
        buffers += [torch.empty((T, *s.shape), dtype=s.dtype, device=s.device) for s in init_states]
    step0 = torch.zeros((), dtype=torch.int64, device=input_seqs[0].device)

    def cond(t, *_carried):
        return t < T

    def body(t, *carried):
        states, bufs = carried[:num_states], carried[num_states:]
        index = t.reshape(1)
        steps = [x.index_select(0, index).squeeze(0) for x in input_seqs]
        returns = check_core_returns(core_fn(*steps, *states, *lifted), num_outputs, num_states)
        new_states = list(returns[num_outputs:])
        written = list(returns[:num_outputs]) + ([] if final_state else new_states)
        new_bufs = [
            b.index_copy(0, index, y.unsqueeze(0)) for b, y in zip(bufs, written, strict=True)
        ]
        # while_loop forbids outputs aliasing its inputs (a state returned unchanged).
        return (t + 1, *(s.clone() for s in new_states), *new_bufs)

    result = while_loop(cond, body, (step0, *init_states, *buffers))
    final_states, bufs = result[1 : 1 + num_states], result[1 + num_states :]
    return (*bufs[:num_outputs], *final_states) if final_state else tuple(bufs)


def _while_loop_entry(name, core_fn, ni, ns, no, flat_args, specs, final_state):
    _require(lowerable_while_loop_available(), name, "while_loop")
    counts, empty = _prepare(name, core_fn, ni, ns, no, flat_args, specs, final_state)
    if empty is not None:
        return empty
    if _needs_grad(core_fn, flat_args):
        raise _forward_only_error(name)
    results = _while_loop_scan(core_fn, *counts, flat_args, final_state)
    # A tensor captured by a closure cannot be seen before running; while_loop's
    # gradients are not trustworthy, so refuse rather than return them.
    if any(r.requires_grad for r in results):
        raise _forward_only_error(name)
    return results


def lowerable_while_loop_scan(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    *flat_args: torch.Tensor,
    output_template_specs: OutputTemplateSpecs | None = None,
) -> tuple[torch.Tensor, ...]:
    """:func:`~sj_flexsn.hop_eager.eager_scan` through ``torch.ops.higher_order.while_loop``
    (forward only).

    Returns ``(*output_seqs, *state_seqs)``, ``[T, ...]`` each.

    Raises:
        NotImplementedError: this torch has no ``while_loop`` operator, or a gradient
            would be needed (grad mode on and an argument or ``core`` parameter requires
            grad).

    Example::

        >>> with torch.no_grad():
        ...     spike_seq, v_seq = lowerable_while_loop_scan(lif_core, 1, 1, 1, x_seq, v_init)
    """
    return _while_loop_entry(
        "lowerable_while_loop_scan",
        core_fn,
        num_inputs,
        num_states,
        num_outputs,
        flat_args,
        output_template_specs,
        False,
    )


def lowerable_while_loop_scan_final_state(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    *flat_args: torch.Tensor,
    output_template_specs: OutputTemplateSpecs | None = None,
) -> tuple[torch.Tensor, ...]:
    """Like :func:`lowerable_while_loop_scan`, but returns ``(*output_seqs, *final_states)``."""
    return _while_loop_entry(
        "lowerable_while_loop_scan_final_state",
        core_fn,
        num_inputs,
        num_states,
        num_outputs,
        flat_args,
        output_template_specs,
        True,
    )
