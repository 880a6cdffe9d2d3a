"""FlexSN on the torch backend, its validation, and its dispatch to kernel backends.

References: LIF cores are checked against ``LIFNode`` (same ops, so values and gradients
must be bitwise equal); other cores against loops written out by hand in this file.
Kernel dispatch is checked with a fake backend registered through fake entry points,
since the real kernels live in sj-flexsn.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from sj_core import backends
from sj_core.backends import BackendSpec, registry
from sj_core.neuron.flexsn import FlexSN, FlexSNKernel
from sj_core.neuron.lif import LIFNode
from sj_core.surrogate import ATan, Sigmoid

TAU = 2.0


def make_lif_core(surrogate):
    """LIF with hard reset to 0, written op for op like LIFNode (tau=2, v_th=1, v_r=0)."""

    def lif_core(x, v):
        h = v + (x - (v - 0.0)) / TAU
        s = surrogate(h - 1.0)
        return s, s * 0.0 + (1.0 - s) * h

    return lif_core


BETA, RHO = 0.5, 0.8


def make_alif_core(surrogate):
    """LIF with an adaptive threshold ``1 + BETA * a``; two states ``(v, a)``."""

    def alif_core(x, v, a):
        h = v + (x - v) / TAU
        s = surrogate(h - (1.0 + BETA * a))
        return s, h * (1.0 - s), RHO * a + s

    return alif_core


def alif_loop(x_seq, v, a, surrogate):
    """The adaptive LIF written out by hand: returns (spikes, v_seq, a_seq)."""
    spikes, vs, as_ = [], [], []
    for x in x_seq:
        h = v + (x - v) / TAU
        s = surrogate(h - (1.0 + BETA * a))
        v = h * (1.0 - s)
        a = RHO * a + s
        spikes.append(s)
        vs.append(v)
        as_.append(a)
    return torch.stack(spikes), torch.stack(vs), torch.stack(as_)


def weighted_sum(*tensors: torch.Tensor) -> torch.Tensor:
    """A loss with distinct weights per element, so every gradient entry is tested."""
    total = 0.0
    for i, tensor in enumerate(tensors):
        weights = torch.linspace(-1.0, 1.0 + i, tensor.numel(), dtype=tensor.dtype)
        total = total + (tensor * weights.view_as(tensor)).sum()
    return total


# -- LIF core == LIFNode -----------------------------------------------------------------


def test_lif_core_equals_lif_node_multi_step():
    torch.manual_seed(0)
    surrogate = Sigmoid(alpha=4.0)
    x_seq = (torch.rand(6, 3, 5) * 2.5).requires_grad_()
    x_ref = x_seq.detach().clone().requires_grad_()

    flex = FlexSN(make_lif_core(surrogate), 1, 1, 1, step_mode="m", backend="torch")
    out = flex(x_seq)
    node = LIFNode(tau=TAU, surrogate_function=surrogate, step_mode="m")
    ref = node(x_ref)

    assert 0 < ref.sum() < ref.numel()  # some spikes, some silence
    assert torch.equal(out, ref)
    assert torch.equal(flex.states[0], node.v)
    weighted_sum(out, flex.states[0]).backward()
    weighted_sum(ref, node.v).backward()
    # LIFNode's multi-step torch path is the fused loop (sj_core.fused): the same
    # derivatives in another order than autograd's per-step graph, so equal to rounding.
    scale = x_ref.grad.abs().max().item()
    torch.testing.assert_close(x_seq.grad, x_ref.grad, rtol=1e-6, atol=1e-6 * scale)


def test_lif_core_equals_lif_node_single_step():
    torch.manual_seed(1)
    surrogate = Sigmoid(alpha=4.0)
    x_seq = (torch.rand(5, 4) * 2.5).requires_grad_()
    x_ref = x_seq.detach().clone().requires_grad_()

    flex = FlexSN(make_lif_core(surrogate), 1, 1, 1, step_mode="s", backend="torch")
    node = LIFNode(tau=TAU, surrogate_function=surrogate, step_mode="s")
    outs = torch.stack([flex(x) for x in x_seq])  # states persist across calls
    refs = torch.stack([node(x) for x in x_ref])

    assert 0 < refs.sum() < refs.numel()
    assert torch.equal(outs, refs)
    assert torch.equal(flex.states[0], node.v)
    weighted_sum(outs, flex.states[0]).backward()
    weighted_sum(refs, node.v).backward()
    assert torch.equal(x_seq.grad, x_ref.grad)


def test_multi_step_calls_continue_from_final_states_until_reset():
    surrogate = Sigmoid()
    x_seq = torch.rand(8, 6) * 2.5
    node = LIFNode(tau=TAU, surrogate_function=surrogate, step_mode="m")
    whole = node(x_seq)
    flex = FlexSN(make_lif_core(surrogate), 1, 1, 1, backend="torch")
    halves = torch.cat([flex(x_seq[:3]), flex(x_seq[3:])])
    assert torch.equal(halves, whole)

    flex.reset()
    assert flex.states is None and flex.state_seqs is None
    node.reset()
    assert torch.equal(flex(x_seq[:4]), node(x_seq[:4]))  # fresh zero states again


# -- two states, several inputs and outputs, no states -------------------------------------


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_adaptive_two_state_neuron_equals_hand_written_loop(step_mode):
    torch.manual_seed(2)
    surrogate = ATan()
    x_seq = (torch.rand(7, 2, 3) * 3.0).requires_grad_()
    x_ref = x_seq.detach().clone().requires_grad_()

    flex = FlexSN(make_alif_core(surrogate), 1, 2, 1, step_mode=step_mode, backend="torch")
    if step_mode == "m":
        out = flex(x_seq)
    else:
        out = torch.stack([flex(x) for x in x_seq])
    zeros = torch.zeros(2, 3)
    ref, v_seq, a_seq = alif_loop(x_ref, zeros, zeros, surrogate)

    assert 0 < ref.sum() < ref.numel()
    assert torch.equal(out, ref)
    assert torch.equal(flex.states[0], v_seq[-1]) and torch.equal(flex.states[1], a_seq[-1])
    weighted_sum(out, *flex.states).backward()
    weighted_sum(ref, v_seq[-1], a_seq[-1]).backward()
    assert torch.equal(x_seq.grad, x_ref.grad)


def test_store_state_seqs():
    surrogate = ATan()
    x_seq = torch.rand(5, 4) * 3.0
    flex = FlexSN(make_alif_core(surrogate), 1, 2, 1, backend="torch", store_state_seqs=True)
    out = flex(x_seq)
    zeros = torch.zeros(4)
    ref, v_seq, a_seq = alif_loop(x_seq, zeros, zeros, surrogate)
    assert torch.equal(out, ref)
    assert isinstance(flex.state_seqs, list) and len(flex.state_seqs) == 2
    assert torch.equal(flex.state_seqs[0], v_seq) and torch.equal(flex.state_seqs[1], a_seq)
    assert torch.equal(flex.states[0], v_seq[-1])

    flex.store_state_seqs = False
    flex.reset()
    flex(x_seq)
    assert flex.state_seqs is None


def test_several_inputs_and_outputs():
    def core(x, y, v):
        h = 0.5 * v + x - y
        s = (h >= 1.0).to(h.dtype)
        return s, h, h - s  # spike, pre-reset potential, new v

    x_seq, y_seq = torch.rand(4, 3) * 2, torch.rand(4, 3)
    flex = FlexSN(core, num_inputs=2, num_states=1, num_outputs=2, backend="torch")
    spikes, h_seq = flex(x_seq, y_seq)

    v = torch.zeros(3)
    exp_s, exp_h = [], []
    for x, y in zip(x_seq, y_seq, strict=True):
        h = 0.5 * v + x - y
        s = (h >= 1.0).float()
        v = h - s
        exp_s.append(s)
        exp_h.append(h)
    assert torch.equal(spikes, torch.stack(exp_s))
    assert torch.equal(h_seq, torch.stack(exp_h))
    assert torch.equal(flex.states[0], v)

    flex.step_mode = "s"
    flex.reset()
    s0, h0 = flex(x_seq[0], y_seq[0])
    assert torch.equal(s0, exp_s[0]) and torch.equal(h0, exp_h[0])


def test_zero_states():
    def core(x):
        return (x >= 0.5).to(x.dtype), 2.0 * x

    x_seq = torch.tensor([[0.25, 0.75], [0.5, 0.0]])
    flex = FlexSN(core, num_inputs=1, num_states=0, num_outputs=2, backend="torch")
    spikes, doubled = flex(x_seq)
    assert torch.equal(spikes, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(doubled, torch.tensor([[0.5, 1.5], [1.0, 0.0]]))
    assert flex.states == []

    flex = FlexSN(core, 1, 0, 2, step_mode="s", backend="torch")
    spikes, doubled = flex(x_seq[0])
    assert torch.equal(spikes, torch.tensor([0.0, 1.0]))


class LearnableDecay(nn.Module):
    """A core with a learnable decay ``sigmoid(w)``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, v):
        h = v + (x - v) * torch.sigmoid(self.w)
        s = ATan(spiking=False)(h - 1.0)
        return s, h * (1.0 - s)


