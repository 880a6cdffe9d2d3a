"""NIR's ``IF`` gain ``r``: the two readings, and interop with SpikingJelly.

NIR states ``dv/dt = r I``. SpikingJelly integrates that over ``dt`` and writes a gain of 1
per step as ``r = 1/dt``; snnTorch, Norse and Sinabs (and sj_core's ``to_nir``) write it
as ``r = 1``. ``from_nir`` reads both (the first with a warning) and refuses anything
else. The reference for a graph in SpikingJelly's form is ``nir_reference.simulate`` with
``integrator="per_second"``; where SpikingJelly 2.0.0 itself is installed, it is also
run: its exported graphs must give its own spikes in sj_core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir", reason="nir is not installed: pip install 'sj-core[nir]'")

from nir_helpers import run_and_reset as _run  # noqa: E402
from nir_helpers import seeded_rand as _rand  # noqa: E402
from nir_reference import assert_simulates_like  # noqa: E402  (after the skip)

from sj_core import layer, neuron  # noqa: E402
from sj_core.nir import from_nir, to_nir  # noqa: E402

DT = 1e-4  # SpikingJelly's default, and sj_core's


def _spikingjelly_form() -> nir.NIRGraph:
    """A graph as SpikingJelly 2.0.0's ``export_to_nir`` writes one: ``IF`` with
    ``r = 1/dt``, ``LIF`` with ``r = tau`` (no decay_input) in float64."""
    rng = np.random.default_rng(3)
    return nir.NIRGraph.from_list(
        nir.Affine(weight=rng.normal(size=(6, 4)), bias=rng.normal(scale=0.1, size=6)),
        nir.IF(r=np.full(6, 1.0 / DT), v_threshold=np.full(6, 0.5), v_reset=np.zeros(6)),
        nir.Affine(weight=rng.normal(size=(3, 6)), bias=np.zeros(3)),
        nir.LIF(
            tau=np.full(3, 3.0 * DT),
            r=np.full(3, 3.0),
            v_leak=np.zeros(3),
            v_threshold=np.full(3, 0.4),
            v_reset=np.zeros(3),
        ),
    )


def test_export_writes_if_with_a_gain_of_one_per_step():
    net = nn.Sequential(layer.Linear(2, 3, step_mode="m"), neuron.IFNode(step_mode="m"))
    graph = to_nir(net, _rand(2, 1, 2, seed=0))
    np.testing.assert_array_equal(graph.nodes["1"].r, np.ones(3))


def test_spikingjelly_form_imports_with_a_warning_and_its_dynamics():
    graph = _spikingjelly_form()
    with pytest.warns(UserWarning, match=r"'if' \(IF\) has r = 10000 = 1/dt: read as SpikingJelly"):
        net = from_nir(graph, backend="torch")
    if_node, lif = net[1], net[3]  # named "if" and "lif" after the NIR nodes
    assert (type(if_node), if_node.v_threshold, if_node.v_reset) == (neuron.IFNode, 0.5, 0.0)
    assert (lif.tau, lif.decay_input) == (3.0, False)
    x = _rand(12, 4, 4, seed=1, scale=1.5)
    out = _run(net, x)
    assert out.sum() > 0, "the test should make the network fire"
    assert_simulates_like(graph, x, out, DT, integrator="per_second")


def test_the_same_graph_read_per_step_would_be_another_network():
    # Why the reading matters: per step, r = 1/dt multiplies every input by 10000.
    graph = _spikingjelly_form()
    with pytest.warns(UserWarning):
        net = from_nir(graph, backend="torch")
    x = _rand(12, 4, 4, seed=1, scale=1.5)
    with pytest.raises(AssertionError):
        assert_simulates_like(graph, x, _run(net, x), DT, integrator="per_step")


def test_a_graph_written_with_another_dt_needs_that_dt():
    graph = _spikingjelly_form()
    with pytest.raises(ValueError, match=r"dt = 1/r = 0.0001 s, pass that dt"):
        from_nir(graph, dt=1e-3)


# -- SpikingJelly itself (the reference system, when installed) ----------------------------


def _spikingjelly():
    pytest.importorskip("spikingjelly", reason="SpikingJelly is not installed")
    pytest.importorskip("nirtorch", reason="SpikingJelly's NIR exchange needs nirtorch")
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import layer as sj_layer
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir, import_from_nir

    return sj_functional, sj_layer, sj_neuron, export_to_nir, import_from_nir


def test_a_spikingjelly_network_gives_its_spikes_in_sj_core(tmp_path):
    sj_functional, sj_layer, sj_neuron, export_to_nir, _ = _spikingjelly()
    torch.manual_seed(4)
    theirs = nn.Sequential(
        sj_layer.Linear(5, 8),
        sj_neuron.IFNode(v_threshold=0.6),
        sj_layer.Linear(8, 3),
        sj_neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.4),
    )
    sj_functional.set_step_mode(theirs, "m")
    x = _rand(10, 4, 5, seed=5, scale=2.0)
    export_to_nir(theirs, x, save_path=tmp_path / "sj.nir")
    with torch.no_grad():
        spikes = theirs(x)
    with pytest.warns(UserWarning, match="read as SpikingJelly"):
        ours = from_nir(tmp_path / "sj.nir", backend="torch")
    out = _run(ours, x)
    assert out.sum() > 0, "the test should make the network fire"
    torch.testing.assert_close(out, spikes, rtol=0, atol=0)


def test_spikingjelly_reads_our_lif_but_refuses_our_if():
    *_, import_from_nir = _spikingjelly()
    torch.manual_seed(6)
    lif = nn.Sequential(layer.Linear(3, 4, step_mode="m"), neuron.LIFNode(step_mode="m"))
    import_from_nir(to_nir(lif, _rand(2, 1, 3, seed=0)))  # LIF: both write r = 1 or tau
    if_net = nn.Sequential(layer.Linear(3, 4, step_mode="m"), neuron.IFNode(step_mode="m"))
    with pytest.raises(ValueError, match="nir.IF.r must equal 1 / dt"):
        import_from_nir(to_nir(if_net, _rand(2, 1, 3, seed=0)))
