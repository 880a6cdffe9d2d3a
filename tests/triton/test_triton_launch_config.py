"""Host-side launch configuration of the Triton kernels, and the kernel behaviours that
depend on it.

* :func:`block_config`: the ``(BLOCK, num_warps)`` variants and where they switch.
* :func:`threshold_neighbours`: the fp16/bf16 values around ``V_th`` (checked against an
  enumeration of every 16-bit pattern), also for thresholds beyond the fp16 range.
* The forward stores the pre-reset ``H`` in the input dtype and the backward recomputes
  each spike as ``H >= V_th``. Rounding ``H`` can cross the threshold; the kernel then
  stores a neighbour on the forward's side, so the backward takes the forward's reset
  branch. Checked with gradients that depend only on the emitted spikes (hard reset,
  ``detach_reset``, gradient from ``v_last`` only: a step passes the gradient on iff it
  did *not* spike), against closed forms written from the kernel's own spike output.
* The surrogate arguments: every surrogate's ``kernel_params()`` maps onto the kernel's
  ``(SG, p0, p1, SG_TERMS)``.
"""

from __future__ import annotations

import pytest
import torch
from neuron_cases import ALL_SURROGATES, make_surrogate

from sj_core import surrogate

pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
operators = pytest.importorskip("sj_triton.operators", reason="needs sj-triton")
from sj_triton.neuron_kernel.kernel_op import SURROGATES  # noqa: E402
from sj_triton.neuron_kernel.launch_config import (  # noqa: E402
    block_config,
    threshold_neighbours,
)
from sj_triton.neuron_kernel.surrogates import SURROGATE_IDS, surrogate_arguments  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [pytest.param(torch.float16, id="fp16"), pytest.param(torch.bfloat16, id="bf16")]


# -- block sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ncl", "expected"),
    [(1, (256, 2)), (1000, (256, 2)), (2**18 - 1, (256, 2)), (2**18, (1024, 4)),
     (2**22 + 3, (1024, 4))],
)  # fmt: skip
def test_block_config(ncl, expected):
    assert block_config(ncl) == expected


@pytest.mark.parametrize(
    ("ncl", "expected"),
    [(1000, (256, 2)), (2**18 - 1, (256, 2)), (2**18, (1024, 8)), (2**22 + 3, (1024, 8))],
)
def test_training_kernels_of_large_layers_run_eight_warps(ncl, expected):
    assert block_config(ncl, training=True) == expected


# -- threshold neighbours -------------------------------------------------------------------------


