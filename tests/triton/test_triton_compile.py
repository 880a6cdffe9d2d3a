"""``torch.compile`` of networks whose neurons run on the Triton backend.

Two small multi-step networks, ``Linear -> LIFNode -> Linear -> ParametricLIFNode`` and
``Linear -> QIFNode -> Linear -> EIFNode -> Linear -> IzhikevichNode``
(``backend='triton'``):

* compiled (default mode with zero graph breaks, and ``fullgraph=True``) they give the
  eager network's outputs, and the eager network gives the ``backend='torch'`` one's;
* a compiled training step gives the eager losses and parameter gradients;
* a node compiled with a dynamic time axis runs new sequence lengths without a new graph.

On a GPU the compiler is Inductor (which sees the Triton kernels through ``triton_op``;
``mode="reduce-overhead"`` adds CUDA graphs); on the CPU, where the operators are opaque
``custom_op`` s around the interpreted kernels, AOTAutograd without code generation
(``aot_eager``) traces the operators, their fake implementations and their autograd.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sj_core import functional, neuron, surrogate
from sj_core.neuron.eif import EIFNode
from sj_core.neuron.izhikevich import IzhikevichNode
from sj_core.neuron.qif import QIFNode

pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
pytest.importorskip("sj_triton.operators", reason="needs sj-triton")

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
COMPILER = "inductor" if HAS_CUDA else "aot_eager"
T, BATCH, FEATURES, HIDDEN, CLASSES = 4, 4, 12, 16, 5


@pytest.fixture(autouse=True)
def fresh_compile_state(tmp_path_factory, monkeypatch):
    """Fresh Dynamo state and an empty Inductor cache: compiled graphs of other tests or
    runs can never make these tests pass or fail."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def _lif_network(backend: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN),
        neuron.LIFNode(tau=2.0, step_mode="m", backend=backend),
        nn.Linear(HIDDEN, CLASSES),
        neuron.ParametricLIFNode(
            init_tau=2.0, step_mode="m", backend=backend, surrogate_function=surrogate.ATan()
        ),
    )


def _nonlinear_network(backend: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN),
        QIFNode(step_mode="m", backend=backend),
        nn.Linear(HIDDEN, HIDDEN),
        EIFNode(v_reset=None, step_mode="m", backend=backend),
        nn.Linear(HIDDEN, CLASSES),
        IzhikevichNode(a=0.5, b=0.2, step_mode="m", backend=backend, detach_reset=True),
    )


NETWORKS = {"lif-plif": _lif_network, "qif-eif-izhikevich": _nonlinear_network}


def _network(name: str, backend: str = "triton") -> nn.Sequential:
    torch.manual_seed(0)
    net = NETWORKS[name](backend)
    with torch.no_grad():  # inputs large enough that every layer fires
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(3.0)
                layer.bias.add_(1.0)
    return net.to(DEVICE)


def _data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.rand(T, BATCH, FEATURES, generator=generator) * 2.0
    y = torch.rand(BATCH, CLASSES, generator=generator)
    return x.to(DEVICE), y.to(DEVICE)


def _forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(net)
    return net(x)


def _train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rate = _forward(net, x).mean(0)
    return ((rate - y) ** 2).mean()


def _nodes(net: nn.Module) -> list[neuron.BaseNode]:
    return [m for m in net if isinstance(m, neuron.BaseNode)]


def _spike_rates(net: nn.Module, x: torch.Tensor) -> list[float]:
    rates = []
    hooks = [
        node.register_forward_hook(lambda _m, _i, out: rates.append(out.float().mean().item()))
        for node in _nodes(net)
    ]
    with torch.no_grad():
        _forward(net, x)
    for hook in hooks:
        hook.remove()
    return rates


COMPILE_OPTIONS = [
    pytest.param({"backend": COMPILER}, id="default"),
    pytest.param({"backend": COMPILER, "fullgraph": True}, id="fullgraph"),
    pytest.param(
        {"mode": "reduce-overhead", "fullgraph": True}, id="reduce-overhead", marks=pytest.mark.gpu
    ),
]


@pytest.mark.parametrize("options", COMPILE_OPTIONS)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_compiled_network_matches_eager(name, options):
    eager = _network(name)
    reference = _network(name, backend="torch")
    x = _data(0)[0]
    rates = _spike_rates(eager, x)
    assert all(0.05 < r < 0.95 for r in rates), f"spike rates {rates}: every layer must fire"

    compiled = torch.compile(_forward, **options)
    for step in range(2):  # a second call reuses the graph (and, on a GPU, a CUDA graph)
        x = _data(step)[0]
        with torch.no_grad():
            want = _forward(eager, x)
            got = compiled(eager, x).clone()
            ref = _forward(reference, x)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(want, ref)
    counters = torch._dynamo.utils.counters
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1
    assert all(node.last_backend == "triton" for node in _nodes(eager))


def _train(net, step_fn, mark_cudagraph_steps=False):
    """Three SGD steps; per step the loss and a copy of every parameter gradient."""
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    history = []
    for step in range(3):
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


@pytest.mark.parametrize("options", COMPILE_OPTIONS[1:])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_compiled_training_matches_eager(name, options):
    eager_net = _network(name)
    compiled_net = copy.deepcopy(eager_net)
    eager_history = _train(eager_net, _train_step)
    compiled_history = _train(
        compiled_net,
        torch.compile(_train_step, **options),
        mark_cudagraph_steps=options.get("mode") == "reduce-overhead",
    )
    for step, ((loss_c, grads_c), (loss_e, grads_e)) in enumerate(
        zip(compiled_history, eager_history, strict=True)
    ):
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-6, atol=0, msg=f"loss, step {step}")
        for key, g in grads_e.items():
            assert g.abs().sum() > 0, f"{key} has a zero gradient at step {step}"
            torch.testing.assert_close(
                grads_c[key], g, rtol=1e-5, atol=1e-6 * g.abs().max().item(),
                msg=lambda m, k=key, s=step: f"grad {k}, step {s}: {m}",
            )  # fmt: skip


NODES = [
    pytest.param(lambda: neuron.LIFNode(step_mode="m", backend="triton"), id="lif"),
    pytest.param(
        lambda: IzhikevichNode(a=0.5, b=0.2, step_mode="m", backend="triton"), id="izhikevich"
    ),
]

DYNAMIC_T = [
    pytest.param("mark_dynamic", id="mark_dynamic"),
    pytest.param("dynamic=True", id="dynamic"),
]


@pytest.mark.parametrize("dynamic", DYNAMIC_T)
@pytest.mark.parametrize("make", NODES)
def test_compiled_node_does_not_recompile_for_new_T(make, dynamic):
    """A node compiled with ``fullgraph=True`` and a dynamic time axis (marked, or
    ``dynamic=True``): further sequence lengths reuse the first graph, with the eager
    values."""
    node = make().to(DEVICE)
    compiled = torch.compile(
        node, dynamic=dynamic == "dynamic=True" or None, fullgraph=True, backend=COMPILER
    )
    graphs = []
    for T_steps in (4, 9, 13):
        x = torch.rand(T_steps, 8, 33, generator=torch.Generator().manual_seed(T_steps)) * 2
        x = x.to(DEVICE)
        if dynamic == "mark_dynamic":
            torch._dynamo.mark_dynamic(x, 0)
        functional.reset_net(node)
        got = compiled(x)
        functional.reset_net(node)
        want = node(x)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert 0.05 < want.mean().item() < 0.95
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs == [1, 1, 1]
