"""``sj_core.monitor``: each monitor records what the hooked modules really saw and made.

The references are computed here by running the layers of a small network one by one
(and, for gradients, by ``torch.autograd.grad`` on those intermediate tensors), not
through the monitors.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from sj_core import functional, layer, monitor, neuron


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(6, 5, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m"),
        layer.Linear(5, 3, step_mode="m"),
        neuron.IFNode(v_threshold=0.3, step_mode="m"),
    )
    with torch.no_grad():
        for module in (net[0], net[2]):
            module.weight.abs_()  # positive weights: both layers fire
    return net


def _x(seed: int = 1) -> torch.Tensor:
    return torch.rand(7, 2, 6, generator=torch.Generator().manual_seed(seed))


def _layer_by_layer(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Every module's output, calling the modules one after the other."""
    outputs = []
    for module in net:
        x = module(x)
        outputs.append(x)
    functional.reset_net(net)
    return outputs


def test_output_monitor_records_each_neuron_layer_in_call_order():
    net = _net()
    x = _x()
    with torch.no_grad():
        expected = _layer_by_layer(net, x)
        mon = monitor.OutputMonitor(net, neuron.BaseNode)
        net(x)
    assert mon.monitored_layers == ["1", "3"]
    assert len(mon) == 2
    torch.testing.assert_close(mon[0], expected[1], rtol=0, atol=0)
    torch.testing.assert_close(mon["3"][0], expected[3], rtol=0, atol=0)
    assert expected[1].sum() > 0 and expected[3].sum() > 0


def test_input_monitor_records_what_the_neurons_integrate():
    net = _net()
    x = _x()
    with torch.no_grad():
        expected = _layer_by_layer(net, x)
        mon = monitor.InputMonitor(net, (neuron.LIFNode, neuron.IFNode), lambda t: t.sum(0))
        net(x)
    torch.testing.assert_close(mon["1"][0], expected[0].sum(0))
    torch.testing.assert_close(mon["3"][0], expected[2].sum(0))


@pytest.mark.parametrize("pre_forward", [True, False], ids=["before", "after"])
def test_attribute_monitor_reads_the_potential_before_or_after_the_call(pre_forward):
    node = neuron.LIFNode(tau=2.0, step_mode="s")
    mon = monitor.AttributeMonitor("v", pre_forward, node, neuron.LIFNode)
    inputs = [torch.tensor([0.8, 1.6]), torch.tensor([0.4, 0.2])]
    with torch.no_grad():
        for x in inputs:
            node(x)
    # LIF by hand (decay_input, v_reset = 0): H = V + (X - V) / 2; fire at H >= 1, reset to 0.
    v, after = torch.zeros(2), []
    for x in inputs:
        h = v + (x - v) / 2
        v = torch.where(h >= 1.0, torch.zeros(2), h)
        after.append(v)
    assert mon.monitored_layers == [""]  # the node itself
    if pre_forward:
        assert mon[0] == 0.0  # the reset value, a float until the first call
        torch.testing.assert_close(mon[1], after[0])
    else:
        torch.testing.assert_close(torch.stack(mon[""]), torch.stack(after))


def test_grad_monitors_record_the_gradients_of_each_neuron_layer():
    net = _net()
    x = _x().requires_grad_()
    weights = torch.arange(3.0)
    # Reference: the loss's gradients with respect to every intermediate tensor.
    outs = _layer_by_layer(net, x)
    wanted = torch.autograd.grad((outs[3] * weights).sum(), outs)
    assert wanted[0].abs().sum() > 0, "the surrogate gradient should reach the first layer"

    grad_in = monitor.GradInputMonitor(net, neuron.BaseNode)
    grad_out = monitor.GradOutputMonitor(net, neuron.BaseNode, lambda g: g.clone())
    (net(x) * weights).sum().backward()
    assert grad_out.monitored_layers == ["1", "3"]
    torch.testing.assert_close(grad_out["3"][0], wanted[3])
    torch.testing.assert_close(grad_out["1"][0], wanted[1])
    torch.testing.assert_close(grad_in["3"][0], wanted[2])
    torch.testing.assert_close(grad_in["1"][0], wanted[0])
    torch.testing.assert_close(grad_in[0], wanted[2])  # backward meets the last layer first


def test_disable_enable_clear_and_remove_hooks():
    net = _net()
    mon = monitor.OutputMonitor(net, neuron.IFNode, lambda s: s.sum().item())
    with torch.no_grad():
        net(_x())
        mon.disable()
        assert not mon.is_enable()
        net(_x(2))
        assert len(mon) == 1
        mon.enable()
        net(_x(3))
        assert len(mon["3"]) == 2
        mon.clear_recorded_data()
        assert mon.records == [] and mon["3"] == []
        mon.remove_hooks()
        net(_x(4))
    assert len(mon) == 0 and not net[3]._forward_hooks


