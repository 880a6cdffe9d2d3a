"""The kernels as torch operators and inside networks: ``opcheck``, ``torch.compile``,
the neuron modules on the cupy backend, compile caching, streams and host syncs.

Tests parametrized with ``device`` run on the CPU through the host-compiled kernels (CI)
and on the GPU through CuPy (marker ``gpu``); the others are GPU-only.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from cupy_cases import (
    CASE_BY_ID,
    CASES,
    HARD_V_RESET,
    make_inputs,
    require_cuda_and_cupy,
    run_kernel,
)
from torch import nn

from sj_core import backends, functional
from sj_core.backends import registry
from sj_core.neuron import IFNode, LIFNode, ParametricLIFNode
from sj_core.neuron.eif import EIFNode
from sj_core.neuron.izhikevich import IzhikevichNode
from sj_core.neuron.qif import QIFNode
from sj_core.surrogate import ATan, Sigmoid
from sj_cupy import _backend, compiler, launch, ops
from sj_cupy.codegen import NEURONS

# -- opcheck -----------------------------------------------------------------------------------


def _forward_args(case, device, *, requires_grad=True, store_w_seq=False):
    x_seq, v_init, w_init, r_tau = make_inputs(case, 5, (3, 17), torch.float32, device)
    spec = NEURONS[case.neuron]
    scalars = [1.0, HARD_V_RESET] + [float(case.params[name]) for name in spec.scalars]
    tensors = [x_seq, v_init, w_init, r_tau]
    if requires_grad:
        tensors = [None if t is None else t.requires_grad_() for t in tensors]
    return (
        *tensors,
        case.neuron,
        False,
        bool(case.decay_input),
        False,
        "ATan",
        scalars,
        [2.0],
        True,
        store_w_seq,
        True,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_opcheck_forward(case, device):
    torch.library.opcheck(
        torch.ops.sj_cupy.multistep_forward.default,
        _forward_args(case, device, store_w_seq=case.has_w),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_opcheck_backward(case, device):
    x_seq, v_init, w_init, r_tau, *config = _forward_args(case, device, requires_grad=False)
    outputs = ops.multistep_forward(x_seq, v_init, w_init, r_tau, *config)
    h_seq = outputs[5]
    grads = [torch.randn_like(o) if o.numel() else None for o in outputs[:5]]
    torch.library.opcheck(
        torch.ops.sj_cupy.multistep_backward.default,
        (*grads, None, h_seq, v_init, r_tau, *config[:7]),
    )


# -- modules and torch.compile -------------------------------------------------------------------


@pytest.fixture
def kernel_backend(device, monkeypatch):
    """The backend name under which the cupy operators run on ``device``.

    On the GPU it is the installed ``cupy`` backend. On the CPU a fake entry point
    ``cupyhost`` declares the same operators for CPU tensors (the host-compiled kernels),
    so the modules go through the registry exactly as with ``cupy``.
    """
    if device == "cuda":
        backends.refresh()
        if "cupy" not in backends.backend_names():
            pytest.skip("the sj-cupy distribution is not installed (no 'cupy' entry point)")
        yield "cupy"
        return
    spec = backends.BackendSpec(
        name="cupyhost",
        distribution="sj-cupy-tests",
        operators=dict(_backend.BACKEND.operators),
        devices=("cpu",),
    )

    class EntryPoint:
        name = "cupyhost"
        value = "tests.cupy:cupyhost"

        def load(self):
            return spec

    monkeypatch.setattr(registry, "_entry_points", lambda: [EntryPoint()])
    backends.refresh()
    yield "cupyhost"
    monkeypatch.undo()
    backends.refresh()


NODES = [
    ("if", lambda **kw: IFNode(v_reset=None, **kw)),
    ("lif", lambda **kw: LIFNode(tau=2.5, decay_input=False, v_reset=HARD_V_RESET, **kw)),
    ("plif", lambda **kw: ParametricLIFNode(init_tau=2.5, **kw)),
    ("qif", lambda **kw: QIFNode(**kw)),
    ("eif", lambda **kw: EIFNode(v_reset=None, **kw)),
    ("izhikevich", lambda **kw: IzhikevichNode(a=0.5, b=0.2, **kw)),
]


@pytest.mark.parametrize("store_v_seq", [False, True], ids=["no_v_seq", "v_seq"])
@pytest.mark.parametrize(("name", "make"), NODES, ids=[n for n, _ in NODES])
def test_node_matches_torch_backend(name, make, store_v_seq, device, kernel_backend):
    torch.manual_seed(0)
    x_seq = (torch.randn(6, 4, 33) * 0.6 + 0.7).to(device)
    nodes = {}
    for backend in ("torch", kernel_backend):
        node = make(
            step_mode="m", backend=backend, surrogate_function=ATan(), store_v_seq=store_v_seq
        ).to(device)
        x = x_seq.clone().requires_grad_()
        out = node(x)
        out2 = node(x * 0.5)  # a second call continues from the stored state
        (out * 1.5 + out2).sum().backward()
        nodes[backend] = (node, x, out, out2)
    node, x, out, out2 = nodes[kernel_backend]
    ref_node, ref_x, ref_out, ref_out2 = nodes["torch"]
    assert node.last_backend == kernel_backend
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    torch.testing.assert_close(out2, ref_out2, rtol=0, atol=0)
    for memory in ("v", "w", "v_seq"):
        if hasattr(ref_node, memory) and isinstance(getattr(ref_node, memory), torch.Tensor):
            torch.testing.assert_close(getattr(node, memory), getattr(ref_node, memory))
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)
    if name == "plif":
        torch.testing.assert_close(node.w.grad, ref_node.w.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["if", "lif"])
def test_single_step_node(name, device, kernel_backend):
    make = dict(NODES)[name]
    x_seq = (torch.randn(4, 2, 21) * 0.6 + 0.7).to(device)
    results = {}
    for backend in ("torch", kernel_backend):
        node = make(step_mode="s", backend=backend, surrogate_function=Sigmoid()).to(device)
        x = x_seq.clone().requires_grad_()
        out = torch.stack([node(x[t]) for t in range(4)])
        out.sum().backward()
        results[backend] = (out, node.v, x.grad)
    for got, want in zip(results[kernel_backend], results["torch"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


class SmallNet(nn.Module):
    """Linear -> LIF (multi-step) -> Linear, input ``[T, B, 20]``."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.lif = LIFNode(tau=2.0, step_mode="m", backend=backend, surrogate_function=ATan())
        self.fc2 = nn.Linear(64, 5)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif(self.fc1(x_seq)))