def test_core_module_parameters_are_registered_and_trained():
    flex = FlexSN(LearnableDecay(), 1, 1, 1, backend="torch")
    assert list(flex.state_dict()) == ["core.w"]
    flex(torch.rand(3, 2)).sum().backward()
    assert flex.core.w.grad is not None and flex.core.w.grad != 0


# -- init_states -------------------------------------------------------------------------


class HalfStartFlexSN(FlexSN):
    calls: list[str] = []

    @staticmethod
    def init_states(num_states, step_mode, *args):
        HalfStartFlexSN.calls.append(step_mode)
        like = args[0] if step_mode == "s" else args[0][0]
        return [torch.full_like(like, 0.5) for _ in range(num_states)]


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_init_states_override(step_mode):
    HalfStartFlexSN.calls.clear()
    surrogate = ATan()
    x_seq = torch.rand(4, 3) * 3.0
    flex = HalfStartFlexSN(make_alif_core(surrogate), 1, 2, 1, step_mode=step_mode, backend="torch")
    out = flex(x_seq) if step_mode == "m" else torch.stack([flex(x) for x in x_seq])
    half = torch.full((3,), 0.5)
    ref, _, _ = alif_loop(x_seq, half, half, surrogate)
    assert torch.equal(out, ref)
    assert HalfStartFlexSN.calls == [step_mode]  # once, then the states persist


