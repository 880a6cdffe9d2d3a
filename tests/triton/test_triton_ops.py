"""The ``torch.library`` operators ``sj_triton::multistep_forward`` / ``multistep_backward``.

* ``torch.library.opcheck`` (schema, fake tensors, autograd registration, AOT dispatch
  with dynamic shapes) with the argument tuples ``common.run_multistep`` and the
  registered backward build, for IF, LIF and PLIF.
* Eager calls normally go through ``ops.MultistepFunction`` and only compiled code uses
  the registered operators; here the operators are also run eagerly (the switch
  ``common._EAGER_OPS``) and compared with the reference for every configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from _triton_helpers import (
    HAS_CUDA,
    OUTPUTS,
    Neuron,
    all_neuron_configs,
    compare_with_reference,
    make_inputs,
    random_like,
    random_out_grads,
    run_with_grads,
)

from sj_core import surrogate

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
neuron_kernel = pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)
from sj_triton.neuron_kernel import common, ops  # noqa: E402

KERNELS = {
    "if": neuron_kernel.if_multi_step,
    "lif": neuron_kernel.lif_multi_step,
    "plif": neuron_kernel.plif_multi_step,
}
FORWARD = torch.ops.sj_triton.multistep_forward.default
BACKWARD = torch.ops.sj_triton.multistep_backward.default

OPCHECK_NEURONS = [
    Neuron("if", v_reset=0.0),
    Neuron("lif", v_reset=None, detach_reset=True, decay_input=False),
    Neuron("plif", v_reset=-0.3, decay_input=True),
    Neuron("plif", v_reset=None, decay_input=False),
]


@dataclass
class CapturedCalls:
    """``(args, kwargs)`` of every call of the two operators during one real run."""

    forward: list[tuple[tuple, dict]] = field(default_factory=list)
    backward: list[tuple[tuple, dict]] = field(default_factory=list)


def _capture_operator_calls(monkeypatch, neuron, *, train, store_v_seq, used=OUTPUTS):
    """Run the public kernel function through the registered operators and record the
    exact arguments ``common.run_multistep`` and the registered autograd formula pass
    (so the opcheck arguments are realistic by construction, whatever the signature)."""
    calls = CapturedCalls()
    monkeypatch.setattr(common, "_EAGER_OPS", True, raising=False)
    forward_op, backward_op = common.multistep_forward, ops.multistep_backward

    def record_forward(*args, **kwargs):
        calls.forward.append((args, kwargs))
        return forward_op(*args, **kwargs)

    def record_backward(*args, **kwargs):
        calls.backward.append((args, kwargs))
        return backward_op(*args, **kwargs)

    monkeypatch.setattr(common, "multistep_forward", record_forward)
    monkeypatch.setattr(ops, "multistep_backward", record_backward)
    x_seq, v_init, r_tau = make_inputs(neuron, 5, (3, 7), seed=13)
    wrt = ("x", "v", "r") if train else ()
    grads = random_out_grads(x_seq, v_init, use=used if store_v_seq else ("spike", "v_last"))
    run_with_grads(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        surrogate.ATan(),
        store_v_seq=store_v_seq,
        out_grads=grads if train else dict.fromkeys(OUTPUTS),
        wrt=wrt,
    )
    monkeypatch.undo()
    assert len(calls.forward) == 1 and len(calls.backward) == (1 if train else 0)
    return calls


@pytest.mark.parametrize(
    ("train", "store_v_seq"),
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["train-store", "train-nostore", "infer-store", "infer-nostore"],
)
@pytest.mark.parametrize("neuron", OPCHECK_NEURONS, ids=lambda n: n.id)
def test_opcheck_forward(monkeypatch, neuron, train, store_v_seq):
    """Schema, fake implementation, autograd registration and AOT dispatch (dynamic
    shapes, including the registered backward) with the arguments of a real call."""
    calls = _capture_operator_calls(monkeypatch, neuron, train=train, store_v_seq=store_v_seq)
    args, kwargs = calls.forward[0]
    assert any(isinstance(a, torch.Tensor) and a.requires_grad for a in args) == train
    torch.library.opcheck(FORWARD, args, kwargs)


@pytest.mark.parametrize(
    "used",
    [OUTPUTS, ("spike",), ("v_last",), ("v_seq",)],
    ids=lambda u: "+".join(u),
)
@pytest.mark.parametrize("neuron", OPCHECK_NEURONS, ids=lambda n: n.id)
def test_opcheck_backward(monkeypatch, neuron, used):
    """The backward operator with the arguments the registered autograd formula built
    (some incoming gradients ``None``)."""
    calls = _capture_operator_calls(monkeypatch, neuron, train=True, store_v_seq=True, used=used)
    # Autograd runs backward formulas with grad mode off (no double backward), so the
    # saved inputs (v_init, r_tau, x_seq) are passed as plain tensors.
    args, kwargs = calls.backward[0]
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    kwargs = {k: a.detach() if isinstance(a, torch.Tensor) else a for k, a in kwargs.items()}
    torch.library.opcheck(BACKWARD, args, kwargs)
    grad_x, grad_v, grad_r = BACKWARD(*args, **kwargs)
    assert grad_r.shape == ((1,) if neuron.has_r_tau else (0,))


def test_operators_are_registered():
    expected = hasattr(torch.library, "triton_op") and not common._INTERPRETER
    assert expected == ops.USES_TRITON_OP
    for op in (FORWARD, BACKWARD):
        assert op.namespace == "sj_triton"


@pytest.mark.gpu
def test_triton_op_used_on_gpu():
    """With a GPU and torch >= 2.6 the operators are ``triton_op``s (Inductor can see and
    fuse the kernels), not opaque ``custom_op``s."""
    assert HAS_CUDA and ops.USES_TRITON_OP


# -- the registered operators, run eagerly ---------------------------------------------------


@pytest.fixture
def through_registered_ops(monkeypatch):
    """Route eager calls through the ``torch.library`` operators (as compiled code does)."""
    monkeypatch.setattr(common, "_EAGER_OPS", True, raising=False)
    calls = []
    original = ops.multistep_backward

    def counting_backward(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, "multistep_backward", counting_backward)
    return calls


@pytest.mark.parametrize("neuron", all_neuron_configs(), ids=lambda n: n.id)
def test_registered_ops_match_reference(neuron, through_registered_ops):
    T, shape = (32, (3, 4097)) if HAS_CUDA else (7, (3, 77))
    x_seq, v_init, r_tau = make_inputs(neuron, T, shape, seed=8)
    compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        surrogate.Sigmoid(),
        store_v_seq=True,
        out_grads=random_out_grads(x_seq, v_init, use=OUTPUTS),
    )
    assert through_registered_ops, "the registered backward operator was not used"


@pytest.mark.parametrize("used", [("spike",), ("v_last",)], ids=lambda u: u[0])
def test_registered_ops_with_unused_and_strided_gradients(used, through_registered_ops):
    """Through the operators: ``None`` gradients for unused outputs, an expanded one."""
    neuron = Neuron("plif", v_reset=None, decay_input=False)
    x_seq, v_init, r_tau = make_inputs(neuron, 6, (4, 33), seed=6)
    grads = random_out_grads(x_seq, v_init, use=used)
    if "spike" in used:
        grads["spike"] = random_like(x_seq[:1], 4).expand_as(x_seq)
    compare_with_reference(
        KERNELS["plif"],
        neuron,
        x_seq,
        v_init,
        r_tau,
        surrogate.ATan(),
        store_v_seq=False,
        out_grads=grads,
    )


def test_backward_operator_rejects_inference_forward(monkeypatch):
    """The registered autograd refuses a forward that saved no ``H`` (a caller bug),
    instead of computing garbage."""
    calls = _capture_operator_calls(monkeypatch, OPCHECK_NEURONS[1], train=False, store_v_seq=False)
    args, kwargs = calls.forward[0]
    x_seq = args[0].detach().requires_grad_()
    spike_seq = FORWARD(x_seq, *args[1:], **kwargs)[0]
    with pytest.raises(RuntimeError, match="inference"):
        spike_seq.sum().backward()
