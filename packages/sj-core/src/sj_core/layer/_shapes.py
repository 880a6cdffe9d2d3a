"""Input checks shared by the step-mode-aware layers."""

from __future__ import annotations

import torch

__all__ = ["check_multi_step_input"]


def check_multi_step_input(
    module: torch.nn.Module,
    x: torch.Tensor,
    *,
    min_dim: int,
    max_dim: int | None,
    layout: str,
) -> None:
    """Raise ``ValueError`` naming ``layout`` unless ``x`` has an accepted rank.

    Catches the common mistake of feeding one step (``[N, *]``) to a layer in step mode
    ``'m'``, which would otherwise silently treat the batch as time.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__} expects a tensor, got {type(x).__name__}")
    if x.dim() < min_dim or (max_dim is not None and x.dim() > max_dim):
        raise ValueError(
            f"{type(module).__name__} in step_mode 'm' expects an input of shape {layout}, "
            f"got shape {tuple(x.shape)}"
        )
