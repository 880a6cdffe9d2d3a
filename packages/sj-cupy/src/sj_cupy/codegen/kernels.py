"""Writers for the forward and backward kernel of one variant.

Layout of every kernel: each thread owns ``n = variant.vec`` consecutive neurons (its
*lanes*, ``i .. i + n - 1``, ``i = thread * n``) and runs the whole time loop for them,
state in fp32 registers, tensors viewed as ``[T, N]`` (element ``t * N + i``, so each
step's accesses are coalesced across a warp). A step loads each input once for all lanes
(one 16-byte access when ``n > 1``), runs the per-neuron equations of :mod:`.neurons` for
each lane in a fully unrolled loop, then stores each output once for all lanes. With
``n = 1`` the same template is the plain one-neuron-per-thread kernel.

* forward: writes the spikes and the final state; ``h_seq`` (the pre-reset ``H``, what
  the backward needs), ``v_seq`` and ``w_seq`` only when their pointer is not null.
  Training passes ``h_seq``; inference does not.
* backward: reverse time, SPEC 5 recurrences. ``V[t-1]`` is recomputed from the saved
  ``H[t-1]`` (``v_init`` at ``t = 0``); each ``H`` is loaded once. Every incoming gradient
  pointer may be null (no gradient for that output). PLIF's ``1/tau`` gradient is summed
  over a thread's lanes and steps, then reduced per block in shared memory into
  ``r_tau_partials[blockIdx.x]``; the host sums those.

The per-thread body is a ``__host__ __device__`` function ``<kernel>_thread(i, ...)``
called by the ``__global__`` kernel (see :mod:`.prelude` for why).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

from .neurons import NEURONS, NeuronKernelSpec
from .prelude import DTYPES, DtypeSpec
from .surrogates import SURROGATES, surrogate_function_name
from .variant import KernelVariant
from .writer import CodeWriter

__all__ = ["KernelParam", "kernel_params", "gen_kernel", "gen_surrogate_function"]

#: Prefix of surrogate parameters in kernel signatures (``alpha`` -> ``sg_alpha``), so
#: they never clash with neuron names (Izhikevich's ``w``, the index ``k``...).
SURROGATE_PARAM_PREFIX = "sg_"


@dataclass(frozen=True)
class KernelParam:
    """One kernel argument. ``kind`` is ``"pointer"``, ``"float"``, ``"double"`` or
    ``"int64"``; launchers pass pointers and int64 as 64-bit integers. ``per_neuron``
    marks the tensors read or written ``vec`` neurons at a time (those a vector kernel
    needs 16-byte aligned)."""

    name: str
    ctype: str
    kind: str
    per_neuron: bool = False

    def declaration(self) -> str:
        if self.kind == "pointer":
            return f"{self.ctype}__restrict__ {self.name}"
        return f"const {self.ctype} {self.name}"


def _pointer(name: str, storage: str, *, const: bool, per_neuron: bool = True) -> KernelParam:
    ctype = f"{'const ' if const else ''}{storage}* "
    return KernelParam(name, ctype, "pointer", per_neuron=per_neuron)


def kernel_params(variant: KernelVariant) -> tuple[KernelParam, ...]:
    """The kernel's arguments, in order: pointers, fp32 scalars (``v_threshold``,
    ``v_reset``, the neuron's scalars), fp64 surrogate parameters (backward), ``T``, ``N``.

    Every launcher builds its argument list from this, so the order lives in one place.
    """
    spec = NEURONS[variant.neuron]
    st = DTYPES[variant.dtype].storage
    ptrs: list[KernelParam] = []
    if variant.direction == "forward":
        ptrs.append(_pointer("x_seq", st, const=True))
        ptrs.append(_pointer("v_init", st, const=True))
        if spec.has_w:
            ptrs.append(_pointer("w_init", st, const=True))
        if spec.has_r_tau:
            ptrs.append(_pointer("r_tau_ptr", "float", const=True, per_neuron=False))
        for name in ("spike_seq", "v_last"):
            ptrs.append(_pointer(name, st, const=False))
        if spec.has_w:
            ptrs.append(_pointer("w_last", st, const=False))
        for name in ("h_seq", "v_seq"):
            ptrs.append(_pointer(name, st, const=False))
        if spec.has_w:
            ptrs.append(_pointer("w_seq", st, const=False))
    else:
        names = ["grad_spike_seq", "grad_v_last"]
        names += ["grad_w_last"] if spec.has_w else []
        names += ["grad_v_seq"]
        names += ["grad_w_seq"] if spec.has_w else []
        names += ["h_seq", "v_init"]
        names += ["x_seq"] if spec.equations(variant.decay_input).needs_x else []
        ptrs += [_pointer(name, st, const=True) for name in names]
        if spec.has_r_tau:
            ptrs.append(_pointer("r_tau_ptr", "float", const=True, per_neuron=False))
        ptrs.append(_pointer("grad_x_seq", st, const=False))
        ptrs.append(_pointer("grad_v_init", st, const=False))
        if spec.has_w:
            ptrs.append(_pointer("grad_w_init", st, const=False))
        if spec.has_r_tau:
            ptrs.append(_pointer("r_tau_partials", "float", const=False, per_neuron=False))
    scalars = [KernelParam(name, "float", "float") for name in ("v_threshold", "v_reset")]
    scalars += [KernelParam(name, "float", "float") for name in spec.scalars]
    if variant.direction == "backward":
        scalars += [
            KernelParam(SURROGATE_PARAM_PREFIX + name, "double", "double")
            for name in SURROGATES[variant.surrogate].params
        ]
    sizes = [KernelParam("T", "long long", "int64"), KernelParam("N", "long long", "int64")]
    return (*ptrs, *scalars, *sizes)


def gen_surrogate_function(w: CodeWriter, name: str) -> None:
    """The device function ``sj_surrogate_grad_<name>(x, params...)`` (guarded, so a
    module may contain it once however many kernels use it)."""
    spec = SURROGATES[name]
    guard = f"SJ_CUPY_SURROGATE_{name.upper()}"
    args = ", ".join(["const float x"] + [f"const double {p}" for p in spec.params])
    w.line(f"#ifndef {guard}")
    w.line(f"#define {guard}")
    w.line(f"// {name}: {spec.formula}")
    w.line(f"SJ_INLINE float {surrogate_function_name(name)}({args})")
    with w.block("{"):
        w.lines(spec.body)
    w.line(f"#endif  // {guard}")


def _signature(w: CodeWriter, head: str, params: tuple[KernelParam, ...]) -> None:
    w.line(f"{head}(")
    with w.indent():
        for index, param in enumerate(params):
            w.line(param.declaration() + ("," if index < len(params) - 1 else ")"))


def _thread_params(variant: KernelVariant) -> tuple[KernelParam, ...]:
    index = KernelParam("i", "long long", "int64")  # the thread's first neuron
    return (index, *(p for p in kernel_params(variant) if p.name != "r_tau_partials"))


def _reset_expression(variant: KernelVariant, h: str, s: str) -> str:
    """``V`` after firing, from the prelude's reset functions (printed from sj-core)."""
    kind = "soft" if variant.soft_reset else "hard"
    return f"sj_reset_{kind}({h}, {s}, v_threshold, v_reset)"


