"""What is specific to the cupy kernels: which kernel a call runs, and the reference
system's functions.

The numerics of every neuron, flag, reset, surrogate, dtype and layout against the torch
reference are the conformance grid's (``tests/conformance``). Here:

* each configuration has a scalar kernel (one neuron per thread) and a vector kernel (4
  fp32 / 8 16-bit neurons per thread, 16-byte accesses); the host picks one per call. The
  tests check which one ran, the fallback to the scalar kernel for sizes and tensors the
  vector kernel cannot take, and that each gives the reference's values;
* inference launches write no ``H``; a 16-bit ``H`` never crosses the threshold;
* sizes over one and many blocks (the PLIF ``1/tau`` block reduction);
* ``multistep_*_ptt`` and ``save_cuda_codes`` (:mod:`sj_cupy.neuron_kernel`).

Every test runs on ``cpu-host`` (the generated code compiled for the CPU) and on ``cuda``
(CuPy, marker ``gpu``); the largest sizes run on the GPU only.
"""

from __future__ import annotations

import re

import pytest
import torch
from cupy_cases import forward_op_args, launched_vecs, misaligned, op_inputs, vector_width
from neuron_cases import NeuronCase, flag_settings, make_inputs, make_surrogate, random_like
from reference_compare import (
    assert_close_fp32,
    compare_with_reference,
    random_weights,
    reference_margins,
)

from sj_core import reference
from sj_core import surrogate as sg
from sj_core.neuron.statements import EIF, IZHIKEVICH
from sj_cupy import launch, neuron_kernel, operators
from sj_cupy.codegen import all_variants, kernel_params, module_source
from sj_cupy.kernel_op import NEURON_OP


def _case(name: str, decay_input: bool = True, **overrides) -> NeuronCase:
    flags = {"decay_input": decay_input} if "decay_input" in flag_settings(name)[0] else {}
    config = dict(v_reset=-0.3, v_threshold=0.9) | overrides
    return NeuronCase(name, flags=flags, **config)


STATEMENT_CASES = [_case(n) for n in ("if", "lif", "plif", "qif", "eif", "izhikevich")]


def _operator(case: NeuronCase):
    return getattr(operators, f"{case.name}_multi_step")


def _compare(case, device, T, shape, *, dtype=torch.float32, surrogate="ATan", seed=0, **kw):
    """The cupy operator against the reference on fresh (aligned) inputs; returns the
    :class:`reference_compare.Comparison`. Clears the recorded launches first."""
    x_seq, states, tensors = make_inputs(case, T, shape, dtype=dtype, device=device, seed=seed)
    launch.get_launcher().launches.clear()
    return compare_with_reference(
        _operator(case), case, x_seq, states, tensors, make_surrogate(surrogate),
        store_v_seq=True, **kw,
    )  # fmt: skip


def _first(direction: str) -> int:
    """Neurons per thread of the first kernel of ``direction`` that ran (a PLIF comparison
    that leaves neurons out runs again on the others)."""
    vecs = launched_vecs(direction)
    assert vecs, f"no {direction} kernel ran"
    return vecs[0]


# -- scalar or vector kernel ----------------------------------------------------------------


def _sizes(device: str, layout: str) -> tuple[int, tuple[int, ...]]:
    """``(T, per-step shape)``: ``"vector"``, N a multiple of 8 (every dtype's vector kernel
    takes it; CPU: 1032 neurons, 258 fp32 vector threads, two blocks); ``"scalar"``, an
    odd N, which only the scalar kernel takes."""
    if device == "cpu":
        return (7, (3, 344)) if layout == "vector" else (7, (3, 101))
    return (64, (4, 25_000)) if layout == "vector" else (64, (3, 25_001))


LAYOUT_CASES = [(case, torch.float32) for case in STATEMENT_CASES] + [
    (_case(name), dtype)
    for name in ("lif", "izhikevich")
    for dtype in (torch.float16, torch.bfloat16)
]


@pytest.mark.parametrize("layout", ["vector", "scalar"])
@pytest.mark.parametrize(
    ("case", "dtype"), LAYOUT_CASES, ids=[f"{c.name}-{str(d)[6:]}" for c, d in LAYOUT_CASES]
)
def test_sizes_select_the_vector_or_the_scalar_kernel(case, dtype, layout, device):
    T, shape = _sizes(device, layout)
    comparison = _compare(case, device, T, shape, dtype=dtype)
    vec = vector_width(dtype) if layout == "vector" else 1
    assert (_first("forward"), _first("backward")) == (vec, vec)
    assert 0.05 < comparison.spike_rate < 0.9


