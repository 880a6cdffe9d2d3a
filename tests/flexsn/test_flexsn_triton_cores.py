"""Generated kernels for cores other than LIF, against the eager time loop ``torch_scan``.

Covers: two states, several inputs/states/outputs, no state, captured parameters (a
scalar and a per-neuron tensor, with their gradients summed over neurons and time),
``T == 0``, fp16/bf16, non-contiguous inputs and gradients, gradients arriving for only
some outputs, ``requires_grad`` flags, and the errors for what the kernels cannot run.
"""

from __future__ import annotations

import pytest
import torch
from flexsn_triton_cases import (
    DEVICE,
    LOW_PRECISION_TOLERANCES,
    SIGMOID,
    adaptive_core,
    assert_close_fp32,
    assert_relative_norm,
    gradients,
    leaf,
    make_lif_core,
    multi_io_core,
    random_inputs,
    require_flexsn,
    size_params,
    stateless_core,
    torch_scan,
)

from sj_core import reference

require_flexsn()

from sj_flexsn import wrapper  # noqa: E402
from sj_flexsn.factory import build_flexsn_kernel  # noqa: E402

CORES = {
    # id: (core, num_inputs, num_states, num_outputs)
    "adaptive-2-states": (adaptive_core, 1, 2, 1),
    "2-in-2-states-3-out": (multi_io_core, 2, 2, 3),
    "stateless": (stateless_core, 2, 0, 1),
}
_KERNELS: dict[str, object] = {}


def _kernel(core_id: str):
    if core_id not in _KERNELS:
        core, n_in, n_st, n_out = CORES[core_id]
        _KERNELS[core_id] = build_flexsn_kernel(
            core, num_inputs=n_in, num_states=n_st, num_outputs=n_out
        )
    return _KERNELS[core_id]


def _case(core_id, T, shape, seed=0, dtype=torch.float32):
    _, n_in, n_st, n_out = CORES[core_id]
    inputs = [random_inputs((T, *shape), seed + i, -0.5, 2.0).to(dtype) for i in range(n_in)]
    states = [random_inputs(shape, seed + 10 + k, -0.2, 0.8).to(dtype) for k in range(n_st)]
    return inputs, states


def _compare(core_id, T, shape, final_state: bool):
    core, n_in, n_st, n_out = CORES[core_id]
    kernel = _kernel(core_id)
    inputs, states = _case(core_id, T, shape)
    k_args = [leaf(t) for t in (*inputs, *states)]
    results = (kernel.final_state if final_state else kernel)(*k_args)
    r_args = [leaf(t) for t in (*inputs, *states)]
    ref_outputs, ref_state_seqs = torch_scan(core, n_out, r_args[:n_in], r_args[n_in:])
    if final_state:
        ref_states = [seq[-1] for seq in ref_state_seqs]
    else:
        ref_states = ref_state_seqs
    references = [*ref_outputs, *ref_states]
    assert len(results) == len(references)
    for index, (value, expected) in enumerate(zip(results, references, strict=True)):
        assert_close_fp32(value, expected.detach(), f"result {index}")
    grad_outs = [random_inputs(r.shape, 100 + i, -1.0, 1.0) for i, r in enumerate(references)]
    k_grads = gradients(results, grad_outs, k_args)
    r_grads = gradients(references, grad_outs, r_args)
    for index, (g, e) in enumerate(zip(k_grads, r_grads, strict=True)):
        assert_close_fp32(g, e, f"gradient of argument {index}")


@pytest.mark.parametrize(("T", "shape"), size_params())
@pytest.mark.parametrize("final_state", [False, True], ids=["state-seqs", "final-state"])
@pytest.mark.parametrize("core_id", list(CORES))
def test_core_matches_torch_loop(core_id, final_state, T, shape):
    _compare(core_id, T, shape, final_state)


# -- captured tensors ------------------------------------------------------------------------


