"""What only a GPU can show about the Triton kernels (tests marked ``gpu``).

* Element offsets beyond ``2**31`` (64-bit pointer arithmetic), with hand-derived values;
  the same derivation also runs at a small size everywhere.
* No host synchronisation in the forward and backward passes (CUDA's sync debug mode).
* Tensors on a GPU other than the current one (the launch is guarded to their device).
* The registered operators are ``triton_op`` s: Inductor's generated code contains the
  kernels themselves.
* The compiled kernels are reused for new sequence lengths and layer widths.
"""

from __future__ import annotations

import pytest
import torch
from neuron_cases import make_inputs, make_surrogate, one_case_per_statement
from reference_compare import compare_with_reference, random_weights

from sj_core import surrogate

pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
operators = pytest.importorskip("sj_triton.operators", reason="needs sj-triton")
from sj_triton.neuron_kernel import kernels  # noqa: E402
from sj_triton.neuron_kernel.kernel_op import NEURON_OP  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
SG = surrogate.Sigmoid(alpha=4.0)


# -- offsets beyond int32 -----------------------------------------------------------------------


def _check_alternating_if(T: int, ncl: int, device: str, rows: list[int] | None = None) -> None:
    """IF, hard reset to 0, ``V_th = 1``, ``x = 0.5`` everywhere, ``v_init = 0`` (fp16):
    ``H = 0.5, 1.0, 0.5, 1.0, ...``, a spike at every odd step. With ``detach_reset`` and
    a gradient of 1 on every spike, ``grad_x[t] = sg(H[t] - 1) + (1 - S[t]) grad_x[t + 1]``
    (``sg`` the Sigmoid(4) gradient): ``sg(0)`` at odd steps, ``sg(-0.5) + sg(0)`` at even
    ones, ``sg(-0.5)`` at the last step (``T`` odd). ``rows``: the steps checked (all by
    default)."""
    assert T % 2 == 1
    x_seq = torch.full((T, ncl), 0.5, device=device, dtype=torch.float16, requires_grad=True)
    v_init = torch.zeros(ncl, device=device, dtype=torch.float16)
    spike_seq, v_last, _ = operators.if_multi_step(
        x_seq, v_init, v_threshold=1.0, v_reset=0.0, detach_reset=True, surrogate_function=SG
    )
    rows = list(range(T)) if rows is None else rows
    for t in rows:
        assert spike_seq[t].eq(t % 2).all(), f"spikes at step {t}"
    assert v_last.eq(0.5).all()
    grad_spike = torch.ones(1, ncl, device=device, dtype=torch.float16).expand(T, ncl)
    (grad_x,) = torch.autograd.grad(spike_seq, x_seq, grad_spike)
    sg_below = SG.gradient(torch.tensor(-0.5)).item()  # H = 0.5
    sg_at = SG.gradient(torch.tensor(0.0)).item()  # H = 1.0, a spike
    for t in rows:
        if t == T - 1:
            value = sg_below
        else:
            value = sg_at if t % 2 else sg_below + sg_at
        row = grad_x[t].float()
        torch.testing.assert_close(row, torch.full_like(row, value), rtol=2e-3, atol=1e-3)


def test_hand_derived_if_pattern():
    """The derivation of :func:`test_offsets_beyond_int32`, at a small size."""
    _check_alternating_if(9, 37, DEVICE)


@pytest.mark.gpu
@pytest.mark.slow
def test_offsets_beyond_int32():
    """``T * NCL > 2**31`` (fp16, ~22 GB): the last steps, at element offsets past
    ``2**31``, are computed right by both kernels."""
    T, ncl = 513, 1 << 22  # step 512 starts at element 2**31
    assert (T - 1) * ncl >= 2**31
    _check_alternating_if(T, ncl, "cuda", rows=[0, 1, 2, 509, 510, 511, 512])


# -- no host synchronisation ----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("case", one_case_per_statement(), ids=lambda c: c.id)
def test_no_host_synchronisation(case):
    """Forward and backward (PLIF: with the on-device ``r_tau`` reduction) never
    synchronise with the host; CUDA's sync debug mode turns a sync into an error."""
    x_seq, states, tensors = make_inputs(case, 16, (4, 4097), device="cuda", seed=3)
    leaves = [t.requires_grad_() for t in (x_seq, *states, *tensors)]
    weights = random_weights(case, x_seq, states)
    operator = getattr(operators, f"{case.name}_multi_step")

    def step():
        outputs = operator(*leaves, **case.kwargs(SG, store_v_seq=True))
        pairs = [(o, w) for o, w in zip(outputs, weights.values(), strict=True)]
        return torch.autograd.grad([o for o, _ in pairs], leaves, [w for _, w in pairs])

    step()  # warm-up: compilation and first-use allocations may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        grads = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for leaf, grad in zip(leaves, grads, strict=True):
        assert grad.shape == leaf.shape and torch.isfinite(grad).all()


