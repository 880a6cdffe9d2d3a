"""The Triton IF/LIF/PLIF kernels against the sj-core torch reference (fp32).

Each test runs ``sj_triton.neuron_kernel.<kind>_multi_step`` and
``sj_core.reference.multistep_<kind>`` (autograd through a plain time loop) on the same
inputs and incoming gradients and compares spikes, ``v_last``, ``v_seq`` and the
gradients of ``x_seq``, ``v_init`` and PLIF's ``r_tau`` (rules, including the
near-threshold exclusion, in ``_triton_helpers``).

Sizes: on CPU (Triton interpreter) small odd sizes; with CUDA the same tests also run the
``gpu``-marked sizes (long sequences, layers spanning many blocks and both BLOCK sizes).
"""

from __future__ import annotations

import pytest
import torch
from _triton_helpers import (
    DEVICE,
    HAS_CUDA,
    OUTPUTS,
    REFERENCE,
    Neuron,
    all_neuron_configs,
    compare_with_reference,
    make_inputs,
    random_like,
    random_out_grads,
)

from sj_core import surrogate

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
neuron_kernel = pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)

KERNELS = {
    "if": neuron_kernel.if_multi_step,
    "lif": neuron_kernel.lif_multi_step,
    "plif": neuron_kernel.plif_multi_step,
}
SG = surrogate.Sigmoid(alpha=4.0)

# The full configuration grid runs at one size; it grows on a GPU.
GRID_T = 64 if HAS_CUDA else 7
GRID_STEP_SHAPE = (8, 4097) if HAS_CUDA else (2, 129)

# One configuration per family for the size sweep: IF hard reset, LIF soft reset with
# detach_reset and no decay_input, PLIF hard reset to a non-zero potential.
SWEEP_NEURONS = [
    Neuron("if", v_reset=0.0),
    Neuron("lif", v_reset=None, detach_reset=True, decay_input=False, v_threshold=0.8),
    Neuron("plif", v_reset=-0.3, decay_input=True),
]
CPU_T = (0, 1, 2, 7)
GPU_T = (64, 100)
CPU_STEP_SHAPES = ((1,), (3,), (257,), (1000,), (2, 3, 5))
# 2**18 + 3 crosses into the BLOCK=1024 configuration; the others use BLOCK=256.
GPU_STEP_SHAPES = ((1023,), (4097,), (2**18 + 3,), (32, 3, 17, 19))


def _shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _sweep_params():
    params = []
    for T in CPU_T + GPU_T:
        for shape in CPU_STEP_SHAPES + GPU_STEP_SHAPES:
            gpu_only = T in GPU_T or shape in GPU_STEP_SHAPES
            marks = (pytest.mark.gpu,) if gpu_only else ()
            params.append(pytest.param(T, shape, id=f"T{T}-S{_shape_id(shape)}", marks=marks))
    return params


def _all_grads(x_seq, v_init, store_v_seq=True):
    use = OUTPUTS if store_v_seq else ("spike", "v_last")
    return random_out_grads(x_seq, v_init, use=use)


# -- the configuration grid -----------------------------------------------------------------


@pytest.mark.parametrize("neuron", all_neuron_configs(), ids=lambda n: n.id)
def test_every_configuration_matches_reference(neuron):
    """IF/LIF/PLIF x hard (0, -0.3) / soft reset x detach_reset x decay_input: values,
    v_seq and the gradients of x_seq, v_init and r_tau under random incoming gradients
    on all three outputs."""
    x_seq, v_init, r_tau = make_inputs(neuron, GRID_T, GRID_STEP_SHAPE, seed=1)
    result = compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=True,
        out_grads=_all_grads(x_seq, v_init),
    )
    # The inputs must exercise firing and resets, or the test proves little.
    assert 0.1 < result.spike_rate < 0.9, f"spike rate {result.spike_rate:.2f}"
    assert result.kernel.grad_x.abs().sum() > 0


# -- sequence lengths and per-step sizes ----------------------------------------------------


