"""The Triton kernels as ``torch.library`` operators: ``sj_triton::neuron_forward`` and
``sj_triton::neuron_backward`` (:data:`sj_triton.neuron_kernel.kernel_op.NEURON_OP`).

Eager calls launch the kernels directly (or under an ``autograd.Function``); traced calls
(``torch.compile``, ``make_fx``, tensor subclasses) go through the registered operators,
``triton_op`` s on a GPU and ``custom_op`` s with fake implementations under Triton's CPU
interpreter. Here, for every neuron statement:

* ``torch.library.opcheck`` of both operators, with the flattened
  :class:`~sj_core.kernels.NeuronKernelConfig` and the inputs the operator functions of
  :mod:`sj_triton.operators` pass (checked against a recorded real call);
* the operators give the eager path's values and gradients, bit for bit, and the ``H``
  the forward saves for the backward is the torch reference's pre-reset potential;
* ``make_fx`` records the registered operator, and its graph gives the eager values;
* the backward operator refuses a forward that saved nothing.
"""

from __future__ import annotations

import pytest
import torch
from neuron_cases import NeuronCase, make_inputs, make_surrogate, one_case_per_statement
from reference_compare import assert_close_fp32, reference_margins
from torch.fx.experimental.proxy_tensor import make_fx

from sj_core.kernels import NeuronKernelConfig, flatten_config, interpreter_enabled
from sj_core.neuron.statements import FLAG, FLOAT

pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
operators = pytest.importorskip("sj_triton.operators", reason="needs sj-triton")
from sj_triton.neuron_kernel.kernel_op import NEURON_OP  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = one_case_per_statement()
SG = make_surrogate("ATan")
FORWARD = torch.ops.sj_triton.neuron_forward.default
BACKWARD = torch.ops.sj_triton.neuron_backward.default
# opcheck's checks other than the fake-tensor one (see test_fake_forward_outputs).
NON_FAKE_CHECKS = ("test_schema", "test_autograd_registration", "test_aot_dispatch_dynamic")


def _case_id(case: NeuronCase) -> str:
    return case.name


def kernel_config(case: NeuronCase, store_v_seq: bool) -> NeuronKernelConfig:
    """The configuration of ``case`` with the surrogate :data:`SG`, built field by field."""
    statement = case.statement
    return NeuronKernelConfig(
        neuron=case.name,
        surrogate=SG.kernel_name,
        hard_reset=case.v_reset is not None,
        detach_reset=case.detach_reset,
        store_v_seq=store_v_seq,
        flags=sum(int(case.flags[name]) << i for i, name in enumerate(statement.names(FLAG))),
        v_threshold=case.v_threshold,
        v_reset=0.0 if case.v_reset is None else case.v_reset,
        params=tuple(float(case.params[name]) for name in statement.names(FLOAT)),
        surrogate_params=tuple(float(v) for v in SG.kernel_params().values()),
    )


def kernel_inputs(case: NeuronCase, *, requires_grad: bool = False, seed: int = 13):
    """``[x_seq, v_init, w_init | None, r | None]``, the kernels' input layout."""
    x_seq, states, tensors = make_inputs(case, 5, (3, 7), device=DEVICE, seed=seed)
    inputs = [
        x_seq,
        states[0],
        states[1] if case.has_w else None,
        tensors[0].reshape(1) if case.has_tensor else None,
    ]
    return [None if t is None else t.clone().requires_grad_(requires_grad) for t in inputs]


def operator_kwargs(case: NeuronCase, store_v_seq: bool) -> dict:
    return case.kwargs(SG, store_v_seq)


class _Recorder:
    """Stands in for ``RUNNER.op`` and records ``(config, inputs)`` of each call."""

    def __init__(self, op) -> None:
        self.op = op
        self.calls: list = []

    def __call__(self, config, inputs):
        self.calls.append((config, list(inputs)))
        return self.op(config, inputs)


