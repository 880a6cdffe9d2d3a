"""The seed-level API: ``sj_flexsn.kernel`` builders and ``sj_flexsn.wrapper`` launchers,
used directly (without the factory's kernel object)."""

from __future__ import annotations

import pytest
import torch
from flexsn_triton_cases import (
    DEVICE,
    assert_close_fp32,
    gradients,
    leaf,
    make_lif_core,
    random_inputs,
    require_flexsn,
    torch_scan,
)

require_flexsn()

from sj_flexsn.kernel import (  # noqa: E402
    build_inference_final_state_kernel,
    build_inference_kernel,
    build_training_kernels,
)
from sj_flexsn.wrapper import (  # noqa: E402
    flexsn_backward,
    flexsn_backward_ncl_bucket,
    flexsn_forward,
    flexsn_inference,
    flexsn_inference_final_state,
)

CORE = make_lif_core(tau=2.0, v_reset=0.0)


@pytest.mark.parametrize(
    ("ncl", "bucket"),
    [(1, 0), (8192, 0), (8193, 1), (65536, 1), (65537, 2), (2**19, 2), (2**22, 3), (2**22 + 1, 4)],
)
def test_ncl_buckets(ncl, bucket):
    assert flexsn_backward_ncl_bucket(ncl) == bucket


def test_inference_kernels():
    kernel, info = build_inference_kernel(CORE, 1, 1, 1)
    final, final_info = build_inference_final_state_kernel(CORE, 1, 1, 1)
    x_seq = random_inputs((4, 6), 1, 0.0, 2.0)
    v_init = random_inputs((6,), 2)
    spikes, v_seq = flexsn_inference(kernel, info, x_seq, v_init)
    spikes_f, v_last = flexsn_inference_final_state(final, final_info, x_seq, v_init)
    (ref_spikes,), (ref_v_seq,) = torch_scan(CORE, 1, [x_seq], [v_init])
    assert torch.equal(spikes, ref_spikes) and torch.equal(spikes_f, ref_spikes)
    assert_close_fp32(v_seq, ref_v_seq, "v_seq")
    assert_close_fp32(v_last, ref_v_seq[-1], "v_last")


def test_training_kernels_through_the_wrappers():
    forward, backward, info = build_training_kernels(CORE, 1, 1, 1)
    x_seq = random_inputs((5, 6), 1, 0.0, 2.0)
    v_init = random_inputs((6,), 2)
    spikes, v_last, *stored = flexsn_forward(forward, info, x_seq, v_init, store_state_seqs=False)
    assert len(stored) == len(info.stored_intermediates) == 1
    base = info.num_outputs + info.num_states
    kernel_returns = [spikes, v_last, *stored]
    saved = [x_seq if m < 0 else kernel_returns[m] for m in info.c2k_return_mapping[base:]]
    grad_spikes = random_inputs((5, 6), 3, -1.0, 1.0)
    grad_x, grad_v = flexsn_backward(backward, info, grad_spikes, None, *saved)
    x_r, v_r = leaf(x_seq), leaf(v_init)
    (ref_spikes,), _ = torch_scan(CORE, 1, [x_r], [v_r])
    expected = gradients([ref_spikes], [grad_spikes], [x_r, v_r])
    assert_close_fp32(grad_x, expected[0], "grad x_seq")
    assert_close_fp32(grad_v, expected[1], "grad v_init")


def test_backward_without_any_gradient_returns_zeros_shaped_by_the_templates():
    _, backward, info = build_training_kernels(CORE, 1, 1, 1)
    template = torch.empty(5, 6, device="meta")
    saved = [torch.zeros(5, 6, device=DEVICE)] * info.num_intermediates
    grad_x, grad_v = flexsn_backward(
        backward, info, None, None, *saved, input_templates=[template], device=DEVICE
    )
    assert torch.equal(grad_x, torch.zeros(5, 6, device=DEVICE))
    assert torch.equal(grad_v, torch.zeros(6, device=DEVICE))


def test_empty_sequence_through_the_wrappers():
    forward, backward, info = build_training_kernels(CORE, 1, 1, 1)
    x_seq = torch.empty(0, 3, device=DEVICE)
    v_init = random_inputs((3,), 1)
    spikes, v_last, *stored = flexsn_forward(forward, info, x_seq, v_init, store_state_seqs=False)
    assert spikes.shape == (0, 3) and torch.equal(v_last, v_init)
    assert all(s.shape == (0, 3) for s in stored)
    grad_last = random_inputs((3,), 2)
    grad_x, grad_v = flexsn_backward(backward, info, None, grad_last, *stored)
    assert grad_x.shape == (0, 3) and torch.equal(grad_v, grad_last)
