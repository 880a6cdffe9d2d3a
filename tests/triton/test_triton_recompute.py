"""The triton backend's backward that recomputes ``H`` from ``X`` (short sequences).

With ``launch_config.RECOMPUTE_MAX_T > 0``, a training launch over ``T <= RECOMPUTE_MAX_T``
steps of a neuron without a second state keeps the input instead of the pre-reset
potentials, and ``neuron_backward_recompute_kernel`` rebuilds them. Checked here:

* which launches recompute (:func:`launch_config.recomputes_h`), with which tile;
* what the forward keeps: the input itself (no new ``[T, *S]`` tensor), and ``v_init``;
* the gradients equal those of the backward that reads ``H``, bitwise, for every neuron
  without a second state, with and without ``store_v_seq`` and gradients of the final
  state; a module trains the same; ``torch.compile`` (the registered operators and their
  fake implementations) gives the eager values;
* the backward follows what its forward kept, whatever the setting is by then.

The conformance grid (``tests/conformance/test_kernel_grid.py``, the
``triton-recompute`` entries) compares the same variant with the torch reference.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from kernel_backends import GridBackend
from neuron_cases import make_inputs, make_surrogate, one_case_per_statement
from reference_compare import random_weights, run_with_grads
from triton_aot import captured_launches

from sj_core import neuron
from sj_core.neuron.statements import STATEMENTS

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TRITON = GridBackend("triton", DEVICE)
if TRITON.skip_reason() is not None:
    pytest.skip(TRITON.skip_reason(), allow_module_level=True)

from sj_triton.neuron_kernel import launch_config  # noqa: E402

NO_SECOND_STATE = [c for c in one_case_per_statement() if STATEMENTS[c.name].adaptation is None]


@pytest.fixture
def recompute_limit(monkeypatch):
    """Set ``RECOMPUTE_MAX_T`` for one test (restored afterwards)."""

    def set_limit(value: int) -> None:
        monkeypatch.setattr(launch_config, "RECOMPUTE_MAX_T", value)

    return set_limit


def _statement_config(name: str):
    """A minimal stand-in with what ``recomputes_h`` reads: the statement."""

    class _Config:
        statement = STATEMENTS[name]

    return _Config()


@pytest.mark.parametrize(
    ("limit", "name", "T", "pad"),
    [
        (0, "lif", 4, 0),  # off
        (16, "lif", 1, 1),
        (16, "lif", 3, 4),
        (16, "plif", 8, 8),
        (16, "if", 9, 16),
        (16, "qif", 16, 16),
        (16, "eif", 17, 0),  # longer than the limit
        (8, "lif", 9, 0),
        (64, "lif", 17, 0),  # never above 16: H must fit the registers
        (16, "izhikevich", 4, 0),  # a second state: always keeps H
        (16, "lif", 0, 0),  # nothing to launch
    ],
)
def test_which_launches_recompute(recompute_limit, limit, name, T, pad):
    recompute_limit(limit)
    recomputes = launch_config.recomputes_h(_statement_config(name), T)
    assert (launch_config.h_tile_rows(T) if recomputes else 0) == pad


def _saved_tensors(fn):
    """Run ``fn`` and return the tensors autograd keeps for the backward pass."""
    kept = []

    def pack(t):
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, kept


@pytest.mark.parametrize("limit", [0, 16])
def test_forward_keeps_the_input_instead_of_h(recompute_limit, limit):
    recompute_limit(limit)
    T, N = 6, 40
    x = torch.rand(T, N, device=DEVICE, requires_grad=True)
    node = neuron.LIFNode(step_mode="m", backend="triton")
    _, kept = _saved_tensors(lambda: node(x))
    full = [t for t in kept if t.shape == x.shape]
    assert len(full) == 1  # one [T, N] tensor either way: no extra memory
    if limit:
        assert full[0].data_ptr() == x.data_ptr()  # the input itself
        assert any(t.shape == (N,) for t in kept)  # and v_init
    else:
        assert full[0].data_ptr() != x.data_ptr()  # H, a new tensor


def _both(recompute_limit, case, x_seq, states, tensors, store_v_seq, weights):
    """The triton operator's run with the saved-H backward, then with the recomputing one."""
    runs = []
    for limit in (0, 16):
        recompute_limit(limit)
        runs.append(
            run_with_grads(
                TRITON.operator(case.name), case, x_seq, states, tensors,
                make_surrogate("Sigmoid"), store_v_seq=store_v_seq, weights=weights,
            )
        )  # fmt: skip
    return runs


