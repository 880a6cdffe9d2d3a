"""The neuron modules on every backend: the same numbers as the torch backend, and the
same state handling (batch-size, dtype and device changes, deepcopy and pickle in the
middle of a sequence, threads)."""

from __future__ import annotations

import copy
import io
import threading

import pytest
import torch
from kernel_backends import INDUCTOR, TORCH, backend_params

from sj_core import functional, neuron

KERNELS = backend_params()
EVERY_BACKEND = backend_params((TORCH,)) + KERNELS

NODES = {
    "IFNode": lambda **kw: neuron.IFNode(v_reset=-0.3, **kw),
    "LIFNode": lambda **kw: neuron.LIFNode(tau=2.5, v_reset=-0.3, **kw),
    "LIFNode-soft": lambda **kw: neuron.LIFNode(tau=2.5, decay_input=False, v_reset=None, **kw),
    "ParametricLIFNode": lambda **kw: neuron.ParametricLIFNode(init_tau=2.5, **kw),
    "QIFNode": lambda **kw: neuron.QIFNode(**kw),
    "EIFNode": lambda **kw: neuron.EIFNode(**kw),
    "IzhikevichNode": lambda **kw: neuron.IzhikevichNode(a=0.5, b=0.2, **kw),
}


def _x(T, shape, seed, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn((T, *shape), generator=generator) * 0.7 + 0.6).to(device, dtype)


def _run(node, x_seq):
    """Outputs, final states and gradients of a weighted sum, for one module."""
    x = x_seq.detach().clone().requires_grad_()
    out = node(x)
    weights = torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape)
    loss = (out * weights).sum() + node.v.sum()
    params = list(node.parameters())
    grads = torch.autograd.grad(loss, [x, *params])
    states = {name: getattr(node, name).detach() for name in node.kernel_states}
    return out.detach(), states, grads


def _assert_runs_equal(a, b, exact=False):
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(a[0], b[0], **tol)
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], **tol, msg=name)
    for ga, gb in zip(a[2], b[2], strict=True):
        torch.testing.assert_close(ga, gb, **tol)


# inductor compiles every configuration (seconds each): two neurons are enough for it.
MULTI_STEP = [
    pytest.param(b.values[0], name, id=f"{name}-{b.id}", marks=b.marks)
    for b in backend_params((INDUCTOR,)) + KERNELS
    for name in NODES
    if b.values[0] is not INDUCTOR or name in ("LIFNode", "IzhikevichNode")
]


