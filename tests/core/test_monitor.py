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
