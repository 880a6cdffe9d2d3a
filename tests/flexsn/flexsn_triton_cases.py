"""Shared pieces of the sj-flexsn Triton tests: cores, the independent torch references,
sizes and comparison rules.

This module imports neither Triton nor sj_flexsn, so test modules can skip cleanly when
they are absent (:func:`require_flexsn`).

* Cores are written the way a user would: element-wise torch ops, with the
  ``sj_core.surrogate`` spike functions (autograd Functions whose backward is traced).
* :func:`torch_scan` is the reference: the core called eagerly in a Python loop over
  time, differentiated by autograd; LIF cores are also checked against
  ``sj_core.reference.multistep_lif`` and ``LIFNode``.
* fp32: values and gradients within ``1e-5`` relative to the tensor's scale
  (``|a - e| <= 1e-5 |e| + 1e-5 max|e|``). The kernels evaluate the same fp32 operations
  in the same order as torch (correctly rounded division, no FMA contraction), so the
  forward passes of the linear cores used here match bit for bit and spikes must be
  identical; only transcendental functions (the surrogate gradients) differ by an ulp.
* fp16/bf16: compared with an fp32 reference on the upcast inputs. The kernel computes
  in fp32 from the same inputs, but the training forward pass rounds the values it
  saves for the backward pass (the LIF charge ``H``) to the input dtype, so spikes may
  differ only in neurons whose ``H`` comes within two roundings of the threshold (such
  neurons are excluded, and the test says so); elsewhere values are within ``2u``
  relative norm (``u`` the unit roundoff; measured ``<= 0.8u``) and gradients within
  ``4u`` (measured ``<= 1.5u``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence

import pytest
import torch

from sj_core import surrogate

HAS_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
FP32_RTOL = 1e-5

#: dtype -> (relative-norm error of values, of gradients); u = 2**-11 (fp16), 2**-8 (bf16)
LOW_PRECISION_TOLERANCES = {
    torch.float16: (2 * 2.0**-11, 4 * 2.0**-11),
    torch.bfloat16: (2 * 2.0**-8, 4 * 2.0**-8),
}

# Small sizes under Triton's CPU interpreter (slow); large ones on a GPU (marker gpu).
CPU_T = (1, 4)
CPU_STEP_SHAPES = ((5,), (2, 33))
GPU_T = (8, 64)
GPU_STEP_SHAPES = ((4097,), (32, 3, 17, 19), (2**20 + 3,))


def require_flexsn() -> None:
    """Skip the calling test module when triton or sj-flexsn is missing."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (pip install sj-flexsn)", allow_module_level=True)
    if importlib.util.find_spec("sj_flexsn") is None:
        pytest.skip("sj-flexsn is not installed", allow_module_level=True)


def size_params() -> list:
    """``(T, step_shape)`` cases: CPU sizes everywhere, GPU sizes marked ``gpu``."""
    params = []
    for T in CPU_T + GPU_T:
        for shape in CPU_STEP_SHAPES + GPU_STEP_SHAPES:
            cpu = T in CPU_T and shape in CPU_STEP_SHAPES
            gpu = T in GPU_T and shape in GPU_STEP_SHAPES
            if not (cpu or gpu):
                continue
            marks = () if cpu else (pytest.mark.gpu,)
            shape_id = "x".join(map(str, shape))
            params.append(pytest.param(T, shape, id=f"T{T}-S{shape_id}", marks=marks))
    return params


# -- cores ---------------------------------------------------------------------------------

SIGMOID = surrogate.Sigmoid(alpha=4.0)
ATAN = surrogate.ATan(alpha=2.0)


def make_lif_core(
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    spike_fn: Callable[[torch.Tensor], torch.Tensor] = SIGMOID,
) -> Callable:
    """A LIF neuron as a FlexSN core ``(x, v) -> (spike, v_new)`` (SPEC sections 2-3)."""
    v_r = 0.0 if v_reset is None else v_reset

    def lif_core(x: torch.Tensor, v: torch.Tensor):
        if decay_input:
            h = v + (x - (v - v_r)) / tau
        else:
            h = v - (v - v_r) / tau + x
        spike = spike_fn(h - v_threshold)
        s = spike.detach() if detach_reset else spike
        if v_reset is None:
            v_new = h - s * v_threshold
        else:
            v_new = s * v_reset + (1.0 - s) * h
        return spike, v_new

    return lif_core


