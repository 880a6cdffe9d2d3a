"""Surrogate gradients as CUDA device functions (SPEC section 4).

Each entry mirrors the torch ``surrogate_gradient`` of :mod:`sj_core.surrogate` operation
by operation, so that the kernels agree with the reference to rounding:

* ``x`` (``H - V_th``) is fp32 and the arithmetic on it is fp32, as in torch;
* the parameters arrive as ``double`` (the Python values, exactly). Where torch combines
  two Python numbers first (``1 / alpha``, ``math.pi / 2 * alpha``) that happens in double
  here too, and the result is rounded to fp32 where torch would (``(float)(...)``);
* ``c / tensor`` in torch is ``tensor.reciprocal() * c``, written the same way here.

The parameters are kernel arguments, not baked constants: changing ``alpha`` never
compiles a new kernel. A surrogate's parameter names are those of its ``kernel_params()``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SURROGATES", "SurrogateKernelSpec", "surrogate_function_name"]


@dataclass(frozen=True)
class SurrogateKernelSpec:
    """One surrogate gradient: its parameters and the body of its device function."""

    name: str  # == SurrogateFunctionBase.kernel_name
    params: tuple[str, ...]  # == the keys of kernel_params(), in order
    formula: str  # the SPEC 4 gradient, for documentation and messages
    body: str  # C statements computing the gradient from `const float x`; ends in return


def surrogate_function_name(name: str) -> str:
    """The device function of surrogate ``name``: ``sj_surrogate_grad_<name>``."""
    return f"sj_surrogate_grad_{name}"


_SIGMOID = """
const float s = 1.0f / (1.0f + expf(-((float)alpha * x)));
return (float)alpha * s * (1.0f - s);
"""

_SPECS = (
    SurrogateKernelSpec("Sigmoid", ("alpha",), "a s (1 - s), s = sigmoid(a x)", _SIGMOID),
    SurrogateKernelSpec(
        "ATan",
        ("alpha",),
        "(a/2) / (1 + (pi a x / 2)^2)",
        """
const float u = (float)(3.141592653589793 / 2.0 * alpha) * x;
return (1.0f / (1.0f + u * u)) * (float)(alpha / 2.0);
""",
    ),
    SurrogateKernelSpec(
        "PiecewiseQuadratic",
        ("alpha",),
        "-a^2 |x| + a for |x| <= 1/a, else 0",
        """
const float ax = fabsf(x);
return ax <= (float)(1.0 / alpha) ? (float)(-(alpha * alpha)) * ax + (float)alpha : 0.0f;
""",
    ),
    SurrogateKernelSpec(
        "PiecewiseExp",
        ("alpha",),
        "(a/2) e^(-a |x|)",
        "return (float)(alpha / 2.0) * expf((float)(-alpha) * fabsf(x));",
    ),
    SurrogateKernelSpec(
        "SoftSign",
        ("alpha",),
        "1 / (2 a (1/a + |x|)^2)",
        """
const float d = (float)(1.0 / alpha) + fabsf(x);
return 1.0f / ((float)(2.0 * alpha) * (d * d));
""",
    ),
    SurrogateKernelSpec(
        "SuperSpike",
        ("alpha",),
        "a / (|x| + 1)^2",
        """
const float d = fabsf(x) + 1.0f;
return (1.0f / (d * d)) * (float)alpha;
""",
    ),
    SurrogateKernelSpec(
        "Erf",
        ("alpha",),
        "(a / sqrt(pi)) e^(-(a x)^2)",
        """
const float u = (float)alpha * x;
return (float)(alpha / 1.7724538509055159) * expf(-(u * u));
""",
    ),
    SurrogateKernelSpec(
        "PiecewiseLeakyReLU",
        ("w", "c"),
        "1/(2w) for |x| < w, else c",
        "return fabsf(x) < (float)w ? (float)(1.0 / (2.0 * w)) : (float)c;",
    ),
    SurrogateKernelSpec(
        "QPseudoSpike",
        ("alpha",),
        "(1 + 2|x|/(a-1))^(-a)",
        "return powf(1.0f + 2.0f * fabsf(x) / (float)(alpha - 1.0), (float)(-alpha));",
    ),
    SurrogateKernelSpec(
        "LeakyKReLU",
        ("leak", "k"),
        "k for x >= 0, else leak",
        "return x >= 0.0f ? (float)k : (float)leak;",
    ),
    SurrogateKernelSpec(
        "S2NN",
        ("alpha", "beta"),
        "a s (1 - s) for x < 0 (s = sigmoid(a x)), else beta / (x + 1)",
        """
if (x < 0.0f) {
    const float s = 1.0f / (1.0f + expf(-((float)alpha * x)));
    return (float)alpha * s * (1.0f - s);
}
return (1.0f / (x + 1.0f)) * (float)beta;
""",
    ),
    SurrogateKernelSpec(
        "NonzeroSignLogAbs",
        ("alpha",),
        "1 / (1/a + |x|)",
        "return 1.0f / ((float)(1.0 / alpha) + fabsf(x));",
    ),
    SurrogateKernelSpec(
        "LogTailedReLU",
        ("alpha",),
        "a for x <= 0, 1 for 0 < x <= 1, 1/x for x > 1",
        """
if (x > 1.0f) return 1.0f / x;
return x > 0.0f ? 1.0f : (float)alpha;
""",
    ),
    SurrogateKernelSpec(
        "Rect",
        ("alpha",),
        "a for |x| < 1/(2a), else 0",
        "return fabsf(x) < (float)(1.0 / (2.0 * alpha)) ? (float)alpha : 0.0f;",
    ),
    SurrogateKernelSpec(
        "SquarewaveFourierSeries",
        ("n", "T_period"),
        "(4/T_period) sum_{i=1}^{n-1} cos((2i-1) w x), w = 2 pi / T_period",
        """
const double omega = 2.0 * 3.141592653589793 / T_period;
const int terms = (int)n;
float total = 0.0f;
for (int i = 1; i < terms; ++i) {
    total = total + cosf((float)((double)(2 * i - 1) * omega) * x);
}
return (float)(4.0 / T_period) * total;
""",
    ),
    SurrogateKernelSpec(
        "FakeNumericalGradient",
        ("alpha",),
        "min(1/|x|, a)",
        """
const float r = 1.0f / fabsf(x);  // 1/0 = inf, clamped to alpha
return r > (float)alpha ? (float)alpha : r;
""",
    ),
)

#: kernel_name -> spec, for every surrogate of SPEC section 4.
SURROGATES: dict[str, SurrogateKernelSpec] = {spec.name: spec for spec in _SPECS}