def test_context_manager_and_garbage_collection_remove_the_hooks():
    net = _net()
    with monitor.OutputMonitor(net, neuron.LIFNode) as mon:
        assert len(net[1]._forward_hooks) == 1
    assert not net[1]._forward_hooks
    assert mon.records == []  # nothing ran

    gone = weakref.ref(monitor.InputMonitor(net, neuron.LIFNode))
    gc.collect()
    assert gone() is None, "the network's hook must not keep the monitor alive"
    assert not net[1]._forward_hooks


def test_instance_none_monitors_the_network_itself():
    net = _net()
    mon = monitor.OutputMonitor(net)
    with torch.no_grad():
        out = net(_x())
    assert mon.monitored_layers == [""]
    torch.testing.assert_close(mon[""][0], out)


def test_monitors_check_their_arguments():
    net = _net()
    with pytest.raises(ValueError, match="contains no module of type QIFNode"):
        monitor.OutputMonitor(net, neuron.QIFNode)
    with pytest.raises(TypeError, match="instance must be a module class"):
        monitor.OutputMonitor(net, "LIFNode")
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        monitor.InputMonitor([net])
    with pytest.raises(TypeError, match="attribute_name must be a string"):
        monitor.AttributeMonitor(1, False, net, neuron.LIFNode)
    with pytest.raises(TypeError, match="pre_forward must be a bool"):
        monitor.AttributeMonitor("v", "no", net, neuron.LIFNode)
    mon = monitor.OutputMonitor(net, neuron.LIFNode)
    with pytest.raises(KeyError, match="'3' is not monitored; monitored: \\['1'\\]"):
        mon["3"]
    with pytest.raises(TypeError, match="an int or a layer name"):
        mon[1.0]


# -- choosing modules by name, records on the CPU ------------------------------------------


@pytest.mark.parametrize(
    ("instance", "names", "expected"),
    [
        (None, "3", ["3"]),
        (None, ["0", "1"], ["0", "1"]),
        (neuron.BaseNode, "[13]", ["1", "3"]),
        (layer.Linear, "*", ["0", "2"]),
        (neuron.LIFNode, ["1", "2"], ["1"]),  # both the type and a name must match
    ],
    ids=["exact", "list", "pattern", "type-and-wildcard", "type-and-names"],
)
def test_modules_are_chosen_by_type_and_or_name(instance, names, expected):
    net = _net()
    x = _x()
    with torch.no_grad():
        outputs = _layer_by_layer(net, x)
        mon = monitor.OutputMonitor(net, instance, names=names)
        net(x)
    assert mon.monitored_layers == expected
    for name in expected:
        torch.testing.assert_close(mon[name][0], outputs[int(name)], rtol=0, atol=0)


def test_a_name_that_matches_nothing_is_refused():
    with pytest.raises(ValueError, match=r"no module of type LIFNode and named like \('3',\)"):
        monitor.OutputMonitor(_net(), neuron.LIFNode, names="3")
    with pytest.raises(TypeError, match="names must be a pattern"):
        monitor.OutputMonitor(_net(), names=[1])
    with pytest.raises(TypeError, match="to_cpu must be a bool"):
        monitor.OutputMonitor(_net(), neuron.LIFNode, to_cpu="yes")


def test_to_cpu_stores_detached_copies():
    net = _net()
    x = _x().requires_grad_()
    kept = monitor.OutputMonitor(net, neuron.LIFNode)
    moved = monitor.OutputMonitor(net, neuron.LIFNode, to_cpu=True)
    grads = monitor.GradOutputMonitor(net, neuron.LIFNode, to_cpu=True)
    net(x).sum().backward()
    assert kept[0].grad_fn is not None  # the default keeps the autograd graph
    assert moved[0].grad_fn is None and moved[0].device.type == "cpu"
    torch.testing.assert_close(moved[0], kept[0].detach(), rtol=0, atol=0)
    assert grads[0].device.type == "cpu" and not grads[0].requires_grad


def test_clear_forgets_records_and_sequence_joins_steps():
    net = _net()
    x = _x()
    with torch.no_grad():
        expected = _layer_by_layer(net, x)[3]  # in step mode 'm'
    functional.set_step_mode(net, "s")
    mon = monitor.OutputMonitor(net, neuron.IFNode)
    with torch.no_grad():
        for x_t in x:
            net(x_t)
    assert len(mon) == len(x)
    torch.testing.assert_close(mon.sequence("3"), expected, rtol=0, atol=0)
    mon.clear()
    assert len(mon) == 0 and mon["3"] == []
    with pytest.raises(ValueError, match="nothing has been recorded for '3'"):
        mon.sequence("3")


# -- firing rates and potentials, on every backend in both step modes ----------------------

BACKENDS = ["torch", "triton"]


def _on(backend: str, step_mode: str) -> nn.Sequential:
    if backend != "torch":
        pytest.importorskip(f"sj_{backend}", reason=f"sj-{backend} is not installed")
    net = _net()
    functional.set_step_mode(net, step_mode)
    functional.set_backend(net, backend, instance=neuron.BaseNode)
    return net


