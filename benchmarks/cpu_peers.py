"""A multi-step LIF layer on the CPU: the torch backend's fused loop against the per-step
autograd loop it replaces, SpikingJelly 2.0.0 and snnTorch 1.0.0, in one run.

Every contender runs the same neuron as a user would, reset before each call: LIF with
tau = 2 (``decay_input``), threshold 1, hard reset to 0, a sigmoid surrogate (alpha 4),
input ``x_seq`` of shape ``[T, N]``:

- ``sj-torch``: ``sj_core.neuron.LIFNode(step_mode="m")`` (backend ``torch``: the fused
  loop, :mod:`sj_core.fused`);
- ``sj-torch per-step``: the same module inside ``sj_core.fused.disabled()``: the
  per-step autograd loop the torch backend ran before;
- ``spikingjelly``: SpikingJelly's ``LIFNode`` in multi-step mode, backend ``torch``;
- ``snntorch``: ``snntorch.Leaky(beta=0.5, reset_mechanism="zero")`` stepped over T,
  the input scaled by 0.5 so that it is the same LIF (with snnTorch's default
  ``reset_delay`` its reset lands one step later; the work per step is the same);
- ``sj-inductor`` (``--inductor``): ``LIFNode(backend="inductor")``, its one-off compile
  time reported apart.

Forward + backward: ``torch.autograd.grad(layer(x), x, g)``. The contenders run in
turns, round after round (the machine's load then falls on all alike); each round times
each contender a few times and keeps the fastest; the table gives the median over
rounds (and the min). Bytes kept for backward (``benchmarks/kept_bytes.py``): what a
training forward leaves allocated minus what an inference forward does, over
``T * N * 4``.

    python benchmarks/cpu_peers.py [--steps 8 32] [--neurons 65536] [--rounds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kept_bytes import kept_for_backward
from snntorch_lif import snntorch_lif

Layer = Callable[[torch.Tensor], torch.Tensor]


def _sj_core(backend: str, per_step: bool) -> tuple[Layer, Callable[[], None]]:
    from sj_core.fused import disabled
    from sj_core.neuron import LIFNode
    from sj_core.surrogate import Sigmoid

    node = LIFNode(tau=2.0, surrogate_function=Sigmoid(4.0), step_mode="m", backend=backend)

    def layer(x_seq: torch.Tensor) -> torch.Tensor:
        node.reset()
        with disabled() if per_step else contextlib.nullcontext():
            return node(x_seq)

    return layer, node.reset


def _spikingjelly() -> tuple[Layer, Callable[[], None]]:
    from spikingjelly.activation_based import neuron, surrogate

    node = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(4.0), step_mode="m")

    def layer(x_seq: torch.Tensor) -> torch.Tensor:
        node.reset()
        return node(x_seq)

    return layer, node.reset


def _snntorch() -> tuple[Layer, Callable[[], None]]:
    return snntorch_lif("cpu"), lambda: None


def contenders(inductor: bool) -> dict[str, Callable[[], tuple[Layer, Callable[[], None]]]]:
    found = {
        "sj-torch": lambda: _sj_core("torch", per_step=False),
        "sj-torch per-step": lambda: _sj_core("torch", per_step=True),
    }
    if importlib.util.find_spec("spikingjelly") is not None:
        found["spikingjelly"] = _spikingjelly
    if importlib.util.find_spec("snntorch") is not None:
        found["snntorch"] = _snntorch
    if inductor:
        found["sj-inductor"] = lambda: _sj_core("inductor", per_step=False)
    return found


def _fwd_bwd(layer: Layer, x: torch.Tensor, grad: torch.Tensor) -> float:
    start = time.perf_counter()
    torch.autograd.grad(layer(x), x, grad)
    return time.perf_counter() - start


def run(T: int, N: int, rounds: int, per_round: int, inductor: bool) -> list[dict]:
    generator = torch.Generator().manual_seed(T)
    x = (torch.rand(T, N, generator=generator) * 1.5).requires_grad_()
    grad = torch.rand(T, N, generator=generator)
    built = {name: make() for name, make in contenders(inductor).items()}
    compile_s = {}
    for name, (layer, _) in built.items():
        first = _fwd_bwd(layer, x, grad)
        for _ in range(2):
            _fwd_bwd(layer, x, grad)
        if name == "sj-inductor":
            compile_s[name] = first
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, (layer, _) in built.items():
            times[name].append(min(_fwd_bwd(layer, x, grad) for _ in range(per_round)))
    rows = []
    for name, (layer, reset) in built.items():
        kept = kept_for_backward(lambda layer=layer: layer(x), reset, torch.device("cpu"))
        rows.append(
            {
                "contender": name,
                "T": T,
                "N": N,
                "median_ms": statistics.median(times[name]) * 1e3,
                "min_ms": min(times[name]) * 1e3,
                "kept": kept / (T * N * 4),
                "compile_s": compile_s.get(name),
            }
        )
    return rows


def report(rows: list[dict], args: argparse.Namespace) -> str:
    try:
        load = f"{platform.os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        load = "unknown"
    software = [f"torch {torch.__version__}", f"Python {platform.python_version()}"]
    for package in ("spikingjelly", "snntorch"):
        if importlib.util.find_spec(package) is not None:
            software.append(f"{package} {version(package)}")
    lines = [
        f"- **Date:** {datetime.date.today().isoformat()}.",
        f"- **Machine:** {platform.machine()}, {platform.os.cpu_count()} CPUs (torch uses "
        f"{torch.get_num_threads()} threads), 1-minute load average {load} at the end.",
        f"- **Software:** {', '.join(software)}.",
        f"- **Command:** `python benchmarks/cpu_peers.py {' '.join(sys.argv[1:])}`.",
        f"- **Timing:** fwd+bwd, median (min) over {args.rounds} interleaved rounds, each the "
        f"fastest of {args.per_round} calls; ms.",
        "",
        "| contender | T | fwd+bwd ms median (min) | vs spikingjelly | kept / (T N 4 B) |",
        "|---|---|---|---|---|",
    ]
    for T in args.steps:
        at_T = [r for r in rows if r["T"] == T]
        peer = next((r for r in at_T if r["contender"] == "spikingjelly"), None)
        for r in at_T:
            speed = f"{peer['median_ms'] / r['median_ms']:.2f}x" if peer else "-"
            name = r["contender"]
            if r["compile_s"] is not None:
                name += f" (first call {r['compile_s']:.1f} s)"
            lines.append(
                f"| {name} | {T} | {r['median_ms']:.2f} ({r['min_ms']:.2f}) | {speed} | "
                f"{r['kept']:.3f} |"
            )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 32], help="values of T")
    parser.add_argument("--neurons", type=int, default=65536, help="N, neurons per step")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--inductor", action="store_true", help="also time backend='inductor'")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rows = []
    for T in args.steps:
        rows += run(T, args.neurons, args.rounds, args.per_round, args.inductor)
    print(report(rows, args))


if __name__ == "__main__":
    main()