# -- another device than the current one ---------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["lif", "izhikevich"])
def test_tensors_on_another_device_than_the_current_one(name):
    """Inputs on ``cuda:1`` while ``cuda:0`` is current: the kernels run on the tensors'
    device (Triton launches on the current device unless guarded)."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    case = next(c for c in one_case_per_statement() if c.name == name)
    x_seq, states, tensors = make_inputs(case, 7, (3, 1000), device="cuda:1", seed=12)
    operator = getattr(operators, f"{name}_multi_step")
    kwargs = case.kwargs(make_surrogate("ATan"), store_v_seq=True)
    with torch.cuda.device(0):
        outputs = operator(x_seq, *states, *tensors, **kwargs)
        assert all(o.device == torch.device("cuda:1") for o in outputs)
        compare_with_reference(
            operator, case, x_seq, states, tensors, make_surrogate("ATan"), store_v_seq=True
        )
    on_0 = operator(
        x_seq.to("cuda:0"), *(s.to("cuda:0") for s in states), *tensors, **kwargs
    )  # fmt: skip
    for a, b in zip(outputs, on_0, strict=True):
        assert torch.equal(a.to("cuda:0"), b)


# -- triton_op ----------------------------------------------------------------------------------


@pytest.mark.gpu
def test_triton_op_used_on_gpu():
    """On a GPU the operators are ``triton_op`` s: Inductor sees the Triton kernel (its
    generated code contains it) instead of an opaque call, and computes the eager values."""
    from torch._inductor.utils import run_and_get_code

    assert NEURON_OP.use_triton_op
    case = next(c for c in one_case_per_statement() if c.name == "plif")
    x_seq, states, tensors = make_inputs(case, 6, (4, 300), device="cuda", seed=1)
    kwargs = case.kwargs(SG, store_v_seq=True)

    def run(x_seq, v_init, r_tau):
        return operators.plif_multi_step(x_seq * 1.5, v_init, r_tau, **kwargs)

    torch._dynamo.reset()
    compiled, codes = run_and_get_code(
        torch.compile(run, fullgraph=True, backend="inductor"), x_seq, *states, *tensors
    )
    assert any("neuron_forward_kernel" in code for code in codes), "no Triton kernel in the code"
    for got, want in zip(compiled, run(x_seq, *states, *tensors), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# -- compile once ---------------------------------------------------------------------------------


def _compiled_variants(kernel) -> int:
    """Number of compiled variants in a ``JITFunction``'s per-device caches."""
    # device_caches[device] = (kernel_cache, ...) in every Triton 3.x release.
    return sum(len(entry[0]) for entry in kernel.device_caches.values())


def _forward_backward(T: int, ncl: int) -> None:
    x = (torch.rand(T, ncl, device="cuda") * 2).requires_grad_()
    v = torch.zeros(ncl, device="cuda")
    spike_seq, v_last, _ = operators.lif_multi_step(
        x, v, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
        surrogate_function=SG,
    )  # fmt: skip
    (spike_seq.sum() + v_last.sum()).backward()


@pytest.mark.gpu
def test_no_recompilation_for_new_T_or_width():
    """After warm-up, other sequence lengths (including 1 and multiples of 16, which
    Triton would specialise on unless told not to) and other widths in the same BLOCK
    bucket and divisibility-by-16 class reuse the compiled kernels. Widths divisible by 16
    are a second variant, compiled once."""
    fwd, bwd = kernels.neuron_forward_kernel, kernels.neuron_backward_kernel
    _forward_backward(7, 1000)
    before = (_compiled_variants(fwd), _compiled_variants(bwd))
    for T in (1, 2, 3, 16, 64, 100):
        _forward_backward(T, 1000)
    for ncl in (1001, 1003, 4099, 100_001, 2**18 - 1):
        _forward_backward(7, ncl)
    torch.cuda.synchronize()
    assert (_compiled_variants(fwd), _compiled_variants(bwd)) == before

    _forward_backward(7, 1024)  # divisible by 16: one more variant per kernel at most
    after_aligned = (_compiled_variants(fwd), _compiled_variants(bwd))
    assert all(a - b <= 1 for a, b in zip(after_aligned, before, strict=True))
    for ncl, T in ((2048, 5), (4096, 64), (65536, 1)):
        _forward_backward(T, ncl)
    assert (_compiled_variants(fwd), _compiled_variants(bwd)) == after_aligned