MISALIGNED = [
    # (statement, decay_input, misaligned input, dtype, forward vec, backward vec)
    ("izhikevich", False, "x_seq", torch.float32, 1, 4),  # the backward does not read X
    ("izhikevich", False, "v_init", torch.float32, 1, 1),  # ... but reads V[-1]
    ("izhikevich", False, "w_init", torch.float32, 1, 4),
    ("lif", True, "x_seq", torch.bfloat16, 1, 8),  # 2 bytes off
    ("plif", True, "x_seq", torch.float16, 1, 1),  # dH/d(1/tau) reads X
    ("plif", False, "x_seq", torch.float32, 1, 4),  # ... only with decay_input
    ("plif", True, "v_init", torch.float32, 1, 1),
    ("plif", False, "r_tau", torch.float32, 4, 4),  # one scalar: its alignment is irrelevant
]


@pytest.mark.parametrize(
    ("name", "decay_input", "which", "dtype", "forward_vec", "backward_vec"),
    MISALIGNED,
    ids=[f"{n}-{'decay' if d else 'nodecay'}-{w}-{str(t)[6:]}" for n, d, w, t, *_ in MISALIGNED],
)
def test_misaligned_inputs(name, decay_input, which, dtype, forward_vec, backward_vec, device):
    # N = 64 suits every vector kernel; one input starting off a 16-byte boundary (a slice
    # of a larger tensor) selects the scalar kernel wherever that kernel reads it.
    case = _case(name, decay_input)
    x_seq, states, tensors = make_inputs(case, 5, (64,), dtype=dtype, device=device, seed=7)
    if which == "x_seq":
        x_seq = misaligned(x_seq)
    elif which == "r_tau":
        tensors = (misaligned(tensors[0]),)
    else:
        index = {"v_init": 0, "w_init": 1}[which]
        states = tuple(misaligned(s) if i == index else s for i, s in enumerate(states))
    launch.get_launcher().launches.clear()
    compare_with_reference(
        _operator(case), case, x_seq, states, tensors, make_surrogate("Sigmoid"),
        store_v_seq=True,
    )  # fmt: skip
    assert (_first("forward"), _first("backward")) == (forward_vec, backward_vec)


@pytest.mark.parametrize("which", ["spike", "v_last", "w_last", "v_seq"])
def test_misaligned_gradients_fall_back_to_scalar(which, device):
    # The incoming gradients reach the kernel as they are: aligned ones run the vector
    # backward, one off a 16-byte boundary the scalar one. The per-neuron arithmetic is
    # the same, so the fp32 gradients agree bit for bit, and with the reference.
    case = _case("izhikevich")
    x_seq, states, tensors = make_inputs(case, 5, (64,), device=device, seed=3)
    weights = random_weights(case, x_seq, states)
    surrogate_function = make_surrogate("ATan")
    runs, vecs = [], []
    for incoming in (weights, weights | {which: misaligned(weights[which])}):
        launch.get_launcher().launches.clear()
        comparison = compare_with_reference(
            _operator(case), case, x_seq, states, tensors, surrogate_function,
            store_v_seq=True, weights=incoming,
        )  # fmt: skip
        runs.append(comparison.kernel)
        vecs.append((_first("forward"), _first("backward")))
    assert vecs == [(4, 4), (4, 1)]
    for name, grad in runs[0].grads.items():
        assert torch.equal(runs[1].grads[name], grad), name


# -- what the forward stores ----------------------------------------------------------------


