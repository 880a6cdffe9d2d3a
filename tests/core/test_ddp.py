"""Data-parallel training on the CPU: two processes on 127.0.0.1 with the gloo backend.

Two ranks train the same small spiking network (``Linear -> LIF or PLIF -> Linear``, step
mode ``'m'``) on the two halves of every batch, calling ``reset_net`` on the wrapped model
before each step. After a few SGD steps the parameters must be

* bitwise identical on both ranks (gathered with ``all_gather``), and
* equal, within fp32 tolerance, to one process trained on the whole batch: averaging the
  ranks' gradients of a mean loss over equal halves is the gradient of the mean loss over
  the whole batch.

Wrappers: ``DistributedDataParallel`` (backends ``torch`` and ``triton``, the latter under
Triton's CPU interpreter; and a single-step network called once per time step, which DDP
also averages correctly) and FSDP2's ``fully_shard`` (backend ``torch``). PLIF's scalar
``w`` cannot be sharded by FSDP2 (it refuses 0-dim parameters), so that case keeps ``w``
out of FSDP and averages its gradient by hand, as docs/multi_gpu.md tells users to do.

All cases run in one pair of worker processes (started once per module: starting
processes and importing torch dominates the cost); each test then checks its own case.
SyncBatchNorm cannot train on the CPU (torch raises for non-GPU input when a process group
is up), so its tests here check the conversion of multi-step layers in one process;
benchmarks/two_gpu_check.py trains with it under NCCL. The last tests run that script's
``--cpu`` dry run (two gloo processes through torchrun) and check its shell wrapper's syntax.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo_exit import exit_without_finalization
from kernel_backends import GridBackend
from torch import nn

from sj_core import functional, layer, neuron

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("needs torch.distributed with the gloo backend", allow_module_level=True)

WORLD_SIZE = 2
T, BATCH, FEATURES, HIDDEN, CLASSES = 4, 8, 6, 12, 3  # BATCH is the global batch
STEPS, LR = 3, 0.5
# Starting two interpreters and importing torch takes a few seconds; the cases under
# Triton's interpreter a few more. A generous bound only guards against a hang.
WORKER_TIMEOUT_S = 240.0
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=120)

# (wrapper, backend, neuron); "lif-s": LIF in step mode 's', the model called once per step.
Case = tuple[str, str, str]
CASES: list[Case] = [
    ("ddp", "torch", "lif"),
    ("ddp", "torch", "plif"),
    ("ddp", "torch", "lif-s"),
    ("ddp", "triton", "lif"),
    ("ddp", "triton", "plif"),
    ("fsdp2", "torch", "lif"),
    ("fsdp2", "torch", "plif"),
]


def _fsdp2_skip_reason() -> str | None:
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        return "needs FSDP2 (torch.distributed.fsdp.fully_shard)"
    # ignored_params arrived in torch 2.7 with FSDP2 on the CPU; older releases are not
    # checked here.
    if "ignored_params" not in inspect.signature(fully_shard).parameters:
        return "needs torch >= 2.7 (fully_shard(ignored_params=...))"
    # torch 2.8's FSDP2 with gloo trains even a plain Linear-ReLU-Linear network to
    # parameters 2.0 away from one process's (measured); 2.10 and later agree to 1e-7.
    if _torch_version() < (2, 10):
        return "needs torch >= 2.10 for FSDP2 on the CPU (gloo)"
    return None


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def _skip_reason(case: Case) -> str | None:
    wrapper, backend, _ = case
    if backend == "triton":
        reason = GridBackend("triton", "cpu").skip_reason()
        if reason is not None:
            return reason
    if wrapper == "fsdp2":
        return _fsdp2_skip_reason()
    return None


def _case_id(case: Case) -> str:
    return "-".join(case)


# -- the network, the data and the training loop (shared by the ranks and the reference) --


def _step_mode(neuron_name: str) -> str:
    return "s" if neuron_name.endswith("-s") else "m"


def _build(neuron_name: str, backend: str) -> nn.Sequential:
    """The same initial network in every process (seeded)."""
    torch.manual_seed(0)
    mode = _step_mode(neuron_name)
    if neuron_name == "plif":
        node = neuron.ParametricLIFNode(init_tau=2.0, step_mode=mode, backend=backend)
    else:
        node = neuron.LIFNode(tau=2.0, step_mode=mode, backend=backend)
    return nn.Sequential(
        layer.Linear(FEATURES, HIDDEN, step_mode=mode),
        node,
        layer.Linear(HIDDEN, CLASSES, step_mode=mode),
    )


def _forward(model: nn.Module, x_seq: torch.Tensor, step_mode: str) -> torch.Tensor:
    """``[T, N, FEATURES]`` -> ``[T, N, CLASSES]``: one call, or one call per step."""
    if step_mode == "m":
        return model(x_seq)
    return torch.stack([model(x) for x in x_seq])


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``STEPS`` global batches: inputs ``[T, BATCH, FEATURES]``, labels ``[BATCH]``."""
    generator = torch.Generator().manual_seed(1)
    # Inputs in [0, 8) make about a fifth of the hidden neurons fire at each step.
    return [
        (
            8.0 * torch.rand(T, BATCH, FEATURES, generator=generator),
            torch.randint(0, CLASSES, (BATCH,), generator=generator),
        )
        for _ in range(STEPS)
    ]


