"""Multi-step neuron kernels against the memory-bandwidth floor (GPU).

For each backend, neuron (every statement of sj-core: IF, LIF, PLIF, QIF, EIF,
Izhikevich), dtype and T, with N neurons per step, prints inference and forward+backward
times, effective bandwidth, and the percentage of the floor: the time a device-to-device
copy of the same number of bytes takes, measured in the same run. Bytes per element per
step: inference 2 x dtype (read x, write spike); forward+backward 6 x dtype (read x, write
spike, write H; read grad_spike, read H, write grad_x), plus 1 x dtype for a neuron whose
backward reads the input too (PLIF with decay_input: its 1/tau gradient is taken from X).

    python benchmarks/bench_neurons.py                     # triton + torch loop
    python benchmarks/bench_neurons.py --backends triton cupy flexsn torch
    python benchmarks/bench_neurons.py --sweep             # launch variants (triton)

Results go to stdout as a markdown table (and to --json if given).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

NEURONS = ("if", "lif", "plif", "qif", "eif", "izhikevich")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Each neuron's float parameters (the modules' defaults); flags are set to True.
PARAMS = {
    "if": {},
    "lif": {"tau": 2.0},
    "plif": {},
    "qif": {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": 0.0},
    "eif": {"tau": 2.0, "delta_T": 1.0, "theta_rh": 0.8, "v_rest": 0.0},
    "izhikevich": {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": -0.1, "a": 0.0, "b": 0.0,
                   "tau_w": 2.0},
}  # fmt: skip


@dataclass
class Row:
    backend: str
    neuron: str
    dtype: str
    T: int
    N: int
    mode: str  # "inference eager", "inference graph", "fwd+bwd eager", "fwd+bwd graph"
    ms: float
    gbps: float
    floor_pct: float


def bench_ms(fn: Callable[[], object], warmup: int = 10, reps: int = 50) -> float:
    """Median time of ``fn`` in milliseconds, timed with CUDA events."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=reps, return_mode="median"))


