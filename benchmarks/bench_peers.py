"""A multi-step LIF layer: our backends against other libraries on the same GPU, one run.

Every contender runs the same neuron as a user would: a module called on ``x_seq`` of
shape ``[T, N]``, reset before each call, LIF with tau = 2 (``decay_input``), threshold
1, hard reset to 0, a sigmoid surrogate.

- ``sj-triton``, ``sj-cupy``, ``sj-flexsn`` (a FlexSN kernel of the same LIF core),
  ``sj-torch``: ``sj_core.neuron.LIFNode(step_mode="m", backend=...)``;
- ``torch.compile``: a plain PyTorch loop over T, compiled (inductor);
- ``snntorch``: ``snntorch.Leaky(beta=0.5, reset_mechanism="zero")`` stepped over T, the
  input scaled by 0.5 so that it is the same LIF (with snnTorch's default ``reset_delay``
  its reset lands one step later, so the spikes differ a little; the work per step is
  the same);
- ``spikingjelly-cuda``, ``spikingjelly-triton``: SpikingJelly's ``LIFNode`` in
  multi-step mode, with ``SJ_LIF_CUDA_IMPLEMENTATION`` set to each of its CUDA paths
  (each in its own process: the variable is read when SpikingJelly is imported).

A contender that is not importable is left out, and one that fails is reported with its
error. Each peer runs in its own process (a failed CUDA-graph capture can leave the CUDA
context unusable for whatever runs after it in the same process), and after a failed
capture its later graph timings are skipped. The JSON is rewritten after each contender,
so a run cut short keeps what it measured. Times are medians (CUDA events,
``triton.testing.do_bench``), "eager" for one call and "graph" for the same call
captured in a CUDA graph and replayed; the floor is the time a device-to-device copy of
the layer's bytes takes (inference: read X, write S; forward+backward: also write H,
read dS and H, write dX), measured in the same run.

    python benchmarks/bench_peers.py --json peers.json --png peers.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_neurons import DTYPES, bench_ms, copy_bandwidth, graphed
from snntorch_lif import snntorch_lif

OURS = ("sj-triton", "sj-cupy", "sj-flexsn", "sj-torch")
PEERS = ("spikingjelly-cuda", "spikingjelly-triton", "snntorch", "torch.compile")
BYTES = {"inference": 2, "fwd+bwd": 6}  # per element and step, in units of the dtype


@dataclass
class PeerRow:
    contender: str
    dtype: str
    T: int
    N: int
    mode: str  # "inference eager", "inference graph", "fwd+bwd eager", "fwd+bwd graph"
    ms: float | None
    floor_pct: float | None
    error: str = ""


def _sj_core_layer(backend: str) -> Callable[[torch.Tensor], torch.Tensor]:
    from sj_core.neuron import LIFNode
    from sj_core.surrogate import Sigmoid

    node = LIFNode(tau=2.0, surrogate_function=Sigmoid(), step_mode="m", backend=backend)

    def layer(x_seq):
        node.reset()
        return node(x_seq)

    return layer


def _flexsn_layer() -> Callable[[torch.Tensor], torch.Tensor]:
    from sj_core.neuron.flexsn import FlexSN
    from sj_core.surrogate import Sigmoid

    surrogate = Sigmoid()

    def lif_core(x, v):
        h = v + (x - v) / 2.0
        s = surrogate(h - 1.0)
        return s, (1.0 - s) * h

    node = FlexSN(lif_core, num_inputs=1, num_states=1, num_outputs=1, backend="triton")

    def layer(x_seq):
        node.reset()
        return node(x_seq)

    return layer


def _compiled_loop() -> Callable[[torch.Tensor], torch.Tensor]:
    def lif_loop(x_seq):
        v = torch.zeros_like(x_seq[0])
        spikes = []
        for t in range(x_seq.shape[0]):
            h = v + (x_seq[t] - v) / 2.0
            s = _SigmoidSpike.apply(h - 1.0)
            v = h * (1.0 - s)
            spikes.append(s)
        return torch.stack(spikes)

    return torch.compile(lif_loop)


class _SigmoidSpike(torch.autograd.Function):
    """Heaviside forward, sigmoid(4x)' backward: the surrogate of the other contenders."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(4.0 * x)
        return grad * 4.0 * s * (1.0 - s)


