"""Explicit state: the network-level functions of sj_core.base, the functional forms of
every stateful module, and the step-mode dispatch of MemoryModule. Each result is checked
against the stateful module's own forward (the independent reference here), bit for bit
where the issue asks for the same numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sj_core import base, functional, layer, neuron
from sj_core.neuron.flexsn import FlexSN


def _lif_net() -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(4, 5), neuron.IFNode(), nn.Sequential(neuron.LIFNode(), neuron.IFNode())
    )
    functional.set_step_mode(net, "m")
    return net


# -- named_memories, memories, extract_memories, load_memories ------------------------


def test_named_memories_walk_the_tree_with_dotted_names_and_prefix():
    net = _lif_net()
    assert [name for name, _ in base.named_memories(net)] == ["1.v", "2.0.v", "2.1.v"]
    assert [name for name, _ in base.named_memories(net, prefix="net")] == [
        "net.1.v",
        "net.2.0.v",
        "net.2.1.v",
    ]
    assert list(base.memories(net)) == [0.0, 0.0, 0.0]


def test_a_module_lists_its_own_memories_before_its_children():
    class Outer(base.MemoryModule):
        def __init__(self):
            super().__init__()
            self.register_memory("count", 0)
            self.inner = neuron.IzhikevichNode()

    assert [name for name, _ in base.named_memories(Outer())] == ["count", "inner.v", "inner.w"]


def test_extract_and_load_memories_round_trip():
    net = _lif_net()
    net(torch.rand(3, 2, 4))
    saved = base.extract_memories(net)
    assert [s.shape for s in saved] == [(2, 5)] * 3
    assert all(a is b for a, b in zip(saved, base.memories(net), strict=True))
    new = [torch.full((2, 5), float(i)) for i in range(3)]
    base.load_memories(net, new)
    assert all(a is b for a, b in zip(base.extract_memories(net), new, strict=True))
    assert net[2][0].v is new[1]


def test_load_memories_refuses_a_list_of_the_wrong_length():
    net = _lif_net()
    with pytest.raises(ValueError, match="Memory length mismatch: model has 3 memories"):
        base.load_memories(net, [0.0, 0.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: base.extract_memories("net"),
        lambda: list(base.named_memories(3)),
        lambda: base.to_functional_forward(None),
        lambda: base.load_memories([neuron.LIFNode()], []),
    ],
)
def test_the_state_functions_refuse_what_is_not_a_module(call):
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        call()


def test_load_memories_refuses_a_value_that_is_not_a_list():
    with pytest.raises(TypeError, match="list or tuple"):
        base.load_memories(neuron.LIFNode(), torch.zeros(1))


def test_a_state_that_is_neither_tensor_nor_number_is_refused_by_name():
    node = neuron.LIFNode()
    with pytest.raises(TypeError, match="state 'v' must be a tensor or a number, got str"):
        node.functional_forward(torch.ones(2, 3), ("0",))


def test_step_functions_refuse_integer_inputs_and_shapes_that_do_not_broadcast():
    sg = neuron.LIFNode().surrogate_function
    v = torch.zeros(4)
    with pytest.raises(TypeError, match="lif_step: x must be a floating-point tensor"):
        functional.lif_step(torch.ones(4, dtype=torch.int64), v, 2.0, True, 1.0, 0.0, sg)
    with pytest.raises(TypeError, match="lif_step: v must be a floating-point tensor"):
        functional.lif_step(torch.ones(4), 0.0, 2.0, True, 1.0, 0.0, sg)
    with pytest.raises(ValueError, match="if_step: v must have the shape of x"):
        functional.if_step(torch.ones(4), torch.zeros(3), 1.0, 0.0, sg)
    # A state that broadcasts (one value per feature) is the reference system's arithmetic.
    spike, v_next = functional.if_step(torch.full((2, 4), 0.6), torch.full((4,), 0.5), 1.0, 0.0, sg)
    assert torch.equal(spike, torch.ones(2, 4)) and torch.equal(v_next, torch.zeros(2, 4))


def test_get_reset_value_and_the_memory_mapping():
    node = neuron.LIFNode(v_reset=-0.5)
    assert node.get_reset_value("v") == -0.5
    assert dict(node._memories) == {"v": -0.5}
    node._memories["v"] = torch.ones(2)
    assert torch.equal(node.v, torch.ones(2))
    del node._memories_rv["v"]
    with pytest.raises(KeyError, match="v has no reset value"):
        node.get_reset_value("v")
    with pytest.raises(KeyError, match="register_memory"):
        node._memories["other"] = 1.0


# -- MemoryModule: dispatch and functional-backed step forwards ------------------------


class _Accumulator(base.MemoryModule):
    """Two memories; only the pure single step is written (with a keyword argument)."""

    def __init__(self):
        super().__init__()
        self.register_memory("left", torch.tensor(2.0))
        self.register_memory("right", torch.tensor(5.0))

    def single_step_functional_forward(self, inputs, states, increment=1.0):
        (x, y), (left, right) = inputs, states
        left, right = left + increment, right + increment
        return (x + y + left, x - y + right), (left, right)


def test_stateful_step_forwards_are_derived_from_the_pure_step():
    module = _Accumulator()
    a, b = module(torch.tensor(1.0), torch.tensor(3.0), increment=2.0)
    assert (a.item(), b.item()) == (8.0, 5.0)
    assert (module.left.item(), module.right.item()) == (4.0, 7.0)
    module.step_mode = "m"
    a, b = module(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), increment=3.0)
    # step 1: left 7, right 10 -> (11, 8); step 2: left 10, right 13 -> (16, 11)
    assert a.tolist() == [11.0, 16.0] and b.tolist() == [8.0, 11.0]
    assert (module.left.item(), module.right.item()) == (10.0, 13.0)


def test_a_module_with_only_single_step_forward_runs_in_both_step_modes():
    class Counter(base.MemoryModule):
        def __init__(self):
            super().__init__()
            self.register_memory("count", 0.0)

        def single_step_forward(self, x):
            self.count = self.count + x
            return self.count * 2

    counter = Counter()
    assert counter(torch.tensor(1.5)).item() == 3.0
    counter.step_mode = "m"
    assert counter(torch.tensor([1.0, 2.0])).tolist() == [5.0, 9.0]
    assert counter.count.item() == 4.5


def test_a_module_without_any_forward_says_what_to_implement():
    class Empty(base.MemoryModule):
        pass

    with pytest.raises(NotImplementedError, match="single_step_functional_forward"):
        Empty()(torch.ones(1))


def test_materialize_states_shapes_multi_step_states_like_one_step():
    class Running(base.MemoryModule):
        def __init__(self):
            super().__init__()
            self.register_memory("total", None)
            self.step_mode = "m"

        def materialize_states(self, inputs, states, step_mode):
            like = inputs[0][0] if step_mode == "m" else inputs[0]
            return (torch.zeros_like(like) if states[0] is None else states[0],)

        def single_step_functional_forward(self, inputs, states):
            total = states[0] + inputs[0]
            return (total,), (total,)

    module = Running()
    x_seq = torch.rand(4, 2, 3)
    torch.testing.assert_close(module(x_seq), x_seq.cumsum(0), rtol=0, atol=1e-6)
    assert module.total.shape == (2, 3)


# -- to_functional_forward ----------------------------------------------------------


def test_stateless_module():
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    x = torch.randn(2, 4)
    outputs, states = base.to_functional_forward(module)((x,), ())
    assert states == () and torch.equal(outputs[0], module(x))


def test_swapped_fallback_runs_forward_on_the_given_states_and_restores_the_module():
    class Accumulate(base.MemoryModule):
        def __init__(self):
            super().__init__()
            self.register_memory("left", torch.tensor(10.0))
            self.inner = neuron.IFNode()

        def single_step_forward(self, x, *, scale=1.0):
            self.left = self.left + x.sum() * scale
            return self.inner(x)

    module = Accumulate()
    f = base.to_functional_forward(module)
    x = torch.tensor([0.4, 0.9])
    (spike,), (left, v) = f((x,), (torch.tensor(1.0), torch.tensor([0.5, 0.5])), scale=2.0)
    assert spike.tolist() == [0.0, 1.0]
    assert left.item() == pytest.approx(3.6) and v.tolist() == pytest.approx([0.9, 0.0])
    assert module.left.item() == 10.0 and module.inner.v == 0.0  # untouched


def test_swapped_fallback_restores_the_module_after_an_error():
    class Failing(base.MemoryModule):
        def __init__(self):
            super().__init__()
            self.register_memory("state", torch.tensor(7.0))

        def single_step_forward(self, x):
            self.state = self.state + x
            raise RuntimeError("expected failure")

    module = Failing()
    with pytest.raises(RuntimeError, match="expected failure"):
        base.to_functional_forward(module)((torch.tensor(1.0),), (torch.tensor(3.0),))
    assert module.state.item() == 7.0


def test_custom_fn_and_the_state_count_check():
    module = neuron.IFNode()
    f = base.to_functional_forward(module, lambda x: module(x * 2))
    (spike,), (v,) = f((torch.tensor([0.3]),), (torch.tensor([0.5]),))
    assert spike.item() == 1.0 and v.item() == 0.0
    with pytest.raises(ValueError, match="expected 1 states, but got 2"):
        f((torch.tensor([0.3]),), (0.0, 0.0))


def test_flat_sequential_chains_functional_forwards_with_several_values():
    class Split(nn.Module):
        def forward(self, x, y, *, scale=1.0):
            return (x + y) * scale, x - y

    net = nn.Sequential(Split(), _Accumulator())
    outputs, states = base.to_functional_forward(net)(
        (torch.tensor(3.0), torch.tensor(2.0)), (torch.tensor(1.0), torch.tensor(4.0)), scale=2.0
    )
    # Split: (10, 1); accumulator: left 2, right 5 -> (10 + 1 + 2, 10 - 1 + 5)
    assert [o.item() for o in outputs] == [13.0, 14.0]
    assert [s.item() for s in states] == [2.0, 5.0]


def test_a_network_runs_purely_and_continues_like_the_stateful_one():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 6), neuron.LIFNode(step_mode="m"), layer.Dropout(0.5, step_mode="m")
    )
    net.append(nn.Linear(6, 3)).append(neuron.IzhikevichNode(step_mode="m", a=0.2, b=0.1))
    f = base.to_functional_forward(net)
    x = torch.rand(5, 2, 4) * 2
    torch.manual_seed(1)
    eager = [net(x), net(x)]
    torch.manual_seed(1)
    states = (0.0, None, 0.0, 0.0)  # the memories' reset values: v, mask, v, w
    (first,), states = f((x,), states)
    (second,), states = f((x,), states)
    assert torch.equal(first, eager[0]) and torch.equal(second, eager[1])
    for got, want in zip(states, base.extract_memories(net), strict=True):
        assert torch.equal(got, want)


# -- neurons: the functional forward is the forward, on every backend ------------------


NEURONS = {
    "IFNode": dict(),
    "LIFNode": dict(tau=2.5, decay_input=False),
    "ParametricLIFNode": dict(init_tau=2.5, v_reset=None),
    "QIFNode": dict(v_reset=-0.2),
    "EIFNode": dict(v_reset=-0.2),
    "IzhikevichNode": dict(a=0.3, b=0.2),
}


def _backends() -> list:
    from kernel_backends import GridBackend

    params = [pytest.param("torch", id="torch")]
    triton = GridBackend("triton", "cpu")
    reason = triton.skip_reason()
    params.append(pytest.param("triton", id="triton", marks=pytest.mark.skipif(
        reason is not None, reason=reason or ""
    )))  # fmt: skip
    return params


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name", list(NEURONS))
def test_neuron_functional_forward_is_pure_and_equals_forward(name, step_mode, backend):
    node = getattr(neuron, name)(step_mode=step_mode, backend=backend, **NEURONS[name])
    torch.manual_seed(3)
    x = torch.rand(6, 2, 3) * 1.5 if step_mode == "m" else torch.rand(2, 3) * 1.5
    step = x[0] if step_mode == "m" else x
    states = tuple(torch.rand_like(step) * 0.5 for _ in node.kernel_states)
    initial = tuple(s.clone().requires_grad_() for s in states)
    outputs, new_states = node.functional_forward((x,), initial)
    assert all(v in (0.0, -0.2) for v in base.memories(node))  # untouched
    (sum(s.sum() for s in new_states) + outputs[0].sum()).backward()
    assert all(s.grad is not None for s in initial)
    base.load_memories(node, list(states))
    assert torch.equal(node(x), outputs[0])
    for got, want in zip(new_states, base.extract_memories(node), strict=True):
        assert torch.equal(got.detach(), want)


def test_float_states_are_materialized_without_touching_the_module():
    node = neuron.IFNode(v_reset=-0.5)
    x = torch.randn(2, 3)
    (v,) = node.materialize_states((x,), (node.v,), "s")
    assert node.v == -0.5 and torch.equal(v, torch.full_like(x, -0.5))
    (spike,), (v_next,) = node.functional_forward((x,), (-0.5,))
    assert torch.equal(spike, (x - 0.5 >= 1.0).to(x.dtype))


def test_store_v_seq_is_not_part_of_the_state():
    node = neuron.LIFNode(step_mode="m", store_v_seq=True)
    assert [name for name, _ in node.named_memories()] == ["v"]
    x_seq = torch.rand(3, 2) * 2
    node.functional_forward((x_seq,), (0.0,))
    assert node.v_seq is None
    node(x_seq)
    assert node.v_seq.shape == (3, 2)
    node.store_v_seq = False
    assert node.v_seq is None


def test_a_custom_neuron_runs_purely_through_its_hooks():
    class SquareIF(neuron.BaseNode):
        def neuronal_charge(self, x):
            self.v = self.v + x.square()

    node = SquareIF(step_mode="m")
    node.v = torch.tensor([7.0])
    x_seq = torch.tensor([[0.5], [1.0], [0.5]])
    (spikes,), (v,) = node.functional_forward((x_seq,), (torch.tensor([0.25]),))
    assert node.v.tolist() == [7.0]
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0] and v.tolist() == [0.25]


def test_simple_nodes_have_no_functional_forward_but_convert():
    node = neuron.SimpleIFNode(step_mode="m")
    x_seq = torch.tensor([[0.5], [0.7], [0.2]])
    with pytest.raises(NotImplementedError):
        node.functional_forward((x_seq,), (torch.tensor([0.0]),))
    (spikes,), (v,) = base.to_functional_forward(node)((x_seq,), (torch.tensor([0.0]),))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0] and v.tolist() == pytest.approx([0.2])
    assert node.v == 0.0


# -- PSN family, Dropout, FlexSN ---------------------------------------------------------


def test_psn_functional_forwards_match_their_modules():
    torch.manual_seed(0)
    x_seq = torch.rand(4, 2, 3)
    for module in (neuron.SlidingPSN(k=2), neuron.MaskedPSN(k=2, T=4, lambda_init=1.0)):
        states = tuple(base.extract_memories(module))
        expected = torch.stack([module(x) for x in x_seq])
        outputs = []
        for x in x_seq:
            (spike,), states = module.functional_forward((x,), states)
            outputs.append(spike)
        assert torch.equal(torch.stack(outputs), expected)
        module.reset()
        module.step_mode = "m"
        assert torch.equal(module.functional_forward((x_seq,), states)[0][0], module(x_seq))


def test_dropout_state_is_its_mask():
    drop = layer.Dropout(0.5, step_mode="m")
    x_seq = torch.ones(3, 2, 4)
    mask = (torch.rand(2, 4) > 0.5).float() * 2
    (y,), (kept,) = drop.functional_forward((x_seq,), (mask,))
    assert kept is mask and torch.equal(y, x_seq * mask)
    assert drop.mask is None
    (y,), (drawn,) = drop.functional_forward((x_seq,), (None,))
    assert drawn.shape == (2, 4) and torch.equal(y, x_seq * drawn)


def _lif_core(x, v):
    h = v + (x - v) / 2.0
    s = (h >= 1.0).to(h.dtype)
    return s, h * (1.0 - s)


def test_flexsn_returns_and_state_layout_follow_the_reference():
    node = FlexSN(_lif_core, 1, 1, 1, backend="torch", store_state_seqs=True)
    assert [name for name, _ in node.named_memories()] == ["states"]
    x_seq = torch.rand(5, 3) * 2
    outputs = node.multi_step_forward(x_seq)
    assert isinstance(outputs, list) and len(outputs) == 1
    assert node.state_seqs[0].shape == (5, 3)
    node.reset()
    assert node.state_seqs is None and node.states is None
    spike_seq = node(x_seq)
    assert isinstance(spike_seq, torch.Tensor) and torch.equal(spike_seq, outputs[0])
    (pure,), (final,) = node.functional_forward((x_seq,), (None,))
    assert torch.equal(pure, spike_seq) and torch.equal(final[0], node.states[0])
    node.step_mode = "s"
    assert isinstance(node.single_step_forward(x_seq[0]), tuple)


def test_flexsn_state_only_core():
    node = FlexSN(lambda x, total: (total + x,), 1, 1, 0, backend="torch")
    x_seq = torch.rand(4, 3)
    assert node(x_seq) == []
    torch.testing.assert_close(node.states[0], x_seq.sum(0), rtol=0, atol=1e-6)


# -- functional.seq_to_ann_forward with tuples -------------------------------------------


def test_seq_to_ann_forward_takes_and_returns_tuples():
    x_seq = torch.randn(3, 2, 1, 4, 4)
    pooled, indices = functional.seq_to_ann_forward(x_seq, nn.MaxPool2d(2, return_indices=True))
    unpool = nn.MaxUnpool2d(2)
    expected = torch.stack([unpool(pooled[t], indices[t]) for t in range(3)])
    assert torch.equal(functional.seq_to_ann_forward((pooled, indices), unpool), expected)
    with pytest.raises(ValueError, match=r"\[T, batch_size\] leading dimensions"):
        functional.seq_to_ann_forward((torch.randn(3, 2, 4), torch.randn(2, 3, 4)), nn.Identity())


# -- torch.func, torch.compile, torch.export ---------------------------------------------


class _Stateless(nn.Module):
    """A network as a pure module: ``forward(x_seq, states) -> (out, new_states)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.step = base.to_functional_forward(net)

    def forward(self, x_seq, states):
        (out,), new_states = self.step((x_seq,), states)
        return out, new_states