def copy_bandwidth(n_bytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus written."""
    src = torch.randn(n_bytes // 4, device="cuda")
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src), warmup=10, reps=100)
    return 2 * n_bytes / (ms * 1e-3)


def _surrogate():
    from sj_core.surrogate import Sigmoid

    return Sigmoid()


def make_operator(backend: str, neuron: str) -> Callable:
    """The operator-contract function ``(x_seq, *states, *tensors) -> outputs`` to time."""
    from sj_core.neuron.statements import FLAG, STATEMENTS

    kwargs = dict(v_threshold=1.0, v_reset=0.0, detach_reset=False, surrogate_function=_surrogate())
    kwargs.update(PARAMS[neuron])
    kwargs.update({flag: True for flag in STATEMENTS[neuron].names(FLAG)})
    if backend == "flexsn":
        return make_flexsn_lif(kwargs) if neuron == "lif" else None
    from sj_core import backends

    op = backends.get_operator(backend, f"{neuron}.multi_step")

    def run(x_seq, *tensors):
        return op(x_seq, *tensors, store_v_seq=False, **kwargs)

    return run


def bytes_per_element_step(neuron: str) -> int:
    """Elements moved per neuron and step by forward+backward (in units of the dtype)."""
    from sj_core.neuron.statements import STATEMENTS, flag_settings, kernel_equations

    statement = STATEMENTS[neuron]
    flags = {name: True for name in flag_settings(statement)[0]}
    reads = kernel_equations(statement, flags, hard_reset=True).backward_reads
    return 6 + ("x" in reads)


def make_flexsn_lif(kwargs: dict) -> Callable | None:
    """FlexSN kernel for a LIF core equivalent to LIFNode(tau=2, hard reset at 0)."""
    try:
        from sj_core.neuron.flexsn import FlexSNKernel
    except ImportError:
        return None
    surrogate = kwargs["surrogate_function"]

    def lif_core(x, v):
        h = v + (x - v) / 2.0
        s = surrogate(h - 1.0)
        return s, s * 0.0 + (1.0 - s) * h

    kernel = FlexSNKernel(lif_core, num_inputs=1, num_states=1, num_outputs=1)

    def run(x_seq, v_init):
        # final_state: like the hand-written kernels without store_v_seq, no [T, N] v_seq.
        spike_seq, v_last = kernel.kernel.final_state(x_seq, v_init)
        return spike_seq, v_last, None

    return run


def measure(
    backend: str, neuron: str, dtype: torch.dtype, T: int, N: int, bw: float, graphs: bool = True
) -> list[Row]:
    op = make_operator(backend, neuron)
    if op is None:
        return []
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand((T, N), device="cuda", generator=gen).mul_(1.5).to(dtype)
    states = [torch.zeros(N, device="cuda", dtype=dtype)]
    if neuron == "izhikevich":
        states.append(torch.zeros(N, device="cuda", dtype=dtype))
    tensors = (torch.tensor([0.5], device="cuda"),) if neuron == "plif" else ()
    element = torch.finfo(dtype).bits // 8
    rows = []

    def infer():
        with torch.no_grad():
            return op(x, *states, *tensors)

    xg = x.clone().requires_grad_()
    grad = torch.rand_like(x)
    extra = tuple(t.clone().requires_grad_() for t in tensors)

    def train():
        spike_seq = op(xg, *states, *extra)[0]
        return torch.autograd.grad(spike_seq, (xg, *extra), grad)

    training_bytes = bytes_per_element_step(neuron)
    for mode, fn, per_element in (("inference", infer, 2), ("fwd+bwd", train, training_bytes)):
        n_bytes = per_element * element * T * N
        timings = [("eager", bench_ms(fn, reps=30 if backend == "torch" else 100))]
        if graphs and backend != "torch":
            timings.append(("graph", bench_ms(graphed(fn), reps=100)))
        for how, ms in timings:
            gbps = n_bytes / (ms * 1e-3) / 1e9
            floor_pct = 100.0 * (n_bytes / bw) / (ms * 1e-3)
            rows.append(
                Row(backend, neuron, _name(dtype), T, N, f"{mode} {how}", ms, gbps, floor_pct)
            )
    return rows


def graphed(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` captured once in a CUDA graph; the returned callable replays it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up (compilation, allocator) outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


def sweep(N: int, bw: float, dtypes: list[str], Ts: list[int]) -> None:
    """Try (BLOCK, num_warps, prefetch) variants of the Triton kernels on LIF (graph timing)."""
    from sj_triton.neuron_kernel import kernel_op, launch_config

    original = kernel_op.block_config, launch_config.PREFETCH
    print("| dtype | BLOCK | warps | prefetch | T | inference % | fwd+bwd % |")
    print("|---|---|---|---|---|---|---|")
    for dtype in dtypes:
        for block, warps in ((1024, 4), (1024, 8), (2048, 8)):
            for prefetch in (False, True):
                kernel_op.block_config = lambda ncl, training=False, b=block, w=warps: (b, w)
                launch_config.PREFETCH = prefetch
                for T in Ts:
                    rows = measure("triton", "lif", DTYPES[dtype], T, N, bw)
                    inf, train = (r for r in rows if r.mode.endswith("graph"))
                    print(
                        f"| {dtype} | {block} | {warps} | {prefetch} | {T} | "
                        f"{inf.floor_pct:.1f} | {train.floor_pct:.1f} |",
                        flush=True,
                    )
    kernel_op.block_config, launch_config.PREFETCH = original
    sweep_recompute(N, bw, dtypes, Ts)


def sweep_recompute(N: int, bw: float, dtypes: list[str], Ts: list[int]) -> None:
    """The backward that recomputes ``H`` from ``X`` (``launch_config.RECOMPUTE_MAX_T``)
    against the one that reads the saved ``H``: LIF and PLIF fwd+bwd, graph timing, as %
    of the usual 24-byte floor (above 100%: faster than any kernel that saves ``H``)."""
    from sj_triton.neuron_kernel import launch_config

    print()
    print("| neuron | dtype | T | saves H: fwd+bwd % | recomputes H: fwd+bwd % | speed-up |")
    print("|---|---|---|---|---|---|")
    for neuron in ("lif", "plif"):
        for dtype in dtypes:
            for T in (t for t in Ts if t <= launch_config.MAX_RECOMPUTE_T):
                percent = []
                for max_t in (0, launch_config.MAX_RECOMPUTE_T):
                    with launch_config.recompute_short_sequences(max_t):
                        rows = measure("triton", neuron, DTYPES[dtype], T, N, bw)
                    percent.append(next(r for r in rows if r.mode == "fwd+bwd graph").floor_pct)
                print(
                    f"| {neuron} | {dtype} | {T} | {percent[0]:.1f} | {percent[1]:.1f} | "
                    f"{percent[1] / percent[0]:.2f}x |",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["triton", "torch"])
    parser.add_argument("--neurons", nargs="+", default=list(NEURONS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES))
    parser.add_argument("--T", nargs="+", type=int, default=[4, 8, 64])
    parser.add_argument("--N", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_neurons needs a CUDA device", file=sys.stderr)
        return 2

    import triton

    bw = copy_bandwidth()
    print(
        f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; "
        f"triton {triton.__version__}; python {platform.python_version()}"
    )
    print(f"copy bandwidth (read+write): {bw / 1e12:.3f} TB/s; N = {args.N} neurons per step\n")
    if args.sweep:
        sweep(args.N, bw, args.dtypes, args.T)
        return 0

    rows: list[Row] = []
    print("| backend | neuron | dtype | T | mode | time (ms) | GB/s | % of floor |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backends:
        for neuron in args.neurons:
            for dtype_name in args.dtypes:
                for T in args.T:
                    if backend == "torch" and T == 64 and dtype_name != "fp32":
                        continue  # the torch loop is the slow baseline; one dtype is enough
                    try:
                        new = measure(backend, neuron, DTYPES[dtype_name], T, args.N, bw)
                    except Exception as exc:  # report and go on with the other rows
                        print(
                            f"| {backend} | {neuron} | {dtype_name} | {T} | error: "
                            f"{type(exc).__name__}: {str(exc)[:120]} | | | |"
                        )
                        continue
                    for r in new:
                        print(
                            f"| {r.backend} | {r.neuron} | {r.dtype} | {r.T} | {r.mode} | "
                            f"{r.ms:.3f} | {r.gbps:.0f} | {r.floor_pct:.1f} |",
                            flush=True,
                        )
                    rows += new
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"copy_bandwidth": bw, "rows": [asdict(r) for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