@pytest.mark.parametrize("store_v_seq", [False, True])
@pytest.mark.parametrize("T", [1, 3, 8, 16])
@pytest.mark.parametrize("case", NO_SECOND_STATE, ids=lambda c: c.id)
def test_gradients_equal_the_saved_h_backward(recompute_limit, case, T, store_v_seq):
    x_seq, states, tensors = make_inputs(case, T, (5, 7), device=DEVICE, seed=T)
    weights = random_weights(case, x_seq, states, seed=T)
    if not store_v_seq:
        weights["v_seq"] = None
    saved_h, recomputed = _both(recompute_limit, case, x_seq, states, tensors, store_v_seq, weights)
    assert saved_h.grads["x"].abs().sum() > 0
    assert 0.0 < saved_h.outputs["spike"].mean() < 1.0
    for name, value in saved_h.outputs.items():
        if value is None:
            assert recomputed.outputs[name] is None
        else:
            torch.testing.assert_close(recomputed.outputs[name], value, rtol=0, atol=0)
    assert recomputed.grads.keys() == saved_h.grads.keys()
    for name, grad in saved_h.grads.items():
        torch.testing.assert_close(recomputed.grads[name], grad, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gradients_agree(recompute_limit, dtype):
    """In fp16/bf16 the usual backward reads ``H`` rounded to the dtype; the recomputed
    ``H`` is the forward's fp32 value, so the gradients may differ by that rounding."""
    case = next(c for c in NO_SECOND_STATE if c.name == "lif")
    x_seq, states, tensors = make_inputs(case, 8, (64,), dtype=dtype, device=DEVICE, seed=2)
    weights = random_weights(case, x_seq, states)
    saved_h, recomputed = _both(recompute_limit, case, x_seq, states, tensors, True, weights)
    for name, value in saved_h.outputs.items():
        torch.testing.assert_close(recomputed.outputs[name], value, rtol=0, atol=0)
    for name, grad in saved_h.grads.items():
        scale = grad.float().abs().max().item()
        assert scale > 0
        torch.testing.assert_close(
            recomputed.grads[name].float(), grad.float(), rtol=0.02, atol=0.02 * scale, msg=name
        )


# Run in a fresh interpreter: Dynamo's process-wide state (and torch 2.8's occasional
# crash after another test's torch._dynamo.reset()) stays out of the other tests.
_COMPILED_TRAINING = """
import json, sys
import torch
from sj_core import functional, neuron
from sj_triton.neuron_kernel import launch_config

launch_config.RECOMPUTE_MAX_T = 16
device = sys.argv[1]
backend = "inductor" if device == "cuda" else "aot_eager"

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 12),
        neuron.LIFNode(step_mode="m", backend="triton"),
        torch.nn.Linear(12, 12),
        neuron.ParametricLIFNode(step_mode="m", backend="triton"),
    ).to(device)

def step(net, x):
    functional.reset_net(net)
    net(x).mean().backward()
    return [p.grad.clone() for p in net.parameters()]

x = torch.rand(4, 3, 6, generator=torch.Generator().manual_seed(1)).to(device) * 4
eager = step(make(), x)
compiled = step(torch.compile(make(), backend=backend, fullgraph=True), x)
print(json.dumps({
    "smallest_gradient": min(float(g.abs().sum()) for g in eager),
    "errors": [float((c - e).abs().max() / e.abs().max()) for c, e in zip(compiled, eager)],
}))
"""


def test_compiled_training_matches_eager():
    """The registered operators and their fakes agree with the eager path when the
    forward keeps ``X``: a compiled LIF -> PLIF training step gives the eager
    gradients (to fp32 rounding: the compiled linear layers may sum in another order)."""
    result = subprocess.run(
        [sys.executable, "-c", _COMPILED_TRAINING, DEVICE],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["smallest_gradient"] > 0
    assert len(found["errors"]) == 5  # two Linear layers (weight, bias) and PLIF's w
    assert max(found["errors"]) < 1e-5, found


def test_the_backward_kernel_that_runs(recompute_limit):
    """With the limit set, the recomputing kernel is the one launched (and not the other)."""
    x = torch.rand(5, 9, device=DEVICE, requires_grad=True)
    launched = []
    for limit in (0, 16):
        recompute_limit(limit)
        node = neuron.LIFNode(step_mode="m", backend="triton")
        with captured_launches() as launches:  # recorded, not run
            torch.autograd.grad(node(x).sum() + node.v.sum(), x)
        launched += [kernel.__name__ for kernel, _, _ in launches if "backward" in kernel.__name__]
    assert launched == ["neuron_backward_kernel", "neuron_backward_recompute_kernel"]


def test_the_backward_follows_what_its_forward_kept():
    """A forward run with the recomputing backward on, its backward after the setting is
    off again (or the reverse): the gradients of the backward that reads ``H``."""
    x = torch.rand(6, 4, 33, generator=torch.Generator().manual_seed(5)).to(DEVICE) * 2
    x.requires_grad_(True)
    node = neuron.LIFNode(step_mode="m", backend="triton")
    want = torch.autograd.grad(node(x).sum() + node.v.sum(), x)[0]
    assert want.abs().sum() > 0
    node.reset()
    with launch_config.recompute_short_sequences():
        spikes = node(x)
    got = torch.autograd.grad(spikes.sum() + node.v.sum(), x)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    node.reset()
    spikes = node(x)
    with launch_config.recompute_short_sequences():
        got = torch.autograd.grad(spikes.sum() + node.v.sum(), x)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
