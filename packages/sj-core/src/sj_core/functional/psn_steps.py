"""Pure per-step functions of the PSN family (re-exported by
:mod:`sj_core.functional.neuron`). They depend on torch alone, so the PSN modules can use
them while :mod:`sj_core.functional` is still being imported.

The recent inputs travel as a tuple ``queue`` of flattened steps ``[N*]``, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["masked_psn_step", "sliding_psn_step"]

SurrogateFunction = Callable[[torch.Tensor], torch.Tensor]


def _push(queue: tuple[torch.Tensor, ...], x: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """``queue`` with the flattened ``x`` appended, keeping the last ``k`` entries."""
    queue = (*queue, x.flatten())
    return queue[1:] if len(queue) > k else queue


def sliding_psn_step(
    x: torch.Tensor,
    queue: tuple[torch.Tensor, ...],
    weight: torch.Tensor,
    bias: torch.Tensor,
    surrogate_function: SurrogateFunction,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One sliding-PSN step: ``H = sum_i W_i X[t - k + 1 + i] + B`` over the last
    ``k = weight.numel()`` inputs (``queue`` holds the previous ones, flattened).
    Returns ``(spike [N, *], queue_next)``."""
    k = weight.numel()
    queue = _push(tuple(queue), x, k)
    h = torch.sum(weight[k - len(queue) :][:, None] * torch.stack(queue), 0)
    return surrogate_function(h + bias).view(x.shape), queue


def masked_psn_step(
    x: torch.Tensor,
    time_step: int,
    queue: tuple[torch.Tensor, ...],
    masked_weight: torch.Tensor,
    bias: torch.Tensor,
    k: int,
    surrogate_function: SurrogateFunction,
) -> tuple[torch.Tensor, int, tuple[torch.Tensor, ...]]:
    """One masked-PSN step at step index ``time_step``: row ``time_step`` of the
    ``[T, T]`` ``masked_weight`` over the last ``k`` inputs, plus ``bias[time_step]``.
    Returns ``(spike [N, *], time_step + 1, queue_next)``."""
    if not 0 <= time_step < masked_weight.shape[0]:
        raise OverflowError(
            f"masked_psn_step: time_step {time_step} is outside the {masked_weight.shape[0]} "
            "steps of masked_weight"
        )
    queue = _push(tuple(queue), x, k)
    row = masked_weight[time_step, time_step + 1 - len(queue) : time_step + 1]
    h = torch.sum(row[:, None] * torch.stack(queue), 0)
    return surrogate_function(h + bias[time_step]).view(x.shape), time_step + 1, queue
