"""The ``torch`` backend's multi-step operators: the fused loop where it applies, the
per-step reference loop everywhere else.

:func:`fused_multistep` has the signature of :func:`sj_core.reference.multistep` and the
same results (forward bitwise, gradients within rounding). It runs the fused
:class:`~.function.FusedMultiStep` when it can, and the reference loop, unchanged, when

* the surrogate is not a spiking :class:`~sj_core.surrogate.SurrogateFunctionBase` with
  the base class's forward (``spiking=False`` outputs the primitive, which the recurrences
  of SPEC section 5 do not describe; a custom callable's gradient is unknown here);
* something traces the call (``torch.compile``, ``make_fx``, fake tensors, ``torch.func``
  transforms, tensor subclasses): the unrolled per-step loop is what compilers fuse;
* the states do not share the input's dtype and device, or ``T == 0``;
* inside :func:`disabled` (for a backward pass with ``create_graph=True``).

Without autograd (inference, or nothing requires a gradient) the fused forward loop runs
alone and keeps nothing.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .. import reference
from ..functional.compact_registry import heaviside_surrogate
from ..kernels.kernel_op import is_traced_call
from ..neuron.statements import EIF, IF, IZHIKEVICH, LIF, PLIF, QIF, NeuronStatement
from .config import FusedConfig
from .forward import forward_loop
from .function import FusedMultiStep

__all__ = [
    "disabled",
    "fused_multistep",
    "multistep_eif",
    "multistep_if",
    "multistep_izhikevich",
    "multistep_lif",
    "multistep_plif",
    "multistep_qif",
]

_STATE = threading.local()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block (in this thread) the ``torch`` backend runs the per-step
    autograd loop of :mod:`sj_core.reference` instead of the fused loop: slower and more
    memory, but differentiable twice (``create_graph=True``).

    Example::

        >>> with sj_core.fused.disabled():
        ...     loss = net(x_seq).sum()
        >>> (g,) = torch.autograd.grad(loss, x_seq, create_graph=True)
    """
    depth = getattr(_STATE, "depth", 0)
    _STATE.depth = depth + 1
    try:
        yield
    finally:
        _STATE.depth = depth


def _is_disabled() -> bool:
    return getattr(_STATE, "depth", 0) > 0


def _fusable(x_seq: torch.Tensor, states, surrogate_function: Any) -> bool:
    if not heaviside_surrogate(surrogate_function):
        return False
    if x_seq.shape[0] == 0 or not x_seq.is_floating_point():
        return False
    for state in states:
        if state.dtype != x_seq.dtype or state.device != x_seq.device:
            return False
    return not is_traced_call([x_seq, *states])


def fused_multistep(
    statement: NeuronStatement,
    x_seq: torch.Tensor,
    *tensors: torch.Tensor,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
    store_v_seq: bool = False,
    **params: Any,
) -> tuple[torch.Tensor | None, ...]:
    """``T`` steps of ``statement``: ``(spike_seq [T, *S], *final_states [*S],
    v_seq [T, *S] | None)``, as :func:`sj_core.reference.multistep` (same arguments).

    Example::

        >>> from sj_core.neuron.statements import LIF
        >>> spike_seq, v_last, v_seq = fused_multistep(
        ...     LIF, torch.rand(8, 32, requires_grad=True), torch.zeros(32), tau=2.0,
        ...     decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
        ...     surrogate_function=Sigmoid())
    """
    arguments = {
        "v_threshold": v_threshold,
        "v_reset": v_reset,
        "detach_reset": detach_reset,
        "surrogate_function": surrogate_function,
        "store_v_seq": store_v_seq,
    }
    if torch.compiler.is_compiling() or _is_disabled():
        return reference.multistep(statement, x_seq, *tensors, **arguments, **params)
    params, v_threshold, v_reset = statement.validate(params, v_threshold, v_reset)
    states, parameters = reference.split_operator_tensors(statement, x_seq, tensors)
    if not _fusable(x_seq, states, surrogate_function):
        arguments.update(v_threshold=v_threshold, v_reset=v_reset)
        return reference.multistep(statement, x_seq, *tensors, **arguments, **params)
    if not isinstance(detach_reset, bool) or not isinstance(store_v_seq, bool):
        raise TypeError("detach_reset and store_v_seq must be bools")
    config = FusedConfig(
        statement=statement,
        params=params,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        store_v_seq=store_v_seq,
        surrogate_gradient=surrogate_function.surrogate_gradient,
        surrogate_params=tuple(surrogate_function.params),
    )
    inputs = (x_seq, *states, *parameters)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return FusedMultiStep.apply(config, *inputs)
    spike_seq, finals, v_seq, _ = forward_loop(config, x_seq, states, parameters, keep_h=False)
    return (spike_seq, *finals, v_seq)


def _operator(statement: NeuronStatement) -> Callable[..., tuple]:
    return statement.operator_function(
        functools.partial(fused_multistep, statement),
        name=f"multistep_{statement.name}",
        module=__name__,
        doc=f"{statement.title} neuron over ``T`` steps (operator "
        f"``{statement.operator_key}`` of the ``torch`` backend): :func:`fused_multistep` "
        f"of :data:`sj_core.neuron.statements.{statement.name.upper()}`.",
    )


multistep_if = _operator(IF)
multistep_lif = _operator(LIF)
multistep_plif = _operator(PLIF)
multistep_qif = _operator(QIF)
multistep_eif = _operator(EIF)
multistep_izhikevich = _operator(IZHIKEVICH)
