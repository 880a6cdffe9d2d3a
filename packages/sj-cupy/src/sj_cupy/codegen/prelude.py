"""The storage dtypes and the shared CUDA prelude every generated kernel starts with.

Kernels keep their state and do their arithmetic in fp32 registers; tensors are read and
written in the input's dtype through the ``sj_load_*`` / ``sj_store_*`` helpers below.
fp16 and bf16 are handled as raw 16-bit patterns (``unsigned short``): fp16 with PTX
``cvt`` instructions, bf16 with bit manipulation. No CUDA header is included, so NVRTC
compiles the source wherever CuPy's NVRTC works.

The per-neuron functions are ``__host__ __device__`` and the ``#else`` branches below
are plain C++, so the test suite can compile the very same source with a host C++
compiler and run it on the CPU (define ``SJ_CUPY_HOST_TEST`` to leave out the
``__global__`` kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BLOCK", "DTYPES", "DtypeSpec", "PRELUDE"]

#: Threads per block of every kernel (also the size of the PLIF reduction buffer).
BLOCK = 256


@dataclass(frozen=True)
class DtypeSpec:
    """How tensors of one torch dtype are stored and converted in the kernels."""

    name: str  # torch dtype name: "float32"
    suffix: str  # in helper and kernel names: "f32"
    storage: str  # C type of one element
    itemsize: int

    @property
    def load(self) -> str:
        return f"sj_load_{self.suffix}"

    @property
    def store(self) -> str:
        return f"sj_store_{self.suffix}"

    @property
    def store_h(self) -> str:
        return f"sj_store_h_{self.suffix}"


DTYPES: dict[str, DtypeSpec] = {
    "float32": DtypeSpec("float32", "f32", "float", 4),
    "float16": DtypeSpec("float16", "f16", "unsigned short", 2),
    "bfloat16": DtypeSpec("bfloat16", "bf16", "unsigned short", 2),
}

PRELUDE = f"""
#ifndef SJ_CUPY_PRELUDE
#define SJ_CUPY_PRELUDE

#define SJ_CUPY_BLOCK {BLOCK}
#define SJ_INLINE __host__ __device__ __forceinline__

// -- bit casts ------------------------------------------------------------------------
SJ_INLINE float sj_uint_as_float(const unsigned int u)
{{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    union {{ unsigned int u; float f; }} pun;
    pun.u = u;
    return pun.f;
#endif
}}

SJ_INLINE unsigned int sj_float_as_uint(const float f)
{{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    union {{ float f; unsigned int u; }} pun;
    pun.f = f;
    return pun.u;
#endif
}}

// -- fp16 <-> fp32 (round to nearest even) ----------------------------------------------
SJ_INLINE float sj_f16_to_float(const unsigned short b)
{{
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
    return f;
#else
    const unsigned int sign = ((unsigned int)b & 0x8000u) << 16;
    const unsigned int exponent = ((unsigned int)b >> 10) & 0x1fu;
    const unsigned int mantissa = (unsigned int)b & 0x3ffu;
    if (exponent == 0u) {{  // zero or subnormal: mantissa * 2^-24, exact in fp32
        const float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }}
    if (exponent == 31u) return sj_uint_as_float(sign | 0x7f800000u | (mantissa << 13));
    return sj_uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
#endif
}}

SJ_INLINE unsigned short sj_float_to_f16(const float f)
{{
#ifdef __CUDA_ARCH__
    unsigned short b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(f));
    return b;
#else
    const unsigned int u = sj_float_as_uint(f);
    const unsigned int sign = (u >> 16) & 0x8000u;
    const unsigned int magnitude = u & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);  // NaN
    if (magnitude >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // -> infinity
    if (magnitude < 0x38800000u) {{  // below 2^-14: a subnormal half, in units of 2^-24
        const float units = sj_uint_as_float(magnitude) * 16777216.0f;
        return (unsigned short)(sign | (unsigned int)rintf(units));
    }}
    const unsigned int rebiased = magnitude - 0x38000000u;
    return (unsigned short)(sign | ((rebiased + 0x0fffu + ((rebiased >> 13) & 1u)) >> 13));
#endif
}}

// -- bf16 <-> fp32 (round to nearest even) ----------------------------------------------
SJ_INLINE float sj_bf16_to_float(const unsigned short b)
{{
    return sj_uint_as_float((unsigned int)b << 16);
}}

SJ_INLINE unsigned short sj_float_to_bf16(const float f)
{{
    const unsigned int u = sj_float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);  // NaN
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}}

// -- loads and stores in the tensor dtype -------------------------------------------------
SJ_INLINE float sj_load_f32(const float* p) {{ return *p; }}
SJ_INLINE void sj_store_f32(float* p, const float v) {{ *p = v; }}
SJ_INLINE float sj_load_f16(const unsigned short* p) {{ return sj_f16_to_float(*p); }}
SJ_INLINE void sj_store_f16(unsigned short* p, const float v) {{ *p = sj_float_to_f16(v); }}
SJ_INLINE float sj_load_bf16(const unsigned short* p) {{ return sj_bf16_to_float(*p); }}
SJ_INLINE void sj_store_bf16(unsigned short* p, const float v) {{ *p = sj_float_to_bf16(v); }}

// -- firing and reset (shared by the forward and the backward's recomputation) ------------
SJ_INLINE bool sj_fires(const float h, const float v_threshold)
{{
    return (h - v_threshold) >= 0.0f;  // Heaviside(H - V_th): a spike at equality
}}

SJ_INLINE float sj_reset_hard(const float h, const bool fired, const float v_reset)
{{
    return fired ? v_reset : h;
}}

SJ_INLINE float sj_reset_soft(const float h, const bool fired, const float v_threshold)
{{
    return fired ? h - v_threshold : h;
}}

// -- storing H for the backward -------------------------------------------------------------
// The backward re-derives each spike as sj_fires(stored H) and V[t-1] from it. Rounding H
// to 16 bits could move it across the threshold and flip a spike there, so a value that
// rounds onto the wrong side moves back by one unit in the last place: it is then on the
// forward's side and still within one ulp of H. (fp32 H is stored exactly.)
SJ_INLINE unsigned short sj_nudge(const unsigned short b, const bool up)
{{
    if ((b & 0x7fffu) == 0u) return up ? (unsigned short)0x0001u : (unsigned short)0x8001u;
    const bool negative = (b & 0x8000u) != 0u;
    return (negative != up) ? (unsigned short)(b + 1u) : (unsigned short)(b - 1u);
}}

SJ_INLINE void sj_store_h_f32(float* p, const float h, const float v_threshold)
{{
    *p = h;
}}

SJ_INLINE void sj_store_h_f16(unsigned short* p, const float h, const float v_threshold)
{{
    const bool fired = sj_fires(h, v_threshold);
    unsigned short b = sj_float_to_f16(h);
    if (sj_fires(sj_f16_to_float(b), v_threshold) != fired) b = sj_nudge(b, fired);
    *p = b;
}}

SJ_INLINE void sj_store_h_bf16(unsigned short* p, const float h, const float v_threshold)
{{
    const bool fired = sj_fires(h, v_threshold);
    unsigned short b = sj_float_to_bf16(h);
    if (sj_fires(sj_bf16_to_float(b), v_threshold) != fired) b = sj_nudge(b, fired);
    *p = b;
}}

#endif  // SJ_CUPY_PRELUDE
"""