def test_default_init_states():
    x_seq = torch.rand(3, 2, 4, dtype=torch.float64)
    states = FlexSN.init_states(2, "m", x_seq)
    assert len(states) == 2
    for state in states:
        assert state.shape == (2, 4) and state.dtype == torch.float64
        assert torch.equal(state, torch.zeros(2, 4, dtype=torch.float64))
    assert FlexSN.init_states(1, "s", x_seq[0])[0].shape == (2, 4)
    assert FlexSN.init_states(0, "m", x_seq) == []


def test_init_states_returning_the_wrong_count_is_an_error():
    class Bad(FlexSN):
        @staticmethod
        def init_states(num_states, step_mode, *args):
            return [torch.zeros(2)]

    flex = Bad(make_alif_core(ATan()), 1, 2, 1, backend="torch")
    with pytest.raises(ValueError, match="init_states must return a list of num_states = 2"):
        flex(torch.rand(3, 2))


# -- T == 0 ------------------------------------------------------------------------------


def test_empty_sequence_needs_example_outputs():
    flex = FlexSN(make_lif_core(ATan()), 1, 1, 1, backend="torch")
    with pytest.raises(ValueError, match="example_outputs"):
        flex(torch.rand(0, 3))


def test_empty_sequence_with_example_outputs():
    def core(x, v):
        return (x >= v).to(torch.float16), x + v, x + v

    templates = (torch.zeros(2, 3, dtype=torch.float16), torch.zeros(2, 3))
    flex = FlexSN(core, 1, 1, 2, backend="torch", store_state_seqs=True, example_outputs=templates)
    flex(torch.ones(2, 2, 3))  # T = 2: the state is now 2
    state_before = flex.states[0]

    spikes, sums = flex(torch.rand(0, 2, 3))
    assert spikes.shape == (0, 2, 3) and spikes.dtype == torch.float16
    assert sums.shape == (0, 2, 3) and sums.dtype == torch.float32
    assert torch.equal(flex.states[0], torch.full((2, 3), 2.0))
    assert flex.states[0] is not state_before  # a clone
    assert [s.shape for s in flex.state_seqs] == [(0, 2, 3)]


# -- validation --------------------------------------------------------------------------