def _forward(net: nn.Module, x: torch.Tensor, step_mode: str) -> None:
    with torch.no_grad():
        if step_mode == "m":
            net(x)
        else:
            for x_t in x:
                net(x_t)
    expected = net[1].backend
    assert [net[1].last_backend, net[3].last_backend] == [expected, expected]


def _lif_by_hand(x: torch.Tensor, tau: float, v_threshold: float) -> tuple:
    """LIF with decay_input and hard reset to 0, step by step: (spikes, potentials)."""
    v, spikes, potentials = torch.zeros_like(x[0]), [], []
    for x_t in x:
        h = v + (x_t - v) / tau
        s = (h >= v_threshold).float()
        v = h * (1 - s)
        spikes.append(s)
        potentials.append(v)
    return torch.stack(spikes), torch.stack(potentials)


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_firing_rates_per_neuron_and_per_layer(backend, step_mode):
    net = _on(backend, step_mode)
    rates = monitor.FiringRateMonitor(net)
    first, second = _x(1), _x(2)[:, :1]  # two calls, batches of 2 and 1
    _forward(net, first, step_mode)
    functional.reset_net(net)
    _forward(net, second, step_mode)
    # Reference: the first layer's spikes from its input current, by hand.
    currents = [net[0](x).detach() for x in (first, second)]
    spikes = torch.cat([_lif_by_hand(c, 2.0, 0.5)[0] for c in currents], dim=1)  # [T, 3, 5]
    assert rates.monitored_layers == ["1", "3"]
    per_neuron = rates.per_neuron()
    torch.testing.assert_close(per_neuron["1"], spikes.mean(dim=(0, 1)))
    assert rates.per_layer()["1"] == pytest.approx(spikes.mean().item())
    assert 0 < rates.per_layer()["3"] < 1
    calls = len(first) if step_mode == "s" else 1  # one record per call
    assert len(rates["1"]) == 2 * calls


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_membrane_potentials_at_every_step(backend, step_mode):
    net = _on(backend, step_mode)
    x = _x(3)
    v = monitor.MembranePotentialMonitor(net, neuron.LIFNode)
    spikes = monitor.OutputMonitor(net, neuron.LIFNode)
    _forward(net, x, step_mode)
    with torch.no_grad():
        want_spikes, want_v = _lif_by_hand(net[0](x), 2.0, 0.5)
    torch.testing.assert_close(v.sequence("1"), want_v)
    torch.testing.assert_close(spikes.sequence("1"), want_spikes)
    assert want_spikes.sum() > 0
    assert net[1].store_v_seq  # set while monitored ...
    v.remove_hooks()
    assert not net[1].store_v_seq  # ... and restored


def test_membrane_monitor_refuses_neurons_without_store_v_seq():
    net = nn.Sequential(layer.Linear(2, 2, step_mode="m"), neuron.SimpleIFNode(step_mode="m"))
    with pytest.raises(TypeError, match=r"modules \['1'\] have no store_v_seq"):
        monitor.MembranePotentialMonitor(net, neuron.SimpleIFNode)


def test_sequence_refuses_records_without_a_time_axis():
    net = _net()
    last_v = monitor.AttributeMonitor("v", False, net, neuron.LIFNode)
    grads = monitor.GradOutputMonitor(net, neuron.LIFNode)
    net(_x().requires_grad_()).sum().backward()
    for mon in (last_v, grads):
        with pytest.raises(ValueError, match="not per-step tensors"):
            mon.sequence("1")


# -- torch.compile -------------------------------------------------------------------------


def _compiled(net: nn.Module, x: torch.Tensor):
    # backend="eager": Dynamo alone, which is what traces hooks (inductor behaves the same).
    compiled = torch.compile(net, backend="eager")

    def run() -> None:
        compiled(x)
        functional.reset_net(net)

    return run


def test_monitors_compiled_in_before_the_first_call_and_their_switch():
    # As docs/monitoring.md states for the default Dynamo configuration.
    torch.compiler.reset()
    net = _net()
    x = _x()
    with torch.no_grad():
        expected = _layer_by_layer(net, x)[1]
    mon = monitor.OutputMonitor(net, neuron.LIFNode, lambda s: s.detach())
    run = _compiled(net, x)
    run()
    torch.testing.assert_close(mon[0], expected, rtol=0, atol=0)
    mon.disable()
    run()
    assert len(mon) == 1
    mon.enable()
    run()
    assert len(mon) == 2
    late = monitor.OutputMonitor(net, neuron.IFNode, lambda s: s.detach())
    torch.compiler.reset()  # the documented way to have a late monitor compiled in
    run()
    assert len(late) == 1 and len(mon) == 3


def test_monitors_attached_or_removed_later_with_hook_guards():
    torch.compiler.reset()
    net = _net()
    x = _x()
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
        run = _compiled(net, x)
        run()
        late = monitor.OutputMonitor(net, neuron.LIFNode, lambda s: s.detach())
        run()
        assert len(late) == 1
        late.remove_hooks()
        run()
        assert len(late) == 1
