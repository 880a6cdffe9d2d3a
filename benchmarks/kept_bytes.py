"""Bytes a forward pass keeps for its backward pass, measured from the allocator's side.

Nothing here looks at saved tensors or hooks, so it counts whatever any mechanism keeps
(nested ``saved_tensors_hooks`` apply only the innermost pair, so hooks cannot count what
another pair packed):

* CPU: the profiler's memory events (``profile_memory=True``): every allocation and free
  during the call, summed, is what the call leaves allocated.
* CUDA: ``torch.cuda.memory_allocated()`` before and after the call, and the peak of a
  whole training step (``torch.cuda.max_memory_allocated``).

The bytes kept for backward are what a training forward leaves allocated minus what the
same forward leaves under ``torch.no_grad()`` (its output and the neurons' new states):
the saved activations and autograd's own bookkeeping.

Example::

    >>> kept = kept_for_backward(lambda: net(x_seq), reset=lambda: functional.reset_net(net))
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["allocated_by", "kept_for_backward", "step_peak"]


def allocated_by(function: Callable[[], Any], device: torch.device) -> tuple[int, Any]:
    """``(bytes that function() leaves allocated on device, its result)``.

    Nothing allocated before the call may be freed during it (the profiler cannot size
    such frees): keep references to earlier results until this returns.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        result = function()
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device) - before, result
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = function()
    events = prof.profiler.kineto_results.events()
    return sum(e.nbytes() for e in events if e.name() == "[memory]"), result


def kept_for_backward(
    forward: Callable[[], Any], reset: Callable[[], None], device: torch.device
) -> int:
    """Bytes a training ``forward()`` keeps beyond what the same call keeps without
    autograd; ``reset()`` runs before each (the neurons' states start afresh)."""
    reset()
    inference, out = _no_grad(forward, device)
    reset()
    training, out_train = allocated_by(forward, device)
    del out, out_train
    return training - inference


def _no_grad(forward: Callable[[], Any], device: torch.device) -> tuple[int, Any]:
    with torch.no_grad():
        return allocated_by(forward, device)


def step_peak(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated on a CUDA device during ``step()`` (forward and backward)
    above what was allocated before it."""
    if device.type != "cuda":
        raise ValueError("step_peak measures CUDA devices (the CPU has no peak counter)")
    gc.collect()
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