class ArgumentRecorder:
    """Records the arguments (by name) of every launch, then runs it as ``inner`` would."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.device_type = inner.device_type
        self.launches = inner.launches
        self.calls: list[tuple[str, dict]] = []

    def launch(self, variant, args, n_blocks, device) -> None:
        names = [p.name for p in kernel_params(variant)]
        self.calls.append((variant.direction, dict(zip(names, args, strict=True))))
        self.inner.launch(variant, args, n_blocks, device)


@pytest.fixture
def recorder(device):
    recording = ArgumentRecorder(launch.get_launcher())
    previous = launch.set_launcher(recording)
    yield recording
    launch.set_launcher(previous)


@pytest.mark.parametrize("case", STATEMENT_CASES, ids=lambda c: c.name)
def test_inference_writes_no_h_seq(case, device, recorder):
    x_seq, states, tensors = make_inputs(case, 6, (40,), device=device, seed=2)
    surrogate_function = make_surrogate("Sigmoid")
    kwargs = case.kwargs(surrogate_function, store_v_seq=False)
    with torch.no_grad():
        outputs = _operator(case)(x_seq, *states, *tensors, **kwargs)
    ((direction, args),) = recorder.calls
    assert direction == "forward"
    assert args["h_seq"] == 0 and args["v_seq"] == 0  # null: nothing stored
    expected = getattr(reference, f"multistep_{case.name}")(x_seq, *states, *tensors, **kwargs)
    assert torch.equal(outputs[0], expected[0])
    for got, want in zip(outputs[1:-1], expected[1:-1], strict=True):
        assert_close_fp32(got, want, "final state")
    # Training stores H: the reference's pre-reset potentials.
    inputs = op_inputs(x_seq, states, tensors)
    training = NEURON_OP.forward_op(
        *forward_op_args(case, surrogate_function, inputs, store_v_seq=False, save=True)
    )
    assert recorder.calls[-1][1]["h_seq"] == training[5].data_ptr() != 0
    margins = reference_margins(case, x_seq, states, tensors, surrogate_function)
    h_ref = (margins + case.v_threshold).reshape(x_seq.shape)
    assert_close_fp32(training[5], h_ref.float(), "h_seq")
    inference = NEURON_OP.forward_op(
        *forward_op_args(case, surrogate_function, inputs, store_v_seq=False, save=False)
    )
    assert inference[5].numel() == 0 and recorder.calls[-1][1]["h_seq"] == 0


@pytest.mark.parametrize("n", [1, 8], ids=["scalar", "vector"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_16bit_h_keeps_the_forward_spikes(dtype, n, device):
    # IF from 0 with x = [0.5, 0.5 - eps/4]: H[1] = 1 - eps/4 < 1 does not fire, but it is
    # a tie between 1 - eps/2 and 1.0 in the 16-bit dtype and rounds (to even) to 1.0. The
    # stored H must stay below the threshold (1 - eps/2), else the backward would take
    # that step for a spike. (n = 8: the same in every lane of one vector thread.)
    eps = torch.finfo(dtype).eps
    x_seq = torch.tensor([[0.5], [0.5 - eps / 4]], device=device).to(dtype).repeat(1, n)
    assert x_seq[1, 0].item() == 0.5 - eps / 4  # exact in the dtype
    assert torch.tensor(1.0 - eps / 4).to(dtype).item() == 1.0
    v_init = torch.zeros(n, device=device, dtype=dtype)
    case = NeuronCase("if", v_reset=0.0, v_threshold=1.0, detach_reset=True)
    args = forward_op_args(
        case, sg.Sigmoid(), [x_seq, v_init, None, None], store_v_seq=False, save=True
    )
    launch.get_launcher().launches.clear()
    outputs = NEURON_OP.forward_op(*args)
    spike_seq, h_seq = outputs[0], outputs[5]
    assert launched_vecs("forward") == [n]
    assert spike_seq.tolist() == [[0.0] * n, [0.0] * n]
    assert h_seq.tolist() == [[0.5] * n, [1.0 - eps / 2] * n]
    # Backward with only dL/dV_last = 1 (hard reset, detach_reset): no spike, so dV/dH = 1
    # at both steps and grad_x = [1, 1] (a spike at step 1 would give [0, 0]).
    x = x_seq.clone().requires_grad_()
    _, v_last, _ = operators.if_multi_step(x, v_init, **case.kwargs(sg.Sigmoid(), False))
    (grad,) = torch.autograd.grad(v_last.sum(), x)
    assert launched_vecs("backward") == [n]
    assert grad.tolist() == [[1.0] * n, [1.0] * n]


# -- one block and many ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4, 255, 256, 257, 1000, 2056])
@pytest.mark.parametrize("name", ["lif", "plif"])
def test_sizes_over_blocks(name, n, device):
    # One block, block edges, and (PLIF) the 1/tau reduction over several blocks; n a
    # multiple of 4 runs the fp32 vector kernel (2056: 514 vector threads, three blocks).
    _compare(_case(name), device, 5, (n,), seed=n)
    vec = 4 if n % 4 == 0 else 1
    assert (_first("forward"), _first("backward")) == (vec, vec)


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda"], indirect=True)
@pytest.mark.parametrize("n", [100_003, 1_000_000, 1_000_001])
@pytest.mark.parametrize("name", ["lif", "plif"])
def test_large_sizes_on_the_gpu(name, n, device):
    _compare(_case(name), device, 5, (n,), seed=1)
    vec = 4 if n % 4 == 0 else 1
    assert (_first("forward"), _first("backward")) == (vec, vec)


# -- the reference system's functions ------------------------------------------------------


class PttOperator:
    """A ``multistep_*_ptt`` function behind the operator signature, so that
    :func:`reference_compare.compare_with_reference` checks its spikes, ``v_seq`` and
    gradients: returns ``(spike_seq, v_last = v_seq[-1], [w_last = w_seq[-1],] v_seq)``
    and keeps the function's own results in ``self.results``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.results: tuple = ()
        self.tensors: tuple = ()

    def __call__(self, x, *tensors, v_threshold, v_reset, detach_reset, surrogate_function,
                 store_v_seq, **p):  # fmt: skip
        # The positional signatures of the reference system (seeds/001).
        assert store_v_seq
        k, v, th, tail = neuron_kernel, tensors[0], (v_threshold, v_reset), (detach_reset,)
        tail += (surrogate_function,)
        if self.name == "if":
            results = k.multistep_if_ptt(x, v, *th, *tail)
        elif self.name == "lif":
            results = k.multistep_lif_ptt(x, v, p["decay_input"], p["tau"], *th, *tail)
        elif self.name == "plif":
            results = k.multistep_plif_ptt(x, v, tensors[1], p["decay_input"], *th, *tail)
        elif self.name == "qif":
            args = (p["tau"], *th, p["v_rest"], p["v_c"], p["a0"], *tail)
            results = k.multistep_qif_ptt(x, v, *args)
        elif self.name == "eif":
            args = (p["tau"], *th, p["v_rest"], p["theta_rh"], p["delta_T"], *tail)
            results = k.multistep_eif_ptt(x, v, *args)
        else:
            args = (p["tau"], *th, p["v_rest"], p["a"], p["b"], p["tau_w"], p["v_c"], p["a0"])
            results = k.multistep_izhikevich_ptt(x, v, tensors[1], *args, *tail)
        self.results, self.tensors = results, tensors
        spike_seq, v_seq = results[0], results[1]
        if self.name == "eif":  # v_v_seq: v_init, then the T post-reset potentials
            v_seq = v_seq[1:]
        if self.name == "izhikevich":
            return spike_seq, v_seq[-1], results[2][-1], v_seq
        return spike_seq, v_seq[-1], v_seq


