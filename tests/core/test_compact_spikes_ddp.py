"""``compact_spikes()`` under ``DistributedDataParallel``: two CPU processes (gloo, on
127.0.0.1), each training the same small spiking network on its half of a batch.

Per rank, one step with the switch and one without, from the same parameters and
inputs: the averaged gradients must be bitwise equal, and spikes must have been packed
(the packed count is recorded, so the equality cannot hold vacuously). Across ranks the
averaged gradients must be identical (DDP's all-reduce saw the same bits).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo_exit import exit_without_finalization
from torch import nn

from sj_core import functional, layer, neuron
from sj_core.functional import compact

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("needs torch.distributed with the gloo backend", allow_module_level=True)

WORLD_SIZE = 2
T, BATCH = 4, 4  # BATCH per rank


def _network() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1),
        layer.BatchNorm2d(4),
        neuron.LIFNode(),
        layer.Flatten(),
        layer.Linear(4 * 5 * 5, 3),
        neuron.LIFNode(),
    )
    functional.set_step_mode(net, "m")
    return net


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:
        torch.set_num_threads(1)
        packed = []
        original = compact._pack

        def counting(tensor):
            result = original(tensor)
            if isinstance(result, compact._PackedSpikes):
                packed.append(result.bits.numel())
            return result

        compact._pack = counting
        generator = torch.Generator().manual_seed(100 + rank)
        x_seq = torch.rand(T, BATCH, 2, 5, 5, generator=generator) * 2
        results = {}
        for on in (False, True):
            model = nn.parallel.DistributedDataParallel(_network())
            functional.reset_net(model)
            with functional.compact_spikes() if on else contextlib.nullcontext():
                out = model(x_seq)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            results[on] = [p.grad for p in model.parameters()]
        grads = torch.cat([g.flatten() for g in results[True]])
        gathered = [torch.empty_like(grads) for _ in range(WORLD_SIZE)]
        dist.all_gather(gathered, grads)
        report = {
            "bitwise_on_off": all(
                torch.equal(a, b) for a, b in zip(results[False], results[True], strict=True)
            ),
            "same_on_every_rank": all(torch.equal(g, gathered[0]) for g in gathered),
            "packed": packed,
            "grad_norm": float(grads.norm()),
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()
    exit_without_finalization()  # the report is written: see gloo_exit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_are_bitwise_equal_with_and_without_the_switch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    for rank in range(WORLD_SIZE):
        report = json.loads(Path(tmp_path, f"rank{rank}.json").read_text())
        assert report["bitwise_on_off"], f"rank {rank}: gradients differ on/off"
        assert report["same_on_every_rank"], f"rank {rank}: ranks disagree"
        assert report["grad_norm"] > 0
        # The linear layer's input: the first LIF's spikes [T, BATCH, 4, 5, 5], at 1 bit.
        assert report["packed"] == [(T * BATCH * 4 * 5 * 5 + 7) // 8]