@pytest.mark.parametrize("store_v_seq", [True, False], ids=["store", "nostore"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_operator_functions_pass_this_config_and_these_inputs(monkeypatch, case, store_v_seq):
    """What the tests below hand the operators is what the operator functions pass."""
    recorder = _Recorder(NEURON_OP)
    monkeypatch.setattr(operators.RUNNER, "op", recorder)
    inputs = kernel_inputs(case)
    tensors = [t for t in inputs if t is not None]
    getattr(operators, f"{case.name}_multi_step")(*tensors, **operator_kwargs(case, store_v_seq))
    ((config, passed),) = recorder.calls
    assert config == kernel_config(case, store_v_seq)
    assert len(passed) == 4
    for got, want in zip(passed, inputs, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            assert torch.equal(got, want) and got.is_contiguous()


def test_operators_are_registered():
    assert NEURON_OP.forward_op._opoverload is FORWARD
    assert NEURON_OP.backward_op._opoverload is BACKWARD
    assert operators.RUNNER.op is NEURON_OP
    # triton_op (Inductor sees the kernels) unless the kernels run in the CPU interpreter.
    expected = hasattr(torch.library, "triton_op") and not interpreter_enabled()
    assert NEURON_OP.use_triton_op == expected


# -- opcheck --------------------------------------------------------------------------------------

MODES = [
    pytest.param(True, True, id="train-store"),
    pytest.param(False, False, id="infer-nostore"),
]


def _forward_args(case, save, store_v_seq):
    inputs = kernel_inputs(case, requires_grad=save)
    return NEURON_OP.op_arguments(kernel_config(case, store_v_seq), inputs, save=save)


@pytest.mark.parametrize(("save", "store_v_seq"), MODES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_opcheck_forward(case, save, store_v_seq):
    """Schema, autograd registration and AOT dispatch with dynamic shapes."""
    torch.library.opcheck(
        NEURON_OP.forward_op, _forward_args(case, save, store_v_seq), test_utils=NON_FAKE_CHECKS
    )


def _placeholders(case: NeuronCase, save: bool, store_v_seq: bool) -> int:
    """How many of the forward's six results are empty placeholders."""
    absent = [not case.has_w, not store_v_seq, not (store_v_seq and case.has_w), not save]
    return sum(absent)


def _fake_cases():
    params = []
    for case in CASES:
        for save, store_v_seq, mode in ((True, True, "train-store"), (False, False, "infer")):
            # Several absent results: their placeholders must not alias each other.
            assert case.name != "if" or _placeholders(case, save, store_v_seq) >= 2
            params.append(pytest.param(case, save, store_v_seq, id=f"{case.name}-{mode}"))
    return params


@pytest.mark.parametrize(("case", "save", "store_v_seq"), _fake_cases())
def test_fake_forward_outputs(case, save, store_v_seq):
    """The fake implementation gives the real results' shapes, dtypes and aliasing."""
    torch.library.opcheck(
        NEURON_OP.forward_op, _forward_args(case, save, store_v_seq), test_utils="test_faketensor"
    )


def _used_grads(case: NeuronCase, results) -> list[torch.Tensor | None]:
    """Incoming gradients of ``[spike, v_last, w_last, v_seq, w_seq]``: spikes, ``v_seq``
    and ``w_last`` used, ``v_last`` and ``w_seq`` not (``None``)."""
    generator = torch.Generator().manual_seed(5)

    def like(t):
        return torch.randn(t.shape, generator=generator).to(t.device, t.dtype)

    spike, _, w_last, v_seq, _ = results[:5]
    return [like(spike), None, like(w_last) if case.has_w else None, like(v_seq), None]


def _needs(case: NeuronCase) -> list[bool]:
    return [True, True, case.has_w, case.has_tensor]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_opcheck_backward_and_its_gradients(case):
    """opcheck of the backward operator on what the forward operator saved, and its
    gradients equal to the eager autograd path's (the same kernels, bit for bit)."""
    config = kernel_config(case, store_v_seq=True)
    flat = flatten_config(config)
    inputs = kernel_inputs(case)
    results = NEURON_OP.forward_op(*NEURON_OP.op_arguments(config, inputs, save=True))
    saved = NEURON_OP.implementation.saved(config, inputs, results)
    grads = _used_grads(case, results)
    args = (saved, grads, *flat, _needs(case))
    torch.library.opcheck(NEURON_OP.backward_op, args)
    got = NEURON_OP.backward_op(*args)

    leaves = kernel_inputs(case, requires_grad=True)
    outputs = NEURON_OP(config, leaves)
    used = [(out, g) for out, g in zip(outputs, grads, strict=True) if g is not None]
    wanted = [t for t in leaves if t is not None]
    expected = torch.autograd.grad([o for o, _ in used], wanted, [g for _, g in used])
    assert len(got) == len(expected)
    for a, e in zip(got, expected, strict=True):
        assert a.shape == e.shape and torch.equal(a, e)
    assert got[0].abs().sum() > 0


def test_backward_operator_refuses_a_forward_that_saved_nothing():
    case = CASES[1]
    config = kernel_config(case, store_v_seq=False)
    flat = flatten_config(config)
    inputs = kernel_inputs(case)
    results = NEURON_OP.forward_op(*NEURON_OP.op_arguments(config, inputs, save=False))
    assert results[5].numel() == 0  # no H kept
    saved = NEURON_OP.implementation.saved(config, inputs, results)
    grads = [torch.ones_like(results[0]), None, None, None, None]
    with pytest.raises(RuntimeError, match="kept nothing"):
        NEURON_OP.backward_op(saved, grads, *flat, _needs(case))


# -- the registered operators against the eager path ----------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_operator_matches_the_eager_launch(case):
    """Same outputs as the eager launch (placeholders where it gives ``None``), and the
    saved ``H`` is the reference's pre-reset potential."""
    config = kernel_config(case, store_v_seq=True)
    inputs = kernel_inputs(case)
    results = NEURON_OP.forward_op(*NEURON_OP.op_arguments(config, inputs, save=True))
    assert len(results) == 6
    eager = NEURON_OP(config, inputs)
    for got, want in zip(results[:5], eager, strict=True):
        if want is None:
            assert got.numel() == 0
        else:
            assert torch.equal(got, want)
    x_seq, states = inputs[0], [t for t in inputs[1:3] if t is not None]
    tensors = [inputs[3]] if case.has_tensor else []
    margins = reference_margins(case, x_seq, states, tensors, SG)
    h_seq = results[5].reshape(margins.shape).double()
    assert_close_fp32(h_seq - case.v_threshold, margins, "saved H - V_th")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_make_fx_records_the_registered_operator(case):
    """A tracer sends the operator functions through ``sj_triton::neuron_forward``; the
    traced graph gives the eager values."""
    operator = getattr(operators, f"{case.name}_multi_step")
    kwargs = operator_kwargs(case, store_v_seq=True)
    tensors = [t for t in kernel_inputs(case) if t is not None]

    def run(*tensors):
        return operator(*tensors, **kwargs)

    graph = make_fx(run)(*tensors)
    targets = [node.target for node in graph.graph.nodes if node.op == "call_function"]
    assert FORWARD in targets
    for got, want in zip(graph(*tensors), run(*tensors), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_autograd_through_the_registered_forward(case):
    """Gradients through the registered forward operator (the traced path's autograd)
    equal the eager path's."""
    config = kernel_config(case, store_v_seq=True)
    leaves = kernel_inputs(case, requires_grad=True)
    results = NEURON_OP.forward_op(*NEURON_OP.op_arguments(config, leaves, save=True))
    grads = _used_grads(case, results)
    used = [(out, g) for out, g in zip(results[:5], grads, strict=True) if g is not None]
    wanted = [t for t in leaves if t is not None]
    got = torch.autograd.grad([o for o, _ in used], wanted, [g for _, g in used])

    eager_leaves = kernel_inputs(case, requires_grad=True)
    outputs = NEURON_OP(config, eager_leaves)
    used = [(out, g) for out, g in zip(outputs, grads, strict=True) if g is not None]
    expected = torch.autograd.grad(
        [o for o, _ in used], [t for t in eager_leaves if t is not None], [g for _, g in used]
    )
    for a, e in zip(got, expected, strict=True):
        assert torch.equal(a, e)