def adaptive_core(x: torch.Tensor, v: torch.Tensor, a: torch.Tensor):
    """Two states: the membrane ``v`` and an adaptive threshold increment ``a``."""
    h = v + (x - v) / 2.0
    spike = SIGMOID(h - (1.0 + 0.5 * a))
    v_new = h * (1.0 - spike)
    a_new = 0.75 * a + spike
    return spike, v_new, a_new


def multi_io_core(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, w: torch.Tensor):
    """Two inputs, two states, three outputs (a bool-derived one, a smooth one, an alias)."""
    h = v * 0.5 + x - 0.25 * y
    spike = ATAN(h - 1.0)
    v_new = torch.where(spike > 0, torch.zeros_like(h), h)
    w_new = torch.clamp(w * 0.5 + torch.sigmoid(y) * x, min=-2.0, max=2.0)
    smooth = torch.tanh(h) * w
    return spike, smooth, x, v_new, w_new


def stateless_core(x: torch.Tensor, y: torch.Tensor):
    """No state at all: ``num_states = 0``."""
    return (torch.relu(x * y - 0.1),)


# -- the reference -----------------------------------------------------------------------


def torch_scan(
    core: Callable,
    num_outputs: int,
    input_seqs: Sequence[torch.Tensor],
    init_states: Sequence[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``core`` eagerly over time: ``(output sequences, state sequences)``, autograd on."""
    states = list(init_states)
    outputs: list[list[torch.Tensor]] = [[] for _ in range(num_outputs)]
    state_steps: list[list[torch.Tensor]] = [[] for _ in states]
    for t in range(input_seqs[0].shape[0]):
        results = core(*(x[t] for x in input_seqs), *states)
        for steps, value in zip(outputs, results[:num_outputs], strict=True):
            steps.append(value.to(input_seqs[0].dtype))
        states = list(results[num_outputs:])
        for steps, value in zip(state_steps, states, strict=True):
            steps.append(value)
    empty = input_seqs[0].new_empty((0, *input_seqs[0].shape[1:]))
    return (
        [torch.stack(s) if s else empty for s in outputs],
        [torch.stack(s) if s else empty for s in state_steps],
    )


def leaf(tensor: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    """A detached copy that is a leaf of a fresh graph."""
    return tensor.detach().clone().requires_grad_(requires_grad)


def gradients(
    outputs: Sequence[torch.Tensor | None],
    grad_outputs: Sequence[torch.Tensor | None],
    inputs: Sequence[torch.Tensor],
) -> list[torch.Tensor]:
    """d(sum <output, grad>)/d(inputs), zeros for inputs that get no gradient."""
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if g is not None]
    grads = torch.autograd.grad(
        [o for o, _ in pairs], list(inputs), [g for _, g in pairs], allow_unused=True
    )
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def random_inputs(shape: Sequence[int], seed: int, low: float = -0.5, high: float = 1.5):
    """Uniform values on :data:`DEVICE`, fp32, reproducible."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(tuple(shape), generator=generator) * (high - low) + low
    return values.to(DEVICE)


# -- comparisons ---------------------------------------------------------------------------


def assert_close_fp32(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """``|a - e| <= 1e-5 |e| + 1e-5 max|e|`` everywhere (and equal shapes and dtypes)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if expected.numel() == 0:
        return
    a, e = actual.double(), expected.double()
    scale = e.abs().max().item()
    error = (a - e).abs()
    bound = FP32_RTOL * e.abs() + FP32_RTOL * scale + 1e-30
    worst = (error - bound).max().item()
    assert worst <= 0, f"{what}: max error {error.max().item():.3g} exceeds the 1e-5 bound"


def assert_relative_norm(
    actual: torch.Tensor, expected: torch.Tensor, tolerance: float, what: str
) -> None:
    """``||a - e|| <= tolerance ||e||`` (compared in fp64)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    a, e = actual.double(), expected.double()
    error = (a - e).norm().item()
    norm = e.norm().item()
    assert error <= tolerance * norm + 1e-12, (
        f"{what}: relative error {error / max(norm, 1e-30):.3g} > {tolerance:.3g}"
    )