@pytest.mark.parametrize(("T", "step_shape"), _sweep_params())
@pytest.mark.parametrize("neuron", SWEEP_NEURONS, ids=lambda n: n.id)
def test_sequence_lengths_and_step_sizes(neuron, T, step_shape):
    """T in {0, 1, 2, 7} (+ {64, 100} on GPU); odd per-step sizes, several dimensions,
    and (on GPU) sizes spanning many blocks of both BLOCK configurations."""
    x_seq, v_init, r_tau = make_inputs(neuron, T, step_shape, seed=T + sum(step_shape))
    result = compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=True,
        out_grads=_all_grads(x_seq, v_init),
    )
    if x_seq.numel() >= 1000:
        assert 0.1 < result.spike_rate < 0.9, f"spike rate {result.spike_rate:.2f}"


@pytest.mark.parametrize("neuron", SWEEP_NEURONS, ids=lambda n: n.id)
def test_empty_step_shape(neuron):
    """A per-step shape with zero elements (e.g. batch size 0) gives empty outputs and
    empty gradients (and a zero r_tau gradient), like the reference."""
    x_seq, v_init, r_tau = make_inputs(neuron, 5, (4, 0))
    result = compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=True,
        out_grads=_all_grads(x_seq, v_init),
    )
    assert result.kernel.grad_x.shape == (5, 4, 0)
    if neuron.has_r_tau:
        assert result.kernel.grad_r.tolist() == [0.0]


# -- which outputs are used, store_v_seq --------------------------------------------------------

USED_OUTPUTS = [
    (True, ("spike",)),
    (True, ("v_last",)),
    (True, ("v_seq",)),
    (True, ("spike", "v_last")),
    (True, ("spike", "v_seq")),
    (True, ("v_last", "v_seq")),
    (True, OUTPUTS),
    (False, ("spike",)),
    (False, ("v_last",)),
    (False, ("spike", "v_last")),
]


@pytest.mark.parametrize(
    ("store_v_seq", "used"),
    USED_OUTPUTS,
    ids=[f"{'store' if s else 'nostore'}-{'+'.join(u)}" for s, u in USED_OUTPUTS],
)
@pytest.mark.parametrize("neuron", SWEEP_NEURONS, ids=lambda n: n.id)
def test_unused_outputs_and_store_v_seq(neuron, store_v_seq, used):
    """Incoming gradients are ``None`` for outputs nobody used (e.g. only the spikes
    feed the loss); ``store_v_seq`` both ways (``v_seq`` is ``None`` without it)."""
    T, shape = (GRID_T, GRID_STEP_SHAPE)
    x_seq, v_init, r_tau = make_inputs(neuron, T, shape, seed=7)
    compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=store_v_seq,
        out_grads=random_out_grads(x_seq, v_init, use=used, seed=3),
    )


ONE_INPUT_CASES = [
    pytest.param(neuron, (name,), id=f"{neuron.id}-grad-{name}")
    for neuron in SWEEP_NEURONS
    for name in ("x", "v", "r")
    if name != "r" or neuron.has_r_tau
]


@pytest.mark.parametrize(("neuron", "wrt"), ONE_INPUT_CASES)
def test_gradient_for_one_input_only(neuron, wrt):
    """Only one input requires grad (only ``v_init``, or only PLIF's ``r_tau``): the
    kernel still saves what the backward needs and that gradient is right."""
    x_seq, v_init, r_tau = make_inputs(neuron, 7, (3, 50), seed=11)
    result = compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=True,
        out_grads=_all_grads(x_seq, v_init),
        wrt=wrt,
    )
    got = {"x": result.kernel.grad_x, "v": result.kernel.grad_v, "r": result.kernel.grad_r}
    assert got[wrt[0]] is not None and got[wrt[0]].abs().sum() > 0
    assert all(g is None for name, g in got.items() if name != wrt[0])