def _snntorch_layer() -> Callable[[torch.Tensor], torch.Tensor]:
    return snntorch_lif("cuda")


def _spikingjelly_layer() -> Callable[[torch.Tensor], torch.Tensor]:
    from spikingjelly.activation_based import neuron, surrogate

    node = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(), step_mode="m")

    def layer(x_seq):
        node.reset()
        return node(x_seq)

    return layer


def make_layer(contender: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if contender == "sj-flexsn":
        return _flexsn_layer()
    if contender.startswith("sj-"):
        return _sj_core_layer(contender.removeprefix("sj-"))
    if contender == "torch.compile":
        return _compiled_loop()
    if contender == "snntorch":
        return _snntorch_layer()
    if contender.startswith("spikingjelly-"):
        return _spikingjelly_layer()
    raise ValueError(f"unknown contender {contender!r}; known: {OURS + PEERS}")


#: Contenders whose CUDA-graph capture failed in this process.
_CAPTURE_FAILED: set[str] = set()


def measure(contender: str, dtype: str, T: int, N: int, bw: float) -> list[PeerRow]:
    """The four timings of one contender at one (dtype, T)."""
    layer = make_layer(contender)
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand((T, N), device="cuda", generator=gen).mul_(1.5).to(DTYPES[dtype])
    xg = x.clone().requires_grad_()
    grad = torch.rand_like(x)

    def infer():
        with torch.no_grad():
            return layer(x)

    def train():
        return torch.autograd.grad(layer(xg), xg, grad)

    slow = contender in ("sj-torch", "snntorch")
    rows = []
    for mode, fn in (("inference", infer), ("fwd+bwd", train)):
        n_bytes = BYTES[mode] * x.element_size() * T * N
        for how in ("eager", "graph"):
            if how == "graph" and contender in _CAPTURE_FAILED:
                error = "skipped: an earlier CUDA-graph capture of this contender failed"
                rows.append(PeerRow(contender, dtype, T, N, f"{mode} {how}", None, None, error))
                continue
            try:
                timed = graphed(fn) if how == "graph" else fn
                ms = bench_ms(timed, reps=20 if slow else 100)
                floor_pct = 100 * n_bytes / bw / ms * 1e3
                rows.append(PeerRow(contender, dtype, T, N, f"{mode} {how}", ms, floor_pct))
            except Exception as exc:  # a peer that cannot be captured, say: report, go on
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                rows.append(PeerRow(contender, dtype, T, N, f"{mode} {how}", None, None, error))
                if how == "graph":
                    _CAPTURE_FAILED.add(contender)
                torch.cuda.synchronize()
    return rows


def _in_subprocess(contender: str, args: argparse.Namespace) -> list[PeerRow]:
    """Run one peer in a fresh process (SpikingJelly with its implementation variable)."""
    env = dict(os.environ)
    if contender.startswith("spikingjelly-"):
        env["SJ_LIF_CUDA_IMPLEMENTATION"] = contender.removeprefix("spikingjelly-")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, __file__, "--contenders", contender, "--json", str(out),
                   "--dtypes", *args.dtypes, "--T", *map(str, args.T), "--N", str(args.N),
                   "--bandwidth", str(args.bandwidth), "--in-subprocess"]  # fmt: skip
        try:
            subprocess.run(command, env=env, check=True, timeout=args.subprocess_timeout)
            return [PeerRow(**row) for row in json.loads(out.read_text())["rows"]]
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            kept = []
            if out.exists():  # what it measured before it failed or ran out of time
                kept = [PeerRow(**row) for row in json.loads(out.read_text())["rows"]]
            return kept + [PeerRow(contender, d, 0, args.N, "all", None, None, repr(exc)[:200])
                           for d in args.dtypes]  # fmt: skip


def _importable(contender: str) -> bool:
    import importlib.util

    module = {"snntorch": "snntorch", "sj-triton": "sj_triton", "sj-cupy": "sj_cupy",
              "sj-flexsn": "sj_flexsn"}.get(contender)  # fmt: skip
    if contender.startswith("spikingjelly-"):
        module = "spikingjelly"
    return module is None or importlib.util.find_spec(module) is not None


