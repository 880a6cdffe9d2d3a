"""Operator keys: the calling convention every backend implements.

A neuron module asks the registry for ``(backend, operator key)`` and calls the function
it gets back. The key fixes the signature, so a third-party backend only needs to
implement these functions. Every neuron's keys and signatures follow from its statement
(:mod:`sj_core.neuron.statements`): its states are the positional tensors after the
input, then its tensor parameters, then keyword arguments. Shapes: ``x_seq`` is
``[T, *S]`` (``S`` the per-step shape, any rank), every state ``[*S]``; all tensors
share dtype and device, except tensor parameters (PLIF's ``r_tau``), which keep their
own dtype (float32 when the input is float16/bfloat16).

Multi-step neuron operators (``<neuron>.multi_step``) return ``(spike_seq,
*final_states, v_seq)``: ``spike_seq`` is ``[T, *S]``, each final state ``[*S]``, and
``v_seq`` the post-reset potentials ``[T, *S]`` when ``store_v_seq`` is true, else
``None``. Gradients must flow to ``x_seq``, the initial states and the tensor parameters
through every output. ``T == 0`` returns an empty ``spike_seq`` and the initial states.

Single-step operators (``<neuron>.single_step``) take one step ``x`` ``[*S]`` and the
states and return ``(spike, *new_states)``.

The ``flexsn`` operator builds a kernel object for a user-defined neuron (see
:mod:`sj_core.neuron.flexsn`).

A backend that cannot run an input or configuration (surrogate, dtype, device,
``spiking=False``) raises :class:`~sj_core.backends.UnsupportedByBackendError` before
doing any work, naming what it does support.
"""

from __future__ import annotations

from ..neuron.statements import FLAG, FLOAT, STATEMENTS, TENSOR, NeuronStatement

__all__ = ["OPERATORS"]

_COMMON = "v_threshold: float, v_reset: float | None, detach_reset: bool, surrogate_function"


def _signatures(statement: NeuronStatement) -> dict[str, str]:
    states = [f"{s}_init" for s in statement.states]
    tensors = [f"{name}: Tensor[1]" for name in statement.names(TENSOR)]
    keywords = [f"{name}: float" for name in statement.names(FLOAT)]
    keywords += [f"{name}: bool" for name in statement.names(FLAG)]
    head = ", ".join(["x_seq", *states, *tensors, "*", *keywords, _COMMON])
    finals = ", ".join(f"{s}_last" for s in statement.states)
    step_head = ", ".join(["x", *statement.states, *tensors, "*", *keywords, _COMMON])
    news = ", ".join(f"{s}_new" for s in statement.states)
    return {
        f"{statement.name}.multi_step": (
            f"({head}, store_v_seq: bool) -> (spike_seq, {finals}, v_seq | None)"
        ),
        f"{statement.name}.single_step": f"({step_head}) -> (spike, {news})",
    }


#: Operator key -> signature, for every neuron of :data:`~sj_core.neuron.statements.STATEMENTS`
#: and the ``flexsn`` factory.
OPERATORS: dict[str, str] = {
    key: signature
    for statement in STATEMENTS.values()
    for key, signature in _signatures(statement).items()
}
OPERATORS["flexsn"] = (
    "(core, num_inputs, num_states, num_outputs, example_inputs, requires_grad,"
    " backend) -> kernel callable (*input_seqs, *init_states) -> (*output_seqs, *states)"
)
