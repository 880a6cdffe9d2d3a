"""CUDA source generation (pure Python: no CuPy, no GPU).

Checks the variant table, what ends up in the source (the neuron expressions printed from
sj-core's statements, the surrogate formulas, the reset, the memory accesses), the kernel
signatures, the content keys, and the errors for configurations with no kernel.

Where a test finds a printed expression in the source, it also evaluates that C text
(numerically, in float64) against the statement itself or its autograd derivative, so a
printer that lost a parenthesis or a derivative with a wrong sign fails here.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
import torch
from neuron_cases import ALL_SURROGATES, make_surrogate

from sj_core import surrogate as sg
from sj_core.neuron.statements import (
    FLOAT,
    STATEMENTS,
    TENSOR,
    Sym,
    flag_settings,
    kernel_equations,
    reset,
)
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
from sj_cupy.codegen.neurons import CPrinter
from sj_cupy.codegen.prelude import PRELUDE


def _forward(neuron="lif", **overrides):
    config = dict(soft_reset=False, decay_input=True, dtype="float32") | overrides
    return make_variant(neuron, "forward", **config)


def _backward(neuron="lif", surrogate="Sigmoid", **overrides):
    config = dict(soft_reset=False, decay_input=True, dtype="float32", detach_reset=False)
    return make_variant(neuron, "backward", surrogate=surrogate, **config | overrides)


def _body(source: str) -> str:
    """The source after the shared prelude (the surrogate function and the kernels)."""
    return source.split("#endif  // SJ_CUPY_PRELUDE")[1]


#: Every neuron configuration (statement, flag setting): the generator's unit.
CONFIGURATIONS = [(name, flags) for name in STATEMENTS for flags in flag_settings(STATEMENTS[name])]


def _config_id(config) -> str:
    name, flags = config
    return "-".join([name] + [k if v else f"no_{k}" for k, v in flags.items()])


def _decay(flags) -> bool:
    return flags.get("decay_input", False)


# -- evaluating printed C expressions -------------------------------------------------------

#: Values for every symbol a printed expression may use (an arbitrary generic point, so
#: that no term vanishes by accident).
POINT = {
    "x": 0.37, "v": 0.61, "w": 0.13, "h": 0.83, "s": 1.0, "r_tau": 0.43, "v_reset": -0.27,
    "v_threshold": 0.95, "tau": 2.3, "v_c": 0.71, "a0": 1.3, "v_rest": -0.05, "delta_T": 0.9,
    "theta_rh": 0.66, "a": 0.47, "b": 0.21, "tau_w": 3.1,
}  # fmt: skip


def eval_c(text: str, **values: float) -> float:
    """Evaluate a printed C float expression (``1.0f``, ``expf``, ``+ - * /`` and names)
    in float64."""
    python = re.sub(r"(\d+\.\d*(?:e[+-]?\d+)?)f\b", r"\1", text).replace("expf(", "exp(")
    assert re.fullmatch(r"[\w\s.+\-*/()]*", python), text
    env = {name: torch.tensor(value, dtype=torch.float64) for name, value in values.items()}
    return float(eval(python, {"__builtins__": {}, "exp": torch.exp}, env))


def _statement_arguments(name, flags, point):
    """``(positional tensors, keyword params)`` of ``STATEMENTS[name].charge`` at
    ``point`` (float64 leaves that require grad)."""
    statement = STATEMENTS[name]
    leaf = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in point.items()}
    positional = [leaf["x"], leaf["v"]]
    if statement.adaptation is not None:
        positional.append(leaf["w"])
    positional += [leaf["r_tau"] for _ in statement.names(TENSOR)]
    params = {p: leaf[p] for p in statement.names(FLOAT)} | flags | {"v_r": leaf["v_reset"]}
    return leaf, positional, params


# -- the variant table ----------------------------------------------------------------------


def test_every_variant_is_enumerated_once():
    variants = list(all_variants())
    assert len(set(variants)) == len(variants)
    assert len({v.kernel_name for v in variants}) == len(variants)
    # Hand count: neuron configurations = IF, LIF x2, PLIF x2, QIF, EIF, Izhikevich = 8;
    # forward: x 2 resets x 3 dtypes; backward additionally x 2 detach_reset x 16
    # surrogates; each of these twice: one neuron per thread, and vectorized.
    assert len(CONFIGURATIONS) == 8
    assert len(SURROGATES) == 16 and len(DTYPES) == 3
    forward = [v for v in variants if v.direction == "forward"]
    backward = [v for v in variants if v.direction == "backward"]
    assert len(forward) == 8 * 2 * 3 * 2
    assert len(backward) == 8 * 2 * 3 * 2 * 16 * 2
    assert len(variants) == 3168
    vector_widths = {"float32": 4, "float16": 8, "bfloat16": 8}  # 16 bytes per access
    expected = {
        (name, _decay(flags), soft, dtype, detach, surrogate, vec)
        for name, flags in CONFIGURATIONS
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
    with_backward_settings = make_variant(
        "lif", "forward", soft_reset=False, decay_input=True, dtype="float32",
        detach_reset=True, surrogate="ATan",
    )  # fmt: skip
    assert with_backward_settings == base
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
    assert _forward("plif", decay_input=False).kernel_name == "sj_plif_nodecay_hard_f32_forward"


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


# -- surrogates -----------------------------------------------------------------------------

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


@pytest.mark.parametrize("name", ALL_SURROGATES)
def test_every_surrogate_has_a_device_function(name):
    # Every surrogate of sj-core (SPEC 4) has a kernel under its kernel_name, with the
    # parameters of its kernel_params(), in order, as double arguments.
    surrogate_function = make_surrogate(name)
    assert surrogate_function.kernel_name == name
    params = tuple(surrogate_function.kernel_params())
    assert SURROGATES[name].params == params == getattr(sg, name).param_names
    args = ", ".join(["const float x"] + [f"const double {p}" for p in params])
    source = kernel_source(_backward(surrogate=name))
    assert source.count(f"SJ_INLINE float sj_surrogate_grad_{name}({args})\n{{") == 1


def test_the_kernel_table_is_exactly_sj_cores_surrogates():
    assert set(SURROGATES) == set(ALL_SURROGATES) == set(SURROGATE_FRAGMENTS)


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_backward_source_contains_the_surrogate_formula(name):
    source = kernel_source(_backward(surrogate=name))
    for fragment in SURROGATE_FRAGMENTS[name]:
        assert fragment in source, fragment
    # The surrogate is evaluated at H - V_th, with its parameters as kernel arguments.
    params = ", ".join(f"sg_{p}" for p in SURROGATES[name].params)
    assert f"const float sg = sj_surrogate_grad_{name}(h - v_threshold, {params});" in source
    for other in set(SURROGATES) - {name}:
        assert f"sj_surrogate_grad_{other}(" not in source


# -- the neuron, printed from sj-core's statements -------------------------------------------


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=_config_id)
def test_forward_source_contains_the_charge_printed_from_the_statement(config):
    name, flags = config
    statement = STATEMENTS[name]
    charge = CPrinter(statement).print(kernel_equations(statement, flags, hard_reset=True).charge)
    # The same text for either reset mode (V_r is the kernel argument v_reset).
    soft_charge = kernel_equations(statement, flags, hard_reset=False).charge
    assert CPrinter(statement).print(soft_charge) == charge
    hard = kernel_source(_forward(name, decay_input=_decay(flags)))
    soft = kernel_source(_forward(name, decay_input=_decay(flags), soft_reset=True))
    for source in (hard, soft):
        assert _body(source).count(f"const float h = {charge};") == 1
    # The printed text computes the statement's charge.
    leaf, positional, params = _statement_arguments(name, flags, POINT)
    expected = statement.charge(*positional, **params).item()
    assert eval_c(charge, **POINT) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # The forward stores H only when asked (training) and never needs a surrogate.
    assert "if (h_seq != nullptr)" in hard and "sj_surrogate_grad_" not in hard


def test_reset_functions_are_printed_from_sj_core():
    h, s, v_threshold, v_reset = Sym("h"), Sym("s"), Sym("v_threshold"), Sym("v_reset")
    printer = CPrinter()
    hard = printer.print(reset(h, s, v_threshold, v_reset))
    soft = printer.print(reset(h, s, v_threshold, None))
    signature = "(const float h, const float s, const float v_threshold, const float v_reset)"
    assert f"SJ_INLINE float sj_reset_hard{signature}\n{{\n    return {hard};\n}}" in PRELUDE
    assert f"SJ_INLINE float sj_reset_soft{signature}\n{{\n    return {soft};\n}}" in PRELUDE
    # SPEC 2: hard reset gives V_reset after a spike and H otherwise; soft subtracts V_th.
    point = dict(h=1.3, v_threshold=0.9, v_reset=-0.3)
    assert eval_c(hard, s=1.0, **point) == pytest.approx(-0.3)
    assert eval_c(hard, s=0.0, **point) == pytest.approx(1.3)
    assert eval_c(soft, s=1.0, **point) == pytest.approx(1.3 - 0.9)
    assert eval_c(soft, s=0.0, **point) == pytest.approx(1.3)
    # Each kernel calls the function of its reset mode (forward, and the backward's V[t-1]).
    for kind, soft_reset in (("hard", False), ("soft", True)):
        other = "hard" if soft_reset else "soft"
        forward = _body(kernel_source(_forward("qif", soft_reset=soft_reset)))
        assert f"v = sj_reset_{kind}(h, s, v_threshold, v_reset);" in forward
        assert f"sj_reset_{other}(" not in forward
        backward = _body(kernel_source(_backward("qif", soft_reset=soft_reset)))
        assert f"sj_reset_{kind}(h_prev, s_prev, v_threshold, v_reset)" in backward
        assert f"sj_reset_{other}(" not in backward


def test_izhikevich_adaptation_printed_from_the_statement():
    statement = STATEMENTS["izhikevich"]
    eq = NEURONS["izhikevich"].equations(False)
    symbolic = kernel_equations(statement, {}, hard_reset=True)
    printer = CPrinter(statement)
    assert (eq.adapt, eq.jump) == (printer.print(symbolic.adapt), printer.print(symbolic.jump))
    forward = _body(kernel_source(_forward("izhikevich", decay_input=False)))
    # Adapt from H before the reset, jump by the spike after it.
    order = [f"w = {eq.adapt};", "v = sj_reset_hard(h, s, v_threshold, v_reset);"]
    order.append(f"w = {eq.jump};")
    positions = [forward.index(line) for line in order]
    assert positions == sorted(positions)
    # SPEC 3: W' = W + (a (H - V_rest) - W) / tau_w, then W = W' + b S.
    p = POINT
    assert eval_c(eq.adapt, **p) == pytest.approx(
        p["w"] + (p["a"] * (p["h"] - p["v_rest"]) - p["w"]) / p["tau_w"]
    )
    assert eval_c(eq.jump, **p) == pytest.approx(p["w"] + p["b"] * p["s"])
    backward = _body(kernel_source(_backward("izhikevich", decay_input=False, detach_reset=True)))
    # The jump's spike is never detached: its term stays with detach_reset.
    assert f"g_s = g_s + g_w * ({eq.dj_ds});" in backward
    assert f"g_h = g_h + g_w_adapted * ({eq.da_dh});" in backward
    assert eval_c(eq.dj_ds, **p) == pytest.approx(p["b"])
    assert eval_c(eq.da_dh, **p) == pytest.approx(p["a"] / p["tau_w"])
    assert eval_c(eq.da_dw, **p) == pytest.approx(1 - 1 / p["tau_w"])


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=_config_id)
def test_backward_is_the_chain_rule_over_the_printed_derivatives(config):
    name, flags = config
    spec = NEURONS[name]
    eq = spec.equations(_decay(flags))
    backward = _body(kernel_source(_backward(name, decay_input=_decay(flags))))
    assert f"grad_x_lane[lane] = g_h * ({eq.dh_dx});" in backward
    assert f"g_v_lane[lane] = g_h * ({eq.dh_dv});" in backward
    if spec.has_w:
        assert f"g_w_lane[lane] = g_w_adapted * ({eq.da_dw}) + g_h * ({eq.dh_dw});" in backward
    if spec.has_r_tau:
        assert f"r_tau_grad = r_tau_grad + g_h * ({eq.dh_dr});" in backward
    # Each printed derivative is the derivative of the statement's charge (autograd).
    leaf, positional, params = _statement_arguments(name, flags, POINT)
    charge = STATEMENTS[name].charge(*positional, **params)
    names = {"x": eq.dh_dx, "v": eq.dh_dv, "w": eq.dh_dw, "r_tau": eq.dh_dr}
    wrt = [n for n, text in names.items() if text is not None]
    grads = torch.autograd.grad(charge, [leaf[n] for n in wrt])
    for n, grad in zip(wrt, grads, strict=True):
        assert eval_c(names[n], **POINT) == pytest.approx(grad.item(), rel=1e-12, abs=1e-15), n


@pytest.mark.parametrize(
    ("soft_reset", "detach_reset", "dh", "ds"),
    [
        # SPEC 5: d reset / dH and d reset / dS, per reset mode.
        (False, False, lambda p: 1 - p["s"], lambda p: p["v_reset"] - p["h"]),
        (False, True, lambda p: 1 - p["s"], None),
        (True, False, lambda p: 1.0, lambda p: -p["v_threshold"]),
        (True, True, lambda p: 1.0, None),
    ],
    ids=["hard", "hard-detach", "soft", "soft-detach"],
)
def test_backward_reset_gradient(soft_reset, detach_reset, dh, ds):
    eq = NEURONS["lif"].equations(True)
    hard = not soft_reset
    source = _body(kernel_source(_backward(soft_reset=soft_reset, detach_reset=detach_reset)))
    assert f"float g_h = g_s * sg + g_v * ({eq.dreset_dh[hard]});" in source
    through_spike = f"g_h = g_h + g_v * ({eq.dreset_ds[hard]}) * sg;"
    assert (through_spike in source) == (not detach_reset)
    for s in (0.0, 1.0):
        point = POINT | {"s": s}
        assert eval_c(eq.dreset_dh[hard], **point) == pytest.approx(dh(point))
        if ds is not None:
            assert eval_c(eq.dreset_ds[hard], **point) == pytest.approx(ds(point))


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=_config_id)
def test_backward_reads_x_seq_exactly_for_plif_with_decay_input(config):
    # PLIF with decay_input: dH/d(1/tau) = X - (V - V_r) needs X[t]; every other neuron's
    # derivatives need at most V[t-1], recomputed from the stored H.
    name, flags = config
    reads_x = name == "plif" and _decay(flags)
    for dtype, vec in (("float32", 1), ("bfloat16", 8)):
        variant = _backward(name, decay_input=_decay(flags), dtype=dtype, vec=vec)
        assert ("x_seq" in [p.name for p in kernel_params(variant)]) == reads_x
        suffix = DTYPES[dtype].suffix
        loads_x = f"sj_load_{suffix}_x{vec}(x_seq + k, x_lane);" in kernel_source(variant)
        assert loads_x == reads_x
    assert NEURONS[name].equations(_decay(flags)).needs_x == reads_x


def test_plif_backward_reduces_r_tau_per_block():
    source = kernel_source(_backward("plif"))
    thread = source.split("_thread(")[1]
    assert "return r_tau_grad;" in thread.split("#ifndef SJ_CUPY_HOST_TEST")[0]
    assert "__shared__ float partial[SJ_CUPY_BLOCK];" in source
    assert "if (i < N) r_tau_grad = sj_plif_decay_hard_attach_f32_backward_Sigmoid_thread(" in (
        source
    )
    assert "if (threadIdx.x == 0) r_tau_partials[blockIdx.x] = partial[0];" in source
    # No other neuron reduces anything.
    assert "__shared__" not in _body(kernel_source(_backward("izhikevich")))


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_dtype_storage_and_no_headers(dtype):
    source = kernel_source(_backward(dtype=dtype))
    storage = {"float32": "float", "float16": "unsigned short", "bfloat16": "unsigned short"}
    assert f"const {storage[dtype]}* __restrict__ h_seq" in source
    assert f"{storage[dtype]}* __restrict__ grad_x_seq" in source
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
    assert names[:10] == [
        "grad_spike_seq", "grad_v_last", "grad_w_last", "grad_v_seq", "grad_w_seq",
        "h_seq", "v_init", "grad_x_seq", "grad_v_init", "grad_w_init",
    ]  # fmt: skip
    assert names[-4:] == ["sg_w", "sg_c", "T", "N"]
    assert names[names.index("v_threshold") : names.index("sg_w")] == [
        "v_threshold", "v_reset", "tau", "v_c", "a0", "v_rest", "a", "b", "tau_w",
    ]  # fmt: skip
    assert NEURONS["izhikevich"].scalars == STATEMENTS["izhikevich"].names(FLOAT)
    plif = [p.name for p in kernel_params(_backward("plif"))]
    assert plif[:6] == ["grad_spike_seq", "grad_v_last", "grad_v_seq", "h_seq", "v_init", "x_seq"]
    assert plif[6:10] == ["r_tau_ptr", "grad_x_seq", "grad_v_init", "r_tau_partials"]
    forward = [p.name for p in kernel_params(_forward("plif"))]
    assert forward == [
        "x_seq", "v_init", "r_tau_ptr", "spike_seq", "v_last", "h_seq", "v_seq",
        "v_threshold", "v_reset", "T", "N",
    ]  # fmt: skip


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
    charge = NEURONS["izhikevich"].equations(False).charge
    assert forward.count(f"SJ_UNROLL for (int lane = 0; lane < {vec}; ++lane) {{") == 1
    assert forward.count(f"const float h = {charge};") == 1
    assert "w_lane[lane] = w;" in forward and "v_lane[lane] = v;" in forward
    backward = kernel_source(_backward("plif", dtype=dtype, vec=vec))
    assert f"sj_load_{suffix}_x{vec}(h_seq + k - N, h_prev_lane)" in backward
    assert f"sj_load_{suffix}_x{vec}(x_seq + k, x_lane);" in backward
    assert "grad_x_lane[lane] = g_h * (r_tau);" in backward
    # PLIF: the lanes' 1/tau terms go into one per-thread sum, then the block reduction.
    assert backward.count("r_tau_grad = r_tau_grad + g_h * (x - (v - v_reset));") == 1
    assert "if (i < N) r_tau_grad = " in backward


def test_scalar_source_uses_single_element_accesses():
    source = kernel_source(_backward("lif", dtype="bfloat16"))
    assert "const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;" in source
    assert "sj_load_bf16_x1(h_seq + k - N, h_prev_lane)" in source
    assert "_x8(" not in _body(source)


def test_per_neuron_params():
    # Exactly the tensors with one element per neuron need 16-byte alignment for the
    # vector kernel; PLIF's 1/tau and the block partial sums are not per neuron.
    backward = kernel_params(_backward("plif"))
    pointers = {p.name for p in backward if p.kind == "pointer"}
    assert {p.name for p in backward if p.per_neuron} == pointers - {"r_tau_ptr", "r_tau_partials"}
    assert "x_seq" in pointers  # read per neuron by PLIF's decay_input backward
    forward = kernel_params(_forward("izhikevich", decay_input=False))
    assert {p.name for p in forward if p.per_neuron} == {
        "x_seq", "v_init", "w_init", "spike_seq", "v_last", "w_last", "h_seq", "v_seq", "w_seq",
    }  # fmt: skip
    assert not any(p.per_neuron for p in forward if p.kind != "pointer")


# -- content keys ---------------------------------------------------------------------------


def test_source_keys_are_content_based():
    one = _backward("qif", "Erf")
    again = make_variant(
        "qif", "backward", soft_reset=False, decay_input=False, dtype="float32",
        detach_reset=False, surrogate="Erf",
    )  # fmt: skip
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
    assert source.count("SJ_INLINE float sj_reset_hard(") == 1
    for variant in variants:
        assert re.search(
            rf"__global__ void __launch_bounds__\(SJ_CUPY_BLOCK\) {variant.kernel_name}\(",
            source,
        )
        assert source.count(f" {variant.kernel_name}_thread(\n") == 1


# -- configurations with no kernel ----------------------------------------------------------


def test_unknown_configurations_raise():
    with pytest.raises(NotImplementedError, match="supported surrogates: Sigmoid, ATan"):
        _backward(surrogate="Gaussian")
    with pytest.raises(NotImplementedError, match="supported dtypes: float32, float16, bfloat16"):
        _forward(dtype="float64")
    with pytest.raises(NotImplementedError, match="supported neurons: if, lif, plif, qif"):
        make_variant("psn", "forward", soft_reset=False, decay_input=False, dtype="float32")
    with pytest.raises(NotImplementedError, match="no kernel for surrogate None"):
        make_variant("lif", "backward", soft_reset=False, decay_input=True, dtype="float32")
    with pytest.raises(ValueError, match="direction must be one of"):
        make_variant("lif", "sideways", soft_reset=False, decay_input=True, dtype="float32")
