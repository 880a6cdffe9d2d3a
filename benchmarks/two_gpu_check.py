"""Two GPUs: data-parallel training with every kernel backend, kernels on a non-current
device, and the scaling of a benchmark network from one GPU to two.

Run it with two processes (``benchmarks/two_gpu_check.sh`` installs the wheels first)::

    torchrun --standalone --nproc_per_node=2 benchmarks/two_gpu_check.py
    torchrun --standalone --nproc_per_node=2 benchmarks/two_gpu_check.py --parts ddp
    torchrun --standalone --nproc_per_node=2 benchmarks/two_gpu_check.py --cpu   # dry run

Three parts, each on both ranks (rank ``r`` makes ``cuda:r`` its current device):

``devices``
    Every neuron kernel (IF, LIF, PLIF, QIF, EIF, Izhikevich on ``triton`` and ``cupy``;
    FlexSN with a LIF core) runs on tensors on the *other* GPU: rank 0 on ``cuda:1``
    while ``cuda:0`` is current, rank 1 the reverse. Spikes, final states and gradients
    (input, PLIF's ``w``) must equal the same computation on the current device, the
    outputs must live on the input's device, the current device must not change, and the
    kernels must run on the input device's *current stream*: the run is repeated with a
    side stream made current on that device, whose input is written only after a long
    ``torch.cuda._sleep`` on that stream, so a kernel on any other stream reads a
    half-written input and gives wrong values.
``ddp``
    ``DistributedDataParallel`` over NCCL trains ``Conv2d -> BatchNorm2d -> neuron ->
    MaxPool2d -> Linear`` (step mode ``'m'``, the convolution and batch norm inside a
    ``SeqToANNContainer``, batch norm converted to ``SyncBatchNorm``) for a few SGD steps
    with ``reset_net`` before each, per backend (``triton``, ``cupy``, ``flexsn``), neuron
    (LIF; PLIF), dtype (fp32; bf16 autocast) and with ``torch.compile`` of the DDP-wrapped
    model. Parameters and batch-norm statistics must be bitwise identical on both ranks
    and equal to one process trained on the whole batch (plain ``BatchNorm2d``), within
    a tolerance relative to the size of the update.
``scaling``
    Training throughput (images/s) of a spiking VGG on random 32x32 images: one GPU
    alone, then two GPUs with DDP at the same batch per GPU.

Results go to ``--out`` (default ``$OUT`` or /tmp/two_gpu_check): ``two_gpu_check.json``
and ``two_gpu_check.txt``, rewritten after each part. The exit status is 1 if a check
failed.

``--cpu`` is a dry run of the same code on two CPU processes with gloo: the ``torch``
backend (add ``triton`` under ``TRITON_INTERPRET=1``), no SyncBatchNorm (torch runs it
only on GPUs), the device checks between CPU and CPU, and a tiny scaling run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sj_core import backends, functional, layer, neuron, surrogate

KERNEL_BACKENDS = ("triton", "cupy", "flexsn")  # flexsn: FlexSN(backend='triton')
NEURONS = ("if", "lif", "plif", "qif", "eif", "izhikevich")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# ||two processes - one process|| / ||update|| of each trained tensor. fp32 allows for
# reassociation (cuDNN algorithms differ with the batch size, SyncBatchNorm merges the
# ranks' statistics); bf16 rounds activations to 8 bits, which flips a few spikes (up to
# 6% measured on the CPU, compiled against eager). A sum of the ranks' gradients instead
# of their mean gives about 1.
TOLERANCE = {"fp32": 1e-3, "bf16": 1e-1}
SLEEP_CYCLES = 100_000_000  # torch.cuda._sleep on the side stream: tens of milliseconds
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass
class Context:
    """This rank's place in the run."""

    rank: int
    world_size: int
    device: torch.device  # this rank's own device (current on a GPU)
    other: torch.device  # the device whose tensors the ``devices`` part launches on
    args: argparse.Namespace

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


# -- neurons and networks ------------------------------------------------------------------


_FLEXSN_SURROGATE = surrogate.Sigmoid(alpha=4.0)


