"""CPU timing of LIFNode multi-step: ``backend='inductor'`` vs ``backend='torch'``.

For T in {8, 32} and a state of 64 x 1024 neurons, times inference (``torch.no_grad``)
and forward+backward: the median (and min) of several runs after warm-up, in
milliseconds, the two backends' runs alternating. The
inductor backend's one-off compilation (first call minus the median; for training the
first forward and backward together) is reported separately. By default Inductor gets a
fresh, empty on-disk cache so that compile times are cold; ``--warm-cache`` keeps the
default cache directory.

Run::

    python benchmarks/cpu_inductor.py [--repeats 20] [--warm-cache]

Prints a markdown table with the machine's details.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per case")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 32], help="values of T")
    parser.add_argument(
        "--shape", type=int, nargs="+", default=[64, 1024], help="per-step state shape"
    )
    parser.add_argument("--warm-cache", action="store_true", help="reuse Inductor's on-disk cache")
    return parser.parse_args()


ARGS = parse_args()
if not ARGS.warm_cache:
    # Must be set before torch is imported: Inductor reads it at import time.
    _cold_cache = tempfile.mkdtemp(prefix="sj_inductor_bench_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _cold_cache
    atexit.register(shutil.rmtree, _cold_cache, ignore_errors=True)

import torch  # noqa: E402

from sj_core.neuron.lif import LIFNode  # noqa: E402

BACKENDS = ("torch", "inductor")


def run_once(node: LIFNode, x_seq: torch.Tensor, train: bool) -> float:
    """Seconds for one forward (and backward) from a fresh state."""
    node.reset()
    start = time.perf_counter()
    if train:
        x = x_seq.detach().requires_grad_()
        spikes = node(x)
        (spikes.sum() + node.v.sum()).backward()
    else:
        with torch.no_grad():
            node(x_seq)
    return time.perf_counter() - start


def measure(T: int, train: bool) -> dict[str, tuple[float, float, float]]:
    """Backend -> (median s, min s, first-call s) for one case.

    The backends' runs alternate, so that load from other processes on the machine
    falls on both alike.
    """
    torch.manual_seed(0)
    x_seq = torch.rand(T, *ARGS.shape) * 1.5
    nodes = {name: LIFNode(tau=2.0, step_mode="m", backend=name) for name in BACKENDS}
    first = {name: run_once(node, x_seq, train) for name, node in nodes.items()}
    for _ in range(ARGS.warmup):
        for node in nodes.values():
            run_once(node, x_seq, train)
    times: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for _ in range(ARGS.repeats):
        for name, node in nodes.items():
            times[name].append(run_once(node, x_seq, train))
    return {
        name: (statistics.median(values), min(values), first[name])
        for name, values in times.items()
    }


def main() -> None:
    load_before = os.getloadavg()[0]
    rows = []
    for T in ARGS.steps:
        for train in (False, True):
            result = measure(T, train)
            torch_median, torch_min, _ = result["torch"]
            ind_median, ind_min, ind_first = result["inductor"]
            rows.append(
                f"| {T} | {'fwd+bwd' if train else 'fwd (no_grad)'} "
                f"| {torch_median * 1e3:.2f} ({torch_min * 1e3:.2f}) "
                f"| {ind_median * 1e3:.2f} ({ind_min * 1e3:.2f}) "
                f"| {torch_median / ind_median:.2f}x | {ind_first - ind_median:.1f} |"
            )
    load_after = os.getloadavg()[0]

    neurons = "x".join(str(n) for n in ARGS.shape)
    print(f"## LIFNode multi-step on CPU: inductor vs torch (state {neurons})\n")
    print(
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"1-min load average {load_before:.1f} before / {load_after:.1f} after"
    )
    print(f"- torch {torch.__version__}, Python {sys.version.split()[0]}, {platform.system()}")
    print(
        f"- median (min) of {ARGS.repeats} alternating runs after {ARGS.warmup} warm-up "
        f"runs; speed-up from medians; compile = first call minus median "
        f"({'warm' if ARGS.warm_cache else 'cold'} Inductor cache)\n"
    )
    print(
        "| T | pass | torch ms median (min) | inductor ms median (min) | speed-up "
        "| inductor compile (s) |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