def _network(backend: str = "torch") -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 5),
        neuron.LIFNode(backend=backend),
        nn.Linear(5, 3),
        neuron.IzhikevichNode(a=0.2, b=0.1, backend=backend),
    )
    functional.set_step_mode(net, "m")
    return net


def _zero_states(batch: int = 2) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(batch, 5), torch.zeros(batch, 3), torch.zeros(batch, 3))


def test_torch_func_grad_equals_autograd_on_the_stateful_network():
    from torch.func import functional_call, grad

    model = _Stateless(_network())
    x_seq = torch.rand(6, 2, 4) * 3
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(params):
        out, new_states = functional_call(model, params, (x_seq, _zero_states()))
        return out.square().mean() + new_states[1].sum()

    grads = grad(loss)(params)
    net = model.net
    functional.reset_net(net)
    (net(x_seq).square().mean() + net[3].v.sum()).backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(grads[f"net.{name}"], p.grad, rtol=1e-6, atol=1e-7)


def test_torch_func_vmap_runs_independent_sequences():
    from torch.func import vmap

    model = _Stateless(_network())
    batch = torch.rand(3, 6, 2, 4) * 3
    states = tuple(torch.rand(3, *s.shape) * 0.3 for s in _zero_states())
    out, new_states = vmap(model)(batch, states)
    for i in range(3):
        want, want_states = model(batch[i], tuple(s[i] for s in states))
        assert torch.equal(out[i], want)
        for got, expected in zip(new_states, want_states, strict=True):
            assert torch.equal(got[i], expected)


