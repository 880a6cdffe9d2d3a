"""A LIF neuron written as a FlexSN core, run by the generated Triton kernels, against
``sj_core.reference.multistep_lif`` and ``LIFNode`` (values and gradients).

The surrogate inside the core is an ``sj_core.surrogate`` function: an autograd Function
whose backward (``alpha * s * (1 - s)`` for Sigmoid, ``(alpha / 2) / (1 + (pi alpha x /
2)^2)`` for ATan) is traced by the training capture, so the backward kernel uses the
surrogate gradient. On the CPU the kernels run under Triton's interpreter at small sizes;
with CUDA the ``gpu`` sizes run too (long sequences, layers spanning many blocks).
"""

from __future__ import annotations

import pytest
import torch
from flexsn_triton_cases import (
    ATAN,
    DEVICE,
    SIGMOID,
    assert_close_fp32,
    gradients,
    leaf,
    make_lif_core,
    random_inputs,
    require_flexsn,
    size_params,
)

from sj_core import reference
from sj_core.neuron import LIFNode

require_flexsn()

from sj_flexsn.factory import build_flexsn_kernel  # noqa: E402

# (id, LIF parameters): hard/soft reset, detach_reset, decay_input, both surrogates.
CONFIGS = {
    "hard-sigmoid": dict(tau=2.0, v_reset=0.0, decay_input=True, spike_fn=SIGMOID),
    "soft-atan-detach": dict(
        tau=2.0, v_reset=None, decay_input=True, detach_reset=True, spike_fn=ATAN
    ),
    "hard-neg-reset-no-decay": dict(
        tau=4.0, v_reset=-0.5, decay_input=False, v_threshold=0.75, spike_fn=SIGMOID
    ),
}

_KERNELS: dict[str, object] = {}


def _kernel(config_id: str):
    # One kernel per configuration for the whole module: building costs ~0.1 s.
    if config_id not in _KERNELS:
        core = make_lif_core(**CONFIGS[config_id])
        _KERNELS[config_id] = build_flexsn_kernel(core, num_inputs=1, num_states=1, num_outputs=1)
    return _KERNELS[config_id]


def _reference(config_id: str, x_seq, v_init, store_v_seq):
    params = dict(CONFIGS[config_id])
    spike_fn = params.pop("spike_fn")
    params.setdefault("v_threshold", 1.0)
    params.setdefault("detach_reset", False)
    return reference.multistep_lif(
        x_seq, v_init, surrogate_function=spike_fn, store_v_seq=store_v_seq, **params
    )


def _inputs(T, shape, seed):
    x_seq = random_inputs((T, *shape), seed, low=-0.5, high=2.0)
    v_init = random_inputs(shape, seed + 1, low=-0.5, high=0.9)
    return x_seq, v_init


@pytest.mark.parametrize(("T", "shape"), size_params())
@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("path", ["final-state", "state-seq"])
def test_training_matches_multistep_lif(config_id, path, T, shape):
    kernel = _kernel(config_id)
    x_seq, v_init = _inputs(T, shape, seed=T + len(shape))
    grad_spikes = random_inputs((T, *shape), 7, low=-1.0, high=1.0)
    store = path == "state-seq"

    x_k, v_k = leaf(x_seq), leaf(v_init)
    if store:
        spikes, v_seq = kernel(x_k, v_k)
        grad_v = random_inputs((T, *shape), 8, low=-1.0, high=1.0)
        k_grads = gradients([spikes, v_seq], [grad_spikes, grad_v], [x_k, v_k])
    else:
        spikes, v_last = kernel.final_state(x_k, v_k)
        grad_v = random_inputs(shape, 8, low=-1.0, high=1.0)
        k_grads = gradients([spikes, v_last], [grad_spikes, grad_v], [x_k, v_k])

    x_r, v_r = leaf(x_seq), leaf(v_init)
    ref_spikes, ref_v_last, ref_v_seq = _reference(config_id, x_r, v_r, store_v_seq=store)
    ref_v = ref_v_seq if store else ref_v_last
    r_grads = gradients([ref_spikes, ref_v], [grad_spikes, grad_v], [x_r, v_r])

    assert torch.equal(spikes, ref_spikes), "spikes differ"
    assert_close_fp32(v_seq if store else v_last, ref_v.detach(), "v")
    assert_close_fp32(k_grads[0], r_grads[0], "grad x_seq")
    assert_close_fp32(k_grads[1], r_grads[1], "grad v_init")


@pytest.mark.parametrize(("T", "shape"), size_params())
@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_inference_matches_multistep_lif(config_id, T, shape):
    kernel = _kernel(config_id)
    x_seq, v_init = _inputs(T, shape, seed=3)
    with torch.no_grad():
        spikes, v_seq = kernel(x_seq, v_init)
        spikes_f, v_last = kernel.final_state(x_seq, v_init)
        ref_spikes, ref_v_last, ref_v_seq = _reference(config_id, x_seq, v_init, True)
    assert not spikes.requires_grad
    assert torch.equal(spikes, ref_spikes) and torch.equal(spikes_f, ref_spikes)
    assert_close_fp32(v_seq, ref_v_seq, "v_seq")
    assert_close_fp32(v_last, ref_v_last, "v_last")


def test_matches_lif_node_over_two_calls():
    # LIFNode keeps v between calls; the kernel continues from the final state it returns.
    kernel = _kernel("hard-sigmoid")
    node = LIFNode(tau=2.0, v_reset=0.0, surrogate_function=SIGMOID, step_mode="m")
    x1 = random_inputs((4, 3, 7), 11, low=0.0, high=2.0)
    x2 = random_inputs((3, 3, 7), 12, low=0.0, high=2.0)
    out1, v = kernel.final_state(x1, torch.zeros(3, 7, device=DEVICE))
    out2, v = kernel.final_state(x2, v)
    node = node.to(DEVICE)
    assert torch.equal(out1, node(x1))
    assert torch.equal(out2, node(x2))
    assert_close_fp32(v, node.v, "v after two calls")


def test_spike_at_equality_and_hand_computed_values():
    # tau = 2, hard reset to 0, threshold 1: H = v + (x - v) / 2.
    # neuron 0: x = 2, 2: H = 1 (spike at equality, v -> 0), then H = 1 again (spike).
    # neuron 1: x = 1, 1: H = 0.5 (no spike, v = 0.5), then H = 0.75 (no spike).
    kernel = _kernel("hard-sigmoid")
    x_seq = torch.tensor([[2.0, 1.0], [2.0, 1.0]], device=DEVICE)
    spikes, v_seq = kernel(x_seq, torch.zeros(2, device=DEVICE))
    assert spikes.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert v_seq.tolist() == [[0.0, 0.5], [0.0, 0.75]]
