"""Bandwidth of the cupy LIF kernels against the copy floor (DESIGN.md "Performance").

The multi-step neuron is memory-bound: forward+backward must move 6 x dtype size bytes per
element per step (read x, write spike and H; read grad_spike and H, write grad_x). The
floor is that many bytes at the bandwidth of a large device-to-device copy measured in the
same run. Target on an H100: fp32, T = 64, N = 4M neurons per step, >= 80% of the floor.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from cupy_cases import require_cuda_and_cupy

from sj_core.surrogate import ATan
from sj_cupy import operators

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _median_ms(function, repeats: int = 10) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _copy_bandwidth() -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    source = torch.empty(1 << 28, device="cuda")
    target = torch.empty_like(source)
    ms = _median_ms(lambda: target.copy_(source))
    return 2 * source.numel() * source.element_size() / (ms * 1e-3)


@pytest.mark.parametrize(
    ("dtype", "T", "target"),
    [(torch.float32, 64, 0.80), (torch.bfloat16, 64, None), (torch.float32, 8, None)],
    ids=["fp32-T64", "bf16-T64", "fp32-T8"],
)
def test_lif_forward_backward_bandwidth(dtype, T, target):
    require_cuda_and_cupy()
    N = 4 * 2**20
    surrogate = ATan()
    x_seq = torch.randn(T, N, device="cuda", dtype=dtype).requires_grad_()
    v_init = torch.zeros(N, device="cuda", dtype=dtype)
    grad_spikes = torch.randn(T, N, device="cuda", dtype=dtype)

    def forward_backward():
        spike_seq, _, _ = operators.lif_multi_step(
            x_seq,
            v_init,
            tau=2.0,
            decay_input=True,
            v_threshold=1.0,
            v_reset=0.0,
            detach_reset=False,
            surrogate_function=surrogate,
        )
        torch.autograd.grad(spike_seq, x_seq, grad_spikes)

    ms = _median_ms(forward_backward)
    floor_ms = 6 * T * N * x_seq.element_size() / _copy_bandwidth() * 1e3
    fraction = floor_ms / ms
    print(
        f"\ncupy LIF {dtype} T={T} N={N}: {ms:.3f} ms, floor {floor_ms:.3f} ms, "
        f"{100 * fraction:.0f}% of the copy floor"
    )
    if target is not None:
        assert fraction >= target, f"{100 * fraction:.0f}% of the floor (target {target:.0%})"