def _every_finite_value(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of a 16-bit float dtype, as float64."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype).double()
    return values[torch.isfinite(values)]


def _enumerated_neighbours(v_threshold: float, dtype: torch.dtype) -> tuple[float, float]:
    values = _every_finite_value(dtype)
    below = values[values < v_threshold]
    above = values[values >= v_threshold]
    return (
        below.max().item() if below.numel() else float("-inf"),
        above.min().item() if above.numel() else float("inf"),
    )


THRESHOLDS = [1.0, 1.0 + 2**-12, 1.0 - 2**-13, 0.3, -0.7, 0.0, 1e-6, 2.5e-8, 1234.5,
              6.55e4, 65504.0, 3.0e38, -6.0e4]  # fmt: skip


@pytest.mark.parametrize("v_threshold", THRESHOLDS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_neighbours_are_the_adjacent_values(dtype, v_threshold):
    """``(largest value < V_th, smallest value >= V_th)`` of the dtype, as found by
    enumerating every finite 16-bit pattern."""
    assert threshold_neighbours(v_threshold, dtype) == _enumerated_neighbours(v_threshold, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_beyond_the_range(dtype):
    """Every finite ``H`` of the dtype is below a threshold above its largest value (and
    at or above one below its most negative value): the neighbours are the extreme
    finite value and an infinity, never an OverflowError."""
    largest = torch.finfo(dtype).max
    v_threshold = 1e5 if dtype == torch.float16 else 3.4e38
    assert v_threshold > largest
    assert threshold_neighbours(v_threshold, dtype) == (largest, float("inf"))
    assert threshold_neighbours(-v_threshold, dtype) == (float("-inf"), -largest)


@pytest.mark.parametrize("v_threshold", [1.0, 0.3, 1e5])
def test_fp32_threshold_is_its_own_neighbour(v_threshold):
    """The fp32 kernel stores ``H`` unrounded: no neighbours are substituted."""
    assert threshold_neighbours(v_threshold, torch.float32) == (v_threshold, v_threshold)


# -- the kernels keep the forward's spike ---------------------------------------------------------


# Rounding up across the threshold needs round-to-nearest; Triton's CPU interpreter
# truncates fp32 to bf16 (its fp16 conversion rounds to nearest).
ROUNDING_CASES = [
    pytest.param(torch.float16, "rounds-up-across", id="rounds-up-across-fp16"),
    pytest.param(torch.float16, "rounds-down-across", id="rounds-down-across-fp16"),
    pytest.param(torch.bfloat16, "rounds-up-across", id="rounds-up-across-bf16",
                 marks=pytest.mark.gpu),
    pytest.param(torch.bfloat16, "rounds-down-across", id="rounds-down-across-bf16"),
]  # fmt: skip


@pytest.mark.parametrize(("dtype", "direction"), ROUNDING_CASES)
def test_rounding_across_threshold_keeps_the_forward_spike(dtype, direction):
    """Hand-built two-step IF cases whose fp32 ``H`` rounds to the other side of ``V_th``
    in the input dtype (``eps`` is the spacing just above 1).

    ``rounds-up-across``: ``V_th = 1``, ``x = (0.5, 0.5 - eps/4)``: ``H[1] = 1 - eps/4``
    does not spike, but rounds (to even) to ``1.0``.
    ``rounds-down-across``: ``V_th = 1 + eps/4`` (not representable), ``x = (0.5,
    0.5 + eps/2)``: ``H[1] = 1 + eps/2`` spikes, but rounds (to even, or truncated) to
    ``1.0 < V_th``.

    IF, hard reset to 0, ``detach_reset``, loss ``v_last``: with no spike at step 1 the
    gradient passes (``grad_x = (1, 1)``, ``grad_v_init = 1``); with a spike it is blocked
    (all zero). A backward that recomputed the spike from the rounded ``H`` would give
    the opposite.
    """
    eps = torch.finfo(dtype).eps
    if direction == "rounds-up-across":
        v_threshold, x1, spikes, passes = 1.0, 0.5 - eps / 4, False, 1.0
    else:
        v_threshold, x1, spikes, passes = 1.0 + eps / 4, 0.5 + eps / 2, True, 0.0
    h1 = 0.5 + x1
    # The premise: the exact H is on one side, its rounding on the other.
    assert (h1 >= v_threshold) == spikes
    assert (torch.tensor(h1).to(dtype).item() >= v_threshold) != spikes
    x_seq = torch.tensor([[0.5], [x1]], dtype=dtype, device=DEVICE, requires_grad=True)
    assert x_seq[1].item() == x1  # exactly representable
    v_init = torch.zeros(1, dtype=dtype, device=DEVICE, requires_grad=True)
    spike_seq, v_last, _ = operators.if_multi_step(
        x_seq, v_init, v_threshold=v_threshold, v_reset=0.0, detach_reset=True,
        surrogate_function=surrogate.Rect(alpha=1.0),
    )  # fmt: skip
    assert spike_seq.flatten().tolist() == [0.0, float(spikes)]
    grad_x, grad_v = torch.autograd.grad(v_last.sum(), (x_seq, v_init))
    assert grad_x.flatten().tolist() == [passes, passes]
    assert grad_v.tolist() == [passes]


def _truncated_to_bf16(h: torch.Tensor) -> torch.Tensor:
    """fp32 -> bf16 rounding toward zero (the low 16 bits cleared), as fp32."""
    return (h.float().view(torch.int32) & -65536).view(torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_uses_the_emitted_spikes(dtype):
    """Random LIF (``tau = 2``, decay_input, hard reset to 0, detach_reset), gradient of
    ``sum(v_last)`` only. Backward: ``grad_H[t] = g (1 - S[t])``, ``grad_x[t] = grad_H /
    2``, ``g = grad_H / 2``, so with the kernel's spikes ``S``:
    ``grad_x[t] = 2**-(T - t) * prod_{s >= t} (1 - S[s])`` and
    ``grad_v_init = 2**-T * prod_s (1 - S[s])``, exact in fp16/bf16.

    ``V_th = 1 + eps/4`` is not representable, and inputs sit around it, so that many
    fp32 ``H`` round across it, both when rounded to nearest and when truncated; the test
    asserts that such cases occurred (counted on an fp32 loop over the same inputs).
    """
    T, ncl = 8, 8192
    v_threshold = 1.0 + torch.finfo(dtype).eps / 4
    generator = torch.Generator().manual_seed(123)
    x_seq = (torch.randn(T, ncl, generator=generator) * 0.4 + 1.05).to(DEVICE, dtype)
    v_init = (torch.rand(ncl, generator=generator) * 0.9).to(DEVICE, dtype)
    x_leaf, v_leaf = x_seq.clone().requires_grad_(), v_init.clone().requires_grad_()
    spike_seq, v_last, _ = operators.lif_multi_step(
        x_leaf, v_leaf, tau=2.0, decay_input=True, v_threshold=v_threshold, v_reset=0.0,
        detach_reset=True, surrogate_function=surrogate.Sigmoid(),
    )  # fmt: skip
    grad_x, grad_v = torch.autograd.grad(v_last.sum(), (x_leaf, v_leaf))

    passes = 1.0 - spike_seq.float()
    suffix = passes.flip(0).cumprod(0).flip(0)  # suffix[t] = prod_{s >= t} (1 - S[s])
    scale = 2.0 ** -torch.arange(T, 0, -1, dtype=torch.float32, device=DEVICE)
    assert torch.equal(grad_x.float(), scale[:, None] * suffix), "a step took the other branch"
    assert torch.equal(grad_v.float(), 2.0**-T * suffix[0])

    # How many fp32 H values rounded across the threshold (fp32 loop, same inputs).
    roundings = {"nearest": lambda h: h.to(dtype).float()}
    if dtype == torch.bfloat16:
        roundings["truncated"] = _truncated_to_bf16
    with torch.no_grad():
        for name, rounded in roundings.items():
            v, crossings = v_init.float(), 0
            for t in range(T):
                h = v + (x_seq[t].float() - v) / 2
                fires = h >= v_threshold
                crossings += int((fires != (rounded(h) >= v_threshold)).sum())
                v = torch.where(fires, torch.zeros_like(h), h)
            assert crossings > 0, f"no H {name} across the threshold: nothing was exercised"


def test_fp16_threshold_beyond_the_fp16_range():
    """``V_th = 1e5`` with fp16 inputs: the kernel's fp32 state reaches it (large inputs
    over several steps): ``H = 3e4, 6e4, 9e4, 1.2e5`` (spike, reset to 0), ``3e4, 6e4``.

    Rounded to fp16, ``H[2] = 9e4`` and ``H[3] = 1.2e5`` both overflow to ``inf``; only
    step 3 fired, so the stored ``H[2]`` must become fp16's largest value. With
    ``detach_reset`` and the loss ``sum(v_seq)``, ``grad_x[t]`` counts the steps
    ``>= t`` reached without crossing a spike: ``(3, 2, 1, 0, 2, 1)``; a backward that saw
    a spike at step 2 would give ``(2, 1, 0, 0, 2, 1)``.
    """
    x_seq = torch.full((6, 4), 3.0e4, dtype=torch.float16, device=DEVICE, requires_grad=True)
    v_init = torch.zeros(4, dtype=torch.float16, device=DEVICE)
    spike_seq, v_last, v_seq = operators.if_multi_step(
        x_seq, v_init, v_threshold=1e5, v_reset=0.0, detach_reset=True,
        surrogate_function=surrogate.Sigmoid(), store_v_seq=True,
    )  # fmt: skip
    inf = float("inf")
    assert spike_seq[:, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert v_seq[:, 0].tolist() == [3.0e4, 6.0e4, inf, 0.0, 3.0e4, 6.0e4]
    assert v_last.tolist() == [6.0e4] * 4
    (grad_x,) = torch.autograd.grad(v_seq, x_seq, torch.ones_like(v_seq))
    assert grad_x[:, 0].tolist() == [3.0, 2.0, 1.0, 0.0, 2.0, 1.0]


# -- surrogate arguments --------------------------------------------------------------------------


def test_every_surrogate_has_a_kernel_id():
    assert set(SURROGATES) == set(ALL_SURROGATES)
    ids = [sg_id for sg_id, _ in SURROGATE_IDS.values()]
    assert sorted(ids) == list(range(len(ids)))


@pytest.mark.parametrize("name", ALL_SURROGATES)
def test_surrogate_arguments(name):
    """``(SG, p0, p1, SG_TERMS)`` from the surrogate's ``kernel_params()``: the first two
    parameters as floats (zero-padded); ``SquarewaveFourierSeries`` passes ``T_period``
    and its term count ``n`` (a compile-time constant)."""
    sg = make_surrogate(name)
    params = sg.kernel_params()
    sg_id, names = SURROGATE_IDS[sg.kernel_name]
    assert names == tuple(params)
    arguments = surrogate_arguments(sg.kernel_name, tuple(float(v) for v in params.values()))
    if name == "SquarewaveFourierSeries":
        assert arguments == (sg_id, float(params["T_period"]), 0.0, int(params["n"]))
    else:
        padded = [float(v) for v in params.values()] + [0.0, 0.0]
        assert arguments == (sg_id, padded[0], padded[1], 0)
