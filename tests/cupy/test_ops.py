"""The cupy kernels as torch operators: ``opcheck`` of the registered operators,
``torch.compile`` of networks with ``backend='cupy'`` neurons, kernels built once, and
(GPU only) CUDA graphs, streams, devices and host synchronisation.

Tests with the ``device`` fixture run on the CPU through the host-compiled kernels and on
the GPU through CuPy (marker ``gpu``); the others are GPU-only.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch
from cupy_cases import forward_op_args, kernel_config, op_inputs, require_cuda_and_cupy
from neuron_cases import NeuronCase, flag_settings, make_inputs, make_surrogate, random_like
from reference_compare import assert_close_fp32, compare_with_reference, run_with_grads
from torch import nn

from sj_core import backends, functional, reference
from sj_core.backends import registry
from sj_core.kernels import flatten_config
from sj_core.neuron import LIFNode, ParametricLIFNode
from sj_core.neuron.izhikevich import IzhikevichNode
from sj_core.surrogate import ATan
from sj_cupy import _backend, compiler, launch, operators
from sj_cupy.kernel_op import NEURON_OP

STATEMENTS = ("if", "lif", "plif", "qif", "eif", "izhikevich")


def reference_operator(case: NeuronCase):
    return getattr(reference, f"multistep_{case.name}")


def _case(name: str, v_reset: float | None = -0.3) -> NeuronCase:
    v_threshold = 0.9 if v_reset is not None else 1.25
    return NeuronCase(name, v_reset, v_threshold, False, flag_settings(name)[0])


# -- opcheck -------------------------------------------------------------------------------


def _inputs(case, device, *, requires_grad=False) -> list:
    """``[x_seq, v_init, w_init | None, r_tau | None]`` of ``case``."""
    x_seq, states, tensors = make_inputs(case, 5, (3, 8), device=device, seed=1)
    inputs = op_inputs(x_seq, states, tensors)
    if requires_grad:
        inputs = [None if t is None else t.requires_grad_() for t in inputs]
    return inputs


MODES = {  # (store_v_seq, save: what the backward needs, inputs require grad)
    "train-v_seq": (True, True, True),
    "train": (False, True, True),
    "inference-v_seq": (True, False, False),
    "inference": (False, False, False),
}


def _forward_args(name: str, mode: str, device) -> tuple:
    """``(case, inputs, the registered forward's arguments)`` of ``name`` in ``mode``."""
    store_v_seq, save, requires_grad = MODES[mode]
    case = _case(name, None if name == "if" else -0.3)
    inputs = _inputs(case, device, requires_grad=requires_grad)
    args = forward_op_args(case, make_surrogate("ATan"), inputs, store_v_seq=store_v_seq, save=save)
    return case, inputs, args


@pytest.mark.parametrize("name", STATEMENTS)
def test_registered_forward_runs_what_the_operator_runs(name, device):
    # The configuration the tests hand to the registered operator (cupy_cases) is the one
    # the operator-key function builds from its keyword arguments: same results.
    case = _case(name)
    x_seq, states, tensors = make_inputs(case, 5, (3, 8), device=device, seed=6)
    surrogate_function = make_surrogate("ATan")
    inputs = op_inputs(x_seq, states, tensors)
    registered = NEURON_OP.forward_op(
        *forward_op_args(case, surrogate_function, inputs, store_v_seq=True, save=False)
    )
    direct = getattr(operators, f"{name}_multi_step")(
        x_seq, *states, *tensors, **case.kwargs(surrogate_function, store_v_seq=True)
    )
    spike_seq, v_last, w_last, v_seq, w_seq, h_seq = registered
    expected = (spike_seq, v_last, w_last, v_seq) if case.has_w else (spike_seq, v_last, v_seq)
    for a, b in zip(expected, direct, strict=True):
        assert torch.equal(a, b)
    assert h_seq.numel() == 0 and (w_seq.numel() > 0) == case.has_w
    assert 0 < spike_seq.mean() < 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", STATEMENTS)
def test_opcheck_forward(name, mode, device):
    # Schema, fake implementation (against the real outputs: shapes, strides, aliasing),
    # autograd registration and AOT dispatch of sj_cupy::neuron_forward, with and without
    # what the backward needs.
    _, _, args = _forward_args(name, mode, device)
    torch.library.opcheck(NEURON_OP.forward_op, args)


@pytest.mark.parametrize("used", ["all", "spike"])
@pytest.mark.parametrize("name", STATEMENTS)
def test_opcheck_backward(name, used, device):
    case = _case(name)
    inputs = _inputs(case, device)
    surrogate_function = make_surrogate("ATan")
    kernel = kernel_config(case, surrogate_function, store_v_seq=True)
    config = flatten_config(kernel)
    outputs = NEURON_OP.forward_op(
        *forward_op_args(case, surrogate_function, inputs, store_v_seq=True, save=True)
    )
    saved = NEURON_OP.implementation.saved(kernel, inputs, outputs)
    # Incoming gradients of spike_seq, v_last, w_last, v_seq (w_seq: none here, it is no
    # output of the operator keys); absent ones (no w, or unused) are None.
    grads = [
        random_like(o, i) if o.numel() and (used == "all" or i == 0) and i < 4 else None
        for i, o in enumerate(outputs[:5])
    ]
    needs = [True, True, case.has_w, case.has_tensor]
    torch.library.opcheck(NEURON_OP.backward_op, (saved, grads, *config, needs))
    # The gradients the operator returns are the reference's.
    compact = NEURON_OP.backward_op(saved, grads, *config, needs)
    names = [n for n, need in zip(("x", "v", "w", "r"), needs, strict=True) if need]
    x_seq, states, tensors = inputs[0], [t for t in inputs[1:3] if t is not None], inputs[3:]
    weights = dict(zip(("spike", "v_last", "w_last", "v_seq"), grads[:4], strict=True))
    if not case.has_w:
        del weights["w_last"]
    expected = run_with_grads(
        reference_operator(case), case, x_seq, states, [t for t in tensors if t is not None],
        surrogate_function, store_v_seq=True, weights=weights,
    ).grads  # fmt: skip
    assert len(compact) == len(names)
    for name, got in zip(names, compact, strict=True):
        if name == "r":  # one sum over every neuron and step
            torch.testing.assert_close(got, expected[name], rtol=1e-5, atol=1e-6)
        else:
            assert_close_fp32(got, expected[name], f"grad_{name}")


# -- backend='cupy' modules and torch.compile ----------------------------------------------


@pytest.fixture
def cupy_backend(device, monkeypatch):
    """``backend='cupy'`` resolves to sj-cupy's operators on ``device``.

    On the GPU that is the installed entry point. On the CPU the same backend entry is
    registered without its CUDA check (and for CPU tensors), so the modules go through
    the registry as with ``cupy`` and call the operators, which run the host-compiled
    kernels.
    """
    if device == "cuda":
        backends.refresh()
        if "cupy" not in backends.backend_names():
            pytest.skip("needs the sj-cupy distribution installed (its 'cupy' entry point)")
        yield "cupy"
        return
    spec = dataclasses.replace(_backend.BACKEND, check=None, devices=("cpu",))

    class EntryPoint:
        name = "cupy"
        value = "sj_cupy._backend:BACKEND"

        def load(self):
            return spec

    monkeypatch.setattr(registry, "_entry_points", lambda: [EntryPoint()])
    backends.refresh()
    yield "cupy"
    monkeypatch.undo()
    backends.refresh()


class SmallNet(nn.Module):
    """Linear -> LIF -> Linear -> PLIF -> Izhikevich -> Linear (multi-step), input
    ``[T, B, 20]``."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        kw = dict(step_mode="m", backend=backend, surrogate_function=ATan())
        self.fc1 = nn.Linear(20, 64)
        self.lif = LIFNode(tau=2.0, **kw)
        self.fc2 = nn.Linear(64, 32)
        self.plif = ParametricLIFNode(init_tau=2.5, v_reset=None, **kw)
        self.izhikevich = IzhikevichNode(a=0.5, b=0.2, **kw)
        self.fc3 = nn.Linear(32, 5)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.izhikevich(self.plif(self.fc2(self.lif(self.fc1(x_seq))))))


def _train_step(net, x_seq):
    """Outputs and the gradients of every parameter (``None``: not reached)."""
    functional.reset_net(net)
    out = net(x_seq)
    loss = out.square().mean()
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    return out.detach(), grads


def _compiler(device: str) -> str:
    # CPU: AOTAutograd without Inductor, enough to trace the ops and their autograd.
    return "inductor" if device == "cuda" else "aot_eager"


def _with_torch_nodes(net: SmallNet) -> SmallNet:
    torch_net = copy.deepcopy(net)
    for node in (torch_net.lif, torch_net.plif, torch_net.izhikevich):
        node.backend = "torch"
    return torch_net


def test_compiled_network_matches_eager(device, cupy_backend):
    # The forward of a compiled network (training and inference) against the same network
    # eager and on the torch reference.
    torch.manual_seed(0)
    eager = SmallNet(cupy_backend).to(device)
    torch_net = _with_torch_nodes(eager)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend=_compiler(device))
    for step in range(3):
        x_seq = (torch.rand(8, 4, 20) * 2).to(device)
        outputs = []
        for net in (eager, compiled, torch_net):
            functional.reset_net(net)
            if step == 2:  # inference: no H stored
                with torch.no_grad():
                    outputs.append(net(x_seq))
            else:
                outputs.append(net(x_seq).detach())
        assert eager.lif.last_backend == "cupy" and eager.izhikevich.last_backend == "cupy"
        out, out_c, out_r = outputs
        torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, out_r, rtol=1e-5, atol=1e-5)


def test_compiled_network_trains_like_eager(device, cupy_backend):
    # Gradients of every parameter through the compiled network (the traced operator's
    # registered autograd) against the eager kernels and the torch reference.
    torch.manual_seed(0)
    eager = SmallNet(cupy_backend).to(device)
    torch_net = _with_torch_nodes(eager)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend=_compiler(device))
    for _ in range(2):
        x_seq = (torch.rand(8, 4, 20) * 2).to(device)
        _, grads = _train_step(eager, x_seq)
        _, grads_c = _train_step(compiled, x_seq)
        _, grads_r = _train_step(torch_net, x_seq)
        names = [name for name, _ in eager.named_parameters()]
        missing = [n for n, g in zip(names, grads_c, strict=True) if g is None]
        assert not missing, f"compiled: no gradient for {missing}"
        for g, gc, gr in zip(grads, grads_c, grads_r, strict=True):
            torch.testing.assert_close(gc, g, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-5)


def _izhikevich_step(case, surrogate_function):
    kwargs = case.kwargs(surrogate_function, store_v_seq=True)

    def step(x_seq, v_init, w_init):
        return operators.izhikevich_multi_step(x_seq, v_init, w_init, **kwargs)

    return step


def test_compiled_function_is_one_graph_with_the_kernel_op(device):
    # fullgraph=True raises on any graph break; the one graph holds the registered
    # operator, and its results are the eager kernels' (bit for bit) and the reference's.
    case = _case("izhikevich", None)
    surrogate_function = make_surrogate("Sigmoid")
    x_seq, states, _ = make_inputs(case, 4, (9,), device=device, seed=4)
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    step = _izhikevich_step(case, surrogate_function)
    compiled = torch.compile(step, fullgraph=True, backend=recording_backend)
    for grad in (True, False):  # training and inference (a recompilation each)
        graphs.clear()
        with torch.set_grad_enabled(grad):
            got, want = compiled(x_seq, *states), step(x_seq, *states)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        (graph,) = graphs
        targets = [node.target for node in graph.graph.nodes if node.op == "call_function"]
        assert targets.count(torch.ops.sj_cupy.neuron_forward.default) == 1
    expected = reference.multistep_izhikevich(
        x_seq, *states, **case.kwargs(surrogate_function, store_v_seq=True)
    )
    assert torch.equal(got[0], expected[0])
    for a, e, name in zip(got[1:], expected[1:], ("v_last", "w_last", "v_seq"), strict=True):
        assert_close_fp32(a, e, name)


def test_compiled_function_gradients(device):
    # Through the traced operator's autograd, against the reference (values, gradients).
    case = _case("izhikevich", None)
    surrogate_function = make_surrogate("Sigmoid")
    x_seq, states, _ = make_inputs(case, 4, (9,), device=device, seed=4)
    step = _izhikevich_step(case, surrogate_function)
    compiled = torch.compile(step, fullgraph=True, backend=_compiler(device))
    leaves = [t.clone().requires_grad_() for t in (x_seq, *states)]
    got = compiled(*leaves)
    assert all(t.requires_grad for t in got), "the compiled call's outputs have no autograd"
    compare_with_reference(
        lambda *args, **kwargs: compiled(*args), case, x_seq, states, (), surrogate_function,
        store_v_seq=True,
    )  # fmt: skip


# -- compile once, no per-call work --------------------------------------------------------


def test_kernels_are_built_once(device):
    case = _case("plif", None)
    x_seq, states, tensors = make_inputs(case, 6, (300,), device=device, seed=9)
    leaves = [t.clone().requires_grad_() for t in (x_seq, *states, *tensors)]

    def call(alpha):
        # A new alpha is a kernel argument, never a new kernel.
        kwargs = case.kwargs(ATan(alpha=alpha), store_v_seq=False)
        spike_seq, v_last, _ = operators.plif_multi_step(*leaves, **kwargs)
        return torch.autograd.grad(spike_seq.sum() + v_last.sum(), leaves)

    first = call(2.0)
    if device == "cuda":
        count = compiler.compiled_kernel_count
    else:
        host = launch.get_launcher()
        count = lambda: len(host._functions)  # noqa: E731
    before = count()
    assert before >= 2  # the forward and the backward
    for alpha in (3.0, 2.0, 4.5):
        grads = call(alpha)
    assert count() == before
    # ... and the argument is used: the last call (alpha = 4.5) differs from the first.
    assert not torch.equal(grads[0], first[0])


# -- GPU only ------------------------------------------------------------------------------


@pytest.mark.gpu
def test_reduce_overhead_network_matches_eager():
    # CUDA graphs: the kernels launch on the capturing stream; reset_net between steps.
    require_cuda_and_cupy()
    backends.refresh()
    torch.manual_seed(0)
    eager = SmallNet("cupy").cuda()
    compiled = torch.compile(copy.deepcopy(eager), mode="reduce-overhead")
    for _ in range(4):
        x_seq = torch.rand(8, 4, 20, device="cuda") * 2
        out, grads = _train_step(eager, x_seq)
        out_c, grads_c = _train_step(compiled, x_seq)
        torch.testing.assert_close(out_c.clone(), out, rtol=1e-5, atol=1e-5)
        assert all(g is not None for g in grads_c), "compiled: a parameter got no gradient"
        for g, gc in zip(grads, grads_c, strict=True):
            torch.testing.assert_close(gc.clone(), g, rtol=1e-5, atol=1e-5)


def _lif_case() -> NeuronCase:
    return NeuronCase("lif", -0.3, 0.9, False, {"decay_input": True})


@pytest.mark.gpu
def test_no_host_synchronisation():
    require_cuda_and_cupy()
    case = _case("plif", None)
    x_seq, states, tensors = make_inputs(case, 8, (4096,), device="cuda", seed=0)
    leaves = [t.clone().requires_grad_() for t in (x_seq, *states, *tensors)]
    kwargs = case.kwargs(ATan(), store_v_seq=True)
    operators.plif_multi_step(*leaves, **kwargs)  # compile outside the checked region
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outputs = operators.plif_multi_step(*leaves, **kwargs)
        grads = torch.autograd.grad(outputs[0].sum() + outputs[2].sum(), leaves)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert grads[2].shape == (1,) and grads[2].item() != 0.0


@pytest.mark.gpu
def test_runs_on_the_current_stream():
    require_cuda_and_cupy()
    case = _lif_case()
    x_seq, states, _ = make_inputs(case, 32, (1 << 18,), device="cuda", seed=0)
    kwargs = case.kwargs(ATan(), store_v_seq=True)
    expected = operators.lif_multi_step(x_seq, *states, **kwargs)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Work queued on the side stream only: a kernel on another stream would race it.
        x_side = x_seq * 1.0
        got = [g.clone() for g in operators.lif_multi_step(x_side, *states, **kwargs)]
    torch.cuda.current_stream().wait_stream(side)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.gpu
def test_streams_without_deprecated_cupy_api():
    # CuPy 14 deprecates ExternalStream in favour of Stream.from_external: a fresh launcher
    # (empty stream cache) wraps the default and a side stream without that warning.
    require_cuda_and_cupy()
    case = _lif_case()
    x_seq, states, _ = make_inputs(case, 4, (1024,), device="cuda", seed=0)
    kwargs = case.kwargs(ATan(), store_v_seq=False)
    previous = launch.set_launcher(launch.CupyLauncher())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*ExternalStream.*")
            expected = operators.lif_multi_step(x_seq, *states, **kwargs)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                got = operators.lif_multi_step(x_seq, *states, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
    finally:
        launch.set_launcher(previous)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    assert 0 < expected[0].float().mean() < 1


@pytest.mark.gpu
def test_second_device_when_present():
    require_cuda_and_cupy()
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    case = _lif_case()
    x_seq, states, _ = make_inputs(case, 5, (1000,), device="cuda:1", seed=0)
    kwargs = case.kwargs(ATan(), store_v_seq=False)
    got = operators.lif_multi_step(x_seq, *states, **kwargs)
    want = operators.lif_multi_step(x_seq.cuda(0), *(s.cuda(0) for s in states), **kwargs)
    assert got[0].device == torch.device("cuda:1")
    torch.testing.assert_close(got[0].cuda(0), want[0], rtol=0, atol=0)