class ParametricLIF(torch.nn.Module):
    """PLIF as a module: ``1/tau`` is a learnable scalar the core captures."""

    def __init__(self, r_tau: float) -> None:
        super().__init__()
        self.r_tau = torch.nn.Parameter(torch.tensor(r_tau))
        self.register_buffer("v_threshold", torch.tensor(1.0))

    def forward(self, x, v):
        h = v + (x - v) * self.r_tau
        spike = SIGMOID(h - self.v_threshold)
        return spike, h * (1.0 - spike)


@pytest.mark.parametrize(("T", "shape"), size_params())
def test_captured_scalar_parameter_matches_multistep_plif(T, shape):
    module = ParametricLIF(0.4).to(DEVICE)
    kernel = build_flexsn_kernel(module, num_inputs=1, num_states=1, num_outputs=1)
    assert len(kernel.captured) == 2  # r_tau and the buffer, lifted to kernel arguments
    x_seq = random_inputs((T, *shape), 1, -0.5, 2.0)
    v_init = random_inputs(shape, 2, -0.2, 0.8)
    grad_spikes = random_inputs((T, *shape), 3, -1.0, 1.0)
    grad_v = random_inputs(shape, 4, -1.0, 1.0)

    x_k, v_k = leaf(x_seq), leaf(v_init)
    spikes, v_last = kernel.final_state(x_k, v_k)
    k_grads = gradients([spikes, v_last], [grad_spikes, grad_v], [x_k, v_k, module.r_tau])

    x_r, v_r = leaf(x_seq), leaf(v_init)
    r_tau = leaf(module.r_tau.detach().reshape(1))
    ref = _plif_reference(x_r, v_r, r_tau)
    r_grads = gradients([ref[0], ref[1]], [grad_spikes, grad_v], [x_r, v_r, r_tau])

    assert torch.equal(spikes, ref[0])
    assert_close_fp32(v_last, ref[1].detach(), "v_last")
    assert_close_fp32(k_grads[0], r_grads[0], "grad x_seq")
    assert_close_fp32(k_grads[1], r_grads[1], "grad v_init")
    # The parameter gradient is one sum over every neuron and step, added in another order
    # than autograd's: compare relative to the sum of the magnitudes of its terms.
    terms = _per_neuron_terms(x_seq, v_init, module.r_tau.item(), [grad_spikes, grad_v])
    assert torch.allclose(terms.sum(), r_grads[2][0], rtol=1e-4, atol=1e-6)
    error = (k_grads[2].double().reshape(1) - r_grads[2].double()).abs().item()
    assert error <= 1e-5 * terms.abs().sum().item(), f"grad r_tau: error {error:.3g}"
    assert module.r_tau.grad is None  # gradients() does not accumulate into .grad


def _per_neuron_terms(x_seq, v_init, r_value, grad_outs):
    """The gradient of a per-neuron ``1/tau``: the terms the scalar gradient sums."""
    r = leaf(torch.full_like(v_init, r_value))

    def core(x, v):
        h = v + (x - v) * r
        spike = SIGMOID(h - 1.0)
        return spike, h * (1.0 - spike)

    (spikes,), (v_seq,) = torch_scan(core, 1, [x_seq.detach()], [v_init.detach()])
    (terms,) = gradients([spikes, v_seq[-1]], grad_outs, [r])
    return terms


def _plif_reference(x_seq, v_init, r_tau):
    # H = V + (X - V) * r: the PLIF charge with decay_input and V_reset = 0.
    spike_seq, v_last, _ = reference.multistep_plif(
        x_seq,
        v_init,
        r_tau,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=False,
        surrogate_function=SIGMOID,
    )
    return spike_seq, v_last


