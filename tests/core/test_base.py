"""sj_core.base: step modes and memory modules (SPEC section 1), on small hand-made modules
and on the IF/LIF/PLIF nodes (state materialisation, copies, device/dtype moves)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from sj_core.base import MemoryModule, MultiStepModule, SingleStepModule, StepModule
from sj_core.neuron import IFNode, LIFNode, ParametricLIFNode


class Counter(MemoryModule):
    """Adds its input to a scalar memory; keeps a list memory of the inputs' sums."""

    def __init__(self) -> None:
        super().__init__()
        self.register_memory("count", 0.0)
        self.register_memory("history", [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count = self.count + x
        self.history.append(float(x.sum()))
        return self.count


class Offset(MemoryModule):
    """A memory whose reset value is a tensor, next to a real buffer and parameter."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.register_memory("state", start)
        self.register_buffer("scale", torch.tensor(2.0))
        self.bias = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.state = self.state + x * self.scale + self.bias
        return self.state


# -- step modes ---------------------------------------------------------------------------------


class AnyStep(StepModule):
    pass


class OnlySingle(SingleStepModule):
    pass


class OnlyMulti(MultiStepModule):
    pass


@pytest.mark.parametrize(
    ("cls", "accepted", "refused"),
    [
        (AnyStep, ("s", "m"), ("x", "M", "", None)),
        (OnlySingle, ("s",), ("m", "x")),
        (OnlyMulti, ("m",), ("s", "x")),
    ],
    ids=["StepModule", "SingleStepModule", "MultiStepModule"],
)
def test_step_module_accepts_and_refuses_modes(cls, accepted, refused) -> None:
    module = cls()
    assert module.supported_step_mode() == accepted
    for mode in accepted:
        module.step_mode = mode
        assert module.step_mode == mode
    for mode in refused:
        with pytest.raises(ValueError) as info:
            module.step_mode = mode
        assert str(accepted) in str(info.value)  # names what is accepted
        assert repr(mode) in str(info.value)
        assert module.step_mode == accepted[-1]  # unchanged


class MultiStepMemory(MemoryModule, MultiStepModule):
    pass


def test_multi_step_only_memory_module_starts_in_a_supported_mode() -> None:
    module = MultiStepMemory()
    assert module.step_mode in module.supported_step_mode()


def test_memory_module_defaults_to_single_step() -> None:
    assert Counter().step_mode == "s"
    assert "step_mode=s" in repr(Counter())


# -- registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["count", "history", "training", "forward", "reset"])
def test_register_memory_refuses_an_existing_attribute(name: str) -> None:
    module = Counter()
    with pytest.raises(AttributeError, match=f"cannot register memory '{name}'"):
        module.register_memory(name, 1.0)


def test_register_memory_refuses_a_parameter_or_buffer_name() -> None:
    module = Offset(torch.zeros(2))
    for name in ("scale", "bias"):
        with pytest.raises(AttributeError, match="already has an attribute"):
            module.register_memory(name, 0.0)


@pytest.mark.parametrize("name", ["1v", "v-seq", "", 3])
def test_register_memory_refuses_a_non_identifier(name) -> None:
    with pytest.raises(ValueError, match="identifier"):
        Counter().register_memory(name, 0.0)


def test_memories_and_named_memories_in_registration_order() -> None:
    module = Counter()
    module(torch.tensor([1.0, 2.0]))
    names = [name for name, _ in module.named_memories()]
    assert names == ["count", "history"]
    values = list(module.memories())
    assert torch.equal(values[0], torch.tensor([1.0, 2.0]))
    assert values[1] == [3.0]


def test_memory_is_a_plain_attribute() -> None:
    module = Counter()
    module.count = torch.tensor(5.0)
    assert "count" in module.__dict__
    assert torch.equal(dict(module.named_memories())["count"], torch.tensor(5.0))


# -- reset and detach -----------------------------------------------------------------------------


def test_reset_restores_a_scalar_as_a_scalar() -> None:
    module = Counter()
    module(torch.ones(3))
    module(torch.ones(3))
    assert torch.equal(module.count, torch.full((3,), 2.0))
    assert module.history == [3.0, 3.0]
    module.reset()
    assert module.count == 0.0 and type(module.count) is float
    assert module.history == []
    # The next input may have another shape: the scalar broadcasts to it.
    assert torch.equal(module(torch.ones(2, 2)), torch.ones(2, 2))


def test_reset_list_memory_does_not_share_the_reset_value() -> None:
    module = Counter()
    module(torch.ones(1))
    module.reset()
    module(torch.ones(1))
    module.reset()
    assert module.history == []
    assert module._memories_rv["history"] == []


def test_tensor_reset_value_is_copied_not_aliased() -> None:
    start = torch.tensor([1.0, -1.0])
    module = Offset(start)
    start.fill_(100.0)  # registering took a copy
    assert torch.equal(module.state, torch.tensor([1.0, -1.0]))
    module.state.add_(10.0)  # in-place change of the live memory ...
    module.reset()
    assert torch.equal(module.state, torch.tensor([1.0, -1.0]))  # ... not of the reset value
    module.state.mul_(0.0)
    module.reset()
    assert torch.equal(module.state, torch.tensor([1.0, -1.0]))
    # (2 * 1 + 0.5) added once
    assert torch.equal(module(torch.ones(2)), torch.tensor([3.5, 1.5]))


def test_set_reset_value() -> None:
    module = Counter()
    module.set_reset_value("count", 7.0)
    module.reset()
    assert module.count == 7.0
    with pytest.raises(KeyError, match="no memory 'nope'"):
        module.set_reset_value("nope", 0.0)


def test_detach_cuts_history_and_keeps_values() -> None:
    node = LIFNode(step_mode="m")
    x_seq = torch.rand(3, 4, requires_grad=True)
    node(x_seq)
    assert node.v.grad_fn is not None
    before = node.v.clone()
    node.detach()
    assert node.v.grad_fn is None and not node.v.requires_grad
    assert torch.equal(node.v, before)
    # A following step builds a graph that does not reach x_seq.
    out = node(torch.rand(1, 4, requires_grad=True))
    assert out.requires_grad
    assert node.v.grad_fn is not None


def test_detach_leaves_scalar_memories_alone() -> None:
    module = Counter()
    module.detach()
    assert module.count == 0.0


# -- state_dict ----------------------------------------------------------------------------------


def test_state_dict_has_no_memories() -> None:
    lif = LIFNode(step_mode="m", store_v_seq=True)
    lif(torch.rand(2, 3))
    assert lif.state_dict() == {}
    plif = ParametricLIFNode(init_tau=3.0)
    plif(torch.rand(3))
    assert list(plif.state_dict()) == ["w"]
    offset = Offset(torch.zeros(2))
    offset(torch.ones(2))
    assert sorted(offset.state_dict()) == ["bias", "scale"]


def test_plif_state_dict_round_trip_keeps_w() -> None:
    source = ParametricLIFNode(init_tau=3.0)
    with torch.no_grad():
        source.w.fill_(0.25)
    target = ParametricLIFNode(init_tau=2.0)
    target.load_state_dict(source.state_dict())
    assert target.w.item() == 0.25


# -- moving between dtypes and devices -----------------------------------------------------------


def test_to_float64_moves_memories_and_tensor_reset_values() -> None:
    module = Offset(torch.tensor([1.0, 2.0]))
    module(torch.ones(2))
    module.to(torch.float64)
    assert module.state.dtype == torch.float64
    assert module._memories_rv["state"].dtype == torch.float64
    assert module.scale.dtype == torch.float64
    module.reset()
    assert module.state.dtype == torch.float64
    module.half()
    assert module.state.dtype == torch.float16
    assert module._memories_rv["state"].dtype == torch.float16


def test_half_and_double_move_node_state() -> None:
    node = LIFNode(step_mode="m", store_v_seq=True)
    node(torch.rand(2, 3))
    node.half()
    assert node.v.dtype == torch.float16 and node.v_seq.dtype == torch.float16
    node.double()
    assert node.v.dtype == torch.float64 and node.v_seq.dtype == torch.float64
    node.reset()
    assert node.v == 0.0  # a scalar memory is not a tensor to convert


def test_to_meta_moves_memories_and_reset_values() -> None:
    module = Offset(torch.tensor([1.0, 2.0]))
    module(torch.ones(2))
    module.to("meta")
    assert module.state.device.type == "meta"
    assert module._memories_rv["state"].device.type == "meta"
    module.reset()
    assert module.state.device.type == "meta"
    node = IFNode()
    node(torch.ones(4))
    node.to("meta")
    assert node.v.device.type == "meta" and node.v.shape == (4,)


def test_memory_moves_with_child_modules() -> None:
    net = nn.Sequential(nn.Linear(2, 2), LIFNode())
    net(torch.rand(3, 2))
    net.double()
    assert net[1].v.dtype == torch.float64


# -- lazy materialisation ------------------------------------------------------------------------


def test_materialize_memory() -> None:
    module = Counter()
    like = torch.empty(2, 3, dtype=torch.float64)
    value = module.materialize_memory("count", like)
    assert torch.equal(value, torch.zeros(2, 3, dtype=torch.float64))
    assert module.count is value
    # Same shape, dtype and device: the same tensor, not a copy.
    assert module.materialize_memory("count", like) is value
    # Only the dtype differs: converted, values kept.
    module.count = torch.full((2, 3), 4.0, dtype=torch.float64)
    converted = module.materialize_memory("count", torch.empty(2, 3, dtype=torch.float32))
    assert converted.dtype == torch.float32 and torch.equal(converted, torch.full((2, 3), 4.0))
    assert module.count is converted
    # The shape differs: re-initialised from the reset value.
    fresh = module.materialize_memory("count", torch.empty(5))
    assert torch.equal(fresh, torch.zeros(5))
    # Only the device differs: moved.
    moved = module.materialize_memory("count", torch.empty(5, device="meta"))
    assert moved.device.type == "meta" and module.count is moved


def test_materialize_tensor_reset_value_on_shape_change() -> None:
    module = Offset(torch.tensor([1.0, -1.0]))
    module.state = torch.full((3, 2), 9.0)
    fresh = module.materialize_memory("state", torch.empty(4, 2, dtype=torch.float64))
    assert fresh.dtype == torch.float64
    assert torch.equal(fresh, torch.tensor([[1.0, -1.0]] * 4, dtype=torch.float64))
    fresh.add_(1.0)  # a copy: the reset value is untouched
    assert torch.equal(module._memories_rv["state"], torch.tensor([1.0, -1.0]))


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_batch_size_change_reinitialises_the_state(step_mode: str) -> None:
    # IF, hard reset to -0.5 (V starts there). 0.25 per step:
    # batch 2: V = -0.25 after one step; then a batch of 3 starts again from -0.5.
    node = IFNode(v_reset=-0.5, step_mode=step_mode)
    step = (
        (lambda n: torch.full((1, n), 0.25))
        if step_mode == "m"
        else (lambda n: torch.full((n,), 0.25))
    )
    node(step(2))
    assert node.v.tolist() == [-0.25, -0.25]
    node(step(3))
    assert node.v.tolist() == [-0.25, -0.25, -0.25]


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_dtype_change_converts_the_state(step_mode: str) -> None:
    node = IFNode(step_mode=step_mode)
    step = torch.full((1, 2), 0.375) if step_mode == "m" else torch.full((2,), 0.375)
    node(step)
    node(step.double())  # V continues: .375 + .375 = .75, now in fp64
    assert node.v.dtype == torch.float64
    assert node.v.tolist() == [0.75, 0.75]


@pytest.mark.gpu
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_device_change_moves_the_state(step_mode: str) -> None:
    node = IFNode(step_mode=step_mode)
    step = torch.full((1, 2), 0.375) if step_mode == "m" else torch.full((2,), 0.375)
    node(step)
    node(step.cuda())  # V continues on the GPU: .375 + .375 = .75
    assert node.v.device.type == "cuda"
    assert node.v.tolist() == [0.75, 0.75]
    node.cpu()
    assert node.v.device.type == "cpu"


# -- copies ----------------------------------------------------------------------------------------


COPY_CASES = {
    "IF": lambda: IFNode(v_reset=None, step_mode="m", store_v_seq=True),
    "LIF": lambda: LIFNode(tau=3.0, decay_input=False, v_reset=-0.2, step_mode="m"),
    "PLIF": lambda: ParametricLIFNode(init_tau=4.0, step_mode="s", detach_reset=True),
}


def _feed(node, x_seq: torch.Tensor) -> torch.Tensor:
    if node.step_mode == "m":
        return node(x_seq)
    return torch.stack([node(x) for x in x_seq])


def _copy(node, how: str):
    return copy.deepcopy(node) if how == "deepcopy" else pickle.loads(pickle.dumps(node))


def _assert_same_node(node, clone) -> None:
    assert type(clone) is type(node)
    assert repr(clone) == repr(node)
    for (name, value), (clone_name, clone_value) in zip(
        node.named_memories(), clone.named_memories(), strict=True
    ):
        assert name == clone_name
        assert torch.equal(value, clone_value) and value is not clone_value
    assert clone.state_dict().keys() == node.state_dict().keys()
    for key, value in node.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", list(COPY_CASES))
def test_copy_round_trip(name: str, how: str) -> None:
    node = COPY_CASES[name]()
    with torch.no_grad():  # a state without autograd history (inference, or after detach)
        _feed(node, torch.rand(3, 2, 4) * 1.5)
    clone = _copy(node, how)
    _assert_same_node(node, clone)
    # Both continue identically, independently.
    more = torch.rand(2, 2, 4) * 1.5
    assert torch.equal(_feed(node, more), _feed(clone, more))
    assert torch.equal(node.v, clone.v)
    clone.reset()
    assert isinstance(node.v, torch.Tensor)


@pytest.mark.parametrize(
    "how",
    [
        "deepcopy",
        "pickle",
    ],
)
def test_copy_round_trip_after_a_training_forward(how: str) -> None:
    # PLIF's w requires grad, so after a forward v is a non-leaf tensor of the graph
    # (copying a model mid-training, e.g. for an EMA or a checkpoint).
    node = COPY_CASES["PLIF"]()
    _feed(node, torch.rand(3, 2, 4) * 1.5)
    assert node.v.grad_fn is not None
    clone = _copy(node, how)
    _assert_same_node(node, clone)
    more = torch.rand(2, 2, 4) * 1.5
    assert torch.equal(_feed(node, more), _feed(clone, more))


def test_reset_under_torch_compile_fullgraph() -> None:
    # LIF tau=2, decay_input, hard reset to 0, X = 1.5 per step:
    # t0: H = .75 (no spike); t1: H = .75 + (1.5 - .75)/2 = 1.125 (spike) -> V = 0.
    node = LIFNode(tau=2.0)

    def two_steps_from_rest(x: torch.Tensor) -> torch.Tensor:
        node.reset()
        return torch.stack([node(x), node(x)])

    compiled = torch.compile(two_steps_from_rest, fullgraph=True, backend="eager")
    x = torch.full((3,), 1.5)
    for _ in range(3):  # reset makes every call start from rest
        out = compiled(x)
        assert out.tolist() == [[0.0] * 3, [1.0] * 3]
        assert node.v.tolist() == [0.0] * 3
    node.v = torch.full((3,), 0.9)  # state left over: reset must clear it
    assert compiled(x).tolist() == [[0.0] * 3, [1.0] * 3]
    node.reset()
    assert node.v == 0.0
