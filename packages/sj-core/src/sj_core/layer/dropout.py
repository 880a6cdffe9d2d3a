"""Dropout whose mask is shared across time steps.

In an SNN the same neuron should be dropped at every step of a sequence (otherwise
dropout only adds noise to the spike trains instead of thinning the network), so one
mask of one step's shape is drawn per sequence and applied to every step. As in the
reference system the mask lives until ``reset()`` in both step modes, so a sequence fed
in several multi-step chunks (truncated BPTT) keeps one mask.
"""

from __future__ import annotations

from typing import Any

import torch

from ..base import MemoryModule
from ._shapes import check_multi_step_input

__all__ = ["Dropout"]


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"Dropout p must be a float in [0, 1], got {p!r} ({type(p).__name__})")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"Dropout p must be in [0, 1], got {p}")
    return float(p)


class Dropout(MemoryModule):
    """Zero each element with probability ``p``, the same elements at every time step.

    Kept elements are scaled by ``1 / (1 - p)`` (``p = 1`` zeroes everything). In eval
    mode, and for ``p = 0``, the module is the identity.

    The mask ``[N, *]`` (memory ``mask``) is drawn at the first call after
    :meth:`reset` and reused until the next :meth:`reset`, so call
    :func:`sj_core.functional.reset_net` between sequences.

    * ``'m'``: input ``[T, N, *]``; the mask is applied to every step.
    * ``'s'``: input ``[N, *]``; the mask is applied to each step.

    Args:
        p: drop probability, ``0 <= p <= 1``.
        step_mode: ``'s'`` or ``'m'``.

    Example::

        >>> drop = Dropout(0.5, step_mode="m")
        >>> y = drop(torch.ones(4, 2, 3))        # [T, N, C]
        >>> bool((y == y[0]).all())              # same mask at every step
        True
    """

    def __init__(self, p: float = 0.5, step_mode: str = "s") -> None:
        p = _check_p(p)
        super().__init__()
        self.p = p
        self.register_memory("mask", None)
        self.step_mode = step_mode

    def draw_mask(self, like: torch.Tensor) -> torch.Tensor:
        """A scaled keep-mask shaped, typed and placed like ``like`` (one step)."""
        keep = torch.empty_like(like).bernoulli_(1.0 - self.p)
        # p == 1 keeps nothing: scale by 0, not 1/0, which would turn 0 * inf into NaN.
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        return keep * scale

    def _apply_mask(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str, kwargs: dict
    ) -> tuple[tuple[torch.Tensor], tuple[Any]]:
        if kwargs or len(inputs) != 1:
            raise TypeError("Dropout takes one input tensor and no keyword arguments")
        (x,), (mask,) = inputs, states
        if step_mode == "m":
            check_multi_step_input(self, x, min_dim=2, max_dim=None, layout="[T, N, *]")
        if not self.training or self.p == 0.0:
            return (x,), (mask,)
        step = x[0] if step_mode == "m" else x
        if mask is None:
            mask = self.draw_mask(step)
        elif mask.shape != step.shape:
            raise ValueError(
                f"Dropout mask was drawn for steps of shape {tuple(mask.shape)} at the "
                f"first call after reset(), but this step has shape {tuple(step.shape)}; "
                "call sj_core.functional.reset_net(net) between sequences"
            )
        return (x * (mask if mask.dtype == x.dtype else mask.to(x.dtype)),), (mask,)

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor], tuple[Any]]:
        """``((x * mask,), (mask,))`` for ``x`` ``[N, *]``; a ``None`` mask is drawn
        (in training mode)."""
        return self._apply_mask(inputs, states, "s", kwargs)

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor], tuple[Any]]:
        """``((x_seq * mask,), (mask,))`` for ``x_seq`` ``[T, N, *]``, the same mask at
        every step."""
        return self._apply_mask(inputs, states, "m", kwargs)

    def extra_repr(self) -> str:
        return f"p={self.p}, step_mode={self.step_mode}"