@pytest.mark.parametrize(("backend", "node_name"), MULTI_STEP, indirect=["backend"])
@pytest.mark.parametrize("store_v_seq", [False, True], ids=["no_v_seq", "v_seq"])
def test_multi_step_module_matches_the_torch_backend(backend, node_name, store_v_seq):
    make = NODES[node_name]
    x_seq = _x(6, (3, 5), seed=1, device=backend.device)
    torch.manual_seed(0)
    ours = make(step_mode="m", backend=backend.name, store_v_seq=store_v_seq).to(backend.device)
    ref = make(step_mode="m", backend="torch", store_v_seq=store_v_seq).to(backend.device)
    got, want = _run(ours, x_seq), _run(ref, x_seq)
    _assert_runs_equal(got, want)
    assert ours.last_backend == backend.name
    if store_v_seq:
        torch.testing.assert_close(ours.v_seq, ref.v_seq, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", KERNELS, indirect=True)
@pytest.mark.parametrize("node_name", list(NODES))
def test_single_step_module_matches_the_torch_backend(backend, node_name):
    make = NODES[node_name]
    x_seq = _x(4, (7,), seed=2, device=backend.device)
    ours = make(step_mode="s", backend=backend.name).to(backend.device)
    ref = make(step_mode="s", backend="torch").to(backend.device)
    for t in range(4):
        torch.testing.assert_close(ours(x_seq[t]), ref(x_seq[t]), rtol=0, atol=0)
        for name in ref.kernel_states:
            torch.testing.assert_close(
                getattr(ours, name), getattr(ref, name), rtol=1e-6, atol=1e-6
            )


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
@pytest.mark.parametrize("sizes", [(2, 3), (1, 3), (3, 1)], ids=["2to3", "1to3", "3to1"])
@pytest.mark.parametrize("node_name", ["LIFNode", "IzhikevichNode"])
def test_a_new_batch_size_starts_afresh(backend, node_name, sizes):
    make = NODES[node_name]
    node = make(step_mode="m", backend=backend.name).to(backend.device)
    node(_x(4, (sizes[0], 5), seed=3, device=backend.device))
    second = _x(4, (sizes[1], 5), seed=4, device=backend.device)
    got = node(second)
    fresh = make(step_mode="m", backend=backend.name).to(backend.device)
    torch.testing.assert_close(got, fresh(second), rtol=0, atol=0)
    for name in node.kernel_states:
        torch.testing.assert_close(getattr(node, name), getattr(fresh, name), rtol=0, atol=0)


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
@pytest.mark.parametrize("node_name", ["LIFNode", "IzhikevichNode"])
def test_a_new_dtype_converts_the_state(backend, node_name):
    first = _x(3, (4,), seed=5, device=backend.device)
    second = _x(3, (4,), seed=6, device=backend.device, dtype=torch.float16)
    node = NODES[node_name](step_mode="m", backend=backend.name).to(backend.device)
    ref = NODES[node_name](step_mode="m", backend="torch").to(backend.device)
    node(first), ref(first)
    out = node(second)
    assert out.dtype == torch.float16
    for name in node.kernel_states:
        assert getattr(node, name).dtype == torch.float16, name
    # The state carried over, converted: the same as the torch backend doing the same.
    torch.testing.assert_close(out, ref(second), rtol=0, atol=0)
    torch.testing.assert_close(node.v, ref.v, rtol=2e-3, atol=2e-3)


def _continue_identically(backend, original, clone, x_second):
    a, b = original(x_second), clone(x_second)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name in original.kernel_states:
        torch.testing.assert_close(getattr(original, name), getattr(clone, name), rtol=0, atol=0)


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
@pytest.mark.parametrize("node_name", list(NODES))
def test_deepcopy_in_the_middle_of_a_training_sequence(backend, node_name):
    node = NODES[node_name](step_mode="m", backend=backend.name).to(backend.device)
    x = _x(4, (6,), seed=7, device=backend.device).requires_grad_()
    node(x)  # memories are now part of an autograd graph
    clone = copy.deepcopy(node)
    _continue_identically(backend, node, clone, _x(3, (6,), seed=8, device=backend.device))


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
@pytest.mark.parametrize("node_name", list(NODES))
def test_torch_save_in_the_middle_of_a_training_sequence(backend, node_name):
    node = NODES[node_name](step_mode="m", backend=backend.name).to(backend.device)
    node(_x(4, (6,), seed=9, device=backend.device).requires_grad_())
    buffer = io.BytesIO()
    torch.save(node, buffer)
    buffer.seek(0)
    clone = torch.load(buffer, weights_only=False)
    assert clone.backend == backend.name
    _continue_identically(backend, node, clone, _x(3, (6,), seed=10, device=backend.device))


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_modules_in_several_threads(backend):
    # Triton's CPU interpreter is not thread-safe; launches must be serialised.
    inputs = [_x(5, (64,), seed=20 + i, device=backend.device) for i in range(8)]
    expected = [neuron.LIFNode(step_mode="m")(x) for x in inputs]
    results: list = [None] * 8
    errors: list = []

    def work(i):
        try:
            node = neuron.LIFNode(step_mode="m", backend=backend.name)
            for _ in range(3):
                functional.reset_net(node)
                results[i] = node(inputs[i])
        except Exception as exc:  # reported below, with the thread's error
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_non_contiguous_module_input(backend):
    x_seq = _x(5, (6, 4), seed=11, device=backend.device).transpose(1, 2)
    assert not x_seq.is_contiguous()
    node = neuron.LIFNode(step_mode="m", backend=backend.name)
    ref = neuron.LIFNode(step_mode="m")
    torch.testing.assert_close(node(x_seq), ref(x_seq), rtol=0, atol=0)


# -- the Simple nodes: the plain charge-fire-reset, as in the reference system ------------


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_simple_nodes_start_at_zero_whatever_v_reset(step_mode):
    # Reference system: SimpleBaseNode's v starts at 0.0 (BaseNode's at v_reset).
    x = torch.tensor([0.6, 0.6, 0.6])
    simple = neuron.SimpleIFNode(v_reset=0.5, step_mode=step_mode)
    base = neuron.IFNode(v_reset=0.5, step_mode=step_mode)
    if step_mode == "m":
        s_simple, s_base = simple(x[:, None]).flatten(), base(x[:, None]).flatten()
    else:
        s_simple = torch.stack([simple(x[i : i + 1]) for i in range(3)]).flatten()
        s_base = torch.stack([base(x[i : i + 1]) for i in range(3)]).flatten()
    # Simple: H = 0 + 0.6, 1.2 (fires, reset to 0.5), 1.1 (fires). Base: 1.1 (fires), ...
    assert s_simple.tolist() == [0.0, 1.0, 1.0]
    assert s_base.tolist() == [1.0, 1.0, 1.0]


def test_simple_lif_node_by_hand():
    node = neuron.SimpleLIFNode(tau=2.0, decay_input=True, v_reset=-0.2, step_mode="m")
    spikes = node(torch.tensor([[1.0], [1.0], [2.0]]))
    # V: 0 -> H = 0 + (1 - (0 + 0.2))/2 = 0.4 -> H = 0.4 + (1 - 0.6)/2 = 0.6
    #   -> H = 0.6 + (2 - 0.8)/2 = 1.2 fires, V = -0.2.
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0]
    assert node.v.item() == pytest.approx(-0.2)


@pytest.mark.parametrize("make", [neuron.SimpleIFNode, lambda: neuron.SimpleLIFNode(2.0, True)])
def test_simple_nodes_handle_batch_changes_and_empty_sequences(make):
    node = make()
    node.step_mode = "m"
    node(torch.rand(3, 2))
    assert node(torch.rand(3, 4)).shape == (3, 4)
    x = torch.rand(0, 4, requires_grad=True)
    out = node(x)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros(0, 4))
