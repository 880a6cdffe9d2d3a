"""The cupy kernels against the sj-core reference loops: values and gradients.

Every test runs twice: ``cpu-host`` (the generated code compiled for the CPU, see
``conftest.py``; runs in CI) and ``cuda`` (CuPy/NVRTC on a GPU, marker ``gpu``; the GPU
run also uses larger sizes and ``T = 64``). Gradients are compared with autograd of the
reference loop, for the inputs, the initial states and PLIF's ``r_tau``.

Each configuration has a scalar and a vector kernel (4 fp32 / 8 16-bit neurons per thread,
16-byte accesses) and the host picks one per call. Tests parametrized by ``layout`` use
sizes that force each (``"vector"``: N a multiple of 8 and fresh, aligned tensors;
``"scalar"``: an odd N) and check which kernel ran; the ``misaligned`` tests check the
fallback for tensors that do not start on a 16-byte boundary.
"""

from __future__ import annotations

import pytest
import torch
from cupy_cases import (
    CASE_BY_ID,
    CASES,
    HARD_V_RESET,
    R_TAU,
    TOLERANCES,
    V_THRESHOLD,
    assert_close,
    check_spikes,
    launched_vecs,
    make_inputs,
    misaligned,
    run_kernel,
    run_reference,
    tensor_args,
    upstream_grads,
    vector_width,
    weighted_sum,
)

from sj_core import surrogate as sg
from sj_cupy import launch, neuron_kernel, operators, ops
from sj_cupy.codegen import NEURONS

RESETS = {"hard": HARD_V_RESET, "soft": None}
OUTPUT_NAMES = ("spike_seq", "v_last", "w_last", "v_seq")
LAYOUTS = ("vector", "scalar")
NEURON_SCALARS = NEURONS["izhikevich"].scalars


def sizes(device: str, layout: str = "vector") -> tuple[int, tuple[int, ...]]:
    """``(T, per-step shape)`` over several blocks (many on the GPU). ``"vector"``: N a
    multiple of 8, so every dtype's vector kernel takes it (CPU: 1032 neurons, 258 fp32
    vector threads, two blocks); ``"scalar"``: an odd N, which only the scalar kernel
    takes."""
    if device == "cpu":
        return (7, (3, 344)) if layout == "vector" else (7, (3, 101))
    return (64, (4, 25_000)) if layout == "vector" else (64, (3, 25_001))


def layout_vec(layout: str, dtype: torch.dtype) -> int:
    """Neurons per thread of the kernel that ``layout``'s sizes must select."""
    return vector_width(dtype) if layout == "vector" else 1


def compare_with_reference(
    case,
    device,
    T,
    shape,
    *,
    dtype=torch.float32,
    reset="hard",
    detach_reset=False,
    surrogate=None,
    store_v_seq=True,
    seed=0,
    misalign=(),
    forward_vec=None,
    backward_vec=None,
):
    """Run kernel and reference on the same inputs; compare outputs and all gradients.

    ``misalign`` names kernel inputs (``x_seq``, ``v_init``, ``w_init``, ``r_tau``) passed
    as views that start off a 16-byte boundary. ``forward_vec`` / ``backward_vec``, when
    given, are the neurons per thread the forward / backward kernel must have run with.
    """
    surrogate = surrogate if surrogate is not None else sg.ATan()
    inputs = make_inputs(case, T, shape, dtype, device, seed)
    args = tensor_args(case, *inputs)
    names = ["x_seq", "v_init"] + ["w_init"] * case.has_w + ["r_tau"] * case.has_r_tau
    assert set(misalign) <= set(names), misalign
    kernel_args = [
        (misaligned(a) if name in misalign else a.clone()).requires_grad_()
        for name, a in zip(names, args, strict=True)
    ]
    ref_args = [a.detach().float().clone().requires_grad_() for a in args]
    options = dict(v_reset=RESETS[reset], detach_reset=detach_reset, store_v_seq=store_v_seq)

    launch.get_launcher().launches.clear()
    outputs = run_kernel(case, kernel_args, surrogate=surrogate, **options)
    if forward_vec is not None:
        assert launched_vecs("forward") == [forward_vec]
    ref, margins = run_reference(case, ref_args, surrogate=surrogate, **options)
    names = OUTPUT_NAMES if case.has_w else OUTPUT_NAMES[:2] + OUTPUT_NAMES[3:]
    assert len(outputs) == len(ref) == len(names)
    keep = check_spikes(outputs[0], ref[0], margins)
    for got, want, name in zip(outputs, ref, names, strict=True):
        if want is None:
            assert got is None, name
            continue
        assert got.dtype == dtype and got.device.type == device, name
        assert_close(got, want, dtype, keep, name)

    weights = upstream_grads(ref)
    grads = torch.autograd.grad(weighted_sum(outputs, weights), kernel_args, allow_unused=True)
    ref_grads = torch.autograd.grad(weighted_sum(ref, weights), ref_args, allow_unused=True)
    for arg, got, want in zip(args, grads, ref_grads, strict=True):
        want = torch.zeros_like(arg, dtype=torch.float32) if want is None else want
        assert got is not None and got.shape == arg.shape
        if arg.numel() == 1 and case.has_r_tau and arg is args[-1]:
            if keep.all():
                check_r_tau_grad(got, want, ref_grads[0], dtype)
            continue
        assert got.dtype == arg.dtype
        assert_close(got, want, dtype, keep, "gradient")
    if backward_vec is not None:
        assert launched_vecs("backward") == [backward_vec]
    return outputs, ref


