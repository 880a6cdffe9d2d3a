"""``IFNode`` / ``LIFNode`` / ``ParametricLIFNode`` with ``backend='triton'`` (step mode
``'m'``) against the same node with ``backend='torch'``.

Two consecutive forward calls without ``reset()`` (the state ``v`` carries over, and the
loss of both calls is backpropagated through it), then ``reset()`` and a third call.
Compared: spikes, ``v``, ``v_seq``, gradients of every input and of PLIF's ``w``, and
``last_backend``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _triton_helpers import DEVICE, HAS_CUDA, random_like

from sj_core import neuron, surrogate

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)

SHAPE = (16, 8, 257) if HAS_CUDA else (7, 2, 65)  # [T, N, C]

NODES = [
    pytest.param(lambda: neuron.IFNode(), id="IF-hard0"),
    pytest.param(
        lambda: neuron.IFNode(v_reset=None, detach_reset=True, v_threshold=1.5),
        id="IF-soft-detach",
    ),
    pytest.param(
        lambda: neuron.LIFNode(tau=3.0, decay_input=False, v_reset=-0.3), id="LIF-hard-0.3"
    ),
    pytest.param(
        lambda: neuron.LIFNode(
            tau=2.0, v_reset=None, surrogate_function=surrogate.PiecewiseExp(alpha=2.0)
        ),
        id="LIF-soft",
    ),
    pytest.param(lambda: neuron.ParametricLIFNode(init_tau=2.5), id="PLIF-hard0"),
    pytest.param(
        lambda: neuron.ParametricLIFNode(
            init_tau=3.0, decay_input=False, v_reset=None, detach_reset=True
        ),
        id="PLIF-soft-detach-nodecay",
    ),
]
RTOL = 1e-5


def _inputs(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(SHAPE, generator=gen) * 0.8 + 0.9).to(DEVICE)


def _close(actual, expected, name):
    scale = expected.abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(
        actual, expected, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{name}: {m}"
    )


def _pair(make, store_v_seq):
    torch_node = make().to(DEVICE)
    torch_node.step_mode = "m"
    torch_node.store_v_seq = store_v_seq
    triton_node = copy.deepcopy(torch_node)
    triton_node.backend = "triton"
    assert torch_node.backend == "torch" and triton_node.backend == "triton"
    return torch_node, triton_node


def _run_two_calls(node, x1, x2, g):
    """Two forward calls without reset; loss over both (through the carried ``v``)."""
    a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    s1 = node(a)
    v_seq1 = node.v_seq if node.store_v_seq else None
    s2 = node(b)
    loss = (s1 * g[0]).sum() + (s2 * g[1]).sum() + (node.v * g[2]).sum()
    if node.store_v_seq:
        loss = loss + (v_seq1 * g[3]).sum() + (node.v_seq * g[4]).sum()
    params = list(node.parameters())
    grads = torch.autograd.grad(loss, [a, b, *params])
    outputs = {"s1": s1, "s2": s2, "v": node.v}
    if node.store_v_seq:
        outputs |= {"v_seq1": v_seq1, "v_seq2": node.v_seq}
    return {k: t.detach() for k, t in outputs.items()}, grads


@pytest.mark.parametrize("store_v_seq", [True, False], ids=["store", "nostore"])
@pytest.mark.parametrize("make", NODES)
def test_node_matches_torch_backend(make, store_v_seq):
    torch_node, triton_node = _pair(make, store_v_seq)
    x1, x2, x3 = _inputs(1), _inputs(2), _inputs(3)
    g = [random_like(x1, 10 + i) for i in range(5)]
    g[2] = random_like(x1[0], 12)  # for v: one step

    expected, expected_grads = _run_two_calls(torch_node, x1, x2, g)
    actual, actual_grads = _run_two_calls(triton_node, x1, x2, g)
    assert triton_node.last_backend == "triton" and torch_node.last_backend == "torch"
    assert actual.keys() == expected.keys()
    for name in expected:
        if name.startswith("s"):
            assert torch.equal(actual[name], expected[name]), name
        else:
            _close(actual[name], expected[name], name)
    rate = expected["s2"].mean().item()
    assert 0.1 < rate < 0.9, f"spike rate {rate:.2f}"
    names = ["grad_x1", "grad_x2"] + [f"grad_{p}" for p, _ in torch_node.named_parameters()]
    for name, a, e in zip(names, actual_grads, expected_grads, strict=True):
        if name == "grad_w":  # one sum over every neuron and step of both calls
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)
            assert e.abs() > 0
        else:
            _close(a, e, name)
    assert actual_grads[0].abs().sum() > 0

    # reset(): the state goes back to its initial value; the next call matches again.
    for node in (torch_node, triton_node):
        node.reset()
        assert node.v == (0.0 if node.v_reset is None else node.v_reset)
    x = x3.clone().requires_grad_()
    y = x3.clone().requires_grad_()
    s_torch, s_triton = torch_node(x), triton_node(y)
    assert torch.equal(s_triton, s_torch)
    _close(triton_node.v.detach(), torch_node.v.detach(), "v after reset")
    if store_v_seq:
        _close(triton_node.v_seq.detach(), torch_node.v_seq.detach(), "v_seq after reset")
    (s_torch * g[0]).sum().backward()
    (s_triton * g[0]).sum().backward()
    _close(y.grad, x.grad, "grad_x after reset")


def test_node_state_dtype_and_device_follow_input():
    """The kernel's ``v`` keeps the input's per-step shape, dtype and device."""
    node = neuron.LIFNode(step_mode="m", backend="triton")
    x = _inputs(4).half()
    out = node(x)
    assert out.dtype == torch.float16 and node.v.dtype == torch.float16
    assert node.v.shape == x.shape[1:] and node.v.device == x.device


def test_batch_size_change_reinitialises_state():
    """A new per-step shape starts from the reset value, as on the torch backend."""
    torch_node, triton_node = _pair(lambda: neuron.IFNode(), store_v_seq=False)
    for node in (torch_node, triton_node):
        node(_inputs(5))
    small = _inputs(6)[:, :1]
    assert torch.equal(triton_node(small), torch_node(small))
    _close(triton_node.v, torch_node.v, "v")