def render(results: dict) -> str:
    """Markdown: one table per mode, a row per (dtype, T), a column per contender."""
    rows = [PeerRow(**r) for r in results["rows"]]
    contenders = [c for c in OURS + PEERS if any(r.contender == c for r in rows)]
    lines = []
    for mode in ("inference graph", "fwd+bwd graph", "inference eager", "fwd+bwd eager"):
        cells = {(r.contender, r.dtype, r.T): r for r in rows if r.mode == mode}
        if not cells:
            continue
        lines += [f"#### {mode}", "", "| dtype | T | " + " | ".join(contenders) + " |",
                  "|---|---|" + "---|" * len(contenders)]  # fmt: skip
        for dtype, T in sorted({(d, t) for _, d, t in cells}, key=lambda k: (k[0], k[1])):
            values = []
            for c in contenders:
                r = cells.get((c, dtype, T))
                if r is None:
                    values.append("-")
                elif r.ms is None:
                    values.append("failed")
                else:
                    values.append(f"{r.ms:.3f} ms ({r.floor_pct:.0f}%)")
            lines.append(f"| {dtype} | {T} | " + " | ".join(values) + " |")
        lines.append("")
    failures = sorted({(r.contender, r.mode, r.error) for r in rows if r.error})
    if failures:
        lines += ["Failures:", ""] + [f"- {c}, {m}: {e}" for c, m, e in failures] + [""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """Time against T (log-log), one line per contender, one panel per mode (fp32)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [PeerRow(**r) for r in results["rows"] if r["ms"] is not None]
    modes = ("inference graph", "fwd+bwd graph", "inference eager", "fwd+bwd eager")
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), sharey=False)
    for ax, mode in zip(axes, modes, strict=True):
        for contender in OURS + PEERS:
            mine = (r for r in rows if (r.contender, r.mode, r.dtype) == (contender, mode, "fp32"))
            points = sorted((r.T, r.ms) for r in mine)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=contender)
        ax.set(xscale="log", yscale="log", xlabel="T (steps)", title=f"LIF fp32, {mode}")
        ax.set_xticks(sorted({r.T for r in rows}), labels=map(str, sorted({r.T for r in rows})))
    axes[0].set_ylabel(f"time (ms), N = {rows[0].N if rows else 0} neurons")
    axes[-1].legend(fontsize=8)
    fig.suptitle(results.get("device", ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", nargs="+", default=list(OURS + PEERS))
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--T", nargs="+", type=int, default=[4, 8, 16, 64])
    parser.add_argument("--N", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--bandwidth", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--subprocess-timeout", type=float, default=300.0)
    parser.add_argument("--render", default=None, help="only render a JSON of an earlier run")
    parser.add_argument("--in-subprocess", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        print(render(results))
        if args.png:
            plot(results, args.png)
        return 0
    if not torch.cuda.is_available():
        print("bench_peers needs a CUDA device", file=sys.stderr)
        return 2
    import triton

    args.bandwidth = args.bandwidth or copy_bandwidth()
    device = (f"{torch.cuda.get_device_name()}; torch {torch.__version__}; triton "
              f"{triton.__version__}; python {platform.python_version()}")  # fmt: skip
    print(device, flush=True)
    rows: list[PeerRow] = []
    subprocess_mode = args.in_subprocess
    results = {"device": device, "copy_bandwidth": args.bandwidth, "rows": []}

    def save() -> None:
        results["rows"] = [asdict(r) for r in rows]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))

    for contender in args.contenders:
        if not _importable(contender):
            print(f"{contender}: not importable, left out", flush=True)
            continue
        if contender in PEERS and not subprocess_mode:
            rows += _in_subprocess(contender, args)
            save()
            continue
        for dtype in args.dtypes:
            if contender == "torch.compile" and dtype != "fp32":
                continue  # each (T, mode) compiles anew: one dtype keeps the run short
            for T in args.T:
                try:
                    new = measure(contender, dtype, T, args.N, args.bandwidth)
                except Exception as exc:  # not constructible on this machine: report
                    error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                    new = [PeerRow(contender, dtype, T, args.N, "all", None, None, error)]
                for r in new:
                    shown = f"{r.ms:.3f} ms ({r.floor_pct:.0f}%)" if r.ms else r.error
                    print(f"{r.contender} {r.dtype} T={r.T} {r.mode}: {shown}", flush=True)
                rows += new
                save()
    save()
    if not subprocess_mode:
        print(render(results))
        if args.png:
            try:
                plot(results, args.png)
            except ImportError:
                print("matplotlib is not installed: no figure (render the JSON elsewhere)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
