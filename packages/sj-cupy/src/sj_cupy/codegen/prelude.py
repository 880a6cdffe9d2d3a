"""The storage dtypes and the shared CUDA prelude every generated kernel starts with.

Kernels keep their state and do their arithmetic in fp32 registers; tensors are read and
written in the input's dtype through the helpers below. fp16 and bf16 are handled as raw
16-bit patterns (``unsigned short``): fp16 with PTX ``cvt`` instructions, bf16 with bit
manipulation. No CUDA header is included, so NVRTC compiles the source wherever CuPy's
NVRTC works.

Each thread runs ``n`` neurons (its *lanes*, ``n`` = the variant's ``vec``): the lane
helpers ``sj_load_<dtype>_x<n>`` / ``sj_store_<dtype>_x<n>`` move one step of those
neurons between the tensor and a ``float lane[n]`` array. For ``n = 1`` they are the
scalar accesses; for ``n = VEC`` (:attr:`DtypeSpec.vec`: 4 fp32 or 8 16-bit values) they
are one 16-byte access, which keeps enough bytes in flight per thread to reach the memory
bandwidth. The kernels index lane arrays only inside fully unrolled loops (``SJ_UNROLL``),
so the arrays live in registers.

The per-neuron functions are ``__host__ __device__`` and the ``#else`` branches below
are plain C++, so the test suite can compile the very same source with a host C++
compiler and run it on the CPU (define ``SJ_CUPY_HOST_TEST`` to leave out the
``__global__`` kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

from sj_core.neuron.statements import Sym, reset

from .neurons import CPrinter

__all__ = ["BLOCK", "DTYPES", "DtypeSpec", "PRELUDE", "VECTOR_BYTES"]

#: Threads per block of every kernel (also the size of the PLIF reduction buffer).
BLOCK = 256

#: Bytes of one vector access: vector kernels need pointers aligned to this.
VECTOR_BYTES = 16


@dataclass(frozen=True)
class DtypeSpec:
    """How tensors of one torch dtype are stored and converted in the kernels."""

    name: str  # torch dtype name: "float32"
    suffix: str  # in helper and kernel names: "f32"
    storage: str  # C type of one element
    itemsize: int

    @property
    def vec(self) -> int:
        """Neurons per thread of the vector kernels: one 16-byte access per step."""
        return VECTOR_BYTES // self.itemsize

    def load(self, lanes: int) -> str:
        """``load(p, float lane[lanes])``: ``lanes`` consecutive elements to fp32."""
        return f"sj_load_{self.suffix}_x{lanes}"

    def store(self, lanes: int) -> str:
        """``store(p, const float lane[lanes])``: rounded to the dtype."""
        return f"sj_store_{self.suffix}_x{lanes}"

    def store_h(self, lanes: int) -> str:
        """``store_h(p, const float lane[lanes], v_threshold)``: ``H`` for the backward,
        rounded without crossing the threshold."""
        return f"sj_store_h_{self.suffix}_x{lanes}"


DTYPES: dict[str, DtypeSpec] = {
    "float32": DtypeSpec("float32", "f32", "float", 4),
    "float16": DtypeSpec("float16", "f16", "unsigned short", 2),
    "bfloat16": DtypeSpec("bfloat16", "bf16", "unsigned short", 2),
}


def _reset_functions() -> str:
    """``sj_reset_hard`` and ``sj_reset_soft``, printed from sj-core's ``reset``."""
    h, spike, v_threshold, v_reset = Sym("h"), Sym("s"), Sym("v_threshold"), Sym("v_reset")
    printer = CPrinter()
    parts = []
    for kind, value in (("hard", v_reset), ("soft", None)):
        expression = printer.print(reset(h, spike, v_threshold, value))
        parts.append(
            f"SJ_INLINE float sj_reset_{kind}(const float h, const float s, "
            "const float v_threshold, const float v_reset)\n"
            f"{{\n    return {expression};\n}}\n"
        )
    return "// (printed from sj_core.neuron.statements.reset)\n" + "\n".join(parts)


_RESETS = _reset_functions()