@pytest.mark.parametrize("store_v_seq", [False, True], ids=["nostore", "store"])
@pytest.mark.parametrize("neuron", SWEEP_NEURONS, ids=lambda n: n.id)
def test_inference_forward(neuron, store_v_seq):
    """No input requires grad, or grad mode is off: the inference kernel (no H saved)
    gives the same values."""
    x_seq, v_init, r_tau = make_inputs(neuron, 7, (300,), seed=5)
    no_grads = dict.fromkeys(OUTPUTS)
    compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=store_v_seq,
        out_grads=no_grads,
        wrt=(),
    )
    x = x_seq.clone().requires_grad_()
    extra = (r_tau,) if neuron.has_r_tau else ()
    kwargs = neuron.kwargs(SG, store_v_seq)
    with torch.no_grad():
        spike_seq, v_last, _ = KERNELS[neuron.kind](x, v_init, *extra, **kwargs)
    ref_spikes, ref_v_last, _ = REFERENCE[neuron.kind](x_seq, v_init, *extra, **kwargs)
    assert not spike_seq.requires_grad and not v_last.requires_grad
    assert torch.equal(spike_seq, ref_spikes)
    torch.testing.assert_close(v_last, ref_v_last, rtol=1e-5, atol=1e-5)


# -- memory layout ----------------------------------------------------------------------------


@pytest.mark.parametrize("neuron", SWEEP_NEURONS, ids=lambda n: n.id)
def test_non_contiguous_inputs_and_gradients(neuron):
    """Transposed / strided ``x_seq`` and ``v_init``; expanded (stride 0), transposed and
    strided incoming gradients."""
    T, N, C = 6, 5, 37
    x_c, v_c, r_tau = make_inputs(neuron, T, (N, C), seed=21)
    # x_seq [T, N, C]: a transposed view of a [T, 2C, N] buffer, every other channel.
    base = torch.zeros(T, 2 * C, N, device=DEVICE)
    base[:, ::2] = x_c.transpose(1, 2)
    x_seq = base.transpose(1, 2)[:, :, ::2]
    assert torch.equal(x_seq, x_c) and not x_seq.is_contiguous()
    v_init = torch.stack([v_c, v_c * 0 + 9.0], dim=-1)[..., 0]  # stride 2
    assert not v_init.is_contiguous()
    out_grads = {
        # the same spike gradient at every step: stride 0 along T
        "spike": random_like(x_c[:1], 31).expand(T, N, C),
        "v_last": random_like(torch.empty(C, N, device=DEVICE), 32).t(),
        "v_seq": random_like(torch.empty(T, C, N, device=DEVICE), 33).transpose(1, 2),
    }
    assert not any(g.is_contiguous() for g in out_grads.values())
    compare_with_reference(
        KERNELS[neuron.kind],
        neuron,
        x_seq,
        v_init,
        r_tau,
        SG,
        store_v_seq=True,
        out_grads=out_grads,
    )


def test_r_tau_as_a_scalar_tensor():
    """PLIF accepts a 0-d ``r_tau`` (one element) and returns its gradient in that shape."""
    neuron = Neuron("plif", v_reset=None, decay_input=False)
    x_seq, v_init, r_tau = make_inputs(neuron, 7, (64,), seed=2)
    compare_with_reference(
        KERNELS["plif"],
        neuron,
        x_seq,
        v_init,
        r_tau.reshape(()),
        SG,
        store_v_seq=False,
        out_grads=_all_grads(x_seq, v_init, store_v_seq=False),
    )


# -- the reference-system signatures -----------------------------------------------------------


@pytest.mark.parametrize("neuron", SWEEP_NEURONS, ids=lambda n: n.id)
def test_reference_system_signatures(neuron):
    """``multistep_if/lif/plif`` (positional, reference-system order) return
    ``(spike_seq, v_seq)`` equal to the reference's."""
    x_seq, v_init, r_tau = make_inputs(neuron, 7, (2, 33), seed=4)
    common = (neuron.v_threshold, neuron.v_reset, neuron.detach_reset, SG)
    if neuron.kind == "if":
        spike_seq, v_seq = neuron_kernel.multistep_if(x_seq, v_init, *common)
    elif neuron.kind == "lif":
        spike_seq, v_seq = neuron_kernel.multistep_lif(
            x_seq, v_init, neuron.decay_input, neuron.tau, *common
        )
    else:
        spike_seq, v_seq = neuron_kernel.multistep_plif(
            x_seq, v_init, r_tau, neuron.decay_input, *common
        )
    extra = (r_tau,) if neuron.has_r_tau else ()
    ref_spikes, _, ref_v_seq = REFERENCE[neuron.kind](
        x_seq, v_init, *extra, **neuron.kwargs(SG, store_v_seq=True)
    )
    assert torch.equal(spike_seq, ref_spikes)
    torch.testing.assert_close(v_seq, ref_v_seq, rtol=1e-5, atol=1e-5)


