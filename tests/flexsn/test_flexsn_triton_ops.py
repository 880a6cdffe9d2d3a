"""Every op of the lowering table (SPEC section 6's list and a few more) in a tiny core,
generated kernel against the same core run eagerly by torch.

Each case is a stateless core ``(x, y) -> (result,)``; the test also checks that the
traced graph really contains the op the case is named after. Differentiable cases are
run through the training kernels too (gradients against autograd of the eager core).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from flexsn_triton_cases import DEVICE, assert_close_fp32, gradients, leaf, require_flexsn

from sj_core import surrogate

require_flexsn()

from sj_flexsn.capture import make_core_spec, trace_inference_graph  # noqa: E402
from sj_flexsn.factory import build_flexsn_kernel  # noqa: E402

# NumPy (the interpreter) warns where the cases compute log(negative) or 0 ** -k on
# purpose; the NaN and inf results are compared with torch's.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

aten = torch.ops.aten
# ATan(spiking=False): the smooth primitive atan(pi alpha x / 2) / pi + 1/2.
ATAN_PRIMITIVE = surrogate.ATan(alpha=2.0, spiking=False)

# name -> (core body f(x, y), the aten op that must appear, differentiable)
CASES = {
    "add.Tensor": (lambda x, y: x + y, aten.add.Tensor, True),
    "add.Tensor-alpha": (lambda x, y: torch.add(x, y, alpha=-2.5), aten.add.Tensor, True),
    "add.Scalar": (lambda x, y: aten.add.Scalar(x, 1.5), aten.add.Scalar, True),
    "sub.Tensor": (lambda x, y: x - y, aten.sub.Tensor, True),
    "sub.Scalar": (lambda x, y: aten.sub.Scalar(x, 0.25), aten.sub.Scalar, True),
    "rsub.Scalar": (lambda x, y: 1.0 - x, aten.rsub.Scalar, True),
    "rsub.Tensor": (lambda x, y: aten.rsub.Tensor(x, y, alpha=2.0), aten.rsub.Tensor, True),
    "mul.Tensor": (lambda x, y: x * y, aten.mul.Tensor, True),
    "mul.Scalar": (lambda x, y: aten.mul.Scalar(x, -3.0), aten.mul.Scalar, True),
    "div.Tensor": (lambda x, y: x / (y.abs() + 0.5), aten.div.Tensor, True),
    "div.Scalar": (lambda x, y: aten.div.Scalar(x, 3.0), aten.div.Scalar, True),
    "div.Tensor_mode-floor": (
        lambda x, y: torch.div(x * 4.0, y.abs() + 0.5, rounding_mode="floor"),
        aten.div.Tensor_mode,
        False,
    ),
    "div.Tensor_mode-trunc": (
        lambda x, y: torch.div(x * 4.0, y.abs() + 0.5, rounding_mode="trunc"),
        aten.div.Tensor_mode,
        False,
    ),
    "neg": (lambda x, y: -x, aten.neg.default, True),
    "reciprocal": (lambda x, y: torch.reciprocal(y.abs() + 0.5), aten.reciprocal.default, True),
    "eq": (lambda x, y: (torch.round(x * 2) == torch.round(y * 2)).float(), aten.eq.Tensor, False),
    "ne": (lambda x, y: (x != 0.5).float(), aten.ne.Scalar, False),
    "ge": (lambda x, y: (x >= y).float(), aten.ge.Tensor, False),
    "gt": (lambda x, y: (x > 0.25).float(), aten.gt.Scalar, False),
    "le": (lambda x, y: (x <= y).float(), aten.le.Tensor, False),
    "lt": (lambda x, y: (x < 0.25).float(), aten.lt.Scalar, False),
    "logical_and": (
        lambda x, y: torch.logical_and(x > 0, y > 0).float(),
        aten.logical_and.default,
        False,
    ),
    "logical_or": (
        lambda x, y: torch.logical_or(x > 0, y > 0).float(),
        aten.logical_or.default,
        False,
    ),
    "logical_not": (
        lambda x, y: torch.logical_not(torch.round(x)).float(),
        aten.logical_not.default,
        False,
    ),
    "logical_xor": (
        lambda x, y: torch.logical_xor(x > 0, y > 0).float(),
        aten.logical_xor.default,
        False,
    ),
    "bitwise_and": (lambda x, y: ((x > 0) & (y > 0)).float(), aten.bitwise_and.Tensor, False),
    "bitwise_or": (lambda x, y: ((x > 0) | (y > 0)).float(), aten.bitwise_or.Tensor, False),
    "bitwise_not": (lambda x, y: (~(x > 0)).float(), aten.bitwise_not.default, False),
    "where": (lambda x, y: torch.where(x > y, x, y * 2.0), aten.where.self, True),
    # make_fx turns the Python scalar into scalar_tensor + where.self
    "where-scalar": (lambda x, y: torch.where(x > 0, x, 0.5), aten.scalar_tensor.default, True),
    "masked_fill": (lambda x, y: x.masked_fill(y > 0.5, -1.0), aten.masked_fill.Scalar, True),
    # torch >= 2.15 traces the masked assignment as masked_fill_, older ones as index_put_.
    "index_put-mask": (
        lambda x, y: _masked_assign(x, y),
        (aten.index_put_.default, aten.masked_fill_.Scalar),
        True,
    ),
    "clamp": (lambda x, y: torch.clamp(x, -0.5, 0.75), aten.clamp.default, True),
    "clamp-Tensor": (lambda x, y: torch.clamp(x, min=y - 1.0, max=y), aten.clamp.Tensor, True),
    "clamp_min": (lambda x, y: torch.clamp_min(x, 0.1), aten.clamp_min.default, True),
    "clamp_max": (lambda x, y: torch.clamp_max(x, 0.1), aten.clamp_max.default, True),
    "minimum": (lambda x, y: torch.minimum(x, y), aten.minimum.default, True),
    "maximum": (lambda x, y: torch.maximum(x, y), aten.maximum.default, True),
    "abs": (lambda x, y: torch.abs(x), aten.abs.default, True),
    "sign": (lambda x, y: torch.sign(torch.round(x * 2)), aten.sign.default, False),
    "exp": (lambda x, y: torch.exp(x), aten.exp.default, True),
    "log": (lambda x, y: torch.log(x.abs() + 0.1), aten.log.default, True),
    "log2": (lambda x, y: torch.log2(x.abs() + 0.1), aten.log2.default, True),
    "sqrt": (lambda x, y: torch.sqrt(x.abs()), aten.sqrt.default, False),
    "rsqrt": (lambda x, y: torch.rsqrt(x.abs() + 0.1), aten.rsqrt.default, True),
    "tanh": (lambda x, y: torch.tanh(x * 3.0), aten.tanh.default, True),
    "sigmoid": (lambda x, y: torch.sigmoid(x * 3.0), aten.sigmoid.default, True),
    "sin": (lambda x, y: torch.sin(x), aten.sin.default, True),
    "cos": (lambda x, y: torch.cos(x), aten.cos.default, True),
    "erf": (lambda x, y: torch.erf(x), aten.erf.default, True),
    "atan": (lambda x, y: torch.atan(x * 3.0), aten.atan.default, True),
    "atan-surrogate-primitive": (
        lambda x, y: ATAN_PRIMITIVE(x - 0.5),
        aten.atan.default,
        True,
    ),
    "floor": (lambda x, y: torch.floor(x * 3.0), aten.floor.default, False),
    "ceil": (lambda x, y: torch.ceil(x * 3.0), aten.ceil.default, False),
    "round": (lambda x, y: torch.round(x * 4.0), aten.round.default, False),
    "relu": (lambda x, y: torch.relu(x), aten.relu.default, True),
    "pow.Tensor_Scalar-2": (lambda x, y: x**2, aten.pow.Tensor_Scalar, True),
    "pow.Tensor_Scalar-1.7": (lambda x, y: (x.abs() + 0.1) ** 1.7, aten.pow.Tensor_Scalar, True),
    "pow.Tensor_Scalar-neg3": (lambda x, y: (x.abs() + 0.5) ** -3, aten.pow.Tensor_Scalar, True),
    "pow.Tensor_Tensor": (lambda x, y: (x.abs() + 0.1) ** y, aten.pow.Tensor_Tensor, True),
    "pow.Tensor_Tensor-negative-base": (
        lambda x, y: x ** torch.round(y * 3.0),
        aten.pow.Tensor_Tensor,
        False,
    ),
    "pow.Scalar": (lambda x, y: 2.0**x, aten.pow.Scalar, True),
    "fmod": (lambda x, y: torch.fmod(x * 3.0, 0.7), aten.fmod.Scalar, False),
    "fmod.Tensor": (lambda x, y: torch.fmod(x * 3.0, y.abs() + 0.3), aten.fmod.Tensor, False),
    "remainder": (lambda x, y: torch.remainder(x * 3.0, 0.7), aten.remainder.Scalar, False),
    "_to_copy-bool": (lambda x, y: (x > 0).to(torch.float32) * y, aten._to_copy.default, True),
    "_to_copy-int": (
        lambda x, y: (x * 5.0).to(torch.int32).to(torch.float32),
        aten._to_copy.default,
        False,
    ),
    "scalar_tensor": (
        lambda x, y: torch.where(x > 0, x, torch.scalar_tensor(3.0)),
        aten.scalar_tensor.default,
        True,
    ),
    "constant-tensor": (lambda x, y: x * torch.tensor(0.25), aten.lift_fresh_copy.default, True),
    "zeros_like": (lambda x, y: torch.zeros_like(x) + y, aten.zeros_like.default, True),
    "ones_like": (lambda x, y: torch.ones_like(x) * y, aten.ones_like.default, True),
    "full_like": (lambda x, y: torch.full_like(x, -2.0) * y, aten.full_like.default, True),
    "clone": (lambda x, y: x.clone() * y, aten.clone.default, True),
    "detach": (lambda x, y: x.detach() * y, aten.detach.default, True),
    "sigmoid_backward": (
        lambda x, y: aten.sigmoid_backward(x, torch.sigmoid(y)),
        aten.sigmoid_backward.default,
        False,
    ),
    "tanh_backward": (
        lambda x, y: aten.tanh_backward(x, torch.tanh(y)),
        aten.tanh_backward.default,
        False,
    ),
    "threshold_backward": (
        lambda x, y: aten.threshold_backward(x, y, 0.25),
        aten.threshold_backward.default,
        False,
    ),
    "isnan": (lambda x, y: torch.isnan(torch.log(x)).float(), aten.isnan.default, False),
    "square": (lambda x, y: torch.square(x), aten.pow.Tensor_Scalar, True),
    "expm1": (lambda x, y: torch.expm1(x * 0.01), aten.expm1.default, True),
    "log1p": (lambda x, y: torch.log1p(x.abs() * 0.01), aten.log1p.default, True),
    "trunc": (lambda x, y: torch.trunc(x * 3.0), aten.trunc.default, False),
    "in-place-intermediate": (lambda x, y: _in_place(x, y), aten.mul_.Tensor, True),
    # decomposed activations (bonus)
    "silu": (lambda x, y: F.silu(x), aten.sigmoid.default, True),
    "gelu": (lambda x, y: F.gelu(x), aten.erf.default, True),
    "softplus": (lambda x, y: F.softplus(x, beta=2.0), aten.exp.default, True),
    "hardtanh": (lambda x, y: F.hardtanh(x, -0.5, 0.5), aten.clamp.default, True),
    "leaky_relu": (lambda x, y: F.leaky_relu(x, 0.1), aten.where.self, True),
}


def _masked_assign(x, y):
    out = x.clone()
    out[y > 0.5] = 0.0
    return out


def _in_place(x, y):
    h = x + y
    h.mul_(y)
    return h


def _inputs():
    # Fixed inputs with exact ties (0.5 steps) for round, eq and sign, and values of both
    # signs; y has other ties so that where/minimum/maximum choose both ways.
    x = torch.tensor([-1.75, -1.5, -0.5, -0.25, 0.0, 0.3, 0.5, 0.625, 1.0, 1.5, 2.5, 1.7])
    y = torch.tensor([0.5, -1.5, 0.75, 1.2, -0.3, 0.3, 0.9, -0.6, 0.0, 1.5, -2.0, 0.4])
    return x.reshape(2, 2, 3).to(DEVICE), y.reshape(2, 2, 3).to(DEVICE)  # [T, 2, 3]


def _case_core(name):
    body = CASES[name][0]

    def core(x, y):
        return (body(x, y),)

    core.__qualname__ = f"case_{name}"
    return core


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_eager_torch(name):
    body, op, differentiable = CASES[name]
    core = _case_core(name)
    spec = make_core_spec(core, 2, 0, 1)
    targets = {node.target for node in trace_inference_graph(spec).graph.nodes}
    ops = op if isinstance(op, tuple) else (op,)  # the graph holds one of these
    assert any(o in targets for o in ops), f"the traced graph of {name!r} has no {ops}: {targets}"

    kernel = build_flexsn_kernel(core, num_inputs=2, num_states=0, num_outputs=1)
    x, y = _inputs()
    with torch.no_grad():
        (result,) = kernel(x, y)
        expected = torch.stack([body(x[t], y[t]) for t in range(x.shape[0])]).to(result.dtype)
    # NaN and infinities where torch gives them (log of negatives, 0 ** -k), close elsewhere.
    assert torch.equal(torch.isnan(result), torch.isnan(expected))
    infinite = torch.isinf(expected)
    assert torch.equal(result[infinite], expected[infinite])
    finite = torch.isfinite(expected)
    assert_close_fp32(result[finite], expected[finite], name)

    if not differentiable:
        return
    x_k, y_k = leaf(x), leaf(y)
    (result,) = kernel(x_k, y_k)
    grad = torch.linspace(-1.0, 1.0, result.numel(), device=DEVICE).reshape(result.shape)
    k_grads = gradients([result], [grad], [x_k, y_k])
    x_r, y_r = leaf(x), leaf(y)
    expected = torch.stack([body(x_r[t], y_r[t]) for t in range(x.shape[0])])
    r_grads = gradients([expected], [grad], [x_r, y_r])
    assert_close_fp32(k_grads[0], r_grads[0], f"{name}: grad x")
    assert_close_fp32(k_grads[1], r_grads[1], f"{name}: grad y")