@pytest.mark.parametrize(("T", "shape"), size_params())
def test_captured_per_neuron_tensor_and_closure(T, shape):
    # A per-neuron threshold broadcast over the leading dimensions (a bonus feature) and a
    # scalar decay, both captured through a closure; gradients reduce to their shapes.
    threshold = torch.nn.Parameter(random_inputs(shape[-1:], 5, 0.5, 1.5))
    decay = torch.nn.Parameter(torch.tensor(0.6, device=DEVICE))

    def core(x, v):
        h = decay * v + x
        spike = SIGMOID(h - threshold)
        return spike, h - spike * threshold

    kernel = build_flexsn_kernel(core, num_inputs=1, num_states=1, num_outputs=1)
    assert len(kernel.captured) == 2
    assert kernel.captured[0] is decay and kernel.captured[1] is threshold
    x_seq = random_inputs((T, *shape), 6, -0.5, 1.5)
    v_init = random_inputs(shape, 7, -0.2, 0.5)
    grad_spikes = random_inputs((T, *shape), 8, -1.0, 1.0)
    x_k, v_k = leaf(x_seq), leaf(v_init)
    spikes, v_seq = kernel(x_k, v_k)
    k_grads = gradients([spikes, v_seq], [grad_spikes, None], [x_k, v_k, threshold, decay])
    x_r, v_r = leaf(x_seq), leaf(v_init)
    (ref_spikes,), (ref_v_seq,) = torch_scan(core, 1, [x_r], [v_r])
    r_grads = gradients([ref_spikes, ref_v_seq], [grad_spikes, None], [x_r, v_r, threshold, decay])
    assert torch.equal(spikes, ref_spikes)
    assert_close_fp32(v_seq, ref_v_seq.detach(), "v_seq")
    for name, g, e in zip(("x", "v", "threshold", "decay"), k_grads, r_grads, strict=True):
        assert_close_fp32(g, e, f"grad {name}")


def test_parameter_updates_are_seen_without_rebuilding():
    module = ParametricLIF(0.5).to(DEVICE)
    kernel = build_flexsn_kernel(module, num_inputs=1, num_states=1, num_outputs=1)
    x_seq = torch.full((1, 3), 1.0, device=DEVICE)
    v_init = torch.zeros(3, device=DEVICE)
    with torch.no_grad():
        _, v1 = kernel.final_state(x_seq, v_init)  # H = 0.5: no spike
        module.r_tau.fill_(0.25)  # an optimizer step, in place
        _, v2 = kernel.final_state(x_seq, v_init)
    assert v1.tolist() == [0.5, 0.5, 0.5]
    assert v2.tolist() == [0.25, 0.25, 0.25]


# -- T == 0 -------------------------------------------------------------------------------------


def test_empty_sequence():
    module = ParametricLIF(0.5).to(DEVICE)
    kernel = build_flexsn_kernel(module, num_inputs=1, num_states=1, num_outputs=1)
    x_seq = leaf(torch.empty(0, 4, device=DEVICE))
    v_init = leaf(random_inputs((4,), 1))
    spikes, v_last = kernel.final_state(x_seq, v_init)
    assert spikes.shape == (0, 4)
    assert torch.equal(v_last, v_init) and v_last.data_ptr() != v_init.data_ptr()
    grad_v = random_inputs((4,), 2)
    gx, gv, gr = gradients([v_last], [grad_v], [x_seq, v_init, module.r_tau])
    assert gx.shape == (0, 4)
    assert torch.equal(gv, grad_v)  # v_last = v_init: the gradient passes through
    assert gr.item() == 0.0
    spikes, v_seq = kernel(x_seq, v_init)
    assert spikes.shape == (0, 4) and v_seq.shape == (0, 4)
    with torch.no_grad():
        spikes, v_last = kernel.final_state(x_seq, v_init)
    assert spikes.shape == (0, 4) and torch.equal(v_last, v_init)


# -- low precision ----------------------------------------------------------------------------


def _near_threshold_neurons(x_seq, v_init, unit_roundoff):
    """Neurons whose fp32 charge ``H`` comes within two roundings of the threshold.

    The training forward pass stores ``H`` in the input dtype and computes with that
    rounded value (so that the backward pass sees the same one); where ``H`` is that
    close to the threshold the spike may legitimately differ from an fp32 run, and the
    neuron's later trajectory with it.
    """
    v = v_init.float().flatten()
    near = torch.zeros_like(v, dtype=torch.bool)
    for x in x_seq.float().reshape(x_seq.shape[0], -1):
        h = v + (x - v) / 2.0  # the core below: tau = 2, hard reset to 0, threshold 1
        near |= (h - 1.0).abs() <= 2 * unit_roundoff * h.abs().clamp_min(1.0)
        v = torch.where(h >= 1.0, torch.zeros_like(h), h)
    return near


