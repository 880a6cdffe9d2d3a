"""Small helpers the NIR tests share: seeded inputs, and one inference call of a network
that leaves it reset for the next."""

from __future__ import annotations

import torch
from torch import nn

from sj_core import functional


def seeded_rand(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """``torch.rand(*shape) * scale`` from a generator seeded with ``seed``."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def run_and_reset(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` without autograd, then ``reset_net(net)``."""
    with torch.no_grad():
        out = net(x)
    functional.reset_net(net)
    return out
