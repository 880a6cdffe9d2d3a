"""sj_core.kernels: the plumbing every kernel backend shares, exercised with a pure-torch
"kernel" (what a backend plugin writes: forward, backward, what to save, fakes)."""

from __future__ import annotations

import gc
import weakref
from typing import NamedTuple

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from sj_core import reference, surrogate
from sj_core.backends import UnsupportedByBackendError
from sj_core.kernels import (
    KernelOp,
    NeuronKernelConfig,
    NeuronKernelRunner,
    flatten_config,
    is_traced_call,
    unflatten_config,
)
from sj_core.neuron.statements import STATEMENTS


class ScaleConfig(NamedTuple):
    name: str
    scale: float
    shift: tuple[float, ...]
    twice: bool
    count: int


class Retained:
    """What an implementation asks the graph to keep until the backward pass."""


class ScaleKernels:
    """``y = x * scale`` (twice if asked) as a 'kernel' with a hand-written backward."""

    backend = "scale"

    def __init__(self) -> None:
        self.retained: list[weakref.ref] = []
        self.calls: list[str] = []

    def num_outputs(self, config):
        return 1

    def retain(self, config):
        keep = Retained()
        self.retained.append(weakref.ref(keep))
        return keep

    def forward(self, config, inputs, *, save, launch, placeholders):
        self.calls.append("forward-save" if save else "forward")
        x = inputs[0]  # further inputs, possibly absent (None), are ignored
        factor = config.scale * (2.0 if config.twice else 1.0)
        return [x * factor, x.new_empty(0) if placeholders else None]

    def saved(self, config, inputs, results):
        return []

    def backward(self, config, saved, grads, needs, *, launch):
        self.calls.append("backward")
        factor = config.scale * (2.0 if config.twice else 1.0)
        return [grads[0] * factor if needs[0] else None] + [None] * (len(needs) - 1)

    def fake_forward(self, config, inputs, save):
        return [torch.empty_like(inputs[0]), inputs[0].new_empty(0)]

    def fake_backward(self, config, saved, grads, needs):
        return [torch.empty_like(grads[0])] + [None] * (len(needs) - 1)


KERNELS = ScaleKernels()
SCALE_OP = KernelOp("sj_core_tests", "scale", KERNELS, ScaleConfig)
CONFIG = ScaleConfig("scale", 1.5, (0.25, -1.0), True, 3)


def test_configuration_round_trip():
    flat = flatten_config(CONFIG)
    # ints: the tuple's length, twice, count; floats: scale, then the tuple's items.
    assert flat == ("scale", [2, 1, 3], [1.5, 0.25, -1.0])
    assert unflatten_config(ScaleConfig, *flat) == CONFIG


def test_eager_inference_launches_directly():
    KERNELS.calls.clear()
    (y,) = SCALE_OP(CONFIG, [torch.ones(3)])
    assert torch.equal(y, torch.full((3,), 3.0)) and y.grad_fn is None
    assert KERNELS.calls == ["forward"]


def test_eager_training_uses_the_backward_and_retains_until_it_ran():
    KERNELS.calls.clear()
    x = torch.ones(3, requires_grad=True)
    (y,) = SCALE_OP(CONFIG, [x])
    gc.collect()
    assert KERNELS.retained[-1]() is not None  # kept by the autograd graph
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 3.0))
    assert KERNELS.calls == ["forward-save", "backward"]
    del y
    gc.collect()
    assert KERNELS.retained[-1]() is None  # released with the graph


def test_double_backward_is_refused():
    x = torch.ones(3, requires_grad=True)
    (y,) = SCALE_OP(CONFIG, [x])
    with pytest.raises(RuntimeError, match="scale kernels have no second derivative"):
        torch.autograd.grad(y.sum(), x, create_graph=True)


def test_tracing_goes_through_the_registered_operators():
    x = torch.ones(3)
    gm = make_fx(lambda t: SCALE_OP(CONFIG, [t])[0], tracing_mode="fake")(x)
    targets = {str(node.target) for node in gm.graph.nodes if node.op == "call_function"}
    assert "sj_core_tests.scale_forward.default" in targets


def test_compiled_training_matches_eager():
    def f(t):
        return SCALE_OP(CONFIG, [t])[0].sin().sum()

    x1, x2 = torch.rand(5, requires_grad=True), torch.rand(5)
    x2 = x2.copy_(x1.detach()).requires_grad_()
    f(x1).backward()
    torch.compile(f, backend="aot_eager", fullgraph=True)(x2).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_opcheck_of_the_registered_operators():
    arguments = SCALE_OP.op_arguments(CONFIG, [torch.rand(4, requires_grad=True)], save=True)
    torch.library.opcheck(SCALE_OP.forward_op, arguments)


def test_tensor_subclasses_and_dispatch_modes_are_traced_calls():
    class Tagged(torch.Tensor):
        pass

    assert not is_traced_call([torch.ones(1), None])
    assert is_traced_call([torch.ones(1).as_subclass(Tagged)])
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        assert is_traced_call([torch.ones(1)])


# -- a neuron backend made of the plumbing alone ------------------------------------------


