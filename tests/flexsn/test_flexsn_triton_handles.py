"""Kernel handles (``sj_flexsn.custom_ops``): reference counting and release.

A handle lives while its owner (the kernel object) lives, or while an autograd node of a
training call still needs the backward kernel; creating and dropping owners in a loop
must leave the registry as it was.
"""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from flexsn_triton_cases import DEVICE, leaf, make_lif_core, random_inputs, require_flexsn

require_flexsn()

from sj_flexsn import custom_ops  # noqa: E402
from sj_flexsn.factory import build_flexsn_kernel  # noqa: E402


class _Owner:
    """Stands for a kernel object in the registry-only cycles."""


def _register() -> int:
    return custom_ops.register_flexsn_kernel_handle(
        inference_kernel=object(),
        inference_info=None,
        inference_final_state_kernel=None,
        inference_final_state_info=None,
        forward_kernel=None,
        backward_kernel=None,
        training_info=None,
    )


def test_thousand_owner_cycles_leave_the_registry_unchanged():
    gc.collect()
    before = custom_ops.num_registered_flexsn_kernel_handles()
    owners, kernels = [], []
    for _ in range(1000):
        owner = _Owner()
        handle = _register()
        custom_ops.attach_flexsn_handle_finalizer(owner, handle)
        owners.append(weakref.ref(owner))
        kernels.append(weakref.ref(custom_ops.get_flexsn_kernel_handle(handle)))
        assert custom_ops.num_registered_flexsn_kernel_handles() == before + 1
        del owner  # the finalizer releases the handle at once
        assert custom_ops.num_registered_flexsn_kernel_handles() == before
    gc.collect()
    assert all(ref() is None for ref in owners + kernels)
    assert custom_ops.num_registered_flexsn_kernel_handles() == before


def test_reference_counts():
    handle = _register()
    custom_ops.retain_owner_flexsn_kernel_handle(handle)  # a second owner
    custom_ops.retain_flexsn_kernel_handle(handle)  # an autograd node
    custom_ops.release_flexsn_kernel_handle(handle)
    custom_ops.release_flexsn_kernel_handle(handle)
    assert custom_ops.get_flexsn_kernel_handle(handle).active_refs == 1  # still alive
    custom_ops.release_active_flexsn_kernel_handle(handle)
    try:
        custom_ops.get_flexsn_kernel_handle(handle)
    except RuntimeError as error:
        assert "garbage-collected" in str(error)
    else:
        raise AssertionError("the handle should have been released")
    custom_ops.release_flexsn_kernel_handle(handle)  # releasing again is harmless


def _build():
    return build_flexsn_kernel(make_lif_core(), num_inputs=1, num_states=1, num_outputs=1)


@pytest.mark.parametrize(
    "cycles", [20, pytest.param(1000, marks=pytest.mark.slow)], ids=lambda n: f"{n}-cycles"
)
def test_kernel_objects_are_collected_and_release_their_handles(cycles):
    gc.collect()
    before = custom_ops.num_registered_flexsn_kernel_handles()
    refs = []
    x_seq = random_inputs((2, 3), 1, 0.0, 2.0)
    v_init = torch.zeros(3, device=DEVICE)
    for _ in range(cycles):
        kernel = _build()
        with torch.no_grad():
            kernel(x_seq, v_init)
        spikes, v_last = kernel.final_state(leaf(x_seq), leaf(v_init))
        (spikes.sum() + v_last.sum()).backward()
        refs.append(weakref.ref(kernel))
        del kernel, spikes, v_last
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert custom_ops.num_registered_flexsn_kernel_handles() == before


def test_backward_works_after_the_owner_is_gone():
    # An eager training call's autograd node holds an active reference: the kernels
    # outlive their owner until the node is freed.
    kernel = _build()
    handle = kernel.handle
    x_seq, v_init = leaf(random_inputs((3, 4), 2, 0.0, 2.0)), leaf(torch.zeros(4, device=DEVICE))
    spikes, v_last = kernel.final_state(x_seq, v_init)
    del kernel
    gc.collect()
    entry = custom_ops.get_flexsn_kernel_handle(handle)
    assert (entry.owner_refs, entry.active_refs) == (0, 1)
    del entry
    (spikes.sum() + v_last.sum()).backward()
    assert x_seq.grad is not None and torch.isfinite(x_seq.grad).all()
    del spikes, v_last
    gc.collect()
    assert handle not in custom_ops._REGISTRY


def test_custom_op_autograd_keeps_the_handle_until_its_node_is_freed():
    # The custom ops (what torch.compile records) look kernels up by handle: an autograd
    # node of sj_flexsn::forward holds an active reference.
    kernel = _build()
    handle = kernel.handle
    x_seq, v_init = leaf(random_inputs((3, 4), 2, 0.0, 2.0)), leaf(torch.zeros(4, device=DEVICE))
    op = custom_ops.FLEXSN_OP
    arguments = op.op_arguments(custom_ops.FlexSNConfig(handle, False), [x_seq, v_init], save=True)
    spikes, v_last, *_ = op.forward_op(*arguments)
    del kernel
    gc.collect()
    entry = custom_ops.get_flexsn_kernel_handle(handle)
    assert (entry.owner_refs, entry.active_refs) == (0, 1)
    del entry
    (spikes.sum() + v_last.sum()).backward()
    assert x_seq.grad is not None and torch.isfinite(x_seq.grad).all()
    del spikes, v_last
    gc.collect()
    assert handle not in custom_ops._REGISTRY


def test_deep_copy_shares_the_kernels_and_copies_the_captured_tensors():
    module = torch.nn.Linear(1, 1)  # any module with a parameter the core captures
    scale = torch.nn.Parameter(torch.tensor(0.5, device=DEVICE))
    module.scale = scale

    def core(x, v):
        h = v * module.scale + x
        return h, h

    kernel = build_flexsn_kernel(core, num_inputs=1, num_states=1, num_outputs=1)
    memo: dict = {}
    module_copy = copy.deepcopy(module, memo)
    kernel_copy = copy.deepcopy(kernel, memo)
    assert kernel_copy.handle == kernel.handle
    assert kernel_copy.captured[0] is module_copy.scale  # one memo: the same copies
    assert custom_ops.get_flexsn_kernel_handle(kernel.handle).owner_refs == 2
    handle = kernel.handle
    memo.clear()  # deepcopy's memo keeps the originals alive
    del kernel
    gc.collect()
    assert custom_ops.get_flexsn_kernel_handle(handle).owner_refs == 1
    with torch.no_grad():
        module_copy.scale.fill_(0.25)
        out, _ = kernel_copy.final_state(
            torch.ones(1, 2, device=DEVICE), torch.ones(2, device=DEVICE)
        )
    assert out.tolist() == [[1.25, 1.25]]  # reads the copy's parameter
    del kernel_copy
    gc.collect()
    assert handle not in custom_ops._REGISTRY