@pytest.mark.parametrize(("T", "shape"), size_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_low_precision_against_fp32_reference(dtype, T, shape):
    core = make_lif_core(tau=2.0, v_reset=0.0)
    kernel = build_flexsn_kernel(core, num_inputs=1, num_states=1, num_outputs=1)
    value_tol, grad_tol = LOW_PRECISION_TOLERANCES[dtype]
    x_seq = random_inputs((T, *shape), 1, -0.5, 2.0).to(dtype)
    v_init = random_inputs(shape, 2, -0.2, 0.8).to(dtype)
    grad_spikes = random_inputs((T, *shape), 3, -1.0, 1.0).to(dtype)
    grad_v = random_inputs(shape, 4, -1.0, 1.0).to(dtype)
    x_k, v_k = leaf(x_seq), leaf(v_init)
    spikes, v_last = kernel.final_state(x_k, v_k)
    assert spikes.dtype == dtype and v_last.dtype == dtype
    k_grads = gradients([spikes, v_last], [grad_spikes, grad_v], [x_k, v_k])
    assert k_grads[0].dtype == dtype
    # The reference: fp32 on the upcast inputs and gradients.
    x_r, v_r = leaf(x_seq.float()), leaf(v_init.float())
    (ref_spikes,), (ref_v_seq,) = torch_scan(core, 1, [x_r], [v_r])
    r_grads = gradients(
        [ref_spikes, ref_v_seq[-1]], [grad_spikes.float(), grad_v.float()], [x_r, v_r]
    )
    unit_roundoff = 2.0**-11 if dtype == torch.float16 else 2.0**-8
    keep = ~_near_threshold_neurons(x_seq, v_init, unit_roundoff)
    # Every step gives a neuron another chance to come within rounding of the threshold,
    # so the share left to compare falls with T (about half of them at T = 64 in bf16).
    assert keep.float().mean() > (0.5 if T <= 16 else 0.3)  # many neurons are compared

    def kept(t):
        return t.reshape(-1, keep.numel())[:, keep] if t.dim() > len(shape) else t.flatten()[keep]

    assert torch.equal(kept(spikes.float()), kept(ref_spikes)), "a spike differs"
    assert_relative_norm(kept(v_last.float()), kept(ref_v_seq[-1].detach()), value_tol, "v_last")
    assert_relative_norm(kept(k_grads[0].float()), kept(r_grads[0]), grad_tol, "grad x_seq")
    assert_relative_norm(kept(k_grads[1].float()), kept(r_grads[1]), grad_tol, "grad v_init")


# -- layouts and partial gradients -------------------------------------------------------------


def test_non_contiguous_inputs_and_gradients_and_missing_gradients():
    core, n_in, n_st, n_out = CORES["2-in-2-states-3-out"]
    kernel = _kernel("2-in-2-states-3-out")
    T, N = 5, 6
    # [N, T] storage seen as [T, N], and a strided state: non-contiguous views of leaves.
    x_base = leaf(random_inputs((N, T), 1, -0.5, 2.0))
    y_base = leaf(random_inputs((N, T), 2, -0.5, 2.0))
    v_base = leaf(random_inputs((2 * N,), 3))
    w = leaf(random_inputs((N,), 4))
    k_args = [x_base.t(), y_base.t(), v_base[::2], w]
    assert not k_args[0].is_contiguous() and not k_args[2].is_contiguous()
    results = kernel.final_state(*k_args)
    r_args = [leaf(t) for t in k_args]
    outs, states = torch_scan(core, n_out, r_args[:2], r_args[2:])
    references = [*outs, states[0][-1], states[1][-1]]
    # Gradients: an expanded (stride-0) one, a transposed one, and None for the rest.
    grad_spike = torch.ones(1, 1, device=DEVICE).expand(T, N)
    grad_smooth = random_inputs((N, T), 5, -1.0, 1.0).t()
    grad_outs = [grad_spike, grad_smooth, None, None, None]
    k_grads = gradients(results, grad_outs, k_args)
    r_grads = gradients(references, grad_outs, r_args)
    for index, (g, e) in enumerate(zip(k_grads, r_grads, strict=True)):
        assert_close_fp32(g.contiguous(), e.contiguous(), f"gradient of argument {index}")


def test_requires_grad_flags():
    core = make_lif_core()
    kernel = build_flexsn_kernel(
        core, num_inputs=1, num_states=1, num_outputs=1, requires_grad=(False, True)
    )
    x_seq = random_inputs((3, 4), 1, 0.0, 2.0)
    v_init = leaf(random_inputs((4,), 2))
    spikes, v_last = kernel.final_state(x_seq, v_init)  # x does not require grad: fine
    (g,) = gradients([v_last], [torch.ones(4, device=DEVICE)], [v_init])
    v_ref = leaf(v_init)
    _, (ref_v_seq,) = torch_scan(core, 1, [x_seq], [v_ref])
    (e,) = gradients([ref_v_seq[-1]], [torch.ones(4, device=DEVICE)], [v_ref])
    assert_close_fp32(g, e, "grad v_init")
    with pytest.raises(ValueError, match=r"requires_grad\[0\]=False"):
        kernel.final_state(leaf(x_seq), v_init)


def test_nothing_differentiable_builds_inference_kernels_only():
    kernel = build_flexsn_kernel(
        make_lif_core(), num_inputs=1, num_states=1, num_outputs=1, requires_grad=(False, False)
    )
    assert not kernel.trainable
    x_seq = random_inputs((2, 3), 1, 0.0, 2.0)
    spikes, _ = kernel(x_seq, torch.zeros(3, device=DEVICE))
    assert not spikes.requires_grad
    with pytest.raises(ValueError, match="requires grad"):
        kernel(leaf(x_seq), torch.zeros(3, device=DEVICE))


# -- errors -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lif_kernel():
    return build_flexsn_kernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)