def _train(
    model: nn.Module,
    params: list[nn.Parameter],
    rank: int | None,
    step_mode: str,
    hook: Callable[[], None] | None = None,
) -> None:
    """SGD over :func:`_batches`; ``rank`` selects that rank's half of each batch (``None``:
    the whole batch). ``hook`` runs between backward and the optimizer step."""
    optimizer = torch.optim.SGD(params, lr=LR)
    half = BATCH // WORLD_SIZE
    for x_seq, labels in _batches():
        if rank is not None:
            x_seq = x_seq[:, rank * half : (rank + 1) * half]
            labels = labels[rank * half : (rank + 1) * half]
        # The membrane potentials of the previous batch (and their autograd graph) must go.
        functional.reset_net(model)
        out = _forward(model, x_seq, step_mode)
        loss = nn.functional.cross_entropy(out.mean(0), labels)
        optimizer.zero_grad()
        loss.backward()
        if hook is not None:
            hook()
        optimizer.step()


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


# -- the worker processes ------------------------------------------------------------------


def _train_ddp(backend: str, neuron_name: str, rank: int) -> tuple[torch.Tensor, tuple]:
    from torch.nn.parallel import DistributedDataParallel

    net = _build(neuron_name, backend)
    model = DistributedDataParallel(net)
    _train(model, list(model.parameters()), rank, _step_mode(neuron_name))  # reset_net on DDP
    return _flat(list(net.parameters())), tuple(net[1].v.shape)


def _train_fsdp2(backend: str, neuron_name: str, rank: int) -> tuple[torch.Tensor, tuple]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    net = _build(neuron_name, backend)
    scalar = [p for p in net.parameters() if p.dim() == 0]  # PLIF's w
    # An explicit CPU mesh: by default FSDP2 would pick CUDA on a machine that has it.
    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    fully_shard(net[0], mesh=mesh)
    fully_shard(net[2], mesh=mesh)
    fully_shard(net, mesh=mesh, ignored_params=set(scalar))

    def average_scalar_gradients() -> None:
        for p in scalar:
            dist.all_reduce(p.grad)
            p.grad /= WORLD_SIZE

    _train(net, list(net.parameters()), rank, _step_mode(neuron_name), average_scalar_gradients)
    # full_tensor() is a collective: both ranks call it in the same order.
    full = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in net.parameters()]
    return _flat(full), tuple(net[1].v.shape)


