"""``torch.compile`` of networks using the Triton backend, and compile-once kernels.

* A small network (Linear -> LIFNode -> Linear -> ParametricLIFNode, multi-step,
  ``backend='triton'``) trains for several optimizer steps with the training step
  (including ``functional.reset_net``) under ``torch.compile``; losses and every
  parameter gradient must match the same network run eagerly, at every step. Modes:
  default (zero graph breaks, counted by Dynamo), ``fullgraph=True`` (a break would
  raise) and, on a GPU, ``mode="reduce-overhead"`` (CUDA graphs; SPEC 7: the reference
  system fails there).
* No recompilation (GPU): after warm-up, a new ``T`` or a new layer width in the same
  BLOCK bucket adds no compiled variant to the kernels' caches.

On CPU the operators are opaque ``custom_op``s around the interpreted kernels and
Inductor compiles the rest (~10-30 s per configuration), so only two CPU compile tests.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _triton_helpers import DEVICE, HAS_CUDA
from torch import nn

from sj_core import functional, neuron, surrogate

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
neuron_kernel = pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)
from sj_triton.neuron_kernel import kernels  # noqa: E402

T, BATCH, FEATURES, HIDDEN, CLASSES = (8, 16, 32, 64, 10) if HAS_CUDA else (4, 4, 12, 16, 5)
STEPS = 4 if HAS_CUDA else 3  # CUDA graphs: warm-up, record, then replays


@pytest.fixture(autouse=True)
def fresh_compile_state(tmp_path_factory, monkeypatch):
    """Fresh Dynamo state and an empty Inductor cache: stale compiled graphs from other
    runs (or an older sj-triton) can never make these tests pass or fail."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _network() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(FEATURES, HIDDEN),
        neuron.LIFNode(tau=2.0, step_mode="m", backend="triton"),
        nn.Linear(HIDDEN, CLASSES),
        neuron.ParametricLIFNode(
            init_tau=2.0, step_mode="m", backend="triton", surrogate_function=surrogate.ATan()
        ),
    )
    with torch.no_grad():  # inputs large enough that both layers fire
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
        net[2].bias.add_(1.5)
    return net.to(DEVICE)


def _data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.rand(T, BATCH, FEATURES, generator=gen) * 2.0
    y = torch.rand(BATCH, CLASSES, generator=gen)
    return x.to(DEVICE), y.to(DEVICE)


def _train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    functional.reset_net(net)
    rate = net(x).mean(0)
    return ((rate - y) ** 2).mean()


def _spike_rates(net: nn.Module, x: torch.Tensor) -> list[float]:
    rates = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: rates.append(out.float().mean().item()))
        for m in net
        if isinstance(m, neuron.BaseNode)
    ]
    with torch.no_grad():
        _train_step(net, x, torch.zeros(BATCH, CLASSES, device=DEVICE))
    for h in hooks:
        h.remove()
    return rates


def _train(net, step_fn, mark_cudagraph_steps=False):
    """``STEPS`` SGD steps; per step the loss and a copy of every parameter gradient."""
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    history = []
    for step in range(STEPS):
        if mark_cudagraph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        x, y = _data(step)
        opt.zero_grad(set_to_none=True)
        loss = step_fn(net, x, y)
        loss.backward()
        grads = {name: p.grad.detach().clone() for name, p in net.named_parameters()}
        history.append((loss.detach().clone(), grads))
        opt.step()
    return history


def _assert_same_training(compiled_history, eager_history):
    for step, ((loss_c, grads_c), (loss_e, grads_e)) in enumerate(
        zip(compiled_history, eager_history, strict=True)
    ):
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6, msg=f"loss, step {step}")
        for name, g in grads_e.items():
            assert g.abs().sum() > 0, f"{name} has a zero gradient at step {step}"
            scale = g.abs().max().item()
            torch.testing.assert_close(
                grads_c[name],
                g,
                rtol=1e-4,
                atol=1e-5 * scale,
                msg=lambda m, n=name, s=step: f"grad {n}, step {s}: {m}",
            )