# -- large tensors (GPU) -----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.slow
def test_offsets_beyond_int32():
    """T * NCL > 2**31 (fp16, ~22 GB): the last steps, at element offsets past 2**31,
    are computed right in both kernels. Hand-derived values: IF, hard reset to 0,
    V_th = 1, x = 0.5 everywhere, v_init = 0 gives H = 0.5, 1.0, 0.5, 1.0, ... (a spike at
    every odd step); with detach_reset, grad_spike = 1 and no other incoming gradient,
    grad_x[t] = sg(H[t] - 1) + grad_x[t + 1] * (1 - S[t]) with sg = Sigmoid(4)'s gradient."""
    T, ncl = 513, 1 << 22  # step 512 starts at element 2**31
    assert T * ncl > 2**31
    x_seq = torch.full((T, ncl), 0.5, device="cuda", dtype=torch.float16, requires_grad=True)
    v_init = torch.zeros(ncl, device="cuda", dtype=torch.float16)
    spike_seq, v_last, _ = neuron_kernel.if_multi_step(
        x_seq, v_init, v_threshold=1.0, v_reset=0.0, detach_reset=True, surrogate_function=SG
    )
    assert spike_seq[-1].eq(0).all() and spike_seq[-2].eq(1).all() and spike_seq[0].eq(0).all()
    assert v_last.eq(0.5).all()
    grad_spike = torch.ones(1, ncl, device="cuda", dtype=torch.float16).expand(T, ncl)
    (grad_x,) = torch.autograd.grad(spike_seq, x_seq, grad_spike)
    sg_below = SG.gradient(torch.tensor(-0.5)).item()  # H = 0.5
    sg_at = SG.gradient(torch.tensor(0.0)).item()  # H = 1.0 (spike)
    # t = 512: no spike, nothing later; t = 511: spike, reset blocks the later gradient;
    # t = 510: no spike, the gradient of step 511 flows through.
    expected = {512: sg_below, 511: sg_at, 510: sg_below + sg_at, 0: sg_below + sg_at}
    for t, value in expected.items():
        row = grad_x[t].float()
        torch.testing.assert_close(row, torch.full_like(row, value), rtol=2e-3, atol=1e-3)


@pytest.mark.gpu
def test_no_host_synchronisation():
    """Forward and backward (PLIF: including the on-device ``r_tau`` reduction) never
    synchronise with the host (SPEC 9); CUDA's sync debug mode turns any sync into an
    error."""
    neuron = Neuron("plif", v_reset=None, decay_input=True)
    x_seq, v_init, r_tau = make_inputs(neuron, 16, (4, 4097), seed=3)
    grads = _all_grads(x_seq, v_init, store_v_seq=False)
    leaves = [x_seq.requires_grad_(), v_init.requires_grad_(), r_tau.requires_grad_()]

    def step():
        spike_seq, v_last, _ = neuron_kernel.plif_multi_step(
            *leaves, **neuron.kwargs(SG, store_v_seq=False)
        )
        torch.autograd.backward([spike_seq, v_last], [grads["spike"], grads["v_last"]])

    step()  # warm-up: compilation and first-use allocations may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_another_device_than_the_current_one():
    """Inputs on ``cuda:1`` while ``cuda:0`` is current: the kernels must run on the
    tensors' device (Triton launches on the *current* device unless guarded)."""
    neuron = Neuron("lif", v_reset=0.0)
    device = torch.device("cuda:1")
    with torch.cuda.device(0):
        x_seq, v_init, r_tau = make_inputs(neuron, 7, (3, 1000), seed=12, device=device)
        compare_with_reference(
            KERNELS["lif"],
            neuron,
            x_seq,
            v_init,
            r_tau,
            SG,
            store_v_seq=True,
            out_grads=_all_grads(x_seq, v_init),
        )