def test_kernel_backends_refuse_torch_func_clearly_and_auto_falls_back():
    from kernel_backends import GridBackend
    from torch.func import grad

    reason = GridBackend("triton", "cpu").skip_reason()
    if reason is not None:
        pytest.skip(reason)
    node = neuron.LIFNode(step_mode="m", backend="triton")
    x_seq = torch.rand(4, 3) * 2

    def loss(x_seq, node=node):
        return node.functional_forward((x_seq,), (torch.zeros(3),))[0][0].sum()

    with pytest.raises(NotImplementedError, match="do not run under torch.func transforms"):
        grad(loss)(x_seq)
    auto = neuron.LIFNode(step_mode="m", backend="auto")
    reference = neuron.LIFNode(step_mode="m")
    torch.testing.assert_close(
        grad(lambda x: loss(x, auto))(x_seq), grad(lambda x: loss(x, reference))(x_seq)
    )


def test_compiled_fullgraph_equals_eager():
    model = _Stateless(_network())
    x_seq = torch.rand(6, 2, 4) * 3
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, new_states = compiled(x_seq, _zero_states())
    want, want_states = model(x_seq, _zero_states())
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    for got, expected in zip(new_states, want_states, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_an_exported_network_carries_its_state_across_calls():
    model = _Stateless(_network())
    x_seq = torch.rand(6, 2, 4) * 3
    program = torch.export.export(model, (x_seq, _zero_states())).module()
    out1, states = program(x_seq, _zero_states())
    out2, states = program(x_seq, states)
    net = model.net
    functional.reset_net(net)
    assert torch.equal(out1, net(x_seq)) and torch.equal(out2, net(x_seq))
    for got, expected in zip(states, base.extract_memories(net), strict=True):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_step_functions_are_the_modules_bit_for_bit(step_mode):
    from sj_core import surrogate

    sg = surrogate.Sigmoid()
    torch.manual_seed(5)
    x_seq = torch.rand(6, 2, 3) * 2
    cases = [
        (neuron.IFNode(v_reset=None), lambda x, s: functional.if_step(x, *s, 1.0, None, sg)),
        (
            neuron.LIFNode(tau=2.5, decay_input=False, v_reset=-0.1),
            lambda x, s: functional.lif_step(x, *s, 2.5, False, 1.0, -0.1, sg),
        ),
        (
            neuron.QIFNode(tau=2.5, a0=0.6, v_rest=-0.2, v_c=0.4, v_reset=-0.3),
            lambda x, s: functional.qif_step(x, *s, 2.5, 0.6, -0.2, 0.4, 1.0, -0.3, sg),
        ),
        (
            neuron.EIFNode(tau=2.5, delta_T=0.7, theta_rh=0.4, v_rest=-0.2, v_reset=-0.3),
            lambda x, s: functional.eif_step(x, *s, 2.5, 0.7, 0.4, -0.2, 1.0, -0.3, sg),
        ),
        (
            neuron.IzhikevichNode(tau=2.5, v_c=0.4, a0=0.6, v_rest=-0.2, tau_w=3.0, a=0.1, b=0.2),
            lambda x, s: functional.izhikevich_step(
                x, *s, 2.5, 0.6, -0.2, 0.4, 3.0, 0.1, 0.2, 1.0, 0.0, sg
            ),
        ),
    ]
    plif = neuron.ParametricLIFNode(init_tau=2.5)
    cases.append((plif, lambda x, s: functional.plif_step(x, *s, plif.w, True, 1.0, 0.0, sg)))
    for node, step in cases:
        node.step_mode = step_mode
        # The module's initial states (v starts at v_reset), as tensors.
        states = node.materialize_states((x_seq[0],), tuple(base.extract_memories(node)), "s")
        spikes = []
        for x in x_seq:
            spike, *states = step(x, states)
            spikes.append(spike)
        got = node(x_seq) if step_mode == "m" else torch.stack([node(x) for x in x_seq])
        assert torch.equal(torch.stack(spikes), got), type(node).__name__
        for state, value in zip(states, base.extract_memories(node), strict=True):
            assert torch.equal(state, value), type(node).__name__


def test_step_functions_check_their_parameters():
    from sj_core import surrogate

    with pytest.raises(ValueError, match="tau"):
        functional.lif_step(torch.ones(2), torch.zeros(2), 0.5, True, 1.0, 0.0, surrogate.ATan())