def _train_step(net, x_seq):
    functional.reset_net(net)
    out = net(x_seq)
    loss = out.square().mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return out.detach(), grads


@pytest.mark.parametrize("fullgraph", [False, True], ids=["default", "fullgraph"])
def test_compiled_network_matches_eager(fullgraph, device, kernel_backend):
    torch.manual_seed(0)
    eager = SmallNet(kernel_backend).to(device)
    compiled_net = copy.deepcopy(eager)
    reference = copy.deepcopy(eager)
    reference.lif.backend = "torch"
    # CPU (CI): AOTAutograd without Inductor, enough to trace the ops and their autograd.
    compiler_backend = "inductor" if device == "cuda" else "aot_eager"
    compiled = torch.compile(compiled_net, fullgraph=fullgraph, backend=compiler_backend)
    for _ in range(2):
        x_seq = (torch.rand(8, 4, 20) * 2).to(device)
        out, grads = _train_step(eager, x_seq)
        out_c, grads_c = _train_step(compiled, x_seq)
        out_r, grads_r = _train_step(reference, x_seq)
        torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, out_r, rtol=1e-5, atol=1e-5)
        for g, gc, gr in zip(grads, grads_c, grads_r, strict=True):
            torch.testing.assert_close(gc, g, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-5)


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
        for g, gc in zip(grads, grads_c, strict=True):
            torch.testing.assert_close(gc.clone(), g, rtol=1e-5, atol=1e-5)


def test_compiled_function_has_no_graph_break(device):
    # fullgraph=True raises on any graph break; the operator call is one graph node.
    case = CASE_BY_ID["izhikevich"]
    surrogate = Sigmoid()
    x_seq, v_init, w_init, _ = make_inputs(case, 4, (9,), torch.float32, device)

    def step(x_seq, v_init, w_init):
        return run_kernel(
            case,
            (x_seq, v_init, w_init),
            v_reset=None,
            detach_reset=True,
            surrogate=surrogate,
            store_v_seq=True,
        )

    backend = "inductor" if device == "cuda" else "aot_eager"
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    for got, want in zip(compiled(x_seq, v_init, w_init), step(x_seq, v_init, w_init), strict=True):
        torch.testing.assert_close(got, want)


# -- compile once, no per-call work ----------------------------------------------------------------


def test_kernels_are_built_once(device):
    case = CASE_BY_ID["plif-decay"]
    args = [
        t.requires_grad_()
        for t in make_inputs(case, 6, (300,), torch.float32, device)
        if t is not None
    ]
    options = dict(v_reset=None, detach_reset=False, surrogate=ATan(), store_v_seq=False)

    def call(alpha):
        options["surrogate"] = ATan(alpha=alpha)  # a new alpha is a kernel argument
        outputs = run_kernel(case, args, **options)
        torch.autograd.grad(outputs[0].sum() + outputs[1].sum(), args)

    call(2.0)
    if device == "cuda":
        count = compiler.compiled_kernel_count
    else:
        from sj_cupy import launch

        host = launch.get_launcher()
        count = lambda: len(host._functions)  # noqa: E731
    before = count()
    for alpha in (2.0, 3.0, 2.0, 4.5):
        call(alpha)
    assert count() == before