class TorchNeuronKernels:
    """Every neuron on the plumbing, 'kernels' written with torch: the forward runs the
    reference without a graph, the backward re-runs it under autograd. What a plugin
    writes, minus the speed."""

    backend = "torch-kernels"

    def num_outputs(self, config):
        return 5

    def retain(self, config):
        return None

    def _run(self, config, inputs):
        x_seq, v_init, w_init, r = inputs
        statement = STATEMENTS[config.neuron]
        tensors = [t for t in (v_init, w_init, r) if t is not None]
        names = ("Sigmoid", "ATan")
        sg = {"Sigmoid": surrogate.Sigmoid, "ATan": surrogate.ATan}[config.surrogate]
        assert config.surrogate in names
        return reference.multistep(
            statement, x_seq, *tensors, **config.param_values(), **config.flag_values(),
            v_threshold=config.v_threshold, v_reset=config.v_reset if config.hard_reset else None,
            detach_reset=config.detach_reset, surrogate_function=sg(*config.surrogate_params),
            store_v_seq=config.store_v_seq,
        )  # fmt: skip

    def forward(self, config, inputs, *, save, launch, placeholders):
        with torch.no_grad():
            outputs = self._run(config, inputs)
        spike_seq, *finals, v_seq = outputs
        w_last = finals[1] if len(finals) == 2 else None
        results = [spike_seq, finals[0], w_last, v_seq, None, None]
        if placeholders:
            results = [inputs[0].new_empty(0) if t is None else t for t in results]
        return results

    def saved(self, config, inputs, results):
        return list(inputs)

    def backward(self, config, saved, grads, needs, *, launch):
        leaves = [None if t is None else t.detach().requires_grad_() for t in saved]
        with torch.enable_grad():
            spike_seq, *finals, v_seq = self._run(config, leaves)
            outputs = [spike_seq, finals[0], finals[1] if len(finals) == 2 else None, v_seq]
            pairs = [(o, g) for o, g in zip(outputs, grads[:4], strict=True)
                     if o is not None and g is not None]  # fmt: skip
            wanted = [t for t in leaves if t is not None]
            computed = iter(
                torch.autograd.grad(
                    [o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True
                )
            )
        return [None if t is None else next(computed) for t in leaves]

    def fake_forward(self, config, inputs, save):
        raise NotImplementedError

    def fake_backward(self, config, saved, grads, needs):
        raise NotImplementedError


TORCH_NEURON_OP = KernelOp(
    "sj_core_tests", "torch_neuron", TorchNeuronKernels(), NeuronKernelConfig
)
RUNNER = NeuronKernelRunner(
    TORCH_NEURON_OP,
    backend="torch-kernels",
    surrogates=("Sigmoid", "ATan"),
    device_ok=lambda device: None if device.type == "cpu" else "runs on CPU tensors",
)
OPERATORS = RUNNER.operators(module=__name__)


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_a_backend_made_of_the_plumbing_matches_the_reference(name):
    statement = STATEMENTS[name]
    params = {"tau": 2.5, "v_c": 0.8, "a0": 1.0, "v_rest": 0.0, "delta_T": 1.0,
              "theta_rh": 0.8, "a": 0.5, "b": 0.2, "tau_w": 2.0}  # fmt: skip
    kwargs = {k: v for k, v in params.items() if k in statement.names("float")}
    kwargs.update({k: True for k in statement.names("flag")})
    kwargs.update(v_threshold=1.0, v_reset=0.0, detach_reset=False,
                  surrogate_function=surrogate.ATan(), store_v_seq=True)  # fmt: skip
    x = (torch.rand(5, 4) * 2).requires_grad_()
    tensors = [torch.zeros(4) for _ in statement.states] + [torch.tensor([0.4])] * len(
        statement.names("tensor")
    )
    got = OPERATORS[f"{name}.multi_step"](x, *tensors, **kwargs)
    want = getattr(reference, f"multistep_{name}")(x, *tensors, **kwargs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    (g1,) = torch.autograd.grad(sum(t.sum() for t in got), x)
    (g2,) = torch.autograd.grad(sum(t.sum() for t in want), x)
    torch.testing.assert_close(g1, g2)


def test_the_runner_refuses_what_the_backend_lacks():
    kwargs = dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
                  surrogate_function=surrogate.Erf())  # fmt: skip
    with pytest.raises(UnsupportedByBackendError, match="no kernel for surrogate Erf"):
        OPERATORS["lif.multi_step"](torch.rand(3, 2), torch.zeros(2), **kwargs)
    kwargs["surrogate_function"] = surrogate.ATan()
    with pytest.raises(UnsupportedByBackendError, match="float32, float16 and bfloat16"):
        OPERATORS["lif.multi_step"](torch.rand(3, 2).double(), torch.zeros(2).double(), **kwargs)


def test_empty_sequences_launch_nothing_and_keep_the_graph():
    x = torch.rand(0, 3, requires_grad=True)
    v = torch.rand(3, requires_grad=True)
    kwargs = dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
                  surrogate_function=surrogate.ATan(), store_v_seq=True)  # fmt: skip
    spikes, v_last, v_seq = OPERATORS["lif.multi_step"](x, v, **kwargs)
    assert spikes.shape == (0, 3) and v_seq.shape == (0, 3) and v_last is v
    (spikes.sum() + v_last.sum()).backward()
    assert torch.equal(x.grad, torch.zeros(0, 3)) and torch.equal(v.grad, torch.ones(3))


def test_gradients_reach_present_inputs_when_others_are_absent():
    # torch's custom-op autograd misses the tensors of a list holding a None: absent
    # inputs travel as flagged placeholders instead.
    x = torch.rand(4, requires_grad=True)
    arguments = SCALE_OP.op_arguments(CONFIG, [x, None], save=True)
    assert arguments[1] == [True, False] and arguments[0][1].numel() == 0
    (y,) = SCALE_OP.forward_op(*arguments)[:1]
    assert y.requires_grad
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((4,), 3.0))
