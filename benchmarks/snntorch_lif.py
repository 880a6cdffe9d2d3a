"""The benchmarks' LIF in snnTorch: ``snntorch.Leaky`` stepped over ``T``.

``Leaky(beta=0.5, reset_mechanism="zero")`` with the input scaled by ``0.5`` is the LIF
the other contenders run (tau = 2 with ``decay_input``, threshold 1, hard reset to 0,
sigmoid surrogate with slope 4). With snnTorch's default ``reset_delay`` its reset lands
one step later, so the spikes differ a little; the work per step is the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def snntorch_lif(device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``x_seq [T, N] -> spike_seq [T, N]`` (fresh membrane state per call)."""
    import snntorch
    from snntorch import surrogate

    leaky = snntorch.Leaky(
        beta=0.5, threshold=1.0, reset_mechanism="zero", spike_grad=surrogate.sigmoid(slope=4)
    ).to(device)

    def layer(x_seq: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x_seq[0])
        spikes = []
        for t in range(x_seq.shape[0]):
            spike, mem = leaky(0.5 * x_seq[t], mem)
            spikes.append(spike)
        return torch.stack(spikes)

    return layer
