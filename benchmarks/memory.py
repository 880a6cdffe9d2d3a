"""Bytes kept for the backward pass by spiking networks: ``compact_spikes()`` off and on,
and the reference system (SpikingJelly 2.0.0, when installed), in one run.

Models (``benchmarks/memory_models.py``): a VGG-style stack of 8 conv-BN-LIF blocks on
32x32 images, the same without batch norm, and a Spikformer-style spiking self-attention
block; batch 32, T in {4, 8, 16}. Contenders:

* ``off``: our modules, ``backend='torch'`` (the fused loop: LIF keeps ``H`` only);
* ``on``: the same forward pass inside ``functional.compact_spikes()``;
* ``per-step``: our modules with the per-step autograd loop (``sj_core.fused.disabled()``),
  what the torch backend kept before the fused loop;
* ``spikingjelly``: the reference system's modules (its torch backend), same structure.

What is measured never depends on how the switch works (``benchmarks/kept_bytes.py``):
the bytes a training forward leaves allocated minus what the same forward leaves without
autograd; on the CPU from the profiler's memory events, on a GPU from
``torch.cuda.memory_allocated`` (plus the peak of a whole training step). From the three
values of T, a least-squares line ``kept(T) = a + b T`` gives the largest T whose
activations fit a budget (``--budget-gib``).

    python benchmarks/memory.py [--device cpu] [--steps 4 8 16] [--json memory.json]

Prints markdown tables with the machine's details.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kept_bytes import kept_for_backward, step_peak
from memory_models import MODELS, build, example_input

from sj_core import functional
from sj_core.fused import disabled

CONTENDERS = ("off", "on", "per-step", "spikingjelly")
MIB = 2.0**20


@dataclass
class Row:
    model: str
    contender: str
    T: int
    batch: int
    kept_bytes: int
    step_peak_bytes: int | None


def _context(contender: str) -> contextlib.AbstractContextManager:
    if contender == "on":
        return functional.compact_spikes()
    if contender == "per-step":
        return disabled()
    return contextlib.nullcontext()


def measure(model: str, contender: str, T: int, batch: int, device: torch.device) -> Row:
    library = "spikingjelly" if contender == "spikingjelly" else "ours"
    net, reset = build(model, library)
    net = net.to(device)
    x_seq = example_input(model, T, batch, device)

    def forward() -> torch.Tensor:
        with _context(contender):
            return net(x_seq)

    kept = kept_for_backward(forward, lambda: reset(net), device)
    peak = None
    if device.type == "cuda":

        def step() -> None:
            reset(net)
            forward().sum().backward()
            net.zero_grad(set_to_none=True)

        step()  # the gradients' own buffers are allocated once, outside the peak
        peak = step_peak(step, device)
    return Row(model, contender, T, batch, kept, peak)


def largest_T(rows: list[Row], budget: float) -> int | None:
    """The largest T whose kept bytes, on the line fitted through ``rows``, fit ``budget``."""
    if len(rows) < 2:
        return None
    ts = [r.T for r in rows]
    ks = [r.kept_bytes for r in rows]
    n = len(ts)
    mean_t, mean_k = sum(ts) / n, sum(ks) / n
    slope = sum((t - mean_t) * (k - mean_k) for t, k in zip(ts, ks, strict=True)) / sum(
        (t - mean_t) ** 2 for t in ts
    )
    intercept = mean_k - slope * mean_t
    return int((budget - intercept) // slope) if slope > 0 else None


def report(rows: list[Row], args: argparse.Namespace, device: torch.device) -> str:
    versions = [f"torch {torch.__version__}", f"Python {platform.python_version()}"]
    if importlib.util.find_spec("spikingjelly") is not None:
        from importlib.metadata import version

        versions.append(f"spikingjelly {version('spikingjelly')}")
    lines = [
        f"- **Date:** {datetime.date.today().isoformat()}.",
        f"- **Device:** {_device_name(device)}; torch threads {torch.get_num_threads()}.",
        f"- **Software:** {', '.join(versions)}.",
        f"- **Command:** `python benchmarks/memory.py {' '.join(sys.argv[1:])}`.",
        "",
        "Bytes kept for backward (MiB); `off/on` is the saving of `compact_spikes()`.",
        "",
    ]
    contenders = [c for c in CONTENDERS if any(r.contender == c for r in rows)]
    header = "| model | T | " + " | ".join(contenders) + " | off/on | spikingjelly/on |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    table = {(r.model, r.contender, r.T): r for r in rows}
    for model in args.models:
        for T in args.steps:
            cells = [
                f"{table[(model, c, T)].kept_bytes / MIB:.1f}" if (model, c, T) in table else "-"
                for c in contenders
            ]
            on = table.get((model, "on", T))
            ratios = [
                f"{table[(model, c, T)].kept_bytes / on.kept_bytes:.2f}x"
                if on is not None and (model, c, T) in table
                else "-"
                for c in ("off", "spikingjelly")
            ]
            lines.append(f"| {model} | {T} | " + " | ".join(cells + ratios) + " |")
    budget = args.budget_gib * 2.0**30
    lines += [
        "",
        f"Largest T whose kept activations fit {args.budget_gib:g} GiB at batch "
        f"{args.batch} (line through T = {', '.join(map(str, args.steps))}):",
        "",
        "| model | " + " | ".join(contenders) + " |",
        "|" + "---|" * (len(contenders) + 1),
    ]
    for model in args.models:
        fits = [
            largest_T([r for r in rows if r.model == model and r.contender == c], budget)
            for c in contenders
        ]
        lines.append(f"| {model} | " + " | ".join(str(f) for f in fits) + " |")
    if device.type == "cuda":
        lines += ["", "Peak of one training step (MiB):", ""]
        lines += ["| model | T | " + " | ".join(contenders) + " |"]
        lines += ["|" + "---|" * (len(contenders) + 2)]
        for model in args.models:
            for T in args.steps:
                cells = [
                    f"{table[(model, c, T)].step_peak_bytes / MIB:.1f}"
                    if (model, c, T) in table
                    else "-"
                    for c in contenders
                ]
                lines.append(f"| {model} | {T} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16], help="values of T")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--budget-gib", type=float, default=16.0)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    contenders = list(args.contenders)
    if "spikingjelly" in contenders and importlib.util.find_spec("spikingjelly") is None:
        print("spikingjelly is not installed: its column is left out", file=sys.stderr)
        contenders.remove("spikingjelly")
    rows: list[Row] = []
    for model in args.models:
        for T in args.steps:
            for contender in contenders:
                row = measure(model, contender, T, args.batch, device)
                print(
                    f"{model} T={T} {contender}: {row.kept_bytes / MIB:.1f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(report(rows, args, device))


if __name__ == "__main__":
    main()
