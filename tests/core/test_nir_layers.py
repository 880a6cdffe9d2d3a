"""``sj_core.nir``: 1-D convolutions, sum pooling, ParametricLIF and backends.

As in ``test_nir.py``, the reference is ``nir_reference.simulate`` (tests/support), whose
``Conv1d`` is a direct sum over channels and taps and whose ``SumPool2d`` sums NumPy
windows: neither uses the torch layers that ``sj_core.nir`` builds. Inputs keep every
potential ``MARGIN`` from its threshold, so spikes must agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir", reason="nir is not installed: pip install 'sj-core[nir]'")

from nir_helpers import run_and_reset as _run  # noqa: E402
from nir_helpers import seeded_rand as _rand  # noqa: E402
from nir_reference import assert_simulates_like  # noqa: E402  (after the skip)

from sj_core import functional, layer, neuron  # noqa: E402
from sj_core.nir import from_nir, to_nir  # noqa: E402

DT = 1e-3


def _conv1d_net() -> nn.Sequential:
    torch.manual_seed(10)
    return nn.Sequential(
        layer.SeqToANNContainer(nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2)),
        neuron.LIFNode(tau=2.0, v_threshold=0.3, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(4 * 6, 3, step_mode="m"),
        neuron.IFNode(v_threshold=0.4, step_mode="m"),
    )


def _sum_pool_net() -> nn.Sequential:
    torch.manual_seed(11)
    return nn.Sequential(
        layer.Conv2d(1, 3, 3, padding=1, step_mode="m"),
        neuron.IFNode(v_threshold=0.3, step_mode="m"),
        layer.AvgPool2d(3, stride=2, padding=1, divisor_override=1, step_mode="m"),
        layer.SeqToANNContainer(nn.LPPool2d(1, 2)),
        layer.Flatten(step_mode="m"),
        layer.Linear(3 * 2 * 2, 2, step_mode="m"),
        neuron.LIFNode(tau=3.0, v_threshold=0.5, step_mode="m"),
    )


def test_conv1d_exports_with_its_shapes_and_dynamics():
    net = _conv1d_net()
    x = _rand(7, 3, 2, 11, seed=1, scale=1.5)  # [T, N, C, L]
    graph = to_nir(net, x, dt=DT)
    conv = graph.nodes["0.0"]
    assert isinstance(conv, nir.Conv1d)
    assert (conv.input_shape, conv.stride, conv.padding, conv.dilation) == (11, 2, 2, 2)
    assert list(conv.input_type["input"]) == [2, 11]
    assert list(conv.output_type["output"]) == [4, 6]  # (11 + 4 - 2*2 - 1) // 2 + 1
    np.testing.assert_array_equal(conv.weight, net[0][0].weight.detach().numpy())
    assert_simulates_like(graph, x, _run(net, x), DT)


def test_sum_pooling_exports_as_sum_pool2d_and_simulates_alike():
    net = _sum_pool_net()
    x = _rand(6, 2, 1, 8, 8, seed=2, scale=1.2)
    graph = to_nir(net, x, dt=DT)
    pool, lp_pool = graph.nodes["2"], graph.nodes["3.0"]
    assert isinstance(pool, nir.SumPool2d) and isinstance(lp_pool, nir.SumPool2d)
    assert [list(pool.kernel_size), list(pool.stride), list(pool.padding)] == [
        [3, 3],
        [2, 2],
        [1, 1],
    ]
    assert [list(lp_pool.stride), list(lp_pool.padding)] == [[2, 2], [0, 0]]
    assert list(graph.nodes["4"].input_type["input"]) == [3, 2, 2]
    assert_simulates_like(graph, x, _run(net, x), DT)


@pytest.mark.parametrize(
    ("make", "shape"),
    [(_conv1d_net, (7, 3, 2, 11)), (_sum_pool_net, (6, 2, 1, 8, 8))],
    ids=["conv1d", "sum-pool"],
)
def test_round_trip_through_a_file_gives_identical_spikes(make, shape, tmp_path):
    net = make()
    x = _rand(*shape, seed=3, scale=1.5)
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(net, x, dt=DT))
    copy = from_nir(path, backend="torch", dt=DT)
    spikes = _run(net, x)
    assert spikes.sum() > 0, "the test should make the network fire"
    torch.testing.assert_close(_run(copy, x), spikes, rtol=0, atol=0)


def test_imported_conv1d_and_sum_pool_modules_in_both_step_modes():
    rng = np.random.default_rng(4)
    graph = nir.NIRGraph.from_list(
        nir.Conv1d(
            input_shape=9,
            weight=rng.normal(size=(4, 1, 3)).astype(np.float32),
            stride=1,
            padding=1,
            dilation=1,
            groups=2,  # grouped: 2 input channels, each feeding 2 outputs
            bias=rng.normal(scale=0.1, size=4).astype(np.float32),
        ),
        nir.IF(r=np.ones((4, 9), np.float32), v_threshold=np.full((4, 9), 0.4, np.float32)),
    )
    multi = from_nir(graph, dt=DT)
    container = multi[0]
    assert isinstance(container, layer.SeqToANNContainer) and isinstance(container[0], nn.Conv1d)
    assert (container[0].in_channels, container[0].groups) == (2, 2)
    single = from_nir(graph, step_mode="s", dt=DT)
    assert type(single[0]) is nn.Conv1d
    x = _rand(8, 3, 2, 9, seed=5, scale=1.5)
    assert_simulates_like(graph, x, _run(multi, x), DT)
    with torch.no_grad():
        steps = torch.stack([single(x_t) for x_t in x])
    torch.testing.assert_close(steps, _run(multi, x), rtol=0, atol=0)


def test_sum_pool2d_as_sinabs_writes_it_imports_as_a_window_sum():
    # Sinabs writes SumPool2d with padding (0, 0) and no input type.
    rng = np.random.default_rng(6)
    nodes = {
        "input": nir.Input(input_type=np.array([2, 6, 6])),
        "pool": nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(
            weight=rng.normal(size=(3, 18)).astype(np.float32),
            bias=np.zeros(3, np.float32),
        ),
        "spikes": nir.IF(r=np.ones(3), v_threshold=np.full(3, 0.7)),
        "output": nir.Output(output_type=np.array([3])),
    }
    edges = [("input", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "spikes"),
             ("spikes", "output")]  # fmt: skip
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    net = from_nir(graph, dt=DT)
    assert net.pool.divisor_override == 1
    x = _rand(6, 2, 2, 6, 6, seed=7, scale=0.6)
    assert_simulates_like(graph, x, _run(net, x), DT)


def test_parametric_lif_exports_its_current_tau_and_comes_back_as_lif():
    torch.manual_seed(12)
    plif = neuron.ParametricLIFNode(init_tau=2.0, decay_input=True, v_threshold=0.5, step_mode="m")
    with torch.no_grad():
        plif.w.fill_(-math.log(4.0 - 1.0))  # as if trained: 1 / sigmoid(w) = 4 steps
    net = nn.Sequential(layer.Linear(4, 5, step_mode="m"), plif)
    x = _rand(9, 3, 4, seed=8, scale=2.0)
    graph = to_nir(net, x, dt=DT)
    np.testing.assert_allclose(graph.nodes["1"].tau, np.full(5, 4.0 * DT), rtol=1e-6)
    assert_simulates_like(graph, x, _run(net, x), DT)
    copy = from_nir(graph, backend="torch", dt=DT)
    assert type(copy[1]) is neuron.LIFNode and copy[1].tau == pytest.approx(4.0)
    assert_simulates_like(graph, x, _run(copy, x), DT)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_imported_network_runs_on_the_triton_backend(step_mode):
    pytest.importorskip("sj_triton", reason="sj-triton is not installed")
    net = _conv1d_net()
    x = _rand(5, 2, 2, 11, seed=9, scale=1.5)
    graph = to_nir(net, x, dt=DT)
    on_triton = from_nir(graph, step_mode=step_mode, backend="triton", dt=DT)
    with torch.no_grad():
        out = on_triton(x) if step_mode == "m" else torch.stack([on_triton(x_t) for x_t in x])
    functional.reset_net(on_triton)
    assert [m.last_backend for m in on_triton.modules() if isinstance(m, neuron.BaseNode)] == [
        "triton",
        "triton",
    ]
    assert_simulates_like(graph, x, out, DT)


@pytest.mark.parametrize(
    ("module", "message", "shape"),
    [
        (nn.Conv1d(2, 2, 1, groups=2), "groups=2", (3, 2, 2, 5)),
        (nn.Conv1d(2, 2, 3, padding_mode="circular", padding=1), "circular", (3, 2, 2, 5)),
        (nn.LPPool2d(2, 2), "norm_type=2", (3, 2, 1, 4, 4)),
        (nn.AvgPool2d(2, divisor_override=3), "divisor_override=3", (3, 2, 1, 4, 4)),
        (nn.AvgPool2d(2, ceil_mode=True, divisor_override=1), "ceil_mode", (3, 2, 1, 5, 5)),
    ],
    ids=["grouped-conv1d", "circular", "lp-pool-2", "divisor-3", "ceil-mode"],
)
def test_export_refuses_pooling_and_convolutions_nir_cannot_describe(module, message, shape):
    with pytest.raises(NotImplementedError, match=message):
        to_nir(layer.SeqToANNContainer(module), _rand(*shape, seed=0))
