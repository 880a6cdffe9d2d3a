"""The networks of ``benchmarks/memory.py``, built from ours or from the reference system's
modules (SpikingJelly 2.0.0) with the same structure and the same neuron settings
(LIF, ``tau=2``, hard reset to 0, sigmoid surrogate, multi-step).

* ``vgg``: 8 x (3x3 conv -> BN -> LIF), widths 32-32-64-64-128-128-256-256, 2x2 max
  pooling after the 2nd, 4th and 6th block, then a linear classifier; input
  ``[T, B, 3, 32, 32]`` (the image repeated over T).
* ``vgg-nobn``: the same without batch norm.
* ``attention``: a Spikformer-style spiking self-attention block on ``[T, B, 64 tokens,
  256]``: an input LIF, then Q, K, V = LIF(BN(Linear(x))), ``(Q K^T) V`` per head (8
  heads, the matmuls on views of the spikes), an attention LIF (threshold 0.5), and the
  projection LIF(BN(Linear(.))).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import nn

__all__ = ["MODELS", "build", "example_input", "library"]

MODELS = ("vgg", "vgg-nobn", "attention")
WIDTHS = (32, 32, 64, 64, 128, 128, 256, 256)
POOL_AFTER = (1, 3, 5)
TOKENS, DIM, HEADS = 64, 256, 8


def library(name: str) -> SimpleNamespace:
    """The modules of ``"ours"`` or ``"spikingjelly"``: ``layer``, ``lif(v_threshold)``,
    ``set_step_mode(net)``, ``reset(net)``."""
    if name == "ours":
        from sj_core import functional, layer, neuron
        from sj_core.surrogate import Sigmoid
    elif name == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron
        from spikingjelly.activation_based.surrogate import Sigmoid
    else:
        raise ValueError(f"library must be 'ours' or 'spikingjelly', got {name!r}")

    def lif(v_threshold: float = 1.0) -> nn.Module:
        return neuron.LIFNode(
            tau=2.0, v_threshold=v_threshold, surrogate_function=Sigmoid(), step_mode="m"
        )

    return SimpleNamespace(
        layer=layer,
        lif=lif,
        set_step_mode=lambda net: functional.set_step_mode(net, "m"),
        reset=functional.reset_net,
    )


def _vgg(lib: SimpleNamespace, batch_norm: bool) -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for i, width in enumerate(WIDTHS):
        layers.append(lib.layer.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(lib.layer.BatchNorm2d(width))
        layers.append(lib.lif())
        if i in POOL_AFTER:
            layers.append(lib.layer.MaxPool2d(2))
        channels = width
    layers += [lib.layer.Flatten(), lib.layer.Linear(WIDTHS[-1] * 4 * 4, 10)]
    return nn.Sequential(*layers)


class _LinearBNLIF(nn.Module):
    """LIF(BN(Linear(x))) on ``[T, B, N, C]``, BN over C (the tokens fold into the batch)."""

    def __init__(self, lib: SimpleNamespace, v_threshold: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(DIM, DIM)
        self.norm = nn.BatchNorm1d(DIM)
        self.lif = lib.lif(v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        y = self.norm(y.flatten(0, 2)).view(y.shape)
        return self.lif(y)


class _SpikingSelfAttention(nn.Module):
    def __init__(self, lib: SimpleNamespace) -> None:
        super().__init__()
        self.input_lif = lib.lif()
        self.q, self.k, self.v = (_LinearBNLIF(lib) for _ in range(3))
        self.attention_lif = lib.lif(0.5)
        self.projection = _LinearBNLIF(lib)
        self.scale = 0.125

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        x = self.input_lif(x_seq)  # spikes [T, B, N, C]
        T, B, N, C = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # [T, B, H, N, d], a view
            return t.reshape(T, B, N, HEADS, C // HEADS).transpose(2, 3)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        y = (q @ k.transpose(-2, -1)) @ v * self.scale
        y = self.attention_lif(y.transpose(2, 3).reshape(T, B, N, C))
        return self.projection(y)


def build(model: str, library_name: str) -> tuple[nn.Module, Callable[[nn.Module], None]]:
    """``(network in step mode 'm', reset function)``."""
    lib = library(library_name)
    torch.manual_seed(0)
    if model == "vgg":
        net = _vgg(lib, batch_norm=True)
    elif model == "vgg-nobn":
        net = _vgg(lib, batch_norm=False)
    elif model == "attention":
        net = _SpikingSelfAttention(lib)
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    lib.set_step_mode(net)
    return net, lib.reset


def example_input(model: str, T: int, batch: int, device: torch.device) -> torch.Tensor:
    """The input of ``model``: ``[T, B, 3, 32, 32]`` images or ``[T, B, N, C]`` tokens."""
    generator = torch.Generator().manual_seed(T)
    if model == "attention":
        x = torch.rand(batch, TOKENS, DIM, generator=generator) * 2.0
    else:
        x = torch.rand(batch, 3, 32, 32, generator=generator) * 2.0
    return x.unsqueeze(0).repeat(T, *([1] * x.dim())).to(device)
