"""Operator keys: the calling convention every backend implements.

A neuron module asks the registry for ``(backend, operator key)`` and calls the function
it gets back. The key fixes the signature, so a third-party backend only needs to
implement these functions. Shapes: ``x_seq`` is ``[T, *S]`` (``S`` the per-step shape,
any rank), ``v_init`` and every state are ``[*S]``; all tensors share dtype and device,
except PLIF's ``r_tau``, which keeps its parameter's dtype (float32 when the input is
float16/bfloat16).

Multi-step neuron operators (``<neuron>.multi_step``) take keyword arguments after the
first tensors and return ``(spike_seq, v_last, v_seq)``: ``spike_seq`` is ``[T, *S]``,
``v_last`` the membrane potential after the last step ``[*S]``, and ``v_seq`` the
post-reset potentials ``[T, *S]`` when ``store_v_seq`` is true, else ``None``. Gradients
must flow to ``x_seq``, ``v_init`` (and ``r_tau`` for PLIF) through every output.
``T == 0`` returns an empty ``spike_seq`` and ``v_last`` equal to ``v_init``.

Single-step operators (``<neuron>.single_step``) take one step ``x`` ``[*S]`` and
``v`` ``[*S]`` and return ``(spike, v_new)``.

The ``flexsn`` operator builds a kernel object for a user-defined neuron (see
:mod:`sj_core.neuron.flexsn`).

A backend that cannot run a configuration (surrogate, dtype, device, ``spiking=False``)
raises ``NotImplementedError`` before doing any work, naming what it does support.
"""

from __future__ import annotations

__all__ = ["OPERATORS", "multi_step_key", "single_step_key"]

_COMMON = "v_threshold: float, v_reset: float | None, detach_reset: bool, surrogate_function"

OPERATORS: dict[str, str] = {
    "if.multi_step": f"(x_seq, v_init, *, {_COMMON}, store_v_seq: bool)"
    " -> (spike_seq, v_last, v_seq | None)",
    "lif.multi_step": f"(x_seq, v_init, *, tau: float, decay_input: bool, {_COMMON},"
    " store_v_seq: bool) -> (spike_seq, v_last, v_seq | None)",
    "plif.multi_step": f"(x_seq, v_init, r_tau: Tensor[1], *, decay_input: bool, {_COMMON},"
    " store_v_seq: bool) -> (spike_seq, v_last, v_seq | None)",
    "qif.multi_step": f"(x_seq, v_init, *, tau: float, v_c: float, a0: float, v_rest: float,"
    f" {_COMMON}, store_v_seq: bool) -> (spike_seq, v_last, v_seq | None)",
    "eif.multi_step": f"(x_seq, v_init, *, tau: float, delta_T: float, theta_rh: float,"
    f" v_rest: float, {_COMMON}, store_v_seq: bool) -> (spike_seq, v_last, v_seq | None)",
    "izhikevich.multi_step": "(x_seq, v_init, w_init, *, tau: float, v_c: float, a0: float,"
    " v_rest: float, a: float, b: float, tau_w: float, "
    f"{_COMMON}, store_v_seq: bool) -> (spike_seq, v_last, w_last, v_seq | None)",
    "if.single_step": f"(x, v, *, {_COMMON}) -> (spike, v_new)",
    "lif.single_step": f"(x, v, *, tau: float, decay_input: bool, {_COMMON}) -> (spike, v_new)",
    "flexsn": "(core, num_inputs, num_states, num_outputs, example_inputs, requires_grad,"
    " backend) -> kernel callable (*input_seqs, *init_states) -> (*output_seqs, *states)",
}


def multi_step_key(neuron: str) -> str:
    """``"lif"`` -> ``"lif.multi_step"``."""
    return f"{neuron}.multi_step"


def single_step_key(neuron: str) -> str:
    """``"lif"`` -> ``"lif.single_step"``."""
    return f"{neuron}.single_step"