@pytest.mark.gpu
def test_no_host_synchronisation():
    require_cuda_and_cupy()
    case = CASE_BY_ID["plif-decay"]
    args = [
        t.requires_grad_()
        for t in make_inputs(case, 8, (4096,), torch.float32, "cuda")
        if t is not None
    ]
    options = dict(v_reset=None, detach_reset=False, surrogate=ATan(), store_v_seq=True)
    run_kernel(case, args, **options)  # compile outside the checked region
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outputs = run_kernel(case, args, **options)
        grads = torch.autograd.grad(outputs[0].sum() + outputs[2].sum(), args)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert grads[2].shape == (1,)


@pytest.mark.gpu
def test_runs_on_the_current_stream():
    require_cuda_and_cupy()
    case = CASE_BY_ID["lif-decay"]
    x_seq, v_init, _, _ = make_inputs(case, 32, (1 << 18,), torch.float32, "cuda")
    options = dict(v_reset=HARD_V_RESET, detach_reset=False, surrogate=ATan(), store_v_seq=True)
    expected = run_kernel(case, (x_seq, v_init), **options)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Work queued on the side stream only: a kernel on another stream would race it.
        x_side = x_seq * 1.0
        got = run_kernel(case, (x_side, v_init), **options)
        got = [g.clone() for g in got if g is not None]
    torch.cuda.current_stream().wait_stream(side)
    for g, e in zip(got, [e for e in expected if e is not None], strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.gpu
def test_streams_without_deprecated_cupy_api():
    # CuPy 14 deprecates ExternalStream in favour of Stream.from_external: a fresh launcher
    # (empty stream cache) wraps the default and a side stream without that warning.
    require_cuda_and_cupy()
    case = CASE_BY_ID["lif-decay"]
    x_seq, v_init, _, _ = make_inputs(case, 4, (1024,), torch.float32, "cuda")
    options = dict(v_reset=0.0, detach_reset=False, surrogate=ATan(), store_v_seq=False)
    previous = launch.set_launcher(launch.CupyLauncher())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*ExternalStream.*")
            expected = run_kernel(case, (x_seq, v_init), **options)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                got = run_kernel(case, (x_seq, v_init), **options)
            torch.cuda.current_stream().wait_stream(side)
    finally:
        launch.set_launcher(previous)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)


@pytest.mark.gpu
def test_second_device_when_present():
    require_cuda_and_cupy()
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    case = CASE_BY_ID["lif-decay"]
    options = dict(v_reset=0.0, detach_reset=False, surrogate=ATan(), store_v_seq=False)
    x_seq, v_init, _, _ = make_inputs(case, 5, (1000,), torch.float32, "cuda:1")
    got = run_kernel(case, (x_seq, v_init), **options)
    want = run_kernel(case, (x_seq.cuda(0), v_init.cuda(0)), **options)
    assert got[0].device == torch.device("cuda:1")
    torch.testing.assert_close(got[0].cuda(0), want[0], rtol=0, atol=0)


# -- eager path ------------------------------------------------------------------------


def test_eager_and_registered_paths_agree_and_refuse_double_backward(device):
    """Eager calls skip the torch.library dispatcher (ops.EagerMultistep); both paths give
    identical values and gradients, and neither silently drops second-order terms."""
    from sj_cupy import operators

    torch.manual_seed(0)
    x_seq = (torch.rand(5, 3, 8, device=device) * 1.5).requires_grad_()
    v_init = (torch.rand(3, 8, device=device) * 0.5).requires_grad_()
    kwargs = dict(
        tau=2.0,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=False,
        surrogate_function=Sigmoid(),
        store_v_seq=True,
    )
    eager = operators.lif_multi_step(x_seq, v_init, **kwargs)
    registered = ops.multistep_forward  # the path torch.compile records
    spike_seq, v_last, v_seq = eager
    weights = [torch.rand_like(t) for t in eager]
    grads = torch.autograd.grad(
        sum((t * w).sum() for t, w in zip(eager, weights, strict=True)), (x_seq, v_init)
    )
    original = torch.compiler.is_compiling
    try:
        torch.compiler.is_compiling = lambda: True  # take the registered-op branch
        via_op = operators.lif_multi_step(x_seq, v_init, **kwargs)
    finally:
        torch.compiler.is_compiling = original
    assert registered is ops.multistep_forward
    op_grads = torch.autograd.grad(
        sum((t * w).sum() for t, w in zip(via_op, weights, strict=True)), (x_seq, v_init)
    )
    for a, b in zip((*eager, *grads), (*via_op, *op_grads), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="second derivative|double backward|differentiable"):
        spike = operators.lif_multi_step(x_seq, v_init, **kwargs)[0]
        (g,) = torch.autograd.grad((spike * weights[0]).sum(), x_seq, create_graph=True)
        torch.autograd.grad(g.sum(), x_seq)
