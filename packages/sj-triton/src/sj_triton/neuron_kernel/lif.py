"""Multi-step LIF neuron on Triton.

``decay_input``: ``H = V + (X - (V - V_r)) / tau``; otherwise ``H = V - (V - V_r) / tau + X``.
"""

from __future__ import annotations

from torch import Tensor

from .. import operators

__all__ = ["multistep_lif"]


def multistep_lif(
    x_seq: Tensor,
    v_init: Tensor,
    decay_input: bool,
    tau: float,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
    store_v_seq: bool = True,
) -> tuple[Tensor, Tensor]:
    """Multi-step LIF neuron forward (reference-system signature).

    Args:
        x_seq: input ``[T, N, *]`` (CUDA; float32, float16 or bfloat16).
        v_init: initial membrane potential ``[N, *]``.
        decay_input: whether the input is divided by ``tau`` too.
        tau: membrane time constant (> 1).
        v_threshold, v_reset, detach_reset, surrogate_function: as in
            :func:`~sj_triton.neuron_kernel.integrate_and_fire.multistep_if`.
        store_v_seq: return every step's potential (default) or only the last.

    Returns:
        ``(spike_seq, v_seq)``, both ``[T, N, *]``. With ``store_v_seq=False``:
        ``(spike_seq, v_last)``, ``v_last`` shaped like ``v_init``.
    """
    spike_seq, v_last, v_seq = operators.lif_multi_step(
        x_seq,
        v_init,
        tau=tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_seq if store_v_seq else v_last
