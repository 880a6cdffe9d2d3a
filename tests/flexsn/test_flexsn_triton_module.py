"""sj-core's ``FlexSN`` / ``FlexSNKernel`` on the ``triton`` and ``inductor`` backends
(kernels from sj-flexsn) against ``FlexSN(backend='torch')``, the eager loop."""

from __future__ import annotations

import pytest
import torch
from flexsn_triton_cases import (
    DEVICE,
    SIGMOID,
    assert_close_fp32,
    gradients,
    leaf,
    make_lif_core,
    random_inputs,
    require_flexsn,
)

from sj_core import functional, neuron

require_flexsn()

if not hasattr(neuron, "FlexSN"):
    pytest.skip("sj_core.neuron.FlexSN is not available", allow_module_level=True)

from sj_core.neuron import FlexSN, FlexSNKernel  # noqa: E402


class LearnableLIF(torch.nn.Module):
    """A core with a learnable decay: FlexSN registers it as a submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.decay = torch.nn.Parameter(torch.tensor(0.55))

    def forward(self, x, v):
        h = v * self.decay + x
        spike = SIGMOID(h - 1.0)
        return spike, h * (1.0 - spike)


def _pair(store_state_seqs: bool, backend: str):
    core = LearnableLIF().to(DEVICE)
    kernel_node = FlexSN(core, 1, 1, 1, backend=backend, store_state_seqs=store_state_seqs)
    torch_core = LearnableLIF().to(DEVICE)
    torch_node = FlexSN(torch_core, 1, 1, 1, backend="torch", store_state_seqs=store_state_seqs)
    return kernel_node, torch_node


@pytest.mark.parametrize("backend", ["triton", "inductor"])
@pytest.mark.parametrize("store_state_seqs", [False, True], ids=["final-state", "state-seqs"])
def test_flexsn_module_matches_torch_backend(backend, store_state_seqs):
    kernel_node, torch_node = _pair(store_state_seqs, backend)
    assert kernel_node.kernel is not None and torch_node.kernel is None
    x1 = random_inputs((4, 3, 5), 1, -0.5, 2.0)
    x2 = random_inputs((3, 3, 5), 2, -0.5, 2.0)
    results = {}
    for name, node in (("kernel", kernel_node), ("torch", torch_node)):
        a, b = leaf(x1), leaf(x2)
        out1 = node(a)
        out2 = node(b)  # continues from the states of the first call
        loss_terms = [out1, out2, node.states[0]]
        grad_outs = [random_inputs(t.shape, 10 + i, -1.0, 1.0) for i, t in enumerate(loss_terms)]
        grads = gradients(loss_terms, grad_outs, [a, b, node.core.decay])
        seqs = [s.detach() for s in node.state_seqs] if store_state_seqs else None
        results[name] = (out1.detach(), out2.detach(), node.states[0].detach(), grads, seqs)
        functional.reset_net(node)
        assert node.states is None
    k, t = results["kernel"], results["torch"]
    assert torch.equal(k[0], t[0]) and torch.equal(k[1], t[1])
    assert_close_fp32(k[2], t[2], "final state")
    for name, g, e in zip(("x1", "x2", "decay"), k[3], t[3], strict=True):
        assert_close_fp32(g.reshape(e.shape), e, f"grad {name}")
    if store_state_seqs:
        assert_close_fp32(k[4][0], t[4][0], "state_seqs")


def test_flexsn_kernel_callable():
    kernel = FlexSNKernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)
    x_seq = random_inputs((5, 7), 3, 0.0, 2.0)
    spikes, v_seq = kernel(x_seq, torch.zeros(7, device=DEVICE))
    torch_node = FlexSN(make_lif_core(), 1, 1, 1, backend="torch", store_state_seqs=True)
    assert torch.equal(spikes, torch_node(x_seq))
    assert_close_fp32(v_seq, torch_node.state_seqs[0], "v_seq")


def test_empty_sequence_needs_no_example_outputs():
    node = FlexSN(make_lif_core(), 1, 1, 1, backend="triton")
    out = node(torch.empty(0, 4, device=DEVICE))
    assert out.shape == (0, 4)
    assert torch.equal(node.states[0], torch.zeros(4, device=DEVICE))


def test_compiled_module_with_reset_between_calls():
    kernel_node, torch_node = _pair(False, "triton")
    torch_node.core.decay.data.copy_(kernel_node.core.decay.data)
    compiled = torch.compile(kernel_node, backend="aot_eager", fullgraph=True)
    x = random_inputs((4, 2, 6), 4, -0.5, 2.0)
    for _ in range(2):
        with torch.no_grad():
            got, want = compiled(x), torch_node(x)
        assert torch.equal(got, want)
        functional.reset_net(kernel_node)
        functional.reset_net(torch_node)
