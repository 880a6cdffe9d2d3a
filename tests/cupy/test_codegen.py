"""CUDA source generation (pure Python: no CuPy, no GPU).

Checks the variant table, the formulas that end up in the source, the content keys, and
the errors for configurations the backend cannot run.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
import torch

from sj_core import surrogate as sg
from sj_cupy import launch, validation
from sj_cupy.codegen import (
    COMPILE_OPTIONS,
    DTYPES,
    NEURONS,
    SURROGATES,
    all_variants,
    kernel_params,
    kernel_source,
    make_variant,
    module_source,
    source_key,
    vector_variant,
)


def _forward(neuron="lif", **overrides):
    config = dict(soft_reset=False, decay_input=True, dtype="float32") | overrides
    return make_variant(neuron, "forward", **config)


def _backward(neuron="lif", surrogate="Sigmoid", **overrides):
    config = dict(soft_reset=False, decay_input=True, dtype="float32", detach_reset=False)
    return make_variant(neuron, "backward", surrogate=surrogate, **config | overrides)


# -- the variant table ----------------------------------------------------------------------------


def test_every_variant_is_enumerated_once():
    variants = list(all_variants())
    assert len(set(variants)) == len(variants)
    assert len({v.kernel_name for v in variants}) == len(variants)
    # Hand count: neuron configurations = IF, LIF x2, PLIF x2, QIF, EIF, Izhikevich = 8;
    # forward: x 2 resets x 3 dtypes; backward additionally x 2 detach_reset x 16
    # surrogates; each of these twice: one neuron per thread, and vectorized.
    assert len(SURROGATES) == 16 and len(DTYPES) == 3
    forward = [v for v in variants if v.direction == "forward"]
    backward = [v for v in variants if v.direction == "backward"]
    assert len(forward) == 8 * 2 * 3 * 2
    assert len(backward) == 8 * 2 * 3 * 2 * 16 * 2
    assert len(variants) == 3168
    vector_widths = {"float32": 4, "float16": 8, "bfloat16": 8}  # 16 bytes per access
    expected = {
        (neuron, decay, soft, dtype, detach, surrogate, vec)
        for neuron in ("if", "lif", "plif", "qif", "eif", "izhikevich")
        for decay in ((True, False) if neuron in ("lif", "plif") else (False,))
        for soft, dtype, detach, surrogate in itertools.product(
            (False, True), DTYPES, (False, True), SURROGATES
        )
        for vec in (1, vector_widths[dtype])
    }
    got = {
        (v.neuron, v.decay_input, v.soft_reset, v.dtype, v.detach_reset, v.surrogate, v.vec)
        for v in backward
    }
    assert got == expected


def test_forward_variants_ignore_backward_only_settings():
    base = _forward()
    assert (
        make_variant(
            "lif",
            "forward",
            soft_reset=False,
            decay_input=True,
            dtype="float32",
            detach_reset=True,
            surrogate="ATan",
        )
        == base
    )
    assert base.surrogate is None and base.detach_reset is False
    # IF has no decay_input: the flag is normalised away.
    assert _forward("if", decay_input=True) == _forward("if", decay_input=False)


def test_kernel_names():
    assert _forward().kernel_name == "sj_lif_decay_hard_f32_forward"
    assert _backward(
        "izhikevich", "ATan", soft_reset=True, detach_reset=True, dtype="bfloat16"
    ).kernel_name == ("sj_izhikevich_soft_detach_bf16_backward_ATan")
    assert _forward(vec=4).kernel_name == "sj_lif_decay_hard_f32x4_forward"
    assert _backward("qif", "Erf", dtype="float16", vec=8).kernel_name == (
        "sj_qif_hard_attach_f16x8_backward_Erf"
    )


def test_vector_variants():
    # 16 bytes per access: 4 fp32 or 8 fp16/bf16 neurons per thread.
    assert vector_variant(_forward()) == _forward(vec=4)
    assert vector_variant(_backward(dtype="bfloat16")) == _backward(dtype="bfloat16", vec=8)
    assert vector_variant(_forward(dtype="float16")).vec == 8
    for dtype, bad in (("float32", 8), ("float16", 4), ("bfloat16", 2)):
        with pytest.raises(ValueError, match=f"must be 1 or .* for {dtype}, got {bad}"):
            _forward(dtype=dtype, vec=bad)
    assert "bfloat16, 8 neurons per thread: forward" in _forward(dtype="bfloat16", vec=8).describe()
    # The two layouts take the same arguments: the host packs them once for either.
    for scalar in (_forward("izhikevich"), _backward("plif", "Rect", dtype="float16")):
        assert kernel_params(vector_variant(scalar)) == kernel_params(scalar)


# -- what the source contains ---------------------------------------------------------------------

# The gradient each surrogate's kernel must compute, written out here from SPEC 4 (not
# copied from the generator): a fragment of the emitted C that pins the formula down.
SURROGATE_FRAGMENTS = {
    "Sigmoid": ["expf(-((float)alpha * x))", "(float)alpha * s * (1.0f - s)"],
    "ATan": ["3.141592653589793 / 2.0 * alpha", "1.0f / (1.0f + u * u)", "alpha / 2.0"],
    "PiecewiseQuadratic": ["ax <= (float)(1.0 / alpha)", "(float)(-(alpha * alpha)) * ax"],
    "PiecewiseExp": ["(float)(alpha / 2.0) * expf((float)(-alpha) * fabsf(x))"],
    "SoftSign": ["(float)(1.0 / alpha) + fabsf(x)", "(float)(2.0 * alpha) * (d * d)"],
    "SuperSpike": ["fabsf(x) + 1.0f", "(1.0f / (d * d)) * (float)alpha"],
    "Erf": ["alpha / 1.7724538509055159", "expf(-(u * u))"],
    # SPEC 9: 1/(2w) strictly inside |x| < w (not the reference system's CUDA 1/w).
    "PiecewiseLeakyReLU": ["fabsf(x) < (float)w ? (float)(1.0 / (2.0 * w)) : (float)c"],
    "QPseudoSpike": ["powf(1.0f + 2.0f * fabsf(x) / (float)(alpha - 1.0), (float)(-alpha))"],
    "LeakyKReLU": ["x >= 0.0f ? (float)k : (float)leak"],
    "S2NN": ["if (x < 0.0f)", "(1.0f / (x + 1.0f)) * (float)beta"],
    "NonzeroSignLogAbs": ["1.0f / ((float)(1.0 / alpha) + fabsf(x))"],
    "LogTailedReLU": ["if (x > 1.0f) return 1.0f / x;", "x > 0.0f ? 1.0f : (float)alpha"],
    "Rect": ["fabsf(x) < (float)(1.0 / (2.0 * alpha)) ? (float)alpha : 0.0f"],
    "SquarewaveFourierSeries": ["for (int i = 1; i < terms; ++i)", "cosf(", "4.0 / T_period"],
    "FakeNumericalGradient": ["1.0f / fabsf(x)", "r > (float)alpha ? (float)alpha : r"],
}


def test_fragments_cover_every_surrogate():
    assert set(SURROGATE_FRAGMENTS) == set(SURROGATES)
    for cls_name in SURROGATES:  # the table's names are sj_core's kernel names
        surrogate_cls = getattr(sg, cls_name)
        assert surrogate_cls.param_names == SURROGATES[cls_name].params


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_backward_source_contains_the_surrogate_formula(name):
    source = kernel_source(_backward(surrogate=name))
    for fragment in SURROGATE_FRAGMENTS[name]:
        assert fragment in source, fragment
    # The surrogate is evaluated at H - V_th, with its parameters as kernel arguments.
    params = ", ".join(f"sg_{p}" for p in SURROGATES[name].params)
    assert f"sj_surrogate_grad_{name}(h - v_threshold, {params})" in source
    for other in set(SURROGATES) - {name}:
        assert f"sj_surrogate_grad_{other}(" not in source


CHARGES = {
    ("if", False): "v + x",
    ("lif", True): "v + (x - (v - v_reset)) / tau",
    ("lif", False): "v - (v - v_reset) / tau + x",
    ("plif", True): "v + (x - (v - v_reset)) * r_tau",
    ("plif", False): "v - (v - v_reset) * r_tau + x",
    ("qif", False): "v + (x + a0 * (v - v_rest) * (v - v_c)) / tau",
    ("eif", False): "v + (x + v_rest - v + delta_T * expf((v - theta_rh) / delta_T)) / tau",
    ("izhikevich", False): "v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau",
}


@pytest.mark.parametrize(("neuron", "decay_input"), CHARGES, ids=lambda v: str(v))
def test_forward_source_contains_the_charge(neuron, decay_input):
    hard = kernel_source(_forward(neuron, decay_input=decay_input))
    soft = kernel_source(_forward(neuron, decay_input=decay_input, soft_reset=True))
    assert f"const float h = {CHARGES[(neuron, decay_input)]};" in hard
    assert "sj_reset_hard(h, fired, v_reset)" in hard and "sj_reset_soft(h," not in hard
    assert "sj_reset_soft(h, fired, v_threshold)" in soft
    # The forward writes H only when asked (training) and never needs a surrogate.
    assert "if (h_seq != nullptr)" in hard and "sj_surrogate_grad_" not in hard


def test_izhikevich_adaptation_in_source():
    forward = kernel_source(_forward("izhikevich", decay_input=False))
    assert "w = w + (a * (h - v_rest) - w) / tau_w;" in forward
    assert "if (fired) w = w + b;" in forward
    backward = kernel_source(_backward("izhikevich", decay_input=False, detach_reset=True))
    assert "g_s = g_s + (b) * g_w;" in backward  # the jump's S is never detached
    assert "g_h = g_h + g_w * (a / tau_w);" in backward


@pytest.mark.parametrize(
    ("soft_reset", "detach_reset", "expected"),
    [
        (True, False, "g_s * sg + g_v * (1.0f - v_threshold * sg)"),
        (True, True, "g_s * sg + g_v;"),
        (False, False, "g_s * sg + g_v * (1.0f - s) + g_v * (v_reset - h) * sg"),
        (False, True, "g_s * sg + g_v * (1.0f - s);"),
    ],
)
def test_backward_reset_gradient(soft_reset, detach_reset, expected):
    # SPEC 5's recurrences, one per reset mode and detach_reset.
    source = kernel_source(_backward(soft_reset=soft_reset, detach_reset=detach_reset))
    assert f"float g_h = {expected}" in source


def test_plif_backward_reduces_r_tau_per_block():
    source = kernel_source(_backward("plif"))
    assert "r_tau_grad = r_tau_grad + g_h * (h - v) / r_tau;" in source
    assert "__shared__ float partial[SJ_CUPY_BLOCK];" in source
    assert "r_tau_partials[blockIdx.x] = partial[0];" in source
    no_decay = kernel_source(_backward("plif", decay_input=False))
    assert "r_tau_grad = r_tau_grad + g_h * (v_reset - v);" in no_decay


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_dtype_storage_and_no_headers(dtype):
    source = kernel_source(_backward(dtype=dtype))
    storage = {"float32": "float", "float16": "unsigned short", "bfloat16": "unsigned short"}
    assert f"const {storage[dtype]}* __restrict__ h_seq" in source
    suffix = DTYPES[dtype].suffix
    assert f"sj_load_{suffix}_x1(h_seq" in source and f"sj_store_{suffix}_x1(grad_x_seq" in source
    # NVRTC without CUDA headers: nothing is included.
    assert "#include" not in source
    assert "cvt.rn.f16.f32" in source  # fp16 via PTX (the prelude is shared by all)


def test_kernel_params_order():
    params = kernel_params(_backward("izhikevich", "PiecewiseLeakyReLU", decay_input=False))
    kinds = [p.kind for p in params]
    # pointers, then fp32 scalars, then fp64 surrogate parameters, then T and N
    assert kinds == sorted(kinds, key=["pointer", "float", "double", "int64"].index)
    names = [p.name for p in params]
    assert names[-4:] == ["sg_w", "sg_c", "T", "N"]
    assert names[names.index("v_threshold") : names.index("sg_w")] == [
        "v_threshold",
        "v_reset",
        *NEURONS["izhikevich"].scalars,
    ]


@pytest.mark.parametrize(
    ("dtype", "vec", "load"),
    [("float32", 4, "sj_load_16b_f32x4"), ("bfloat16", 8, "sj_load_16b_u32x4")],
)
def test_vector_source_moves_all_lanes_at_once(dtype, vec, load):
    forward = kernel_source(_forward("izhikevich", dtype=dtype, vec=vec))
    suffix = DTYPES[dtype].suffix
    # Thread t owns neurons t*vec .. t*vec + vec-1; one access per tensor per step.
    assert f"const long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * {vec};" in (
        forward
    )
    assert f"{load}(const" in forward  # the lane loads go through one 16-byte access
    assert f"sj_load_{suffix}_x{vec}(x_seq + k, x_lane);" in forward
    assert f"sj_store_{suffix}_x{vec}(spike_seq + k, spike_lane);" in forward
    assert f"if (h_seq != nullptr) sj_store_h_{suffix}_x{vec}(h_seq + k, h_lane, v_threshold);" in (
        forward
    )
    # The per-neuron equations, once, in a fully unrolled loop over the lanes.
    assert forward.count(f"SJ_UNROLL for (int lane = 0; lane < {vec}; ++lane) {{") == 1
    assert forward.count(f"const float h = {CHARGES[('izhikevich', False)]};") == 1
    assert "w_lane[lane] = w;" in forward and "v_lane[lane] = v;" in forward
    backward = kernel_source(_backward("plif", dtype=dtype, vec=vec))
    assert f"sj_load_{suffix}_x{vec}(h_seq + k - N, h_prev_lane)" in backward
    assert "grad_x_lane[lane] = g_h * r_tau;" in backward
    # PLIF: the lanes' 1/tau terms go into one per-thread sum, then the block reduction.
    assert "r_tau_grad = r_tau_grad + g_h * (h - v) / r_tau;" in backward
    assert "if (i < N) r_tau_grad = " in backward


def test_scalar_source_uses_single_element_accesses():
    source = kernel_source(_backward("lif", dtype="bfloat16"))
    assert "const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;" in source
    assert "sj_load_bf16_x1(h_seq + k - N, h_prev_lane)" in source
    assert "_x8(" not in source.split("#endif  // SJ_CUPY_PRELUDE")[1]


def test_per_neuron_params():
    # Exactly the tensors with one element per neuron need 16-byte alignment for the
    # vector kernel; PLIF's 1/tau and the block partial sums are not per neuron.
    backward = kernel_params(_backward("plif"))
    assert {p.name for p in backward if p.kind == "pointer" and not p.per_neuron} == {
        "r_tau_ptr",
        "r_tau_partials",
    }
    forward = kernel_params(_forward("izhikevich", decay_input=False))
    assert {p.name for p in forward if p.per_neuron} == {
        "x_seq",
        "v_init",
        "w_init",
        "spike_seq",
        "v_last",
        "w_last",
        "h_seq",
        "v_seq",
        "w_seq",
    }


# -- content keys ---------------------------------------------------------------------------------


def test_source_keys_are_content_based():
    one = _backward("qif", "Erf")
    again = make_variant(
        "qif",
        "backward",
        soft_reset=False,
        decay_input=False,
        dtype="float32",
        detach_reset=False,
        surrogate="Erf",
    )
    assert source_key(kernel_source(one)) == source_key(kernel_source(again))
    # The key is the SHA-256 of options and text: equal text, equal key.
    text = kernel_source(one)
    digest = hashlib.sha256(("\0".join(COMPILE_OPTIONS) + "\0\0" + text).encode()).hexdigest()
    assert source_key(text) == digest
    assert source_key(text, ("--fmad=true",)) != source_key(text)
    keys = {source_key(kernel_source(v)) for v in itertools.islice(all_variants(), 0, None, 37)}
    assert len(keys) == len(range(0, 3168, 37))


def test_module_source_defines_shared_pieces_once():
    variants = [_backward(surrogate="ATan"), _backward("qif", "ATan"), _forward()]
    source = module_source(variants)
    assert source.count("#define SJ_CUPY_PRELUDE") == 1
    assert source.count("#define SJ_CUPY_SURROGATE_ATAN") == 1
    for variant in variants:
        assert re.search(
            rf"__global__ void __launch_bounds__\(SJ_CUPY_BLOCK\) "
            rf"{variant.kernel_name}\(",
            source,
        )


# -- configurations the backend cannot run --------------------------------------------------------


def test_unknown_configurations_raise_not_implemented():
    with pytest.raises(NotImplementedError, match="supported surrogates: Sigmoid, ATan"):
        _backward(surrogate="Gaussian")
    with pytest.raises(NotImplementedError, match="supported dtypes: float32, float16, bfloat16"):
        _forward(dtype="float64")
    with pytest.raises(NotImplementedError, match="supported neurons: if, lif, plif, qif"):
        make_variant("psn", "forward", soft_reset=False, decay_input=False, dtype="float32")


class MySigmoid(sg.Sigmoid):
    """A user subclass: its name has no kernel (its gradient could differ)."""


@pytest.mark.parametrize(
    ("surrogate", "match"),
    [
        (torch.sigmoid, r"needs a sj_core.surrogate.SurrogateFunctionBase .*got builtin"),
        (MySigmoid(), r"no kernel for surrogate 'MySigmoid'; supported surrogates: Sigmoid"),
        (sg.Sigmoid(spiking=False), r"does not support Sigmoid with spiking=False"),
        (sg.ATan(spiking=False), r"use backend='torch', or spiking=True"),
    ],
    ids=["not-a-surrogate", "unknown-subclass", "sigmoid-primitive", "atan-primitive"],
)
def test_unsupported_surrogates(surrogate, match):
    with pytest.raises(NotImplementedError, match=match):
        validation.check_surrogate(surrogate)


def test_supported_surrogate_parameters():
    name, params = validation.check_surrogate(sg.SquarewaveFourierSeries(n=3, T_period=5.0))
    assert (name, params) == ("SquarewaveFourierSeries", [3.0, 5.0])
    assert validation.check_surrogate(sg.LeakyKReLU(leak=0.2, k=0.7)) == ("LeakyKReLU", [0.2, 0.7])


def test_unsupported_tensors():
    x = torch.rand(3, 4)
    # Without a test launcher, kernels run on CUDA only.
    assert launch.device_type() == "cuda"
    with pytest.raises(NotImplementedError, match="runs on cuda tensors, got x_seq on cpu"):
        validation.check_tensors(x, v_init=torch.rand(4))
    with pytest.raises(NotImplementedError, match=r"does not support torch.float64; supported"):
        validation.check_tensors(x.double(), v_init=torch.rand(4).double())


def test_mismatched_tensors(host_launcher):
    # With the CPU test launcher active, CPU tensors pass and the other checks apply.
    x = torch.rand(3, 4)
    validation.check_tensors(x, v_init=torch.rand(4), r_tau=torch.rand(1))
    with pytest.raises(NotImplementedError, match="v_init is on meta"):
        validation.check_tensors(x, v_init=torch.rand(4, device="meta"))
    with pytest.raises(NotImplementedError, match="w_init in x_seq's dtype torch.float32"):
        validation.check_tensors(x, v_init=torch.rand(4), w_init=torch.rand(4).half())
    with pytest.raises(ValueError, match=r"v_init shape \(5,\) does not match one step"):
        validation.check_tensors(x, v_init=torch.rand(5))
    with pytest.raises(ValueError, match="r_tau must have one element"):
        validation.check_tensors(x, v_init=torch.rand(4), r_tau=torch.rand(2))