def _worker(rank: int, port: int, cases: list[Case], out_path: str) -> None:
    """One rank: train every case, gather the results, rank 0 saves them."""
    # Keep gloo's own connections on the loopback interface too.
    if os.path.isdir("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)  # two ranks share the machine's cores
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=WORLD_SIZE, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        results: dict[str, dict[str, Any]] = {}
        for case in cases:
            wrapper, backend, neuron_name = case
            train = _train_ddp if wrapper == "ddp" else _train_fsdp2
            flat, v_shape = train(backend, neuron_name, rank)
            gathered = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
            dist.all_gather(gathered, flat)
            shapes: list[Any] = [None] * WORLD_SIZE
            dist.all_gather_object(shapes, v_shape)
            results[_case_id(case)] = {"params": gathered, "v_shapes": shapes}
        if rank == 0:
            torch.save(results, out_path)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    exit_without_finalization()  # results saved: see gloo_exit


def _free_port_store() -> dist.TCPStore:
    """The rendezvous store, listening on a free port of 127.0.0.1 chosen by the OS; the
    test process holds the socket, so no other program can take the port meanwhile."""
    return dist.TCPStore(
        "127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=COLLECTIVE_TIMEOUT
    )


def _run_workers(cases: list[Case], out_path: Path) -> None:
    """Start the two ranks and wait for them; never leave one running."""
    store = _free_port_store()
    context = mp.start_processes(
        _worker,
        args=(store.port, cases, str(out_path)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    try:
        # join() raises when a rank failed (with its traceback) and returns True when all
        # have exited cleanly.
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {WORLD_SIZE} ranks did not finish in {WORKER_TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        del store


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every runnable case's gathered parameters and per-rank state shapes."""
    runnable = [case for case in CASES if _skip_reason(case) is None]
    out_path = tmp_path_factory.mktemp("ddp") / "results.pt"
    _run_workers(runnable, out_path)
    return torch.load(out_path)


def _case_params() -> list:
    params = []
    for case in CASES:
        reason = _skip_reason(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(case, id=_case_id(case), marks=marks))
    return params


@pytest.mark.parametrize("case", _case_params())
def test_data_parallel_matches_one_process(
    case: Case, distributed_results: dict[str, dict[str, Any]]
) -> None:
    _, backend, neuron_name = case
    result = distributed_results[_case_id(case)]
    rank0, rank1 = result["params"]

    reference = _build(neuron_name, backend)
    initial = {name: p.detach().clone() for name, p in reference.named_parameters()}
    _train(reference, list(reference.parameters()), None, _step_mode(neuron_name))
    expected = _flat(list(reference.parameters()))

    # The check means something only if every parameter trained and the neurons fired.
    for name, p in reference.named_parameters():
        assert (p.detach() - initial[name]).abs().max() > 1e-4, f"{name} did not train"
    functional.reset_net(reference)
    with torch.no_grad():
        spikes = _forward(reference[:2], _batches()[-1][0], _step_mode(neuron_name))
    assert 0.05 < spikes.mean().item() < 0.95

    assert torch.equal(rank0, rank1), "parameters differ between the ranks"
    torch.testing.assert_close(rank0, expected, rtol=1e-5, atol=1e-6)
    # State is per process: each rank's neurons hold its own half batch, never synchronised.
    assert result["v_shapes"] == [(BATCH // WORLD_SIZE, HIDDEN)] * WORLD_SIZE


# -- SyncBatchNorm conversion of multi-step layers (one process) ----------------------------


def _conv_bn_net(batch_norm: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        batch_norm,
        neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(4 * 6 * 6, CLASSES, step_mode="m"),
    )


def _assert_train_alike(
    original: nn.Module, converted: nn.Module, x_seq: torch.Tensor, labels: torch.Tensor
) -> None:
    """Two SGD steps on each network; their parameters and running statistics agree."""
    for net in (original, converted):
        optimizer = torch.optim.SGD(net.parameters(), lr=LR)
        for _ in range(2):
            functional.reset_net(net)
            loss = nn.functional.cross_entropy(net(x_seq).mean(0), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for (name, got), (_, want) in zip(
        converted.state_dict().items(), original.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=name)


def test_sync_batchnorm_conversion_keeps_time_folding() -> None:
    """``SeqToANNContainer(Conv2d, BatchNorm2d)`` converts to a container of SyncBatchNorm
    that still folds time into the batch; without a process group SyncBatchNorm is plain
    batch norm, so the converted network trains exactly like the original."""
    original = _conv_bn_net(layer.SeqToANNContainer(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(original))
    assert isinstance(converted[0], layer.SeqToANNContainer)
    assert isinstance(converted[0][1], nn.SyncBatchNorm)

    generator = torch.Generator().manual_seed(2)
    x_seq = torch.rand(T, 3, 2, 8, 8, generator=generator)  # [T, N, C, H, W]
    labels = torch.randint(0, CLASSES, (3,), generator=generator)
    _assert_train_alike(original, converted, x_seq, labels)


def test_multi_step_batchnorm2d_converts_keeping_its_step_mode() -> None:
    """torch's conversion turns layer.BatchNorm2d(step_mode='m') into a plain SyncBatchNorm
    that normalises [T, N, C, H, W] over N; layer.convert_sync_batchnorm keeps the step
    mode, the parameters and the running statistics, and trains like the original."""
    original = _conv_bn_net(layer.Conv2d(2, 4, 3, step_mode="m"))
    original.insert(1, layer.BatchNorm2d(4, step_mode="m"))
    converted = layer.convert_sync_batchnorm(copy.deepcopy(original))
    assert isinstance(converted[1], layer.SyncBatchNorm) and converted[1].step_mode == "m"
    with pytest.raises(RuntimeError, match="running_mean should contain"):
        nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(original))(torch.rand(T, 3, 2, 8, 8))

    generator = torch.Generator().manual_seed(3)
    x_seq = torch.rand(T, 3, 2, 8, 8, generator=generator)  # N = 3 differs from C = 4
    labels = torch.randint(0, CLASSES, (3,), generator=generator)
    _assert_train_alike(original, converted, x_seq, labels)
    original.eval(), converted.eval()
    torch.testing.assert_close(converted(x_seq), original(x_seq))


# -- the two-GPU script ----------------------------------------------------------------------

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
DRY_RUN_TIMEOUT_S = 240


def _run_process_group(command: list[str], timeout: float) -> tuple[int, str]:
    """Run ``command`` in its own process group; on timeout kill the whole group (torchrun
    and its workers), so nothing outlives the test."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs POSIX process groups")
def test_two_gpu_check_dry_run(tmp_path: Path) -> None:
    """The two-GPU script's ``--cpu`` mode: two gloo processes through torchrun, every part."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        str(BENCHMARKS / "two_gpu_check.py"),
        "--cpu",
        "--dtypes",
        "fp32",
        "--out",
        str(tmp_path),
    ]
    returncode, output = _run_process_group(command, DRY_RUN_TIMEOUT_S)
    assert returncode == 0, output[-3000:]
    report = json.loads((tmp_path / "two_gpu_check.json").read_text())
    parts = {record["part"] for record in report["records"]}
    assert parts == {"devices", "ddp", "scaling"}
    assert report["summary"]["fail"] == 0 and report["summary"]["pass"] > 0
    assert (tmp_path / "two_gpu_check.txt").read_text().startswith("two_gpu_check")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_two_gpu_check_wrapper_parses() -> None:
    subprocess.run(["bash", "-n", str(BENCHMARKS / "two_gpu_check.sh")], check=True, timeout=30)
