"""Surrogate gradients inside Triton kernels.

Each sj-core surrogate (:mod:`sj_core.surrogate`) with a closed-form gradient gets an id;
the kernels take the id as a compile-time constant and up to two float parameters at
run time, so changing ``alpha`` never recompiles. The formulas are SPEC section 4's,
written to match the torch ``surrogate_gradient`` of each class (fp32 arithmetic); the
conformance tests check every one against it.
"""

from __future__ import annotations

import functools

import triton
import triton.language as tl

__all__ = ["SURROGATE_IDS", "surrogate_arguments", "surrogate_gradient"]

# kernel_name -> (id, its kernel_params() names in order). The kernel takes two float
# parameters p0, p1 (the first two of these) and, for the Fourier series, the number of
# terms n as a compile-time constant (its p0 is T_period).
SURROGATE_IDS: dict[str, tuple[int, tuple[str, ...]]] = {
    "Sigmoid": (0, ("alpha",)),
    "ATan": (1, ("alpha",)),
    "PiecewiseQuadratic": (2, ("alpha",)),
    "PiecewiseExp": (3, ("alpha",)),
    "SoftSign": (4, ("alpha",)),
    "SuperSpike": (5, ("alpha",)),
    "Erf": (6, ("alpha",)),
    "PiecewiseLeakyReLU": (7, ("w", "c")),
    "QPseudoSpike": (8, ("alpha",)),
    "LeakyKReLU": (9, ("leak", "k")),
    "S2NN": (10, ("alpha", "beta")),
    "NonzeroSignLogAbs": (11, ("alpha",)),
    "LogTailedReLU": (12, ("alpha",)),
    "Rect": (13, ("alpha",)),
    "SquarewaveFourierSeries": (14, ("n", "T_period")),
    "FakeNumericalGradient": (15, ("alpha",)),
}


@functools.lru_cache(maxsize=1024)
def surrogate_arguments(name: str, params: tuple[float, ...]) -> tuple[int, float, float, int]:
    """``(SG, p0, p1, SG_TERMS)`` kernel arguments of surrogate ``name`` with its
    ``kernel_params()`` values ``params``."""
    sg_id, names = SURROGATE_IDS[name]
    values = dict(zip(names, params, strict=True))
    if name == "SquarewaveFourierSeries":
        return sg_id, values["T_period"], 0.0, int(values["n"])
    padded = list(params) + [0.0, 0.0]
    return sg_id, padded[0], padded[1], 0


@triton.jit
def surrogate_gradient(x, p0, p1, SG: tl.constexpr, N_TERMS: tl.constexpr):
    """d primitive / dx at ``x`` (fp32 tensor) for the surrogate with id ``SG``."""
    if SG == 0:  # Sigmoid(alpha)
        s = tl.sigmoid(p0 * x)
        g = p0 * s * (1.0 - s)
    elif SG == 1:  # ATan(alpha)
        z = 1.5707963267948966 * p0 * x  # pi / 2
        g = p0 * 0.5 / (1.0 + z * z)
    elif SG == 2:  # PiecewiseQuadratic(alpha)
        ax = tl.abs(x)
        g = tl.where(ax <= 1.0 / p0, p0 - p0 * p0 * ax, 0.0)
    elif SG == 3:  # PiecewiseExp(alpha)
        g = p0 * 0.5 * tl.exp(-p0 * tl.abs(x))
    elif SG == 4:  # SoftSign(alpha)
        d = 1.0 / p0 + tl.abs(x)
        g = 1.0 / (2.0 * p0 * d * d)
    elif SG == 5:  # SuperSpike(alpha)
        d = tl.abs(x) + 1.0
        g = p0 / (d * d)
    elif SG == 6:  # Erf(alpha)
        z = p0 * x
        g = p0 * 0.5641895835477563 * tl.exp(-z * z)  # 1 / sqrt(pi)
    elif SG == 7:  # PiecewiseLeakyReLU(w, c)
        g = tl.where(tl.abs(x) < p0, 0.5 / p0, p1)
    elif SG == 8:  # QPseudoSpike(alpha)
        g = tl.exp(-p0 * tl.log(1.0 + 2.0 * tl.abs(x) / (p0 - 1.0)))
    elif SG == 9:  # LeakyKReLU(leak, k)
        g = tl.where(x >= 0.0, p1, p0)
    elif SG == 10:  # S2NN(alpha, beta)
        s = tl.sigmoid(p0 * x)
        # where() evaluates both branches: keep the unused one finite at x = -1.
        g = tl.where(x < 0.0, p0 * s * (1.0 - s), p1 / (tl.maximum(x, 0.0) + 1.0))
    elif SG == 11:  # NonzeroSignLogAbs(alpha)
        g = 1.0 / (1.0 / p0 + tl.abs(x))
    elif SG == 12:  # LogTailedReLU(alpha)
        g = tl.where(x <= 0.0, p0, tl.where(x <= 1.0, 1.0, 1.0 / tl.maximum(x, 1.0)))
    elif SG == 13:  # Rect(alpha)
        g = tl.where(tl.abs(x) < 0.5 / p0, p0, 0.0)
    elif SG == 14:  # SquarewaveFourierSeries(n, T_period): (4/T) sum cos((2i-1) w x)
        w = 6.283185307179586 / p0  # 2 pi / T_period
        g = tl.zeros_like(x)
        for i in tl.static_range(1, N_TERMS):
            g += tl.cos((2 * i - 1) * w * x)
        g = g * (4.0 / p0)
    else:  # FakeNumericalGradient(alpha): min(1/|x|, alpha), alpha at x = 0
        ax = tl.abs(x)
        g = tl.where(ax * p0 < 1.0, p0, 1.0 / tl.maximum(ax, 1.0e-30))
    return g