COMPILE_MODES = [
    pytest.param({}, id="default"),
    pytest.param({"fullgraph": True}, id="fullgraph"),
    pytest.param(
        {"mode": "reduce-overhead", "fullgraph": True},
        id="reduce-overhead",
        marks=pytest.mark.gpu,
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("options", COMPILE_MODES)
def test_compiled_training_matches_eager(options):
    eager_net = _network()
    compiled_net = copy.deepcopy(eager_net)
    rates = _spike_rates(eager_net, _data(0)[0])
    assert all(0.05 < r < 0.95 for r in rates), f"spike rates {rates}: both layers must fire"

    eager_history = _train(eager_net, _train_step)

    torch._dynamo.utils.counters.clear()
    compiled_step = torch.compile(_train_step, **options)
    compiled_history = _train(
        compiled_net,
        compiled_step,
        mark_cudagraph_steps=options.get("mode") == "reduce-overhead",
    )
    counters = torch._dynamo.utils.counters
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    _assert_same_training(compiled_history, eager_history)
    for node in (compiled_net[1], compiled_net[3]):
        assert node.last_backend == "triton"


# -- compile once -----------------------------------------------------------------------------


def _compiled_variants(kernel) -> int:
    """Number of compiled variants in a ``JITFunction``'s per-device caches."""
    caches = getattr(kernel, "device_caches", None)
    if caches is None:
        pytest.skip(f"{type(kernel).__name__} keeps no compile cache (Triton interpreter?)")
    # device_caches[device] = (kernel_cache, ...) in every Triton 3.x release.
    return sum(len(entry[0]) for entry in caches.values())


def _forward_backward(T_steps: int, ncl: int) -> None:
    x = torch.rand(T_steps, ncl, device=DEVICE, requires_grad=True) * 2
    v = torch.zeros(ncl, device=DEVICE)
    spike_seq, v_last, _ = neuron_kernel.lif_multi_step(
        x,
        v,
        tau=2.0,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=False,
        surrogate_function=surrogate.Sigmoid(),
    )
    (spike_seq.sum() + v_last.sum()).backward()


@pytest.mark.gpu
def test_no_recompilation_for_new_T_or_width():
    """After warm-up, other sequence lengths (including 1 and multiples of 16, which
    Triton would specialise on unless told not to) and other widths in the same BLOCK
    bucket and divisibility-by-16 class reuse the compiled kernels. Widths divisible by
    16 are a second (documented) variant that is compiled once."""
    fwd, bwd = kernels.multistep_forward_kernel, kernels.multistep_backward_kernel
    _forward_backward(7, 1000)
    before = (_compiled_variants(fwd), _compiled_variants(bwd))
    for T_steps in (1, 2, 3, 16, 64, 100):
        _forward_backward(T_steps, 1000)
    for ncl in (1001, 1003, 4099, 100_001, 2**18 - 1):
        _forward_backward(7, ncl)
    torch.cuda.synchronize()
    assert (_compiled_variants(fwd), _compiled_variants(bwd)) == before

    _forward_backward(7, 1024)  # divisible by 16: one more variant per kernel at most
    after_aligned = (_compiled_variants(fwd), _compiled_variants(bwd))
    assert all(a - b <= 1 for a, b in zip(after_aligned, before, strict=True))
    for ncl, T_steps in ((2048, 5), (4096, 64), (65536, 1)):
        _forward_backward(T_steps, ncl)
    assert (_compiled_variants(fwd), _compiled_variants(bwd)) == after_aligned


@pytest.mark.slow
def test_compiled_node_does_not_recompile_for_new_T():
    """``torch.compile(dynamic=True, fullgraph=True)`` of a node: further sequence
    lengths reuse the first graph (Dynamo compiles no new one)."""
    node = neuron.LIFNode(step_mode="m", backend="triton")
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(node, dynamic=True, fullgraph=True)
    graphs = []
    for T_steps in (4, 9, 13):
        functional.reset_net(node)
        out = compiled(torch.rand(T_steps, 8, 33, device=DEVICE) * 2)
        assert out.shape == (T_steps, 8, 33)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs == [1, 1, 1]