def _lane_loop(w: CodeWriter, variant: KernelVariant) -> AbstractContextManager[None]:
    """The fully unrolled loop over a thread's lanes (the per-neuron equations go inside)."""
    return w.block(f"SJ_UNROLL for (int lane = 0; lane < {variant.vec}; ++lane) {{")


def _load_or_zero(
    w: CodeWriter, variant: KernelVariant, condition: str, address: str, lanes: str
) -> None:
    """``lanes`` from ``address`` when ``condition`` holds (a non-null pointer), else zeros."""
    load = DTYPES[variant.dtype].load(variant.vec)
    w.line(f"if ({condition}) {load}({address}, {lanes}); else sj_zero_x{variant.vec}({lanes});")


def _gen_forward_body(w: CodeWriter, variant: KernelVariant, spec: NeuronKernelSpec) -> None:
    dt: DtypeSpec = DTYPES[variant.dtype]
    eq = spec.equations(variant.decay_input)
    n = variant.vec
    load, store = dt.load(n), dt.store(n)
    w.line(f"float v_lane[{n}];")
    w.line(f"{load}(v_init + i, v_lane);")
    if spec.has_w:
        w.line(f"float w_lane[{n}];")
        w.line(f"{load}(w_init + i, w_lane);")
    if spec.has_r_tau:
        w.line("const float r_tau = *r_tau_ptr;")
    with w.block("for (long long t = 0; t < T; ++t) {"):
        w.line("const long long k = t * N + i;")
        w.line(f"float x_lane[{n}], spike_lane[{n}], h_lane[{n}];")
        w.line(f"{load}(x_seq + k, x_lane);")
        with _lane_loop(w, variant):
            w.line("const float x = x_lane[lane];")
            w.line("float v = v_lane[lane];")
            if spec.has_w:
                w.line("float w = w_lane[lane];")
            w.line(f"const float h = {eq.charge};")
            w.line("const float s = sj_fires(h, v_threshold) ? 1.0f : 0.0f;")
            w.line("spike_lane[lane] = s;")
            w.line("h_lane[lane] = h;")
            if spec.has_w:
                w.line(f"w = {eq.adapt};")
            w.line(f"v = {_reset_expression(variant, 'h', 's')};")
            if spec.has_w:
                w.line(f"w = {eq.jump};")
                w.line("w_lane[lane] = w;")
            w.line("v_lane[lane] = v;")
        w.line(f"{store}(spike_seq + k, spike_lane);")
        w.line(f"if (h_seq != nullptr) {dt.store_h(n)}(h_seq + k, h_lane, v_threshold);")
        w.line(f"if (v_seq != nullptr) {store}(v_seq + k, v_lane);")
        if spec.has_w:
            w.line(f"if (w_seq != nullptr) {store}(w_seq + k, w_lane);")
    w.line(f"{store}(v_last + i, v_lane);")
    if spec.has_w:
        w.line(f"{store}(w_last + i, w_lane);")


