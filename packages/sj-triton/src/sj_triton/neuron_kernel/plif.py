"""Multi-step Parametric LIF neuron on Triton (``1/tau`` a learnable tensor)."""

from __future__ import annotations

from torch import Tensor

from .common import run_multistep
from .kernels import PLIF

__all__ = ["plif_multi_step", "multistep_plif"]


def plif_multi_step(
    x_seq: Tensor,
    v_init: Tensor,
    r_tau: Tensor,
    *,
    decay_input: bool,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
    store_v_seq: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Operator ``plif.multi_step`` (see :mod:`sj_core.backends.operators`).

    ``r_tau`` is a one-element tensor ``1/tau`` on ``x_seq``'s device; its gradient is
    the sum over every neuron and step, reduced on the device.
    """
    if r_tau.numel() != 1:
        raise ValueError(f"r_tau must have one element, got shape {tuple(r_tau.shape)}")
    if r_tau.device != x_seq.device:
        raise ValueError(f"r_tau is on {r_tau.device}, x_seq on {x_seq.device}")
    return run_multistep(
        PLIF,
        x_seq,
        v_init,
        r_tau.reshape(1),
        r_tau_value=0.0,  # read from r_tau inside the kernel: no host sync
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


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
    spike_seq, _, v_seq = plif_multi_step(
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