def test_float64_is_not_supported(lif_kernel):
    with pytest.raises(NotImplementedError, match="float32, float16 and bfloat16"):
        lif_kernel(
            torch.zeros(2, 3, dtype=torch.float64, device=DEVICE),
            torch.zeros(3, dtype=torch.float64, device=DEVICE),
        )


def test_cpu_tensors_need_the_interpreter(lif_kernel, monkeypatch):
    monkeypatch.setattr(wrapper, "interpreter_enabled", lambda: False)
    with pytest.raises(NotImplementedError, match="need CUDA tensors"):
        lif_kernel(torch.zeros(2, 3), torch.zeros(3))


def test_building_needs_cuda_or_the_interpreter(monkeypatch):
    from sj_flexsn import factory

    monkeypatch.setattr(factory, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA device"):
        build_flexsn_kernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)


def test_argument_errors(lif_kernel):
    x_seq = torch.zeros(2, 3, device=DEVICE)
    with pytest.raises(TypeError, match="1 input sequences and 1 initial states"):
        lif_kernel(x_seq)
    with pytest.raises(TypeError, match="share the dtype"):
        lif_kernel(x_seq, torch.zeros(3, dtype=torch.float16, device=DEVICE))
    with pytest.raises(ValueError, match=r"shape \(4,\), expected \(3,\)"):
        lif_kernel(x_seq, torch.zeros(4, device=DEVICE))
    with pytest.raises(ValueError, match="backend 'triton' or 'inductor'"):
        build_flexsn_kernel(
            make_lif_core(), num_inputs=1, num_states=1, num_outputs=1, backend="hop"
        )
    with pytest.raises(ValueError, match="num_inputs"):
        build_flexsn_kernel(make_lif_core(), num_inputs=0, num_states=1, num_outputs=1)