def _gen_backward_body(w: CodeWriter, variant: KernelVariant, spec: NeuronKernelSpec) -> None:
    """The reverse-time chain rule of :mod:`sj_core.neuron.statements.derive` over the
    printed derivatives."""
    dt: DtypeSpec = DTYPES[variant.dtype]
    eq = spec.equations(variant.decay_input)
    hard = not variant.soft_reset
    n = variant.vec
    load = dt.load(n)
    sg_args = ", ".join(
        ["h - v_threshold"]
        + [SURROGATE_PARAM_PREFIX + name for name in SURROGATES[variant.surrogate].params]
    )
    # Gradients arriving per step: (pointer, lane array); a null pointer reads as zeros.
    incoming = [("grad_spike_seq", "g_s_lane"), ("grad_v_seq", "grad_v_seq_lane")]
    if spec.has_w:
        incoming.append(("grad_w_seq", "grad_w_seq_lane"))

    w.line(f"float g_v_lane[{n}];")
    _load_or_zero(w, variant, "grad_v_last != nullptr", "grad_v_last + i", "g_v_lane")
    if spec.has_w:
        w.line(f"float g_w_lane[{n}];")
        _load_or_zero(w, variant, "grad_w_last != nullptr", "grad_w_last + i", "g_w_lane")
    if spec.has_r_tau:
        w.line("const float r_tau = *r_tau_ptr;")
        w.line("float r_tau_grad = 0.0f;")
    if eq.needs_v_prev:
        w.line(f"float v_first_lane[{n}];")
        w.line(f"{load}(v_init + i, v_first_lane);")
    w.line(f"float h_lane[{n}];")
    _load_or_zero(w, variant, "T > 0", "h_seq + (T - 1) * N + i", "h_lane")
    with w.block("for (long long t = T - 1; t >= 0; --t) {"):
        w.line("const long long k = t * N + i;")
        w.line("// H[t-1]: the next iteration's H, and where V[t-1] comes from")
        w.line(f"float h_prev_lane[{n}], grad_x_lane[{n}];")
        _load_or_zero(w, variant, "t > 0", "h_seq + k - N", "h_prev_lane")
        if eq.needs_x:
            w.line(f"float x_lane[{n}];")
            w.line(f"{load}(x_seq + k, x_lane);")
        for pointer, lanes in incoming:
            w.line(f"float {lanes}[{n}];")
            _load_or_zero(w, variant, f"{pointer} != nullptr", f"{pointer} + k", lanes)
        with _lane_loop(w, variant):
            w.line("const float h = h_lane[lane];")
            w.line("const float h_prev = h_prev_lane[lane];")
            if eq.needs_x:
                w.line("const float x = x_lane[lane];")
            if eq.needs_v_prev:
                w.line("const float s_prev = sj_fires(h_prev, v_threshold) ? 1.0f : 0.0f;")
                reset = _reset_expression(variant, "h_prev", "s_prev")
                w.line(f"const float v = t > 0 ? {reset} : v_first_lane[lane];")
            w.line("float g_v = g_v_lane[lane];")
            w.line("if (grad_v_seq != nullptr) g_v = g_v + grad_v_seq_lane[lane];")
            if spec.has_w:
                w.line("float g_w = g_w_lane[lane];")
                w.line("if (grad_w_seq != nullptr) g_w = g_w + grad_w_seq_lane[lane];")
            w.line("const float s = sj_fires(h, v_threshold) ? 1.0f : 0.0f;")
            w.line(f"const float sg = {surrogate_function_name(variant.surrogate)}({sg_args});")
            w.line("float g_s = g_s_lane[lane];")
            if spec.has_w:
                w.line(f"g_s = g_s + g_w * ({eq.dj_ds});  // the jump's spike is never detached")
                w.line(f"const float g_w_adapted = g_w * ({eq.dj_dw});")
            w.line(f"float g_h = g_s * sg + g_v * ({eq.dreset_dh[hard]});")
            if not variant.detach_reset:
                w.line(f"g_h = g_h + g_v * ({eq.dreset_ds[hard]}) * sg;")
            if spec.has_w:
                w.line(f"g_h = g_h + g_w_adapted * ({eq.da_dh});")
            w.line(f"grad_x_lane[lane] = g_h * ({eq.dh_dx});")
            if spec.has_r_tau:
                w.line(f"r_tau_grad = r_tau_grad + g_h * ({eq.dh_dr});")
            if spec.has_w:
                w.line(f"g_w_lane[lane] = g_w_adapted * ({eq.da_dw}) + g_h * ({eq.dh_dw});")
            w.line(f"g_v_lane[lane] = g_h * ({eq.dh_dv});")
            w.line("h_lane[lane] = h_prev;")
        w.line(f"{dt.store(n)}(grad_x_seq + k, grad_x_lane);")
    w.line(f"{dt.store(n)}(grad_v_init + i, g_v_lane);")
    if spec.has_w:
        w.line(f"{dt.store(n)}(grad_w_init + i, g_w_lane);")
    if spec.has_r_tau:
        w.line("return r_tau_grad;")