_SCALAR_HELPERS = f"""
#define SJ_CUPY_BLOCK {BLOCK}
#define SJ_INLINE __host__ __device__ __forceinline__

// Fully unrolls a loop over the lanes, so that lane arrays are indexed with constants
// and stay in registers.
#ifdef __CUDA_ARCH__
#define SJ_UNROLL _Pragma("unroll")
#else
#define SJ_UNROLL
#endif

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

// -- one element in the tensor dtype ------------------------------------------------------
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

{_RESETS}
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

SJ_INLINE unsigned short sj_h_bits_f16(const float h, const float v_threshold)
{{
    const bool fired = sj_fires(h, v_threshold);
    const unsigned short b = sj_float_to_f16(h);
    return sj_fires(sj_f16_to_float(b), v_threshold) != fired ? sj_nudge(b, fired) : b;
}}

SJ_INLINE unsigned short sj_h_bits_bf16(const float h, const float v_threshold)
{{
    const bool fired = sj_fires(h, v_threshold);
    const unsigned short b = sj_float_to_bf16(h);
    return sj_fires(sj_bf16_to_float(b), v_threshold) != fired ? sj_nudge(b, fired) : b;
}}

SJ_INLINE void sj_store_h_f32(float* p, const float h, const float v_threshold) {{ *p = h; }}

SJ_INLINE void sj_store_h_f16(unsigned short* p, const float h, const float v_threshold)
{{
    *p = sj_h_bits_f16(h, v_threshold);
}}

SJ_INLINE void sj_store_h_bf16(unsigned short* p, const float h, const float v_threshold)
{{
    *p = sj_h_bits_bf16(h, v_threshold);
}}

// -- 16-byte accesses -----------------------------------------------------------------------
// One step of a vector thread's neurons: 4 fp32 or 8 16-bit elements, moved with one
// 16-byte load or store (the host launches vector kernels only with 16-byte aligned
// pointers and N a multiple of the lane count). The package's own types rather than CUDA's
// float4/uint4: NVRTC then needs no header, and the host build gets the same layout.
struct alignas({VECTOR_BYTES}) sj_f32x4 {{ float x, y, z, w; }};
struct alignas({VECTOR_BYTES}) sj_u32x4 {{ unsigned int x, y, z, w; }};  // 8 x 16 bits

SJ_INLINE sj_f32x4 sj_load_16b_f32x4(const float* p)
{{
#ifdef __CUDA_ARCH__
    return *reinterpret_cast<const sj_f32x4*>(p);
#else
    sj_f32x4 q;
    __builtin_memcpy(&q, p, sizeof q);  // host: no alignment or aliasing assumptions
    return q;
#endif
}}

SJ_INLINE void sj_store_16b_f32x4(float* p, const sj_f32x4 q)
{{
#ifdef __CUDA_ARCH__
    *reinterpret_cast<sj_f32x4*>(p) = q;
#else
    __builtin_memcpy(p, &q, sizeof q);
#endif
}}

SJ_INLINE sj_u32x4 sj_load_16b_u32x4(const unsigned short* p)
{{
#ifdef __CUDA_ARCH__
    return *reinterpret_cast<const sj_u32x4*>(p);
#else
    sj_u32x4 q;
    __builtin_memcpy(&q, p, sizeof q);
    return q;
#endif
}}

SJ_INLINE void sj_store_16b_u32x4(unsigned short* p, const sj_u32x4 q)
{{
#ifdef __CUDA_ARCH__
    *reinterpret_cast<sj_u32x4*>(p) = q;
#else
    __builtin_memcpy(p, &q, sizeof q);
#endif
}}

// Element 2j of a 16-bit vector is the low half of 32-bit word j (little-endian, as on
// the GPU and on the hosts the tests run on).
SJ_INLINE unsigned short sj_low_u16(const unsigned int word)
{{
    return (unsigned short)(word & 0xffffu);
}}

SJ_INLINE unsigned short sj_high_u16(const unsigned int word)
{{
    return (unsigned short)(word >> 16);
}}

SJ_INLINE unsigned int sj_pack_u16x2(const unsigned short low, const unsigned short high)
{{
    return (unsigned int)low | ((unsigned int)high << 16);
}}
"""

_WORDS = ("x", "y", "z", "w")


def _zero_helper(lanes: int) -> str:
    return (
        f"SJ_INLINE void sj_zero_x{lanes}(float lane[{lanes}])\n"
        "{\n"
        f"    SJ_UNROLL for (int j = 0; j < {lanes}; ++j) lane[j] = 0.0f;\n"
        "}\n"
    )


