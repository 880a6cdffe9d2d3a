"""Surrogate gradients inside Triton kernels.

Each sj-core surrogate (:mod:`sj_core.surrogate`) with a closed-form gradient gets an id;
the kernels take the id as a compile-time constant and up to two float parameters at
run time, so changing ``alpha`` never recompiles. The formulas are SPEC section 4's,
written to match the torch ``surrogate_gradient`` of each class (fp32 arithmetic).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["SURROGATE_IDS", "surrogate_args", "surrogate_gradient"]

# kernel_name -> (id, parameter names in the order the kernel takes them as p0, p1).
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
    "SquarewaveFourierSeries": (14, ("T_period",)),  # n is a compile-time constant
    "FakeNumericalGradient": (15, ("alpha",)),
}


def surrogate_args(surrogate_function: object) -> tuple[int, float, float, int]:
    """Translate a sj-core surrogate into kernel arguments ``(sg_id, p0, p1, n_terms)``.

    A plain tuple (not a dataclass) because ``torch.compile`` traces this function.

    Raises:
        NotImplementedError: not a ``SurrogateFunctionBase``, in ``spiking=False`` mode,
            or without a kernel formula. The message lists what is supported.
    """
    name = getattr(surrogate_function, "kernel_name", None)
    if name is None or not hasattr(surrogate_function, "kernel_params"):
        raise NotImplementedError(
            "the triton backend needs a sj_core.surrogate.SurrogateFunctionBase, got "
            f"{type(surrogate_function).__name__}; supported: {', '.join(SURROGATE_IDS)}"
        )
    if not getattr(surrogate_function, "spiking", True):
        raise NotImplementedError(
            f"the triton backend emits spikes; {name}(spiking=False) outputs the smooth "
            "primitive, which only the torch backend computes"
        )
    if name not in SURROGATE_IDS:
        raise NotImplementedError(
            f"the triton backend has no kernel formula for surrogate {name}; "
            f"supported: {', '.join(SURROGATE_IDS)}"
        )
    sg_id, names = SURROGATE_IDS[name]
    params = surrogate_function.kernel_params()
    values = [float(params[p]) for p in names] + [0.0, 0.0]
    n_terms = int(params.get("n", 0)) if name == "SquarewaveFourierSeries" else 0
    return sg_id, values[0], values[1], n_terms


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
        g = tl.where(ax * p0 < 1.0, p0, 1.0 / tl.maximum(ax, 1e-38))
    return g
