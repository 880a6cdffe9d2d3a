"""Multi-step IF neuron on Triton: ``H[t] = V[t-1] + X[t]``."""

from __future__ import annotations

from torch import Tensor

from .. import operators

__all__ = ["multistep_if"]


def multistep_if(
    x_seq: Tensor,
    v_init: Tensor,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
    store_v_seq: bool = True,
) -> tuple[Tensor, Tensor]:
    """Multi-step IF neuron forward (reference-system signature).

    Args:
        x_seq: input ``[T, N, *]`` (CUDA; float32, float16 or bfloat16).
        v_init: initial membrane potential ``[N, *]``.
        v_threshold: threshold voltage.
        v_reset: reset voltage, or ``None`` for soft reset.
        detach_reset: detach the reset from the graph in backward.
        surrogate_function: a :class:`sj_core.surrogate.SurrogateFunctionBase`.
        store_v_seq: return every step's potential (default) or only the last.

    Returns:
        ``(spike_seq, v_seq)``, both ``[T, N, *]``; ``v_seq`` holds the post-reset
        potentials. With ``store_v_seq=False``: ``(spike_seq, v_last)``, ``v_last``
        shaped like ``v_init``.

    Example::

        >>> spike_seq, v_seq = multistep_if(x_seq, torch.zeros_like(x_seq[0]), 1.0, 0.0,
        ...                                 False, surrogate.Sigmoid())
    """
    spike_seq, v_last, v_seq = operators.if_multi_step(
        x_seq,
        v_init,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_seq if store_v_seq else v_last
