"""``sj_core.nir``: export to and import from NIR, checked against NIR's own equations.

The reference is ``nir_reference.simulate`` (tests/support), a float64 simulator of NIR
graphs written from the NIR documentation, independent of ``sj_core.nir``. Exported
graphs must simulate like the network they came from; imported networks like the graph
they came from. The inputs keep every potential at least ``MARGIN`` away from its
threshold, so float32 rounding cannot flip a spike and spikes must agree exactly (NIR
fires on ``v > threshold``, sj_core on ``v >= threshold``: they differ only on equality).
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

from sj_core import layer, neuron, surrogate  # noqa: E402
from sj_core.nir import NIRNetwork, from_nir, to_nir  # noqa: E402

DT = 1e-3


def _assert_simulates_like(graph, x: torch.Tensor, out: torch.Tensor) -> None:
    assert_simulates_like(graph, x, out, DT)


def _mlp(decay_input: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        layer.Linear(6, 5, step_mode="m"),
        neuron.LIFNode(tau=2.5, decay_input=decay_input, v_threshold=0.8, step_mode="m"),
        layer.Linear(5, 4, step_mode="m"),
        neuron.LIFNode(tau=4.0, decay_input=not decay_input, v_reset=-0.2, step_mode="m"),
        layer.Linear(4, 3, bias=False, step_mode="m"),
        neuron.IFNode(v_threshold=0.5, step_mode="m"),
    )


# -- export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("decay_input", [True, False], ids=["decay_input", "no_decay_input"])
def test_export_writes_the_documented_parameters(decay_input):
    graph = to_nir(_mlp(decay_input), _rand(3, 2, 6), dt=DT)
    assert graph.edges == [
        ("input", "0"),
        ("0", "1"),
        ("1", "2"),
        ("2", "3"),
        ("3", "4"),
        ("4", "5"),
        ("5", "output"),
    ]
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {
        "input": "Input",
        "0": "Affine",
        "1": "LIF",
        "2": "Affine",
        "3": "LIF",
        "4": "Linear",
        "5": "IF",
        "output": "Output",
    }
    first, second, last = graph.nodes["1"], graph.nodes["3"], graph.nodes["5"]
    # tau in seconds = dt x tau in steps; r = 1 when the input decays, else tau in steps.
    expected = {
        "1": dict(tau=2.5 * DT, r=1.0 if decay_input else 2.5, v_leak=0.0, v_reset=0.0),
        "3": dict(tau=4.0 * DT, r=4.0 if decay_input else 1.0, v_leak=-0.2, v_reset=-0.2),
    }
    for name, node in (("1", first), ("3", second)):
        for field, value in expected[name].items():
            np.testing.assert_allclose(getattr(node, field), value, rtol=1e-6)
    np.testing.assert_allclose(first.v_threshold, np.full(5, 0.8), rtol=1e-6)
    assert first.tau.shape == (5,) and second.tau.shape == (4,) and first.tau.dtype == np.float32
    np.testing.assert_array_equal(last.r, np.ones(3))
    np.testing.assert_array_equal(last.v_threshold, np.full(3, 0.5))
    assert list(graph.nodes["input"].output_type["output"]) == [6]
    assert list(graph.nodes["output"].input_type["input"]) == [3]
    assert graph.metadata["dt"] == DT


def test_export_reads_parametric_lif_at_its_current_tau():
    node = neuron.ParametricLIFNode(init_tau=3.0, decay_input=False, step_mode="m")
    with torch.no_grad():
        node.w.fill_(-math.log(5.0 - 1.0))  # 1 / sigmoid(w) = 5
    graph = to_nir(nn.Sequential(layer.Linear(2, 3, step_mode="m"), node), _rand(2, 1, 2))
    np.testing.assert_allclose(graph.nodes["1"].tau, np.full(3, 5.0 * 1e-4), rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["1"].r, np.full(3, 5.0), rtol=1e-6)


@pytest.mark.parametrize("decay_input", [True, False], ids=["decay_input", "no_decay_input"])
def test_exported_graph_simulates_like_the_network(decay_input):
    net = _mlp(decay_input)
    x = _rand(12, 3, 6, seed=1, scale=2.0)
    graph = to_nir(net, x, dt=DT)
    _assert_simulates_like(graph, x, _run(net, x))


def test_exported_readout_simulates_like_the_network():
    torch.manual_seed(1)
    net = nn.Sequential(
        layer.Linear(4, 6, step_mode="m"),
        neuron.SimpleLIFNode(tau=3.0, decay_input=True),
        layer.Linear(6, 2, step_mode="m"),
        neuron.NonSpikingLIFNode(tau=2.0),
        neuron.NonSpikingIFNode(),
    )
    net[1].step_mode = "m"
    x = _rand(10, 3, 4, seed=2, scale=3.0)
    graph = to_nir(net, x, dt=DT)
    assert [type(graph.nodes[n]).__name__ for n in ("1", "3", "4")] == ["LIF", "LI", "I"]
    _assert_simulates_like(graph, x, _run(net, x))


def test_convolutional_network_exports_shapes_and_dynamics():
    torch.manual_seed(2)
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, step_mode="m"),
        neuron.IFNode(v_threshold=0.3, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(4 * 2 * 2, 3, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=0.2, step_mode="m"),
    )
    x = _rand(6, 2, 2, 9, 9, seed=3)
    graph = to_nir(net, x, dt=DT)
    types = {n: list(node.input_type["input"]) for n, node in graph.nodes.items()}
    assert types == {
        "input": [2, 9, 9],
        "0": [2, 9, 9],
        "1": [4, 5, 5],
        "2": [4, 5, 5],
        "3": [4, 2, 2],
        "4": [16],
        "5": [3],
        "output": [3],
    }
    conv = graph.nodes["0"]
    assert conv.groups == 1 and list(conv.stride) == [2, 2] and list(conv.padding) == [1, 1]
    np.testing.assert_array_equal(conv.bias, np.zeros(4))  # no bias: zeros, as NIR needs one
    assert (graph.nodes["3"].start_dim, graph.nodes["3"].end_dim) == (0, -1)
    _assert_simulates_like(graph, x, _run(net, x))


def test_containers_are_walked_and_dropout_is_left_out():
    torch.manual_seed(3)
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Dropout(0.3)),
        neuron.LIFNode(tau=2.0, v_threshold=0.4, step_mode="m"),
        layer.Dropout(0.5, step_mode="m"),
        layer.MultiStepContainer(layer.Linear(2 * 4 * 4, 3), neuron.IFNode(v_threshold=0.5)),
    )
    x = _rand(5, 2, 1, 6, 6, seed=4)
    graph = to_nir(net, x, dt=DT)
    assert graph.edges == [
        ("input", "0.0"),
        ("0.0", "0.1"),
        ("0.1", "1"),
        ("1", "3.0"),
        ("3.0", "3.1"),
        ("3.1", "output"),
    ]
    assert list(graph.nodes["1"].input_type["input"]) == [32]
    net.eval()  # dropout off, as NIR describes the network at inference
    _assert_simulates_like(graph, x, _run(net, x))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.fc1 = layer.Linear(4, 4, step_mode="m")
        self.sn1 = neuron.IFNode(v_threshold=0.6, step_mode="m")
        self.fc2 = layer.Linear(4, 4, step_mode="m")
        self.sn2 = neuron.LIFNode(tau=2.0, v_threshold=0.4, step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sn1(self.fc1(x))
        return self.sn2(self.fc2(y) + x)


def test_residual_sum_becomes_two_edges_and_imports_as_a_graph_network():
    net = _Residual()
    x = _rand(8, 3, 4, seed=5, scale=1.5)
    graph = to_nir(net, x, dt=DT)
    assert sorted(graph.edges) == sorted(
        [("input", "fc1"), ("fc1", "sn1"), ("sn1", "fc2"), ("fc2", "sn2"), ("input", "sn2"),
         ("sn2", "output")]
    )  # fmt: skip
    _assert_simulates_like(graph, x, _run(net, x))
    copy = from_nir(graph, backend="torch", dt=DT)
    assert isinstance(copy, NIRNetwork)
    assert copy.sources["sn2"] == ("fc2", "input")
    torch.testing.assert_close(_run(copy, x), _run(net, x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("module", "name", "kind"),
    [
        (neuron.LIFNode(tau=3.0, step_mode="m"), "0", "LIF"),
        (layer.SeqToANNContainer(nn.Linear(4, 4)), "0.0", "Affine"),
    ],
    ids=["a-neuron", "a-container"],
)
def test_a_single_module_exports_as_a_one_node_chain(module, name, kind):
    graph = to_nir(module, _rand(3, 2, 4))
    assert graph.edges == [("input", name), (name, "output")]
    assert type(graph.nodes[name]).__name__ == kind


def test_export_leaves_the_module_untouched():
    net = _mlp()
    net.train()
    to_nir(net, _rand(3, 2, 6))
    assert net.training and net[2].training
    assert net[1].v == 0.0 and not isinstance(net[1].v, torch.Tensor)  # never ran


# -- import ----------------------------------------------------------------------------------


def _lif(n: int, tau: float, r: float, threshold: float, reset: float = 0.0, leak=None):
    full = lambda value: np.full(n, value, dtype=np.float32)  # noqa: E731
    return nir.LIF(
        tau=full(tau),
        r=full(r),
        v_leak=full(reset if leak is None else leak),
        v_threshold=full(threshold),
        v_reset=full(reset),
    )


def _affine(n_in: int, n_out: int, seed: int) -> nir.Affine:
    rng = np.random.default_rng(seed)
    return nir.Affine(
        weight=rng.normal(size=(n_out, n_in)).astype(np.float32),
        bias=rng.normal(scale=0.1, size=n_out).astype(np.float32),
    )


def _imported_graph() -> nir.NIRGraph:
    """snnTorch's form (r = tau / dt), Norse's (r = 1), an IF, a Linear and an LI readout."""
    rng = np.random.default_rng(7)
    return nir.NIRGraph.from_list(
        _affine(5, 6, seed=1),
        _lif(6, tau=5 * DT, r=5.0, threshold=1.0),
        _affine(6, 4, seed=2),
        _lif(4, tau=3 * DT, r=1.0, threshold=0.3, reset=-0.1),
        nir.Linear(weight=rng.normal(size=(3, 4)).astype(np.float32)),
        nir.IF(r=np.ones(3, np.float32), v_threshold=np.full(3, 0.7, np.float32)),
        _affine(3, 2, seed=3),
        nir.LI(tau=np.full(2, 2 * DT), r=np.ones(2), v_leak=np.zeros(2)),
    )


def test_import_builds_the_documented_modules():
    net = from_nir(_imported_graph(), backend="torch", dt=DT)
    assert isinstance(net, nn.Sequential)
    lif1, lif2, if_node, readout = net.lif, net.lif_1, net[5], net.li
    assert (lif1.tau, lif1.decay_input, lif1.v_threshold, lif1.v_reset) == (5.0, False, 1.0, 0.0)
    assert (lif2.tau, lif2.decay_input, lif2.v_reset) == (3.0, True, -0.1)
    assert isinstance(if_node, neuron.IFNode) and if_node.v_threshold == pytest.approx(0.7)
    assert isinstance(readout, neuron.NonSpikingLIFNode) and readout.tau == 2.0
    assert net.linear.bias is None and net.affine.weight.shape == (6, 5)
    assert all(m.step_mode == "m" for m in net if hasattr(m, "step_mode"))


def test_imported_network_simulates_like_the_graph():
    graph = _imported_graph()
    net = from_nir(graph, backend="torch", dt=DT)
    x = _rand(15, 4, 5, seed=8, scale=2.0)
    _assert_simulates_like(graph, x, _run(net, x))


def test_single_step_import_runs_step_by_step_like_multi_step():
    graph = nir.NIRGraph.from_list(
        _affine(5, 6, seed=1), _lif(6, tau=5 * DT, r=5.0, threshold=1.0), _affine(6, 2, seed=2)
    )
    x = _rand(9, 3, 5, seed=9, scale=2.0)
    single = from_nir(graph, step_mode="s", dt=DT)
    with torch.no_grad():
        steps = torch.stack([single(x_t) for x_t in x])
    _assert_simulates_like(graph, x, steps)


def test_grouped_convolution_imports_with_all_its_input_channels():
    # NIR's own type check assumes groups = 1 (input channels = weight.shape[1]), so this
    # graph, as another library might write it, is built without it.
    rng = np.random.default_rng(5)
    shape = np.array([4, 5, 5])
    nodes = {
        "input": nir.Input(input_type=np.array([2, 5, 5])),
        "conv": nir.Conv2d(
            input_shape=None,
            weight=rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
            stride=1,
            padding=1,
            dilation=1,
            groups=2,
            bias=rng.normal(scale=0.1, size=4).astype(np.float32),
        ),
        "spikes": nir.IF(r=np.ones(shape), v_threshold=np.full(shape, 0.5)),
        "output": nir.Output(output_type=shape),
    }
    edges = [("input", "conv"), ("conv", "spikes"), ("spikes", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    net = from_nir(graph, dt=DT)
    assert (net.conv.in_channels, net.conv.out_channels, net.conv.groups) == (2, 4, 2)
    x = _rand(4, 2, 2, 5, 5, seed=12)
    _assert_simulates_like(graph, x, _run(net, x))


def test_an_lif_input_gain_is_folded_into_threshold_and_reset():
    # r = 0.5 is neither 1 (decay_input) nor tau = 4 steps (no decay_input).
    graph = nir.NIRGraph.from_list(
        _affine(2, 3, seed=4), _lif(3, tau=4 * DT, r=0.5, threshold=0.3, reset=0.1)
    )
    with pytest.warns(UserWarning, match="spikes are unchanged"):
        net = from_nir(graph, dt=DT)
    assert net[1].v_threshold == pytest.approx(0.3 / 0.5)
    assert net[1].v_reset == pytest.approx(0.1 / 0.5)
    x = _rand(12, 4, 2, seed=10, scale=2.0)
    _assert_simulates_like(graph, x, _run(net, x))


def test_round_trip_through_a_file_restores_the_network(tmp_path):
    net = _mlp(decay_input=False)
    x = _rand(10, 3, 6, seed=11, scale=2.0)
    path = tmp_path / "mlp.nir"
    nir.write(path, to_nir(net, x))
    copy = from_nir(str(path), backend="torch")
    for original, restored in zip(net, copy, strict=True):
        assert type(restored) is type(original)
        if isinstance(original, neuron.LIFNode):
            # float32 in the file, read back to float32's 7 significant digits.
            for name in ("tau", "decay_input", "v_threshold", "v_reset"):
                assert getattr(restored, name) == getattr(original, name)
        if isinstance(original, nn.Linear):
            torch.testing.assert_close(restored.weight, original.weight, rtol=0, atol=0)
    torch.testing.assert_close(_run(copy, x), _run(net, x), rtol=0, atol=0)


# -- what cannot be converted ----------------------------------------------------------------


class _Relu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = layer.Linear(3, 3, step_mode="m")

    def forward(self, x):
        return torch.relu(self.fc(x))


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = layer.Linear(3, 3, step_mode="m")

    def forward(self, x):
        return self.fc(self.fc(x))


class _Double(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = layer.Linear(3, 3, step_mode="m")

    def forward(self, x):
        y = self.fc(x)
        return y + y


def _seq(*modules: nn.Module) -> nn.Sequential:
    return nn.Sequential(layer.Linear(3, 3, step_mode="m"), *modules)


_STEPS = (2, 2, 3)  # [T, N, features]


@pytest.mark.parametrize(
    ("net", "message", "sample_shape"),
    [
        (_seq(neuron.LIFNode(v_reset=None, step_mode="m")), "module '1': .*soft reset", _STEPS),
        (_seq(neuron.PSN(T=2)), r"module '1' \(PSN\).*whole sequence", _STEPS),
        (_seq(neuron.IzhikevichNode(step_mode="m")), "no Izhikevich neuron", _STEPS),
        (_seq(neuron.QIFNode(step_mode="m")), "QIFNode.*no NIR equivalent.*LIFNode", _STEPS),
        (
            _seq(neuron.IFNode(surrogate_function=surrogate.Sigmoid(spiking=False), step_mode="m")),
            "spiking=False",
            _STEPS,
        ),
        (_seq(neuron.NonSpikingLIFNode(decode="mean-mem")), "decode='mean-mem'", _STEPS),
        (
            nn.Sequential(layer.MaxPool2d(2, step_mode="m")),
            "MaxPool2d.*no NIR equivalent",
            (2, 2, 1, 4, 4),
        ),
        (
            nn.Sequential(layer.Conv2d(2, 2, 1, groups=2, step_mode="m")),
            "groups=2",
            (2, 2, 2, 4, 4),
        ),
        (_Relu(), r"relu\(\), which NIR cannot describe", _STEPS),
        (_Twice(), "called more than once", _STEPS),
        (_Double(), "same node twice", _STEPS),
        (nn.Sequential(nn.Linear(3, 3), neuron.IFNode(step_mode="m")), "layer.Linear", _STEPS),
    ],
    ids=["soft-reset", "psn", "izhikevich", "qif", "non-spiking", "decode", "maxpool", "groups",
         "relu", "shared", "x+x", "plain-linear-in-m"],
)  # fmt: skip
def test_export_refuses_what_nir_cannot_describe(net, message, sample_shape):
    with pytest.raises(NotImplementedError, match=message):
        to_nir(net, _rand(*sample_shape))


def test_export_checks_its_arguments():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        to_nir(lambda x: x, _rand(2, 2, 3))
    with pytest.raises(TypeError, match="sample_input must be a tensor"):
        to_nir(_mlp(), np.zeros((2, 2, 6)))
    with pytest.raises(ValueError, match="dt must be a positive"):
        to_nir(_mlp(), _rand(2, 2, 6), dt=0.0)


def _graph(*nodes) -> nir.NIRGraph:
    return nir.NIRGraph.from_list(_affine(2, 3, seed=0), *nodes)


def _recurrent() -> nir.NIRGraph:
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "lif": _lif(3, tau=2 * DT, r=1.0, threshold=1.0),
        "w_rec": _affine(3, 3, seed=1),
        "output": nir.Output(output_type=np.array([3])),
    }
    edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize(
    ("graph", "kwargs", "error", "message"),
    [
        (
            _graph(nir.IF(r=np.ones(3), v_threshold=np.array([1.0, 1.0, 2.0]))),
            {},
            ValueError,
            "v_threshold differs between neurons",
        ),
        (_graph(_lif(3, 2 * DT, 1.0, 1.0, reset=0.0, leak=0.5)), {}, NotImplementedError, "v_leak"),
        (
            _graph(_lif(3, 2 * DT, -1.0, 1.0)),
            {"dt": DT},
            ValueError,
            "input gain r = -1 must be > 0",
        ),
        (_graph(_lif(3, 1e-3, 1.0, 1.0)), {"dt": 1e-3}, ValueError, "more than one step"),
        (
            _graph(nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3),
                               v_leak=np.zeros(3), v_threshold=np.ones(3))),
            {},
            NotImplementedError,
            "CubaLIF.*synaptic current.*no exact sj_core equivalent",
        ),
        (
            _graph(nir.IF(r=np.full(3, 2.0), v_threshold=np.ones(3))),
            {"dt": DT},
            ValueError,
            r"r = 2, neither 1 .* nor 1/dt = 1000 .*pass that dt",
        ),
        (
            _graph(nir.LI(tau=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3))),
            {"dt": DT},
            NotImplementedError,
            "NonSpikingLIFNode needs r = 1",
        ),
        (_recurrent(), {}, NotImplementedError, "recurrent"),
        (
            _graph(nir.LI(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3))),
            {"step_mode": "s", "dt": DT},
            ValueError,
            "multi-step only",
        ),
        (_graph(), {"step_mode": "x"}, ValueError, "step_mode must be 's' or 'm'"),
        (
            _graph(nir.IF(r=np.ones(3), v_threshold=np.ones(3))),
            {"backend": "no-such-backend"},
            ValueError,
            "unknown backend 'no-such-backend'; installed backends: torch",
        ),
    ],
    ids=["non-uniform", "leak-to-other-than-reset", "negative-gain", "tau-one-step", "cubalif",
         "if-gain-ambiguous", "li-gain", "recurrent", "li-single-step", "step-mode",
         "unknown-backend"],
)  # fmt: skip
def test_import_refuses_what_sj_core_cannot_run(graph, kwargs, error, message):
    with pytest.raises(error, match=message):
        from_nir(graph, **kwargs)


def test_import_refuses_other_arguments():
    with pytest.raises(TypeError, match="nir.NIRGraph, a NIR node, or the path"):
        from_nir(123)