def check_r_tau_grad(got, want, ref_grad_x, dtype):
    # d/d(1/tau) is a sum over every neuron and step of g_H dH/d(1/tau); its error is
    # relative to the sum of the magnitudes of the terms (sum |g_H| ~ sum |grad_x| / r).
    terms = (ref_grad_x.abs().sum() / R_TAU).item() if ref_grad_x is not None else 1.0
    tol = TOLERANCES[dtype]
    assert got.dtype == torch.float32 and got.shape == (1,)
    assert abs(got.item() - want.item()) <= tol * abs(want.item()) + tol * terms


# -- every neuron, reset mode, detach_reset, decay_input, store_v_seq -------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("store_v_seq", [True, False], ids=["v_seq", "no_v_seq"])
@pytest.mark.parametrize("detach_reset", [False, True], ids=["attached", "detach_reset"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_reference(case, reset, detach_reset, store_v_seq, layout, device):
    T, shape = sizes(device, layout)
    vec = layout_vec(layout, torch.float32)
    outputs, _ = compare_with_reference(
        case,
        device,
        T,
        shape,
        reset=reset,
        detach_reset=detach_reset,
        store_v_seq=store_v_seq,
        forward_vec=vec,
        backward_vec=vec,
    )
    assert 0 < outputs[0].float().mean() < 1  # both branches of the reset occur


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_inference_matches_reference(case, layout, device):
    # No gradient needed: the inference kernel (no H written), against the reference.
    T, shape = sizes(device, layout)
    x_seq, v_init, w_init, r_tau = make_inputs(case, T, shape, torch.float32, device)
    args = tensor_args(case, x_seq, v_init, w_init, r_tau)
    options = dict(v_reset=HARD_V_RESET, detach_reset=False, surrogate=sg.Sigmoid())
    launch.get_launcher().launches.clear()
    with torch.no_grad():
        outputs = run_kernel(case, args, store_v_seq=False, **options)
    assert launched_vecs("forward") == [layout_vec(layout, torch.float32)]
    ref, margins = run_reference(case, args, store_v_seq=False, **options)
    keep = check_spikes(outputs[0], ref[0], margins)
    for got, want in zip(outputs, ref, strict=True):
        if want is None:
            assert got is None
        else:
            assert_close(got, want, torch.float32, keep)


@pytest.mark.parametrize("T", [0, 1, 2, 7, 64])
@pytest.mark.parametrize(("layout", "n"), [("vector", 40), ("scalar", 37)], ids=LAYOUTS)
@pytest.mark.parametrize("case_id", ["if", "lif-decay", "plif-nodecay", "izhikevich"])
def test_time_steps(case_id, layout, n, T, device):
    vec = layout_vec(layout, torch.float32)
    compare_with_reference(
        CASE_BY_ID[case_id], device, T, (n,), reset="soft", forward_vec=vec, backward_vec=vec
    )


@pytest.mark.parametrize("n", [1, 4, 255, 256, 257, 1000, 2056, 100_003, 1_000_000, 1_000_001])
@pytest.mark.parametrize("case_id", ["lif-decay", "plif-decay"])
def test_sizes(case_id, n, device):
    # One block, block edges, and (PLIF) the 1/tau reduction over many blocks; n a
    # multiple of 4 runs the fp32 vector kernel (2056: 514 vector threads, three blocks).
    if device == "cpu" and n > 2056:
        pytest.skip("large sizes run on the GPU only")
    vec = 4 if n % 4 == 0 else 1
    compare_with_reference(CASE_BY_ID[case_id], device, 5, (n,), forward_vec=vec, backward_vec=vec)


def test_multidimensional_steps(device):
    compare_with_reference(CASE_BY_ID["qif"], device, 3, (2, 3, 5, 7))


# -- surrogates -------------------------------------------------------------------------------

SURROGATES = [
    sg.Sigmoid(),
    sg.Sigmoid(alpha=2.5),
    sg.ATan(),
    sg.ATan(alpha=3.0),
    sg.PiecewiseQuadratic(),
    sg.PiecewiseQuadratic(alpha=0.7),
    sg.PiecewiseExp(),
    sg.SoftSign(),
    sg.SuperSpike(),
    sg.Erf(),
    sg.PiecewiseLeakyReLU(),
    sg.PiecewiseLeakyReLU(w=0.5, c=0.05),
    sg.QPseudoSpike(),
    sg.QPseudoSpike(alpha=2.5),
    sg.LeakyKReLU(),
    sg.LeakyKReLU(leak=0.1, k=0.8),
    sg.S2NN(),
    sg.S2NN(alpha=3.0, beta=0.7),
    sg.NonzeroSignLogAbs(),
    sg.LogTailedReLU(),
    sg.LogTailedReLU(alpha=0.1),
    sg.Rect(),
    sg.Rect(alpha=0.6),
    sg.SquarewaveFourierSeries(),
    sg.SquarewaveFourierSeries(n=4, T_period=6.0),
    sg.FakeNumericalGradient(),
    sg.FakeNumericalGradient(alpha=0.5),
]


def _surrogate_id(surrogate) -> str:
    values = ",".join(f"{v:g}" for v in surrogate.kernel_params().values())
    return f"{surrogate.kernel_name}({values})"


def test_every_surrogate_is_covered():
    from sj_cupy.codegen import SURROGATES as KERNELS

    assert {s.kernel_name for s in SURROGATES} == set(KERNELS)


@pytest.mark.parametrize("surrogate", SURROGATES, ids=_surrogate_id)
def test_surrogates(surrogate, device):
    T, shape = sizes(device, "vector")
    compare_with_reference(
        CASE_BY_ID["lif-decay"], device, T, shape, surrogate=surrogate, backward_vec=4
    )


@pytest.mark.parametrize("surrogate", SURROGATES[::3], ids=_surrogate_id)
def test_surrogates_soft_reset_izhikevich(surrogate, device):
    compare_with_reference(
        CASE_BY_ID["izhikevich"], device, 6, (129,), reset="soft", surrogate=surrogate
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=_surrogate_id)
def test_surrogate_gradient_values(surrogate, layout, device):
    # One IF step from v = 0 isolates the surrogate: H = x, and with only dL/dS = 1 and
    # detach_reset, grad_x = surrogate'(x - V_th). Points on both sides of 0 and at the
    # formulas' breakpoints (|x| = w, 1/(2 alpha), 1/alpha, x = 0, 1, -1): 16 of them
    # (vector kernel), or 15 (scalar).
    points = [-3.0, -1.0, -0.7, -0.5, -0.2, -0.05, -1e-3, 0.0, 1e-3, 0.05, 0.2, 0.5, 0.7, 1.0]
    points += [1.5, 3.0] if layout == "vector" else [1.5]
    x = torch.tensor(points, device=device) + V_THRESHOLD
    x_seq = x.unsqueeze(0).clone().requires_grad_()
    spike_seq, _, _ = operators.if_multi_step(
        x_seq,
        torch.zeros_like(x),
        v_threshold=V_THRESHOLD,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate,
    )
    (grad,) = torch.autograd.grad(spike_seq.sum(), x_seq)
    assert launched_vecs("backward") == [layout_vec(layout, torch.float32)]
    want = surrogate.gradient(x.detach() - V_THRESHOLD)
    torch.testing.assert_close(grad[0], want, rtol=1e-6, atol=1e-7)


# -- dtypes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_half_precision(case, dtype, layout, device):
    # Against the fp32 reference of the same (rounded) inputs.
    T, shape = sizes(device, layout)
    vec = layout_vec(layout, dtype)
    compare_with_reference(
        case, device, T, shape, dtype=dtype, reset="soft", forward_vec=vec, backward_vec=vec
    )


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
    launch.get_launcher().launches.clear()
    outputs = ops.multistep_forward(
        x_seq,
        v_init,
        None,
        None,
        "if",
        False,
        False,
        False,
        "Sigmoid",
        [1.0, 0.0],
        [4.0],
        False,
        False,
        True,
    )
    spike_seq, h_seq = outputs[0], outputs[5]
    assert launched_vecs("forward") == [n]
    assert spike_seq.tolist() == [[0.0] * n, [0.0] * n]
    assert h_seq.tolist() == [[0.5] * n, [1.0 - eps / 2] * n]
    # Backward with only dL/dV_last = 1 (hard reset, detach_reset): no spike, so dV/dH = 1
    # at both steps and grad_x = [1, 1] (a spike at step 1 would give [0, 0]).
    x = x_seq.clone().requires_grad_()
    _, v_last, _ = operators.if_multi_step(
        x,
        v_init,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=sg.Sigmoid(),
    )
    (grad,) = torch.autograd.grad(v_last.sum(), x)
    assert launched_vecs("backward") == [n]
    assert grad.tolist() == [[1.0] * n, [1.0] * n]


# -- layouts and missing gradients --------------------------------------------------------------


def test_noncontiguous_inputs_and_gradients(device):
    # Non-contiguous tensors are copied before the kernel (here to fresh, aligned
    # memory: the vector kernel runs).
    case = CASE_BY_ID["plif-decay"]
    T, N = 6, 152
    x_big, v_big, _, r_tau = make_inputs(case, T, (N, 2), torch.float32, device)
    x_seq = x_big[..., 0].requires_grad_(False)  # stride 2
    v_init = v_big[:, 1]
    assert not x_seq.is_contiguous() and not v_init.is_contiguous()
    args = [
        x_seq.clone().requires_grad_(),
        v_init.clone().requires_grad_(),
        r_tau.clone().requires_grad_(),
    ]
    strided = [a.detach().clone() for a in args]
    x_nc = torch.stack([strided[0], strided[0]], -1)[..., 0].requires_grad_()
    v_nc = torch.stack([strided[1], strided[1]], -1)[..., 0].requires_grad_()
    r_nc = strided[2].requires_grad_()
    kwargs = dict(
        decay_input=True,
        v_threshold=1.0,
        v_reset=HARD_V_RESET,
        detach_reset=False,
        surrogate_function=sg.Sigmoid(),
        store_v_seq=True,
    )
    got = operators.plif_multi_step(x_nc, v_nc, r_nc, **kwargs)
    want = operators.plif_multi_step(*args, **kwargs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    # Non-contiguous upstream gradients: a transposed view and an expanded (stride 0) one.
    grad_spikes = torch.randn(N, T, device=device).t()
    grad_v_last = torch.ones((), device=device).expand(N)
    grad_v_seq = torch.randn(T, N, 2, device=device)[..., 1]
    assert not grad_spikes.is_contiguous() and grad_v_last.stride() == (0,)
    upstream = (grad_spikes, grad_v_last, grad_v_seq)
    grads = torch.autograd.grad(got, (x_nc, v_nc, r_nc), upstream)
    ref = torch.autograd.grad(want, args, tuple(g.contiguous() for g in upstream))
    for g, w in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("used", ["spikes", "v_last", "v_seq"])
def test_gradients_of_some_outputs_only(used, device):
    case = CASE_BY_ID["izhikevich"]
    x_seq, v_init, w_init, _ = make_inputs(case, 5, (40,), torch.float32, device)
    args = [t.clone().requires_grad_() for t in (x_seq, v_init, w_init)]
    ref_args = [t.clone().requires_grad_() for t in (x_seq, v_init, w_init)]
    options = dict(
        v_reset=HARD_V_RESET, detach_reset=False, surrogate=sg.Sigmoid(), store_v_seq=True
    )
    outputs = run_kernel(case, args, **options)
    ref, _ = run_reference(case, ref_args, **options)
    index = {"spikes": 0, "v_last": 1, "v_seq": 3}[used]
    grads = torch.autograd.grad(outputs[index].sum(), args, allow_unused=True)
    ref_grads = torch.autograd.grad(ref[index].sum(), ref_args, allow_unused=True)
    for got, want, arg in zip(grads, ref_grads, args, strict=True):
        want = torch.zeros_like(arg) if want is None else want
        assert_close(got, want, torch.float32)


# -- the vector kernel's preconditions: falling back to the scalar kernel ------------------------


@pytest.mark.parametrize(
    ("case_id", "which", "dtype", "backward_vec"),
    [
        ("izhikevich", "x_seq", torch.float32, 4),  # the backward does not read x_seq
        ("izhikevich", "v_init", torch.float32, 1),  # ... but reads v_init
        ("izhikevich", "w_init", torch.float32, 4),
        ("lif-decay", "x_seq", torch.bfloat16, 8),  # 2 bytes off
        ("plif-decay", "v_init", torch.float16, 1),
    ],
    ids=["izhikevich-x_seq", "izhikevich-v_init", "izhikevich-w_init", "lif-bf16", "plif-fp16"],
)
def test_misaligned_inputs_fall_back_to_scalar(case_id, which, dtype, backward_vec, device):
    # N = 64 suits every vector kernel; one input starting off a 16-byte boundary (a slice
    # of a larger tensor) must select the scalar kernel, with the same results.
    compare_with_reference(
        CASE_BY_ID[case_id],
        device,
        5,
        (64,),
        dtype=dtype,
        misalign=(which,),
        forward_vec=1,
        backward_vec=backward_vec,
    )


def test_misaligned_r_tau_keeps_the_vector_kernel(device):
    # PLIF's 1/tau is one scalar read, not a per-neuron tensor: its alignment is irrelevant.
    compare_with_reference(
        CASE_BY_ID["plif-nodecay"],
        device,
        5,
        (64,),
        misalign=("r_tau",),
        forward_vec=4,
        backward_vec=4,
    )


@pytest.mark.parametrize("which", ["grad_spike_seq", "grad_v_last", "grad_v_seq"])
def test_misaligned_gradients_fall_back_to_scalar(which, device):
    # The backward operator with aligned incoming gradients (vector kernel), then with one
    # of them misaligned (scalar kernel): the per-neuron arithmetic is the same, so the
    # fp32 results agree bit for bit.
    case = CASE_BY_ID["izhikevich"]
    x_seq, v_init, w_init, _ = make_inputs(case, 5, (64,), torch.float32, device)
    scalars = [V_THRESHOLD, HARD_V_RESET] + [float(case.params[n]) for n in NEURON_SCALARS]
    config = ("izhikevich", False, False, False, "ATan", scalars, [2.0])
    outputs = ops.multistep_forward(x_seq, v_init, w_init, None, *config, True, False, True)
    h_seq = outputs[5]
    generator = torch.Generator().manual_seed(3)
    grads = {
        "grad_spike_seq": torch.randn(5, 64, generator=generator).to(device),
        "grad_v_last": torch.randn(64, generator=generator).to(device),
        "grad_v_seq": torch.randn(5, 64, generator=generator).to(device),
    }

    def backward(incoming):
        return ops.multistep_backward(
            incoming["grad_spike_seq"],
            incoming["grad_v_last"],
            None,
            incoming["grad_v_seq"],
            None,
            None,
            h_seq,
            v_init,
            None,
            *config,
        )

    launch.get_launcher().launches.clear()
    aligned = backward(grads)
    shifted = backward(grads | {which: misaligned(grads[which])})
    assert launched_vecs("backward") == [4, 1]  # aligned, then misaligned
    for got, want in zip(shifted, aligned, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_inference_writes_no_h_seq(device):
    x_seq = torch.rand(4, 10, device=device)
    with torch.no_grad():
        outputs = ops.multistep_forward(
            x_seq,
            torch.zeros(10, device=device),
            None,
            None,
            "lif",
            False,
            True,
            False,
            "Sigmoid",
            [1.0, 0.0, 2.0],
            [4.0],
            False,
            False,
            False,
        )
    assert outputs[5].numel() == 0 and outputs[3].numel() == 0
    spikes, v_last, _ = operators.lif_multi_step(
        x_seq,
        torch.zeros(10, device=device),
        tau=2.0,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=False,
        surrogate_function=sg.Sigmoid(),
    )
    torch.testing.assert_close(outputs[0], spikes)
    torch.testing.assert_close(outputs[1], v_last)


# -- single step and the reference system's functions ---------------------------------------------


@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_single_step(neuron, device):
    case = CASE_BY_ID["if" if neuron == "if" else "lif-nodecay"]
    x_seq, v_init, _, _ = make_inputs(case, 3, (2, 50), torch.float32, device)
    kwargs = dict(
        v_threshold=1.0,
        v_reset=None,
        detach_reset=False,
        surrogate_function=sg.ATan(),
        **case.kwargs(),
    )
    step = getattr(operators, f"{neuron}_single_step")
    x = x_seq.clone().requires_grad_()
    v = v_init.clone().requires_grad_()
    spikes, state = [], v
    for t in range(3):
        spike, state = step(x[t], state, **kwargs)
        assert spike.shape == state.shape == (2, 50)
        spikes.append(spike)
    x_ref = x_seq.clone().requires_grad_()
    v_ref = v_init.clone().requires_grad_()
    ref = getattr(operators, f"{neuron}_multi_step")(x_ref, v_ref, **kwargs)
    torch.testing.assert_close(torch.stack(spikes), ref[0], rtol=0, atol=0)
    torch.testing.assert_close(state, ref[1], rtol=0, atol=0)
    loss = (torch.stack(spikes) * torch.arange(3.0, device=device).view(3, 1, 1)).sum()
    grads = torch.autograd.grad(loss + state.sum(), (x, v))
    ref_loss = (ref[0] * torch.arange(3.0, device=device).view(3, 1, 1)).sum() + ref[1].sum()
    ref_grads = torch.autograd.grad(ref_loss, (x_ref, v_ref))
    for g, w in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


def _seed_call(name, x, v, w, r, surrogate):
    """The reference system's positional signatures (seeds/001), with the case's params."""
    k = neuron_kernel
    if name == "if":
        return k.multistep_if_ptt(x, v, 1.0, -0.1, False, surrogate)
    if name == "lif":
        return k.multistep_lif_ptt(x, v, True, 2.5, 1.0, -0.1, False, surrogate)
    if name == "plif":
        return k.multistep_plif_ptt(x, v, r, True, 1.0, -0.1, False, surrogate)
    if name == "qif":  # tau, v_threshold, v_reset, v_rest, v_c, a0
        return k.multistep_qif_ptt(x, v, 2.0, 1.0, -0.1, -0.05, 0.8, 1.0, False, surrogate)
    if name == "eif":  # tau, v_threshold, v_reset, v_rest, theta_rh, delta_T
        return k.multistep_eif_ptt(x, v, 2.0, 1.0, -0.1, -0.05, 0.8, 1.0, False, surrogate)
    # tau, v_threshold, v_reset, v_rest, a, b, tau_w, v_c, a0
    args = (2.0, 1.0, -0.1, -0.1, 0.5, 0.2, 2.0, 0.8, 1.0, False, surrogate)
    return k.multistep_izhikevich_ptt(x, v, w, *args)


SEED_CASES = {
    "if": "if",
    "lif": "lif-decay",
    "plif": "plif-decay",
    "qif": "qif",
    "eif": "eif",
    "izhikevich": "izhikevich",
}


@pytest.mark.parametrize("name", SEED_CASES)
def test_seed_functions(name, device):
    case = CASE_BY_ID[SEED_CASES[name]]
    T, N = 4, 33
    surrogate = sg.Sigmoid()
    x, v, w, r = make_inputs(case, T, (N,), torch.float32, device)
    got = _seed_call(name, x, v, w, r, surrogate)
    ref, margins = run_reference(
        case,
        tensor_args(case, x, v, w, r),
        v_reset=-0.1,
        detach_reset=False,
        surrogate=surrogate,
        store_v_seq=True,
    )
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=0)
    if name == "eif":  # (spike_seq, v_v_seq [T + 1], h_seq)
        assert len(got) == 3
        torch.testing.assert_close(got[1], torch.cat([v[None], ref[-1]]))
        torch.testing.assert_close(got[2], margins + V_THRESHOLD)
        return
    torch.testing.assert_close(got[1], ref[-1])  # v_seq
    if name == "plif":
        assert len(got) == 3 and got[2] is r
    elif name == "izhikevich":  # w_seq: its last step is the reference's w_last
        assert len(got) == 3 and got[2].shape == (T, N)
        torch.testing.assert_close(got[2][-1], ref[2])
    else:
        assert len(got) == 2