def lif_core(x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of LIF (tau 2, threshold 1, hard reset to 0) for FlexSN."""
    h = v + (x - v) / 2.0
    spike = _FLEXSN_SURROGATE(h - 1.0)
    return spike, h * (1.0 - spike)


def make_node(backend: str, neuron_name: str) -> nn.Module:
    """A multi-step node; ``backend='flexsn'`` is FlexSN with a LIF core (``neuron_name``
    ignored) on the generated Triton kernels."""
    if backend == "flexsn":
        return neuron.FlexSN(lif_core, 1, 1, 1, step_mode="m", backend="triton")
    cls = {
        "if": neuron.IFNode,
        "lif": neuron.LIFNode,
        "plif": neuron.ParametricLIFNode,
        "qif": neuron.QIFNode,
        "eif": neuron.EIFNode,
        "izhikevich": neuron.IzhikevichNode,
    }[neuron_name]
    return cls(step_mode="m", backend=backend)


def backend_skip_reason(backend: str, neuron_name: str = "lif") -> str | None:
    """Why ``backend`` cannot run ``neuron_name`` here, or ``None``."""
    name, key = (
        ("triton", "flexsn") if backend == "flexsn" else (backend, f"{neuron_name}.multi_step")
    )
    try:
        backends.get_operator(name, key)
    except (backends.BackendError, ImportError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_network(backend: str, neuron_name: str, batch_norm: bool) -> nn.Sequential:
    """The ``ddp`` part's network for ``[T, N, 3, 16, 16]`` inputs, seeded."""
    torch.manual_seed(0)
    stem: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        stem.append(nn.BatchNorm2d(8))
    return nn.Sequential(
        layer.SeqToANNContainer(*stem),
        make_node(backend, neuron_name),
        layer.MaxPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(8 * 8 * 8, 10, step_mode="m"),
    )


def spiking_vgg(backend: str, width: int) -> nn.Sequential:
    """A VGG-11-like spiking network for ``[T, N, 3, 32, 32]`` inputs (the benchmark)."""
    plan = [width, width, "M", 2 * width, 2 * width, "M", 4 * width, 4 * width, "M", 8 * width, "M"]
    layers: list[nn.Module] = []
    channels = 3
    for item in plan:
        if item == "M":
            layers.append(layer.MaxPool2d(2, step_mode="m"))
            continue
        conv = nn.Conv2d(channels, int(item), 3, padding=1, bias=False)
        layers += [layer.SeqToANNContainer(conv, nn.BatchNorm2d(int(item)))]
        layers.append(make_node(backend, "lif"))
        channels = int(item)
    layers += [layer.Flatten(step_mode="m"), layer.Linear(channels * 2 * 2, 10, step_mode="m")]
    return nn.Sequential(*layers)


def node_tensors(node: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The node's memories (flattening FlexSN's list of states) and parameter gradients."""
    for name, value in node.named_memories():
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, item in enumerate(values):
            if isinstance(item, torch.Tensor):
                yield f"{name}[{i}]" if len(values) > 1 else name, item
    for name, p in node.named_parameters():
        yield f"grad_{name}", p.grad


# -- part "devices": kernels on a tensor of another device ---------------------------------


def run_node(node: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward and backward of a fresh ``node`` state on ``x``; every result, detached."""
    functional.reset_net(node)
    for p in node.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    spike = node(x)
    spike.backward(grad)
    results = {"spike": spike, "grad_x": x.grad}
    results.update(node_tensors(node))
    return {name: t.detach().clone() for name, t in results.items()}


def compare(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> list[str]:
    """Differences beyond fp32 tolerance, as readable problems (empty: equal)."""
    problems = []
    for name, expected in want.items():
        actual = got.get(name)
        if actual is None or actual.shape != expected.shape:
            problems.append(f"{what}: {name} missing or misshapen")
            continue
        actual, expected = actual.float().cpu(), expected.float().cpu()
        if not torch.allclose(actual, expected, rtol=1e-5, atol=1e-6, equal_nan=True):
            diff = (actual - expected).abs().nan_to_num(float("inf")).max().item()
            problems.append(f"{what}: {name} differs by up to {diff:.3g}")
    return problems


@contextlib.contextmanager
def side_stream_current(device: torch.device, home: torch.device) -> Iterator[None]:
    """Make a new stream the current stream of ``device`` while ``home`` stays current."""
    previous = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device=device)
    side.wait_stream(previous)  # tensors made on the default stream are ready first
    torch.cuda.set_stream(side)  # this also makes ``device`` the current device...
    torch.cuda.set_device(home)  # ...so make ``home`` current again; ``side`` stays
    try:
        if torch.cuda.current_stream(device) != side or torch.cuda.current_device() != home.index:
            raise RuntimeError(f"could not make a side stream current on {device}")
        yield
    finally:
        side.synchronize()
        torch.cuda.set_stream(previous)
        torch.cuda.set_device(home)


def check_other_device(ctx: Context, backend: str, neuron_name: str) -> list[str]:
    """Problems of ``backend``'s ``neuron_name`` kernels on ``ctx.other``'s tensors."""
    generator = torch.Generator().manual_seed(3)
    shape = (8, 3, 333)  # T = 8; an odd per-step size (several blocks, a ragged one)
    x = 1.2 * torch.rand(shape, generator=generator)  # about a third of the steps spike
    grad = torch.randn(shape, generator=generator)
    here = run_node(
        make_node(backend, neuron_name).to(ctx.device), x.to(ctx.device), grad.to(ctx.device)
    )
    node = make_node(backend, neuron_name).to(ctx.other)
    x_other, grad_other = x.to(ctx.other), grad.to(ctx.other)
    there = run_node(node, x_other, grad_other)
    problems = compare(there, here, f"on {ctx.other}")
    problems += [f"{name} is on {t.device}" for name, t in there.items() if t.device != ctx.other]
    if not ctx.cuda:
        return problems
    if torch.cuda.current_device() != ctx.device.index:
        problems.append(f"the current device changed to cuda:{torch.cuda.current_device()}")
    # The input is written on the side stream after a long sleep: a kernel launched on any
    # other stream runs first and reads a half-written input.
    with side_stream_current(ctx.other, ctx.device):
        late = torch.zeros_like(x_other)
        with torch.cuda.device(ctx.other):
            torch.cuda._sleep(SLEEP_CYCLES)
        late.copy_(x_other)
        on_side = run_node(node, late, grad_other)
    return problems + compare(on_side, here, f"on a side stream of {ctx.other}")


def part_devices(ctx: Context) -> list[dict[str, Any]]:
    records = []
    for backend in ctx.args.backends:
        for neuron_name in ["lif"] if backend == "flexsn" else NEURONS:
            record = {
                "part": "devices",
                "rank": ctx.rank,
                "current": str(ctx.device),
                "tensors_on": str(ctx.other),
                "backend": backend,
                "neuron": neuron_name,
            }
            records.append(
                run_check(
                    record,
                    lambda b=backend, n=neuron_name: check_other_device(ctx, b, n),
                    backend_skip_reason(backend, neuron_name),
                )
            )
    return records


# -- part "ddp": one process per device against one process on the whole batch ---------------


def make_batches(ctx: Context) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``--steps`` global batches: inputs ``[T, N, 3, 16, 16]``, labels ``[N]``."""
    generator = torch.Generator().manual_seed(1)
    n = ctx.args.ddp_batch
    return [
        (
            # Scaled so that about a fifth of the neurons fire without batch norm (CPU) too.
            3.0 * torch.randn(4, n, 3, 16, 16, generator=generator).to(ctx.device),
            torch.randint(0, 10, (n,), generator=generator).to(ctx.device),
        )
        for _ in range(ctx.args.steps)
    ]


def train_steps(ctx: Context, model: nn.Module, batches: list, dtype: str, part: slice) -> None:
    """SGD on the ``part`` of every batch, ``reset_net`` before each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x_seq, labels in batches:
        functional.reset_net(model)  # works on the DDP and torch.compile wrappers too
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = model(x_seq[:, part])
        loss = F.cross_entropy(out.float().mean(0), labels[part])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def trained_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and floating buffers (batch-norm statistics), as fp32 copies."""
    state = {name: p.detach().float().clone() for name, p in net.named_parameters()}
    state.update(
        {
            name: b.detach().float().clone()
            for name, b in net.named_buffers()
            if b.is_floating_point()
        }
    )
    return state


def check_ddp(ctx: Context, backend: str, neuron_name: str, dtype: str, compiled: bool) -> dict:
    """Train with DDP and alone; the measurements and problems of one configuration."""
    from torch.nn.parallel import DistributedDataParallel

    sync_bn = ctx.cuda  # torch runs SyncBatchNorm only on GPUs
    batches = make_batches(ctx)
    reference = check_network(backend, neuron_name, batch_norm=sync_bn).to(ctx.device)
    initial = trained_state(reference)
    rates: list[float] = []
    hook = reference[1].register_forward_hook(
        lambda module, inputs, out: rates.append(out.float().mean().item())
    )
    train_steps(ctx, reference, batches, dtype, slice(None))
    hook.remove()
    expected = trained_state(reference)

    net = check_network(backend, neuron_name, batch_norm=sync_bn).to(ctx.device)
    if sync_bn:
        net = layer.convert_sync_batchnorm(net)
    ddp = DistributedDataParallel(net, device_ids=[ctx.device.index] if ctx.cuda else None)
    if compiled:
        torch._dynamo.reset()  # a fresh cache: no recompilation limit across cases
    model = torch.compile(ddp) if compiled else ddp
    half = ctx.args.ddp_batch // ctx.world_size
    train_steps(ctx, model, batches, dtype, slice(ctx.rank * half, (ctx.rank + 1) * half))
    got = trained_state(net)

    flat = torch.cat([t.reshape(-1) for t in got.values()])
    gathered = [torch.empty_like(flat) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, flat)
    # Relative in the L2 norm: in bf16 a flipped spike moves single gradient entries a lot,
    # while a systematic error (a sum instead of a mean, a missed reduction) moves them all.
    errors = {}
    for name, want in expected.items():
        update = (want - initial[name]).norm().item()
        errors[name] = (got[name] - want).norm().item() / max(update, 1e-12)
    worst = max(errors, key=errors.get)
    rate = sum(rates) / len(rates)
    problems = []
    if not all(torch.equal(gathered[0], other) for other in gathered[1:]):
        problems.append("parameters differ between the ranks")
    if errors[worst] > TOLERANCE[dtype]:
        problems.append(
            f"{worst}: error {errors[worst]:.3g} of its update (tol {TOLERANCE[dtype]})"
        )
    problems += [f"{n} did not train" for n in expected if torch.equal(expected[n], initial[n])]
    if not 0.01 < rate < 0.99:
        problems.append(f"spike rate {rate:.3f}: the check needs active neurons")
    return {
        "problems": problems,
        "relative_error": errors[worst],
        "worst": worst,
        "spike_rate": rate,
        "sync_batchnorm": sync_bn,
    }


def ddp_cases(ctx: Context) -> Iterator[tuple[str, str, str, bool]]:
    for backend in ctx.args.backends:
        neurons = ["lif"] if backend == "flexsn" else ctx.args.neurons
        for compiled in (False, True) if ctx.args.compile else (False,):
            for neuron_name in neurons if not compiled else neurons[:1]:
                for dtype in ctx.args.dtypes:
                    yield backend, neuron_name, dtype, compiled


def part_ddp(ctx: Context) -> list[dict[str, Any]]:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False  # TF32 would round fp32 to 10 bits
    torch.backends.cuda.matmul.allow_tf32 = False
    records = []
    for backend, neuron_name, dtype, compiled in ddp_cases(ctx):
        record = {
            "part": "ddp",
            "rank": ctx.rank,
            "backend": backend,
            "neuron": neuron_name,
            "dtype": dtype,
            "compiled": compiled,
        }

        def check(b=backend, n=neuron_name, d=dtype, c=compiled, r=record) -> list[str]:
            measured = check_ddp(ctx, b, n, d, c)
            r.update({k: v for k, v in measured.items() if k != "problems"})
            return measured["problems"]

        records.append(run_check(record, check, backend_skip_reason(backend, neuron_name)))
    return records


# -- part "scaling": images/s of the benchmark network on one GPU and on two ----------------


def barrier(ctx: Context) -> None:
    """A barrier on this rank's device (NCCL would otherwise guess it)."""
    dist.barrier(device_ids=[ctx.device.index] if ctx.cuda else None)


def synchronize(ctx: Context) -> None:
    if ctx.cuda:
        torch.cuda.synchronize(ctx.device)


def time_training(
    ctx: Context, model: nn.Module, x_seq: torch.Tensor, labels: torch.Tensor
) -> float:
    """Seconds for ``--timed-steps`` training steps after ``--warmup-steps``."""
    args = ctx.args
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    autocast = args.scaling_dtype == "bf16"

    def step() -> None:
        functional.reset_net(model)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(x_seq)
        loss = F.cross_entropy(out.float().mean(0), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup_steps):
        step()
    synchronize(ctx)
    start = time.perf_counter()
    for _ in range(args.timed_steps):
        step()
    synchronize(ctx)
    return time.perf_counter() - start


def scaling_run(ctx: Context, backend: str) -> dict[str, Any]:
    """1 GPU (rank 0 alone, the other rank waits), then 2 GPUs with DDP."""
    from torch.nn.parallel import DistributedDataParallel

    args = ctx.args
    generator = torch.Generator().manual_seed(4)
    x_seq = torch.randn(args.T, args.batch, 3, 32, 32, generator=generator).to(ctx.device)
    labels = torch.randint(0, 10, (args.batch,), generator=generator).to(ctx.device)
    torch.manual_seed(0)
    one_gpu, error = None, None
    if ctx.rank == 0:
        try:
            one_gpu = time_training(
                ctx, spiking_vgg(backend, args.width).to(ctx.device), x_seq, labels
            )
        except Exception as exc:  # reported; the other rank must still reach the barrier
            error = short_error(exc)
    barrier(ctx)
    net = spiking_vgg(backend, args.width).to(ctx.device)
    ddp = DistributedDataParallel(net, device_ids=[ctx.device.index] if ctx.cuda else None)
    barrier(ctx)
    elapsed = torch.tensor([time_training(ctx, ddp, x_seq, labels)], device=ctx.device)
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the slower rank sets the pace
    images = args.batch * args.timed_steps
    result = {
        "part": "scaling",
        "backend": backend,
        "error": error,
        "images_per_s_1": images / one_gpu if one_gpu else None,
        "images_per_s_2": ctx.world_size * images / elapsed.item(),
    }
    if result["images_per_s_1"]:
        result["speedup"] = result["images_per_s_2"] / result["images_per_s_1"]
        result["efficiency"] = result["speedup"] / ctx.world_size
    return result


def part_scaling(ctx: Context) -> list[dict[str, Any]]:
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = True  # as a user training for speed would
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    results = []
    for backend in ctx.args.scaling_backends:
        reason = backend_skip_reason(backend)
        if reason is not None:
            results.append(
                {"part": "scaling", "backend": backend, "status": "skip", "reason": reason}
            )
            continue
        result = scaling_run(ctx, backend)
        result["status"] = "fail" if result["error"] else "pass"
        results.append(result)
    return results if ctx.rank == 0 else []


# -- running checks, the report, main ---------------------------------------------------------


def short_error(exc: BaseException) -> str:
    """The exception and the innermost frame, on one line."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}{where}"


_LABEL_KEYS = ("part", "rank", "backend", "neuron", "dtype", "compiled")


def run_check(record: dict, check: Callable[[], list[str]], skip: str | None) -> dict:
    """Fill ``record`` with the status of ``check`` (``skip``: the reason not to run it)."""
    start = time.perf_counter()
    if skip is not None:
        record.update(status="skip", reason=skip)
        return record
    try:
        problems = check()
    except Exception as exc:
        problems = [short_error(exc)]
        traceback.print_exc()
    record.update(
        status="fail" if problems else "pass",
        problems=problems,
        seconds=round(time.perf_counter() - start, 2),
    )
    # Progress in the log: a run cut short by a time limit still shows how far it got.
    label = " ".join(str(record[k]) for k in _LABEL_KEYS if k in record)
    if "compiled" in record:
        label = label.replace(" True", " compiled").replace(" False", " eager")
    print(f"[two_gpu_check] {record['status'].upper()} {label} ({record['seconds']} s)\n", end="")
    return record


def machine_info(ctx: Context) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": ctx.device.type,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for name in (
        "triton",
        "cupy-cuda12x",
        "cupy-cuda13x",
        "sj-core",
        "sj-triton",
        "sj-cupy",
        "sj-flexsn",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[name] = importlib.metadata.version(name)
    if ctx.cuda:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
        nccl = torch.cuda.nccl.version()
        info["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    return info


@dataclass
class Report:
    """What rank 0 writes: the JSON and its text rendering."""

    out: Path
    machine: dict[str, Any]
    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        statuses = [r["status"] for r in self.records]
        return {s: statuses.count(s) for s in ("pass", "fail", "skip")}

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {
            "machine": self.machine,
            "config": self.config,
            "records": self.records,
            "summary": self.counts(),
        }
        (self.out / "two_gpu_check.json").write_text(json.dumps(data, indent=1) + "\n")
        (self.out / "two_gpu_check.txt").write_text(self.render())

    def render(self) -> str:
        m, c = self.machine, self.config
        versions = ", ".join(
            f"{k} {m[k]}"
            for k in ("torch", "triton", "cupy-cuda12x", "cupy-cuda13x", "cuda", "nccl")
            if k in m
        )
        lines = [f"two_gpu_check, {m['date']}, mode {m['mode']}: {versions}"]
        if "gpus" in m:
            lines.append("GPUs: " + ", ".join(m["gpus"]))
        by_part = {
            p: [r for r in self.records if r["part"] == p] for p in ("devices", "ddp", "scaling")
        }
        if by_part["devices"]:
            lines += [
                "",
                "Kernels on tensors of the other device (values, gradients, output device, "
                "current device kept, the tensor device's current stream):",
            ]
            for r in by_part["devices"]:
                where = f"rank {r['rank']} current {r['current']}, tensors on {r['tensors_on']}"
                lines.append(
                    f"  {r['status'].upper():4}  {where}  {r['backend']:6} {r['neuron']:10}"
                    + _detail(r)
                )
        if by_part["ddp"]:
            bn = "SyncBatchNorm" if c["mode"] == "cuda" else "no batch norm (CPU)"
            lines += [
                "",
                f"DDP ({c['process_group']}), {bn}, {c['steps']} SGD steps with reset_net, "
                "error = ||2 processes - 1 process|| / ||update|| (worst tensor):",
            ]
            for r in by_part["ddp"]:
                how = "compiled" if r["compiled"] else "eager"
                measured = (
                    f"  error {r['relative_error']:.2e} (tol {TOLERANCE[r['dtype']]:.0e}), spikes "
                    f"{r['spike_rate']:.0%}"
                    if "relative_error" in r
                    else ""
                )
                lines.append(
                    f"  {r['status'].upper():4}  rank {r['rank']}  {r['backend']:6} "
                    f"{r['neuron']:4} {r['dtype']} {how:8}{measured}" + _detail(r)
                )
        if by_part["scaling"]:
            lines += [
                "",
                f"Scaling: spiking VGG (width {c['width']}), T={c['T']}, 32x32 random images, "
                f"{c['scaling_dtype']}, batch {c['batch']} per device, BatchNorm per device, "
                f"{c['timed_steps']} timed steps:",
                "  backend  1 device (img/s)  2 devices (img/s)  speedup  efficiency",
            ]
            for r in by_part["scaling"]:
                if r["status"] == "pass":
                    lines.append(
                        f"  {r['backend']:7}  {r['images_per_s_1']:16.1f}  "
                        f"{r['images_per_s_2']:17.1f}  {r['speedup']:6.2f}x  "
                        f"{r['efficiency']:9.0%}"
                    )
                else:
                    lines.append(f"  {r['backend']:7}  {r['status'].upper()}" + _detail(r))
        counts = self.counts()
        lines += [
            "",
            f"Summary: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped",
        ]
        return "\n".join(lines) + "\n"


def _detail(record: dict[str, Any]) -> str:
    if record["status"] == "skip":
        return f"  ({record['reason']})"
    problems = record.get("problems") or ([record["error"]] if record.get("error") else [])
    return ("  " + "; ".join(problems)) if problems else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="dry run: CPU processes, gloo")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["devices", "ddp", "scaling"],
        choices=["devices", "ddp", "scaling"],
    )
    parser.add_argument("--backends", nargs="+", help="default: triton cupy flexsn (CPU: torch)")
    parser.add_argument("--neurons", nargs="+", default=["lif", "plif"], help="for the ddp part")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also torch.compile the DDP-wrapped model (default: on GPUs)",
    )
    parser.add_argument("--steps", type=int, default=3, help="SGD steps of the ddp part")
    parser.add_argument("--ddp-batch", type=int, default=16, help="global batch of the ddp part")
    parser.add_argument("--scaling-backends", nargs="+", help="default: triton (CPU: torch)")
    parser.add_argument("--scaling-dtype", choices=list(DTYPES), help="default: bf16 (CPU: fp32)")
    parser.add_argument("--width", type=int, help="VGG base width (default 64; CPU 4)")
    parser.add_argument("--T", type=int, help="time steps of the scaling part (default 4; CPU 2)")
    parser.add_argument("--batch", type=int, help="batch per device (default 128; CPU 2)")
    parser.add_argument("--timed-steps", type=int, help="default 30 (CPU 2)")
    parser.add_argument("--warmup-steps", type=int, help="default 10 (CPU 1)")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/two_gpu_check"))
    )
    args = parser.parse_args(argv)
    gpu_defaults = {
        "backends": list(KERNEL_BACKENDS),
        "compile": True,
        "scaling_backends": ["triton"],
        "scaling_dtype": "bf16",
        "width": 64,
        "T": 4,
        "batch": 128,
        "timed_steps": 30,
        "warmup_steps": 10,
    }
    cpu_defaults = {
        "backends": ["torch"],
        "compile": False,
        "scaling_backends": ["torch"],
        "scaling_dtype": "fp32",
        "width": 4,
        "T": 2,
        "batch": 2,
        "timed_steps": 2,
        "warmup_steps": 1,
    }
    for name, value in (cpu_defaults if args.cpu else gpu_defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def init(args: argparse.Namespace) -> Context:
    """Join the process group started by torchrun; pick this rank's devices."""
    if "RANK" not in os.environ:
        raise SystemExit("run with: torchrun --standalone --nproc_per_node=2 " + __file__)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world_size != 2:
        raise SystemExit(f"needs exactly 2 processes, got {world_size}")
    if args.cpu:
        device = other = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world_size))
    else:
        if torch.cuda.device_count() < 2:
            raise SystemExit("needs two CUDA GPUs (use --cpu for a dry run)")
        device = torch.device("cuda", local_rank)
        other = torch.device("cuda", 1 - local_rank)
        torch.cuda.set_device(device)
    # NVLink multicast stays off: nothing here needs it and not every host supports it.
    for name in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS"):
        os.environ.setdefault(name, "0" if name == "NCCL_NVLS_ENABLE" else "1")
    dist.init_process_group("gloo" if args.cpu else "nccl", timeout=COLLECTIVE_TIMEOUT)
    return Context(rank, world_size, device, other, args)


def gather_records(ctx: Context, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's records, rank by rank (on rank 0; the others get them too)."""
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, records)
    return [record for rank_records in gathered for record in rank_records]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = init(args)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.update(mode=ctx.device.type, process_group=dist.get_backend())
    report = Report(args.out, machine_info(ctx), config)
    parts = {"devices": part_devices, "ddp": part_ddp, "scaling": part_scaling}
    try:
        for name in args.parts:
            report.records += gather_records(ctx, parts[name](ctx))
            if ctx.rank == 0:
                report.write()
                print(f"[two_gpu_check] part {name} done: {report.counts()}", flush=True)
            barrier(ctx)
    finally:
        dist.destroy_process_group()
    if ctx.rank == 0:
        print(report.render(), end="")
        print(f"[two_gpu_check] wrote {args.out}/two_gpu_check.json and .txt")
    return 1 if report.counts()["fail"] else 0


if __name__ == "__main__":
    status = main()
    # Leave without the interpreter's finalization: after a gloo process group, torch 2.13
    # sometimes aborts there ("terminate called without an active exception"), after
    # destroy_process_group and the report, which would fail a finished run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
