"""Multi-step IF neuron on Triton: ``H[t] = V[t-1] + X[t]``."""

from __future__ import annotations

from torch import Tensor

from .common import run_multistep
from .kernels import IF

__all__ = ["if_multi_step", "multistep_if"]


def if_multi_step(
    x_seq: Tensor,
    v_init: Tensor,
    *,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
    store_v_seq: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Operator ``if.multi_step`` (see :mod:`sj_core.backends.operators`).

    Shapes: ``x_seq`` ``[T, *S]``, ``v_init`` ``[*S]``; returns
    ``(spike_seq [T, *S], v_last [*S], v_seq [T, *S] | None)``.
    """
    return run_multistep(
        IF,
        x_seq,
        v_init,
        None,
        r_tau_value=1.0,
        decay_input=False,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )


def multistep_if(
    x_seq: Tensor,
    v_init: Tensor,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
) -> tuple[Tensor, Tensor]:
    """Multi-step IF neuron forward (reference-system signature).

    Args:
        x_seq: input ``[T, N, *]`` (CUDA; float32, float16 or bfloat16).
        v_init: initial membrane potential ``[N, *]``.
        v_threshold: threshold voltage.
        v_reset: reset voltage, or ``None`` for soft reset.
        detach_reset: detach the reset from the graph in backward.
        surrogate_function: a :class:`sj_core.surrogate.SurrogateFunctionBase`.

    Returns:
        ``(spike_seq, v_seq)``, both ``[T, N, *]``; ``v_seq`` holds the post-reset
        potentials.

    Example::

        >>> spike_seq, v_seq = multistep_if(x_seq, torch.zeros_like(x_seq[0]), 1.0, 0.0,
        ...                                 False, surrogate.Sigmoid())
    """
    spike_seq, _, v_seq = if_multi_step(
        x_seq,
        v_init,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    return spike_seq, v_seq