def _gen_global(w: CodeWriter, variant: KernelVariant, returns_partial: bool) -> None:
    name = variant.kernel_name
    call_args = ", ".join(p.name for p in _thread_params(variant))
    w.line("#ifndef SJ_CUPY_HOST_TEST")
    _signature(
        w,
        f'extern "C" __global__ void __launch_bounds__(SJ_CUPY_BLOCK) {name}',
        kernel_params(variant),
    )
    with w.block("{"):
        thread = "(long long)blockIdx.x * blockDim.x + threadIdx.x"
        if variant.vec == 1:
            w.line(f"const long long i = {thread};")
        else:
            w.line(
                f"// Neurons i .. i + {variant.vec - 1}: the host checked N % {variant.vec} == 0."
            )
            w.line(f"const long long i = ({thread}) * {variant.vec};")
        if not returns_partial:
            w.line(f"if (i < N) {name}_thread({call_args});")
        else:
            w.line("// Sum this block's d/d(1/tau) terms; out-of-range threads add 0.")
            w.line("float r_tau_grad = 0.0f;")
            w.line(f"if (i < N) r_tau_grad = {name}_thread({call_args});")
            w.line("__shared__ float partial[SJ_CUPY_BLOCK];")
            w.line("partial[threadIdx.x] = r_tau_grad;")
            w.line("__syncthreads();")
            with w.block(
                "for (unsigned int stride = SJ_CUPY_BLOCK / 2; stride > 0; stride >>= 1) {"
            ):
                w.line("if (threadIdx.x < stride) {")
                w.line("    partial[threadIdx.x] += partial[threadIdx.x + stride];")
                w.line("}")
                w.line("__syncthreads();")
            w.line("if (threadIdx.x == 0) r_tau_partials[blockIdx.x] = partial[0];")
    w.line("#endif  // SJ_CUPY_HOST_TEST")


def gen_kernel(w: CodeWriter, variant: KernelVariant) -> None:
    """The per-thread function and the ``__global__`` kernel of ``variant``."""
    spec = NEURONS[variant.neuron]
    name = variant.kernel_name
    backward = variant.direction == "backward"
    returns_partial = backward and spec.has_r_tau
    w.line(f"// {variant.describe()}")
    _signature(
        w,
        f"SJ_INLINE {'float' if returns_partial else 'void'} {name}_thread",
        _thread_params(variant),
    )
    with w.block("{"):
        if backward:
            _gen_backward_body(w, variant, spec)
        else:
            _gen_forward_body(w, variant, spec)
    _gen_global(w, variant, returns_partial)