def _ptt_results(case, x_seq, states, surrogate_function) -> tuple:
    """What ``multistep_<case.name>_ptt`` returns for ``case`` on these inputs."""
    ptt = PttOperator(case.name)
    ptt(x_seq, *states, **case.kwargs(surrogate_function, store_v_seq=True))
    return ptt.results


@pytest.mark.parametrize("case", STATEMENT_CASES, ids=lambda c: c.name)
def test_reference_system_functions(case, device):
    T, n = 5, 33
    x_seq, states, tensors = make_inputs(case, T, (n,), device=device, seed=12)
    surrogate_function = make_surrogate("Sigmoid")
    ptt = PttOperator(case.name)
    comparison = compare_with_reference(
        ptt, case, x_seq, states, tensors, surrogate_function, store_v_seq=True
    )
    keep = ~comparison.excluded
    results = ptt.results
    assert len(results) == (2 if case.name in ("if", "lif", "qif") else 3)
    if case.name == "plif":
        assert results[2] is ptt.tensors[1]  # reciprocal_tau, returned as given
    if case.name == "eif":
        _check_eif_sequences(case, x_seq, states, surrogate_function, results, keep)
    if case.name == "izhikevich":
        _check_izhikevich_w_seq(case, x_seq, states, surrogate_function, results, keep)


