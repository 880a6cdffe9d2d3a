"""Triton helper functions that generated cores call for ops Triton's core library lacks.

Each helper is emitted into a generated module only when the core uses it. Some have two
flavors: on the GPU they call libdevice (accurate to an ulp or two, like torch's CUDA
math), while Triton's CPU interpreter cannot run libdevice, so there they are composed
from ``tl`` primitives evaluated in fp64 (the interpreter computes with NumPy, so fp64 is
as cheap as fp32 there) and rounded to fp32. Helpers without a libdevice flavor are exact
compositions used everywhere.
"""

from __future__ import annotations

import textwrap

__all__ = ["HELPERS", "helper_source", "helpers_need_libdevice"]

# name -> (source on the GPU, source under the interpreter or None if the same)
HELPERS: dict[str, tuple[str, str | None]] = {
    "_sj_round": (
        """
        @triton.jit
        def _sj_round(x):
            # Round half to even, like torch.round; exact (x - floor(x) is exact).
            f = tl.floor(x)
            d = x - f
            f_is_odd = (f - 2.0 * tl.floor(0.5 * f)) != 0.0
            return tl.where((d > 0.5) | ((d == 0.5) & f_is_odd), f + 1.0, f)
        """,
        None,
    ),
    "_sj_trunc": (
        """
        @triton.jit
        def _sj_trunc(x):
            return tl.where(x < 0.0, tl.ceil(x), tl.floor(x))
        """,
        None,
    ),
    "_sj_tanh": (
        """
        @triton.jit
        def _sj_tanh(x):
            return libdevice.tanh(x)
        """,
        """
        @triton.jit
        def _sj_tanh(x):
            # (1 - e^-2|x|) / (1 + e^-2|x|) in fp64: the cancellation near 0 stays far
            # below fp32's resolution.
            a = tl.abs(x).to(tl.float64)
            e = tl.exp(-2.0 * a)
            r = ((1.0 - e) / (1.0 + e)).to(tl.float32)
            return tl.where(x < 0.0, -r, r)
        """,
    ),
    "_sj_atan": (
        """
        @triton.jit
        def _sj_atan(x):
            return libdevice.atan(x)
        """,
        """
        @triton.jit
        def _sj_atan(x):
            # In fp64: atan(|x|) = pi/2 - atan(1/|x|) above 1, pi/4 + atan((a-1)/(a+1))
            # above tan(pi/8), then a Taylor polynomial on |y| <= tan(pi/8) (error < 2e-8).
            a = tl.abs(x).to(tl.float64)
            big = a > 1.0
            a = tl.where(big, 1.0 / a, a)
            mid = a > 0.41421356237309503
            y = tl.where(mid, (a - 1.0) / (a + 1.0), a)
            y2 = y * y
            p = -1.0 / 15.0
            p = 1.0 / 13.0 + y2 * p
            p = -1.0 / 11.0 + y2 * p
            p = 1.0 / 9.0 + y2 * p
            p = -1.0 / 7.0 + y2 * p
            p = 1.0 / 5.0 + y2 * p
            p = -1.0 / 3.0 + y2 * p
            r = y + y * y2 * p
            r = tl.where(mid, 0.7853981633974483 + r, r)
            r = tl.where(big, 1.5707963267948966 - r, r).to(tl.float32)
            return tl.where(x < 0.0, -r, r)
        """,
    ),
    "_sj_pow": (
        """
        @triton.jit
        def _sj_pow(x, y):
            return libdevice.pow(x, y)
        """,
        """
        @triton.jit
        def _sj_pow(x, y):
            # |x|^y = 2^(y log2|x|) in fp64; the sign for odd integer y; NaN for x < 0 and
            # fractional y; x^0 = 1 (also for NaN x), as in C pow. Broadcast first: the
            # interpreter cannot mix a scalar bool with a block in & and |.
            x, y = tl.broadcast(x, y)
            r = tl.exp2(y.to(tl.float64) * tl.log2(tl.abs(x).to(tl.float64))).to(tl.float32)
            y_int = y == tl.floor(y)
            y_odd = y_int & ((y - 2.0 * tl.floor(0.5 * y)) != 0.0)
            r = tl.where((x < 0.0) & y_odd, -r, r)
            r = tl.where((x < 0.0) & (y_int == 0), float("nan"), r)
            return tl.where(y == 0.0, 1.0, r)
        """,
    ),
    "_sj_fmod": (
        """
        @triton.jit
        def _sj_fmod(x, y):
            return libdevice.fmod(x, y)
        """,
        """
        @triton.jit
        def _sj_fmod(x, y):
            # x - trunc(x / y) y in fp64, where the product of two fp32 values is exact,
            # so the result is the exact remainder, as in C fmod.
            xd = x.to(tl.float64)
            yd = y.to(tl.float64)
            q = xd / yd
            q = tl.where(q < 0.0, tl.ceil(q), tl.floor(q))
            return (xd - q * yd).to(tl.float32)
        """,
    ),
    "_sj_expm1": (
        """
        @triton.jit
        def _sj_expm1(x):
            return libdevice.expm1(x)
        """,
        """
        @triton.jit
        def _sj_expm1(x):
            # In fp64 the cancellation of e^x - 1 near 0 stays below fp32's resolution;
            # tiny |x| returns x itself.
            r = (tl.exp(x.to(tl.float64)) - 1.0).to(tl.float32)
            return tl.where(tl.abs(x) < 1e-10, x, r)
        """,
    ),
    "_sj_log1p": (
        """
        @triton.jit
        def _sj_log1p(x):
            return libdevice.log1p(x)
        """,
        """
        @triton.jit
        def _sj_log1p(x):
            # 1 + x is exact in fp64 for |x| >= 2**-29; smaller |x| returns x itself.
            r = tl.log(1.0 + x.to(tl.float64)).to(tl.float32)
            return tl.where(tl.abs(x) < 1e-10, x, r)
        """,
    ),
}


def helper_source(name: str, interpreter: bool) -> str:
    """Source of helper ``name`` for the GPU or for Triton's interpreter."""
    gpu, interp = HELPERS[name]
    source = interp if (interpreter and interp is not None) else gpu
    return textwrap.dedent(source).strip() + "\n"


def helpers_need_libdevice(names: set[str], interpreter: bool) -> bool:
    """Whether the chosen flavors of ``names`` call libdevice."""
    return any("libdevice." in helper_source(name, interpreter) for name in names)
