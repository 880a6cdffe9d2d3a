"""FlexSN kernels under ``torch.compile``: the ``sj_flexsn`` custom ops have fake
implementations and registered autograd, so a network using them compiles with
``fullgraph=True`` (no graph break) and matches eager mode, values and gradients.

Under Triton's CPU interpreter the compiled graph uses ``backend="aot_eager"`` (Dynamo
and AOTAutograd trace the ops; no C++ compile); on a GPU, ``inductor`` (marker ``gpu``).
``torch.library.opcheck`` checks the ops' schemas, fake kernels and autograd wiring.
"""

from __future__ import annotations

import pytest
import torch
from flexsn_triton_cases import (
    DEVICE,
    HAS_CUDA,
    SIGMOID,
    gradients,
    leaf,
    make_lif_core,
    multi_io_core,
    random_inputs,
    require_flexsn,
)
from torch.fx.experimental.proxy_tensor import make_fx

require_flexsn()

from sj_flexsn import custom_ops  # noqa: E402
from sj_flexsn.factory import build_flexsn_kernel  # noqa: E402

# Inductor on the CPU compiles C++ for the rest of the graph: slow, but it works.
COMPILE_BACKENDS = [
    pytest.param("aot_eager", id="aot_eager"),
    pytest.param("inductor", id="inductor", marks=() if HAS_CUDA else pytest.mark.slow),
]


class SpikingMLP(torch.nn.Module):
    """Linear -> FlexSN PLIF-like neuron (a captured learnable decay) -> Linear."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(width, width)
        self.fc2 = torch.nn.Linear(width, 3)
        self.decay = torch.nn.Parameter(torch.tensor(0.6))
        self.neuron = build_flexsn_kernel(self.core, num_inputs=1, num_states=1, num_outputs=1)

    def core(self, x, v):
        h = v * self.decay + x
        spike = SIGMOID(h - 1.0)
        return spike, h * (1.0 - spike)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:  # [T, B, width]
        current = self.fc1(x_seq)
        spikes, v_last = self.neuron.final_state(current, torch.zeros_like(current[0]))
        return self.fc2(spikes).mean(0) + v_last.sum()


def _run(fn, model, x_seq):
    model.zero_grad()
    out = fn(x_seq)
    (out * torch.arange(out.numel(), device=out.device).reshape(out.shape)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_network_matches_eager(backend):
    torch.manual_seed(0)
    model = SpikingMLP().to(DEVICE)
    x_seq = torch.randn(4, 5, 8, device=DEVICE) * 2.0
    eager_out, eager_grads = _run(model, model, x_seq)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    out, grads = _run(compiled, model, x_seq)
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-5, atol=1e-5, msg=name)
    with torch.no_grad():  # the inference op inside the same compiled module
        torch.testing.assert_close(compiled(x_seq), eager_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_state_sequences(backend):
    kernel = build_flexsn_kernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)

    def run(x_seq, v_init):
        spikes, v_seq = kernel(x_seq, v_init)
        return spikes * 2.0, v_seq

    x_seq = torch.rand(5, 6, device=DEVICE) * 2.0
    v_init = torch.zeros(6, device=DEVICE)
    torch._dynamo.reset()
    compiled = torch.compile(run, backend=backend, fullgraph=True)
    expected = run(x_seq, v_init)
    for got, want in zip(compiled(x_seq, v_init), expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck missing")
def test_opcheck():
    kernel = build_flexsn_kernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)
    x_seq = torch.rand(3, 4, device=DEVICE) * 2.0
    v_init = torch.rand(4, device=DEVICE)
    op = custom_ops.FLEXSN_OP
    for store_state_seqs in (False, True):
        config = custom_ops.FlexSNConfig(kernel.handle, store_state_seqs)
        torch.library.opcheck(op.forward_op, op.op_arguments(config, [x_seq, v_init], save=False))
    config = custom_ops.FlexSNConfig(kernel.handle, False)
    args = op.op_arguments(config, [x_seq.requires_grad_(), v_init.requires_grad_()], save=True)
    torch.library.opcheck(op.forward_op, args)


@pytest.mark.gpu
def test_reduce_overhead_mode():
    model = SpikingMLP().to(DEVICE)
    x_seq = torch.randn(4, 5, 8, device=DEVICE)
    with torch.no_grad():
        expected = model(x_seq)
        compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # warm-up, record, replay
            got = compiled(x_seq)
    torch.testing.assert_close(got, expected)


def test_custom_ops_match_the_eager_path():
    # Eager calls skip the op dispatcher (sj_core.kernels); the ops must agree with them.
    kernel = build_flexsn_kernel(multi_io_core, num_inputs=2, num_states=2, num_outputs=3)
    args = [random_inputs((4, 5), 1), random_inputs((4, 5), 2)]
    args += [random_inputs((5,), 3), random_inputs((5,), 4)]
    flexsn_op = custom_ops.FLEXSN_OP
    with torch.no_grad():
        eager = kernel(*args)
        config = custom_ops.FlexSNConfig(kernel.handle, True)
        op = flexsn_op.forward_op(*flexsn_op.op_arguments(config, args, save=False))
    for a, b in zip(eager, op, strict=True):
        assert torch.equal(a, b)
    e_args, o_args = [leaf(t) for t in args], [leaf(t) for t in args]
    eager = kernel.final_state(*e_args)
    config = custom_ops.FlexSNConfig(kernel.handle, False)
    op = flexsn_op.forward_op(*flexsn_op.op_arguments(config, o_args, save=True))[: len(eager)]
    grads = [random_inputs(t.shape, 10 + i) for i, t in enumerate(eager)]
    for a, b in zip(eager, op, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(gradients(eager, grads, e_args), gradients(op, grads, o_args), strict=True):
        assert torch.equal(a, b)


def test_tracing_records_the_custom_ops():
    kernel = build_flexsn_kernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)
    x_seq, v_init = torch.rand(3, 4, device=DEVICE), torch.zeros(4, device=DEVICE)
    gm = make_fx(lambda x, v: kernel.final_state(x, v), tracing_mode="fake")(x_seq, v_init)
    targets = {str(node.target) for node in gm.graph.nodes if node.op == "call_function"}
    assert "sj_flexsn.flexsn_forward.default" in targets
