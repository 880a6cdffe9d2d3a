"""sj_core.functional: network-wide reset/detach/step mode/backend, and time folding."""

from __future__ import annotations

import copy
import time
import warnings

import pytest
import torch
from torch import nn

import sj_core.functional as functional
import sj_core.layer as layer
from sj_core import backends, neuron


def _lif_by_hand(x_seq: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """LIF, decay_input, hard reset to 0, threshold 1 (SPEC section 3), as a plain loop."""
    v = torch.zeros_like(x_seq[0])
    spikes = []
    for x in x_seq:
        h = v + (x - v) / tau
        spike = (h >= 1.0).to(x_seq.dtype)
        v = h * (1 - spike)
        spikes.append(spike)
    return torch.stack(spikes)


def _mixed_net() -> nn.Sequential:
    """A net with neurons at the top level and inside both kinds of container."""
    return nn.Sequential(
        layer.Linear(3, 4),
        neuron.LIFNode(),
        layer.SeqToANNContainer(layer.Linear(4, 4), nn.ReLU()),
        layer.MultiStepContainer(nn.Linear(4, 4), neuron.LIFNode()),
        nn.Sequential(neuron.IFNode(), layer.Dropout(0.5)),
    )


# -- reset_net / detach_net ------------------------------------------------------------------


def test_reset_net_restores_every_memory():
    torch.manual_seed(0)
    net = _mixed_net()
    functional.set_step_mode(net, "m")
    x_seq = torch.randn(4, 2, 3) * 3
    first = net(x_seq)
    nodes = [m for m in net.modules() if isinstance(m, neuron.BaseNode)]
    assert len(nodes) == 3
    assert all(isinstance(node.v, torch.Tensor) for node in nodes)

    functional.reset_net(net)
    assert all(node.v == 0.0 and isinstance(node.v, float) for node in nodes)
    assert net[4][1].mask is None

    # After the reset the net behaves like a fresh copy (same dropout draw).
    fresh = copy.deepcopy(net)
    torch.manual_seed(1)
    again = net(x_seq)
    torch.manual_seed(1)
    torch.testing.assert_close(again, fresh(x_seq))
    assert first.shape == again.shape


def test_reset_net_is_what_makes_sequences_independent():
    node = neuron.LIFNode(step_mode="m")
    x_seq = torch.full((3, 2), 1.5)  # V: 0.75, 1.125 -> spike, 0.75
    expected = _lif_by_hand(x_seq)
    torch.testing.assert_close(node(x_seq), expected)
    # Without a reset the second sequence starts from the leftover potential.
    assert not torch.equal(node(x_seq), expected)
    functional.reset_net(node)
    torch.testing.assert_close(node(x_seq), expected)


def test_detach_net_cuts_history_and_keeps_values():
    net = nn.Sequential(nn.Linear(3, 3), neuron.LIFNode(step_mode="m"))
    net(torch.randn(4, 2, 3))
    v_before = net[1].v.clone()
    assert net[1].v.requires_grad
    functional.detach_net(net)
    assert not net[1].v.requires_grad
    torch.testing.assert_close(net[1].v, v_before)


# -- set_step_mode -------------------------------------------------------------------------


def test_set_step_mode_does_not_descend_into_time_managing_containers():
    net = _mixed_net()
    functional.set_step_mode(net, "m")
    assert net[0].step_mode == "m"
    assert net[1].step_mode == "m"
    assert net[2].step_mode == "m"
    assert net[3].step_mode == "m"
    assert net[4][0].step_mode == "m"  # a plain nn.Sequential is descended into
    assert net[4][1].step_mode == "m"
    # Children of the containers keep their own (single-step) modes.
    assert net[2][0].step_mode == "s"
    assert net[3][1].step_mode == "s"

    y = net(torch.randn(5, 2, 3))
    assert y.shape == (5, 2, 4)


def test_set_step_mode_refusal_is_atomic_and_names_the_module():
    net = _mixed_net()
    functional.set_step_mode(net, "m")
    with pytest.raises(ValueError, match=r"'2' \(SeqToANNContainer\)"):
        functional.set_step_mode(net, "s")
    # Nothing changed, not even the modules before the container.
    assert net[0].step_mode == "m"
    assert net[1].step_mode == "m"


def test_set_step_mode_honours_manages_time_on_any_class():
    class MyLoop(nn.Module):
        manages_time = True

        def __init__(self) -> None:
            super().__init__()
            self.step_mode = "m"
            self.node = neuron.IFNode()

    net = nn.Sequential(MyLoop(), neuron.IFNode())
    functional.set_step_mode(net, "m")
    assert net[0].node.step_mode == "s"
    assert net[1].step_mode == "m"


def test_set_step_mode_rejects_unknown_mode():
    with pytest.raises(ValueError, match="'s' or 'm'"):
        functional.set_step_mode(nn.Sequential(neuron.IFNode()), "multi")


# -- set_backend ---------------------------------------------------------------------------


def test_set_backend_warns_for_modules_that_lack_support_and_keeps_their_backend():
    # 'inductor' is a registered backend with multi-step operators only.
    net = nn.Sequential(
        neuron.LIFNode(step_mode="m"),
        nn.Sequential(nn.Linear(2, 2), neuron.LIFNode(step_mode="s")),
    )
    with pytest.warns(UserWarning) as record:
        functional.set_backend(net, "inductor")
    assert len(record) == 1
    message = str(record[0].message)
    assert "'1.1'" in message and "LIFNode" in message
    assert "'inductor'" in message
    assert str(net[1][1].supported_backends) in message
    assert net[0].backend == "inductor"
    assert net[1][1].backend == "torch"


def test_set_backend_unknown_name_raises_once_and_changes_nothing():
    net = nn.Sequential(neuron.LIFNode(step_mode="m"), neuron.IFNode(step_mode="m"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(backends.UnknownBackendError, match="no_such_backend"):
            functional.set_backend(net, "no_such_backend")
    assert [m.backend for m in net] == ["torch", "torch"]


def test_set_backend_instance_filter_and_always_accepted_names():
    net = nn.Sequential(neuron.LIFNode(step_mode="m"), neuron.IFNode(step_mode="m"))
    functional.set_backend(net, "inductor", instance=neuron.IFNode)
    assert [m.backend for m in net] == ["torch", "inductor"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'auto' and 'torch' suit every module
        functional.set_backend(net, "auto")
        assert [m.backend for m in net] == ["auto", "auto"]
        functional.set_backend(net, "torch")
        assert [m.backend for m in net] == ["torch", "torch"]


def test_set_backend_rejects_non_string():
    with pytest.raises(TypeError, match="string"):
        functional.set_backend(nn.Sequential(neuron.IFNode()), None)


def test_set_backend_instance_none_means_every_module_and_bad_instances_are_refused():
    net = nn.Sequential(neuron.LIFNode(step_mode="m"), neuron.IFNode(step_mode="m"))
    functional.set_backend(net, "inductor", None)
    assert [m.backend for m in net] == ["inductor", "inductor"]
    for bad in ("LIFNode", (neuron.IFNode, "x"), ()):
        with pytest.raises(TypeError, match="instance must be a type, a tuple of types or None"):
            functional.set_backend(net, "torch", instance=bad)
    assert [m.backend for m in net] == ["inductor", "inductor"]


class _Counter(nn.Module):
    """Not a MemoryModule, with a reset() of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def reset(self) -> None:
        self.calls += 1


class _NotCallable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.reset = 1  # an attribute that happens to be called reset
        self.detach = "no"


def test_reset_net_skips_non_callable_attributes_and_warns_for_non_memory_modules():
    node = neuron.LIFNode()
    node(torch.full((3,), 0.6))
    counter = _Counter()
    net = nn.Sequential(_NotCallable(), counter, node)
    with pytest.warns(UserWarning, match="reset\\(\\) of _Counter, which is not a sj_core"):
        functional.reset_net(net)
    assert counter.calls == 1
    assert isinstance(node.v, float) or float(node.v.abs().max()) == 0.0  # reset as well
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # memory modules reset without a word
        functional.reset_net(nn.Sequential(_NotCallable(), neuron.LIFNode()))
        functional.detach_net(net)


def test_reset_net_propagates_a_failing_reset():
    class Broken(nn.Module):
        def reset(self) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        functional.reset_net(nn.Sequential(Broken()))


# -- multi_step_forward / seq_to_ann_forward ---------------------------------------------------


def test_multi_step_forward_matches_a_manual_loop():
    torch.manual_seed(0)
    linear = nn.Linear(3, 4)
    x_seq = torch.randn(6, 2, 3) * 3
    out = functional.multi_step_forward(x_seq, [linear, neuron.LIFNode()])
    expected = _lif_by_hand(torch.stack([linear(x) for x in x_seq]))
    torch.testing.assert_close(out, expected)
    assert 0 < expected.sum() < expected.numel()


def test_multi_step_forward_accepts_a_callable():
    x_seq = torch.randn(3, 2, 4)
    out = functional.multi_step_forward(x_seq, lambda x: x.sum(-1))
    torch.testing.assert_close(out, x_seq.sum(-1))


@pytest.mark.parametrize(
    "function",
    [functional.multi_step_forward, functional.seq_to_ann_forward],
    ids=["multi_step_forward", "seq_to_ann_forward"],
)
def test_time_folding_rejects_bad_input(function):
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        function(torch.randn(4), nn.Identity())
    with pytest.raises(TypeError, match="module"):
        function(torch.randn(2, 3), 42)


def test_multi_step_forward_needs_a_time_step():
    with pytest.raises(ValueError, match="at least one time step"):
        functional.multi_step_forward(torch.empty(0, 2), nn.Identity())


def test_seq_to_ann_forward_matches_per_step_application():
    torch.manual_seed(0)
    conv, pool = nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2)
    x_seq = torch.randn(4, 2, 2, 6, 6)
    out = functional.seq_to_ann_forward(x_seq, (conv, pool))
    expected = torch.stack([pool(conv(x)) for x in x_seq])
    assert out.shape == (4, 2, 3, 3, 3)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_seq_to_ann_forward_batch_norm_pools_all_steps():
    x_seq = torch.randn(4, 3, 2) * 2 + 5
    out = functional.seq_to_ann_forward(x_seq, nn.BatchNorm1d(2))
    mean = x_seq.mean(dim=(0, 1))
    std = torch.sqrt(x_seq.var(dim=(0, 1), unbiased=False) + 1e-5)
    torch.testing.assert_close(out, (x_seq - mean) / std, rtol=1e-4, atol=1e-5)


# -- torch.compile -------------------------------------------------------------------------


def _train_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        layer.SeqToANNContainer(layer.Linear(6, 8)),
        neuron.LIFNode(step_mode="m"),
        layer.SeqToANNContainer(layer.Linear(8, 3)),
    )


def _loss_fn(net: nn.Module):
    def loss(x_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)  # inside the compiled graph
        return ((net(x_seq).mean(0) - target) ** 2).mean()

    return loss


def _train_and_compare(compile_backend: str, steps: int) -> None:
    eager_net = _train_net()
    compiled_net = copy.deepcopy(eager_net)
    eager_loss = _loss_fn(eager_net)
    compiled_loss = torch.compile(_loss_fn(compiled_net), fullgraph=True, backend=compile_backend)
    eager_opt = torch.optim.SGD(eager_net.parameters(), lr=0.5)
    compiled_opt = torch.optim.SGD(compiled_net.parameters(), lr=0.5)

    generator = torch.Generator().manual_seed(1)
    x_seq = torch.randn(5, 4, 6, generator=generator) * 4  # about 20% of neurons fire
    target = torch.rand(4, 3, generator=generator)
    for _ in range(steps):
        losses = []
        for loss_fn, opt in ((eager_loss, eager_opt), (compiled_loss, compiled_opt)):
            opt.zero_grad()
            loss = loss_fn(x_seq, target)
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0])
        for (name, p_c), p_e in zip(
            compiled_net.named_parameters(), eager_net.parameters(), strict=True
        ):
            assert p_e.grad is not None and p_e.grad.abs().sum() > 0, name
            torch.testing.assert_close(p_c.grad, p_e.grad, msg=name)
        eager_opt.step()
        compiled_opt.step()
    # The neuron fired, so its state carried over between steps unless reset_net ran.
    assert eager_net[1].v.abs().sum() > 0


def test_compiled_training_step_with_reset_net_matches_eager_aot_eager():
    _train_and_compare("aot_eager", steps=3)


@pytest.mark.slow
def test_compiled_training_step_with_reset_net_matches_eager_inductor():
    start = time.perf_counter()
    _train_and_compare("inductor", steps=2)
    print(f"inductor compile + 2 steps: {time.perf_counter() - start:.1f} s")


def test_mixed_net_with_containers_and_dropout_compiles_fullgraph():
    net = _mixed_net()
    net[3].append(layer.Dropout(0.5))  # a single-step dropout inside MultiStepContainer
    functional.set_step_mode(net, "m")

    def run(x_seq: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        return net(x_seq)

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    x_seq = torch.randn(4, 2, 3) * 3
    net.eval()  # dropout is the identity: values must match eager exactly
    torch.testing.assert_close(compiled(x_seq), run(x_seq))
    net.train()  # random masks: fullgraph=True proves there is no graph break
    assert compiled(x_seq).shape == (4, 2, 4)