def lif2(x, v):
    return x, v


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((lif2, 0, 1, 1), ValueError, "num_inputs must be >= 1"),
        ((lif2, 1, -1, 1), ValueError, "num_states must be >= 0"),
        ((lambda x: (x,), 1, 0, 0), ValueError, "at least one output or one state"),
        ((lif2, 1.0, 1, 1), TypeError, "num_inputs must be an int"),
        ((lif2, 1, True, 1), TypeError, "num_states must be an int"),
        (("core", 1, 1, 1), TypeError, "core must be a callable"),
        ((lif2, 2, 1, 1), ValueError, r"core takes 2 positional arguments.*= 3"),
        ((lambda x, *, k: x, 1, 0, 1), ValueError, "keyword-only"),
    ],
    ids=[
        "no-inputs",
        "negative-states",
        "nothing-returned",
        "float-count",
        "bool-count",
        "not-callable",
        "signature-mismatch",
        "keyword-only",
    ],
)
def test_constructor_validation(args, error, match):
    with pytest.raises(error, match=match):
        FlexSN(*args, backend="torch")


def test_signature_check_accepts_varargs_and_defaults():
    FlexSN(lambda *args: args, 1, 1, 1, backend="torch")
    FlexSN(lambda x, v, scale=1.0: (x * scale, v), 1, 1, 1, backend="torch")
    FlexSN(max, 1, 1, 1, backend="torch")  # a builtin: signature unreadable, not checked


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"example_inputs": (torch.zeros(1),)}, "example_inputs must be a tuple of .* 2 tensors"),
        ({"example_inputs": (torch.zeros(1), 0.0)}, r"example_inputs\[1\] must be a tensor"),
        ({"requires_grad": (True,)}, "requires_grad must be a tuple of .* 2 bools"),
        ({"requires_grad": (True, 1)}, r"requires_grad\[1\] must be a bool"),
        ({"example_outputs": (torch.zeros(1), torch.zeros(1))}, "example_outputs .* = 1"),
        ({"store_state_seqs": 1}, "store_state_seqs must be a bool"),
        ({"step_mode": "x"}, "step_mode"),
    ],
    ids=[
        "example-inputs-count",
        "example-inputs-type",
        "requires-grad-count",
        "requires-grad-type",
        "example-outputs-count",
        "store-state-seqs-type",
        "step-mode",
    ],
)
def test_optional_argument_validation(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FlexSN(lif2, 1, 1, 1, backend="torch", **kwargs)


def test_valid_optional_arguments_are_kept():
    flex = FlexSN(
        lif2,
        1,
        1,
        1,
        example_inputs=[torch.zeros(1), torch.zeros(1)],
        requires_grad=[True, False],
        backend="torch",
    )
    assert flex.requires_grad == (True, False) and len(flex.example_inputs) == 2


@pytest.mark.parametrize(
    "core, match",
    [
        (lambda x, v: (x,), r"num_outputs \+ num_states = 1 \+ 1 = 2 tensors.*got 1 values"),
        (lambda x, v: x, "got a Tensor"),
        (lambda x, v: (x, 1.0), "as its new state 0, not a tensor"),
    ],
    ids=["too-few", "bare-tensor", "not-a-tensor"],
)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_core_return_validation(core, match, step_mode):
    flex = FlexSN(core, 1, 1, 1, step_mode=step_mode, backend="torch")
    with pytest.raises((ValueError, TypeError), match=match):
        flex(torch.rand(2, 3))


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_forward_argument_validation(step_mode):
    def core(x, y, v):
        return x + y, v

    flex = FlexSN(core, 2, 1, 1, step_mode=step_mode, backend="torch")
    with pytest.raises(TypeError, match="takes 2 tensors"):
        flex(torch.rand(2, 3))
    with pytest.raises(TypeError, match="argument 1 must be a tensor"):
        flex(torch.rand(2, 3), 1.0)


def test_inputs_must_share_T():
    flex = FlexSN(lambda x, y: (x + y,), 2, 0, 1, backend="torch")
    with pytest.raises(ValueError, match="same T"):
        flex(torch.rand(3, 2), torch.rand(4, 2))


def test_backend_validation():
    with pytest.raises(ValueError, match=r"supports backend in \('torch', 'triton'"):
        FlexSN(lif2, 1, 1, 1, backend="cupy")
    for name in ("triton", "inductor", "hop"):
        with pytest.raises(ValueError, match="needs step_mode 'm'"):
            FlexSN(lif2, 1, 1, 1, step_mode="s", backend=name)
    flex = FlexSN(lif2, 1, 1, 1, step_mode="s", backend="torch")
    assert flex.supported_backends == ("torch",)
    assert flex.kernel is None
    with pytest.raises(TypeError, match="backend must be a string"):
        flex.backend = None


# -- memories ----------------------------------------------------------------------------


def test_states_follow_dtype_conversion_and_detach():
    flex = FlexSN(make_lif_core(ATan()), 1, 1, 1, backend="torch", store_state_seqs=True)
    x_seq = (torch.rand(3, 2) * 3).requires_grad_()
    flex(x_seq)
    assert flex.states[0].requires_grad
    flex.detach()
    assert not flex.states[0].requires_grad and not flex.state_seqs[0].requires_grad
    flex.double()
    assert flex.states[0].dtype == torch.float64 and flex.state_seqs[0].dtype == torch.float64


# -- kernel backends: dispatch through the registry ------------------------------------------

FACTORY_CALLS: list[dict[str, Any]] = []


class FakeFlexKernel:
    """Stands in for an sj-flexsn kernel: an eager scan that records how it was called."""

    def __init__(self, core, num_inputs: int, num_states: int, num_outputs: int) -> None:
        self.core = core
        self.num_inputs, self.num_states, self.num_outputs = num_inputs, num_states, num_outputs
        self.calls: list[str] = []

    def _scan(self, args):
        input_seqs, states = args[: self.num_inputs], list(args[self.num_inputs :])
        outputs = [[] for _ in range(self.num_outputs)]
        state_seqs = [[] for _ in range(self.num_states)]
        for t in range(input_seqs[0].shape[0]):
            returns = self.core(*(x[t] for x in input_seqs), *states)
            states = list(returns[self.num_outputs :])
            for seq, value in zip(outputs + state_seqs, returns, strict=True):
                seq.append(value)
        return [torch.stack(s) for s in outputs], [torch.stack(s) for s in state_seqs]

    def __call__(self, *args):
        self.calls.append("__call__")
        outputs, state_seqs = self._scan(args)
        return (*outputs, *state_seqs)

    def final_state(self, *args):
        self.calls.append("final_state")
        outputs, state_seqs = self._scan(args)
        return (*outputs, *(seq[-1] for seq in state_seqs))


def fake_factory(
    core, *, num_inputs, num_states, num_outputs, example_inputs, requires_grad, backend
):
    FACTORY_CALLS.append(
        {
            "core": core,
            "counts": (num_inputs, num_states, num_outputs),
            "example_inputs": example_inputs,
            "requires_grad": requires_grad,
            "backend": backend,
        }
    )
    return FakeFlexKernel(core, num_inputs, num_states, num_outputs)


class ModuleFlexKernel(nn.Module):
    """A kernel that is itself an ``nn.Module`` holding the core."""

    def __init__(self, core) -> None:
        super().__init__()
        self.core = core


def module_kernel_factory(core, **kwargs):
    return ModuleFlexKernel(core)


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    spec: BackendSpec

    def load(self) -> BackendSpec:
        return self.spec


def fake_spec(name: str, factory: str = "fake_factory") -> BackendSpec:
    return BackendSpec(
        name=name,
        distribution="fake",
        operators={"flexsn": f"{__name__}:{factory}"},
        devices=("cpu",),
    )


@pytest.fixture
def fake_backends(monkeypatch):
    """Replace the installed plugins by fake backends that provide only the ``flexsn``
    operator: ``fakeflex`` and ``triton`` (FakeFlexKernel), ``modflex`` (ModuleFlexKernel)."""
    specs = [
        fake_spec("fakeflex"),
        fake_spec("triton"),
        fake_spec("modflex", "module_kernel_factory"),
    ]
    entry_points = [FakeEntryPoint(spec.name, f"{__name__}:{spec.name}", spec) for spec in specs]
    monkeypatch.setattr(registry, "_entry_points", lambda: entry_points)
    backends.refresh()
    FACTORY_CALLS.clear()
    yield
    monkeypatch.undo()
    backends.refresh()


@pytest.mark.parametrize("backend", ["fakeflex", "triton"])
@pytest.mark.parametrize("store_state_seqs", [False, True], ids=["final-state", "state-seqs"])
def test_kernel_backend_dispatch(fake_backends, backend, store_state_seqs):
    surrogate = ATan()
    core = make_alif_core(surrogate)
    example_inputs = (torch.zeros(4), torch.zeros(4), torch.zeros(4))
    flex = FlexSN(
        core,
        1,
        2,
        1,
        example_inputs=example_inputs,
        requires_grad=(True, True, False),
        backend=backend,
        store_state_seqs=store_state_seqs,
    )
    assert backend in flex.supported_backends
    assert len(FACTORY_CALLS) == 1
    call = FACTORY_CALLS[0]
    assert call["core"] is core and call["backend"] == backend and call["counts"] == (1, 2, 1)
    assert call["example_inputs"] == example_inputs
    assert call["requires_grad"] == (True, True, False)
    assert isinstance(flex.kernel, FakeFlexKernel)

    x_seq = torch.rand(5, 4) * 3
    out = flex(x_seq)
    zeros = torch.zeros(4)
    ref, v_seq, a_seq = alif_loop(x_seq, zeros, zeros, surrogate)
    assert torch.equal(out, ref)
    assert torch.equal(flex.states[0], v_seq[-1]) and torch.equal(flex.states[1], a_seq[-1])
    if store_state_seqs:
        assert flex.kernel.calls == ["__call__"]
        assert torch.equal(flex.state_seqs[0], v_seq) and torch.equal(flex.state_seqs[1], a_seq)
    else:
        assert flex.kernel.calls == ["final_state"]
        assert flex.state_seqs is None


def test_backend_setter_builds_and_drops_the_kernel(fake_backends):
    flex = FlexSN(make_lif_core(ATan()), 1, 1, 1, backend="torch")
    assert flex.kernel is None and FACTORY_CALLS == []
    flex.backend = "fakeflex"
    assert isinstance(flex.kernel, FakeFlexKernel) and len(FACTORY_CALLS) == 1
    with pytest.raises(ValueError, match="needs step_mode 'm'"):
        flex.step_mode = "s"
    assert flex.step_mode == "m"
    flex.backend = "torch"
    assert flex.kernel is None
    flex.step_mode = "s"
    flex(torch.rand(3))


def test_a_module_kernel_is_not_registered_as_a_submodule(fake_backends):
    # Otherwise core's parameters would appear twice in state_dict.
    flex = FlexSN(LearnableDecay(), 1, 1, 1, backend="modflex")
    assert isinstance(flex.kernel, ModuleFlexKernel)
    assert list(flex.state_dict()) == ["core.w"]


def test_flexsn_kernel_forwards_to_the_triton_flexsn_operator(fake_backends, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    surrogate = ATan()
    kernel = FlexSNKernel(make_alif_core(surrogate), 1, 2, 1)
    assert FACTORY_CALLS[0]["backend"] == "triton"
    x_seq = torch.rand(4, 3) * 3
    zeros = torch.zeros(3)
    spikes, v_seq, a_seq = kernel(x_seq, zeros, zeros)
    ref = alif_loop(x_seq, zeros, zeros, surrogate)
    assert torch.equal(spikes, ref[0]) and torch.equal(v_seq, ref[1]) and torch.equal(a_seq, ref[2])
    with pytest.raises(TypeError, match="takes 3 tensors"):
        kernel(x_seq, zeros)


def test_flexsn_kernel_needs_cuda_or_the_interpreter(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):
        FlexSNKernel(make_lif_core(ATan()), 1, 1, 1)


def test_flexsn_kernel_validates_its_arguments():
    with pytest.raises(ValueError, match="at least one output or one state"):
        FlexSNKernel(lambda x: (x,), 1, 0, 0)
    with pytest.raises(ValueError, match="example_inputs"):
        FlexSNKernel(lif2, 1, 1, 1, example_inputs=(torch.zeros(1),))


@pytest.mark.skipif(
    importlib.util.find_spec("sj_flexsn") is not None, reason="sj-flexsn is installed"
)
@pytest.mark.parametrize("backend", ["triton", "inductor", "hop"])
def test_kernel_backend_without_sj_flexsn_says_what_to_install(backend):
    if backend == "triton" and importlib.util.find_spec("sj_triton") is None:
        pytest.skip("sj-triton is not installed: the registry asks for it first")
    backends.refresh()
    with pytest.raises(ImportError, match="pip install sj-flexsn"):
        FlexSN(lif2, 1, 1, 1, backend=backend)
    if backend == "triton":
        with pytest.raises(ImportError, match="pip install sj-flexsn"):
            FlexSN(lif2, 1, 1, 1)  # the default backend
