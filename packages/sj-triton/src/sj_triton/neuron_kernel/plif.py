"""Multi-step Parametric LIF neuron on Triton (``1/tau`` a learnable tensor)."""

from __future__ import annotations

from torch import Tensor

from .. import operators

__all__ = ["multistep_plif"]


def multistep_plif(
    x_seq: Tensor,
    v_init: Tensor,
    r_tau: Tensor,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
) -> tuple[Tensor, Tensor]:
    """Multi-step Parametric LIF forward (reference-system signature).

    Args:
        x_seq: input ``[T, N, *]`` (CUDA; float32, float16 or bfloat16).
        v_init: initial membrane potential ``[N, *]``.
        r_tau: one-element tensor, ``1/tau = sigmoid(w)``.
        decay_input, v_threshold, v_reset, detach_reset, surrogate_function: as in
            :func:`~sj_triton.neuron_kernel.lif.multistep_lif`.

    Returns:
        ``(spike_seq, v_seq)``, both ``[T, N, *]``.
    """
    spike_seq, _, v_seq = operators.plif_multi_step(
        x_seq,
        v_init,
        r_tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    return spike_seq, v_seq