def _check_eif_sequences(case, x_seq, states, surrogate_function, results, keep):
    # (spike_seq, v_v_seq [T + 1], h_seq): v_v_seq starts with v_init; h_seq is the
    # reference's pre-reset H; gradients through h_seq match the reference's.
    T = x_seq.shape[0]
    _, v_v_seq, h_seq = results
    assert v_v_seq.shape == (T + 1, *x_seq.shape[1:]) and h_seq.shape == x_seq.shape
    assert torch.equal(v_v_seq[0], states[0])
    margins = reference_margins(case, x_seq, states, (), surrogate_function)
    h_ref = (margins + case.v_threshold).float()
    assert_close_fp32(h_seq.reshape(T, -1)[:, keep], h_ref[:, keep], "h_seq")

    x = x_seq.clone().requires_grad_()
    v = states[0].clone().requires_grad_()
    _, _, h = _ptt_results(case, x, (v,), surrogate_function)
    weight = random_like(x_seq, 5)
    grads = torch.autograd.grad((h * weight).sum(), (x, v))
    # The reference: H[t] = charge(X[t], V[t-1]) over the reference's own V.
    x_r = x_seq.clone().requires_grad_()
    v_r = states[0].clone().requires_grad_()
    kwargs = case.kwargs(surrogate_function, store_v_seq=True)
    _, _, v_seq_r = reference.multistep_eif(x_r, v_r, **kwargs)
    v_prev = torch.cat((v_r.unsqueeze(0), v_seq_r[:-1]))
    h_r = EIF.charge(x_r, v_prev, **case.params, v_r=case.v_reset)
    want = torch.autograd.grad((h_r * weight).sum(), (x_r, v_r))
    assert_close_fp32(grads[0][:, keep], want[0][:, keep], "grad_x through h_seq")
    assert_close_fp32(grads[1][keep], want[1][keep], "grad_v through h_seq")


def _check_izhikevich_w_seq(case, x_seq, states, surrogate_function, results, keep):
    # w_seq: W after each step (spike jump included), recomputed from the reference's H
    # and spikes with the statement's own adapt and jump, in float64.
    T = x_seq.shape[0]
    w_seq = results[2]
    assert w_seq.shape == x_seq.shape and w_seq.dtype == x_seq.dtype
    margins = reference_margins(case, x_seq, states, (), surrogate_function)
    params = {**case.params, "v_r": case.v_reset}
    w = states[1].reshape(-1).double()
    expected = []
    for t in range(T):
        h = margins[t] + case.v_threshold
        spike = (margins[t] >= 0).double()
        w = IZHIKEVICH.adaptation.jump(IZHIKEVICH.adaptation.adapt(h, w, **params), spike, **params)
        expected.append(w)
    expected = torch.stack(expected).float()
    assert_close_fp32(w_seq.reshape(T, -1)[:, keep].float(), expected[:, keep], "w_seq")
    assert expected.std() > 0.01  # W moves (the adaptation is not trivially constant)

    # Gradients through every step of w_seq, against the reference's steps.
    weight = random_like(x_seq, 9)
    leaves = [t.clone().requires_grad_() for t in (x_seq, *states)]
    _, _, w_seq = _ptt_results(case, leaves[0], leaves[1:], surrogate_function)
    grads = torch.autograd.grad((w_seq * weight).sum(), leaves)
    ref_leaves = [t.clone().requires_grad_() for t in (x_seq, *states)]
    current, w_ref = tuple(ref_leaves[1:]), []
    for t in range(T):
        _, current = reference.neuron_step(
            IZHIKEVICH, ref_leaves[0][t], current, (), case.params,
            v_threshold=case.v_threshold, v_reset=case.v_reset,
            detach_reset=case.detach_reset, surrogate_function=surrogate_function,
        )  # fmt: skip
        w_ref.append(current[1])
    want = torch.autograd.grad((torch.stack(w_ref) * weight).sum(), ref_leaves)
    assert_close_fp32(grads[0][:, keep], want[0][:, keep], "grad_x through w_seq")
    for got, ref, name in zip(grads[1:], want[1:], ("v_init", "w_init"), strict=True):
        assert_close_fp32(got[keep], ref[keep], f"grad_{name} through w_seq")


def test_save_cuda_codes(tmp_path):
    path = tmp_path / "neuron_kernel_sample.cu"
    neuron_kernel.save_cuda_codes(str(path))
    text = path.read_text()
    variants = list(all_variants())
    assert text == module_source(variants)
    assert len(variants) == 3168  # 1584 configurations, each scalar and vectorized
    assert sum(v.vec > 1 for v in variants) == 1584
    kernels = re.findall(r"__launch_bounds__\(SJ_CUPY_BLOCK\) (\w+)\(\n", text)
    assert sorted(kernels) == sorted(v.kernel_name for v in variants)  # each once
    assert text.count("#define SJ_CUPY_PRELUDE") == 1
    assert text.count("SJ_INLINE float sj_surrogate_grad_ATan(") == 1