def _scalar_lane_helpers(spec: DtypeSpec) -> str:
    """The ``x1`` lane helpers: the one-element accesses."""
    st, sfx = spec.storage, spec.suffix
    return f"""
SJ_INLINE void {spec.load(1)}(const {st}* p, float lane[1]) {{ lane[0] = sj_load_{sfx}(p); }}
SJ_INLINE void {spec.store(1)}({st}* p, const float lane[1]) {{ sj_store_{sfx}(p, lane[0]); }}
SJ_INLINE void {spec.store_h(1)}({st}* p, const float lane[1], const float v_threshold)
{{
    sj_store_h_{sfx}(p, lane[0], v_threshold);
}}
"""


def _f32_vector_helpers(spec: DtypeSpec) -> str:
    n = spec.vec
    unpack = " ".join(f"lane[{j}] = q.{c};" for j, c in enumerate(_WORDS))
    pack = " ".join(f"q.{c} = lane[{j}];" for j, c in enumerate(_WORDS))
    return f"""
SJ_INLINE void {spec.load(n)}(const float* p, float lane[{n}])
{{
    const sj_f32x4 q = sj_load_16b_f32x4(p);
    {unpack}
}}

SJ_INLINE void {spec.store(n)}(float* p, const float lane[{n}])
{{
    sj_f32x4 q;
    {pack}
    sj_store_16b_f32x4(p, q);
}}

SJ_INLINE void {spec.store_h(n)}(float* p, const float lane[{n}], const float v_threshold)
{{
    {spec.store(n)}(p, lane);  // fp32 H is stored exactly
}}
"""


def _16bit_vector_helpers(spec: DtypeSpec) -> str:
    n, sfx = spec.vec, spec.suffix
    to_float = f"sj_{sfx}_to_float"
    unpack, pack, pack_h = [], [], []
    for j, c in enumerate(_WORDS):
        low, high = 2 * j, 2 * j + 1
        unpack.append(f"    lane[{low}] = {to_float}(sj_low_u16(q.{c}));")
        unpack.append(f"    lane[{high}] = {to_float}(sj_high_u16(q.{c}));")
        pack.append(
            f"    q.{c} = sj_pack_u16x2(sj_float_to_{sfx}(lane[{low}]), "
            f"sj_float_to_{sfx}(lane[{high}]));"
        )
        pack_h.append(
            f"    q.{c} = sj_pack_u16x2(sj_h_bits_{sfx}(lane[{low}], v_threshold),\n"
            f"{' ' * 23}sj_h_bits_{sfx}(lane[{high}], v_threshold));"
        )
    nl = "\n"
    return f"""
SJ_INLINE void {spec.load(n)}(const unsigned short* p, float lane[{n}])
{{
    const sj_u32x4 q = sj_load_16b_u32x4(p);
{nl.join(unpack)}
}}

SJ_INLINE void {spec.store(n)}(unsigned short* p, const float lane[{n}])
{{
    sj_u32x4 q;
{nl.join(pack)}
    sj_store_16b_u32x4(p, q);
}}

SJ_INLINE void {spec.store_h(n)}(unsigned short* p, const float lane[{n}], const float v_threshold)
{{
    sj_u32x4 q;
{nl.join(pack_h)}
    sj_store_16b_u32x4(p, q);
}}
"""


def _lane_helpers() -> str:
    parts = ["// -- one step of a thread's lanes: float lane[n] <-> n consecutive elements -------"]
    for lanes in sorted({1} | {spec.vec for spec in DTYPES.values()}):
        parts.append(_zero_helper(lanes))
    for spec in DTYPES.values():
        parts.append(_scalar_lane_helpers(spec))
        if spec.itemsize == 4:
            parts.append(_f32_vector_helpers(spec))
        else:
            parts.append(_16bit_vector_helpers(spec))
    return "\n" + "\n".join(part.strip("\n") + "\n" for part in parts)


PRELUDE = (
    "#ifndef SJ_CUPY_PRELUDE\n#define SJ_CUPY_PRELUDE\n"
    + _SCALAR_HELPERS
    + _lane_helpers()
    + "\n#endif  // SJ_CUPY_PRELUDE\n"
)
