"""Pure-torch multi-step neuron loops: the reference every kernel backend reproduces.

Each ``multistep_<neuron>`` implements the operator key ``<neuron>.multi_step`` (see
:mod:`sj_core.backends.operators`; they are the ``torch`` backend's operators) as a plain
time loop over the neuron's statement (:mod:`sj_core.neuron.statements`), differentiated
by autograd. Shapes: ``x_seq`` ``[T, *S]``, states ``[*S]``; returns ``(spike_seq
[T, *S], v_last [*S], v_seq [T, *S] | None)`` (Izhikevich, with two states:
``(spike_seq, v_last, w_last, v_seq | None)``). ``T == 0`` returns an empty
``spike_seq`` (attached to ``x_seq``'s graph, so gradients are zeros) and the initial
states as the final ones.

Example::

    >>> x_seq = torch.rand(8, 32)
    >>> spike_seq, v_last, v_seq = multistep_lif(
    ...     x_seq, torch.zeros(32), tau=2.0, decay_input=True, v_threshold=1.0,
    ...     v_reset=0.0, detach_reset=False, surrogate_function=Sigmoid(),
    ...     store_v_seq=True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .neuron.statements import (
    EIF,
    IF,
    IZHIKEVICH,
    LIF,
    PLIF,
    QIF,
    TENSOR,
    NeuronStatement,
    fire_input,
    reset,
)

__all__ = [
    "empty_spikes",
    "multistep",
    "multistep_eif",
    "multistep_if",
    "multistep_izhikevich",
    "multistep_lif",
    "multistep_plif",
    "multistep_qif",
    "neuron_step",
    "split_operator_tensors",
]


def empty_spikes(x_seq: torch.Tensor) -> torch.Tensor:
    """The spikes of a ``T == 0`` call: empty like ``x_seq`` and, when ``x_seq`` needs a
    gradient, attached to it (so ``backward`` gives zeros instead of failing)."""
    return x_seq * 0


def split_operator_tensors(
    statement: NeuronStatement, x_seq: torch.Tensor, tensors: Sequence[Any]
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """``(states, tensor parameters)`` from an operator's positional tensors after
    ``x_seq``, checked: each state one step of ``x_seq``, each tensor one element.

    Raises:
        TypeError: the wrong number of tensors, or something that is not a tensor.
        ValueError: a shape that does not fit.
    """
    names = [f"{s}_init" for s in statement.states] + list(statement.names(TENSOR))
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"x_seq must be a tensor, got {type(x_seq).__name__}")
    if len(tensors) != len(names):
        raise TypeError(
            f"{statement.title} multi-step takes x_seq, {', '.join(names)}; got "
            f"{1 + len(tensors)} tensors"
        )
    for name, tensor in zip(names, tensors, strict=True):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if x_seq.dim() < 1:
        raise ValueError("x_seq must be [T, *S], got a 0-d tensor")
    n = len(statement.states)
    step = tuple(x_seq.shape[1:])
    for name, state in zip(names[:n], tensors[:n], strict=True):
        if tuple(state.shape) != step:
            raise ValueError(
                f"{name} has shape {tuple(state.shape)}, which does not match one step of "
                f"x_seq {step}"
            )
    for name, tensor in zip(names[n:], tensors[n:], strict=True):
        if tensor.numel() != 1:
            raise ValueError(f"{name} must have one element, got shape {tuple(tensor.shape)}")
    return tuple(tensors[:n]), tuple(tensors[n:])


def neuron_step(
    statement: NeuronStatement,
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    tensors: Sequence[torch.Tensor],
    params: Mapping[str, Any],
    *,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One step of ``statement``: ``(spike [*S], new states)`` from ``x`` and the states.

    ``params`` are the float and flag parameters, ``tensors`` the tensor ones (PLIF's
    ``r_tau``): one element each, or one per neuron (any shape that broadcasts to ``x``).
    """
    v_r = 0.0 if v_reset is None else v_reset
    tensors = [t.reshape(()) if t.numel() == 1 else t for t in tensors]
    h = statement.charge(x, *states, *tensors, **params, v_r=v_r)
    adaptation = statement.adaptation
    if adaptation is not None:
        w = adaptation.adapt(h, states[1], **params, v_r=v_r)
    spike = surrogate_function(fire_input(h, v_threshold))
    v = reset(h, spike.detach() if detach_reset else spike, v_threshold, v_reset)
    if adaptation is None:
        return spike, (v,)
    return spike, (v, adaptation.jump(w, spike, **params, v_r=v_r))


def multistep(
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
    """``T`` steps of ``statement`` (the generic form of every ``multistep_*``).

    Args:
        tensors: the initial states (``[*S]`` each), then the tensor parameters.
        params: the statement's float and flag parameters.

    Returns:
        ``(spike_seq, *final_states, v_seq | None)``.
    """
    if not torch.compiler.is_compiling():
        # Checked before compiling (the inductor backend does); a traced loop takes its
        # parameters as they are, symbolic ones (dynamic=True) included.
        params, v_threshold, v_reset = statement.validate(params, v_threshold, v_reset)
    states, parameters = split_operator_tensors(statement, x_seq, tensors)
    spikes: list[torch.Tensor] = []
    v_seq: list[torch.Tensor] = []
    for t in range(x_seq.shape[0]):
        spike, states = neuron_step(
            statement,
            x_seq[t],
            states,
            parameters,
            params,
            v_threshold=v_threshold,
            v_reset=v_reset,
            detach_reset=detach_reset,
            surrogate_function=surrogate_function,
        )
        spikes.append(spike)
        if store_v_seq:
            v_seq.append(states[0])
    spike_seq = torch.stack(spikes) if spikes else empty_spikes(x_seq)
    stored = None
    if store_v_seq:
        stored = torch.stack(v_seq) if v_seq else empty_spikes(x_seq)
    return (spike_seq, *states, stored)


def _operator(statement: NeuronStatement) -> Callable[..., tuple]:
    return statement.operator_function(
        functools.partial(multistep, statement),
        name=f"multistep_{statement.name}",
        module=__name__,
        doc=f"{statement.title} neuron over ``T`` steps (operator "
        f"``{statement.operator_key}``): :func:`multistep` of "
        f":data:`sj_core.neuron.statements.{statement.name.upper()}`.",
    )


multistep_if = _operator(IF)
multistep_lif = _operator(LIF)
multistep_plif = _operator(PLIF)
multistep_qif = _operator(QIF)
multistep_eif = _operator(EIF)
multistep_izhikevich = _operator(IZHIKEVICH)
