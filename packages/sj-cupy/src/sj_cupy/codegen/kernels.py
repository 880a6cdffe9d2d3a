"""Writers for the forward and backward kernel of one variant.

Layout of every kernel: one thread per neuron (``i`` in ``[0, N)``), the time loop in the
thread, state in fp32 registers, tensors viewed as ``[T, N]`` (element ``t * N + i``, so
each step's loads and stores are coalesced across a warp).

* forward: writes the spikes and the final state; ``h_seq`` (the pre-reset ``H``, what
  the backward needs), ``v_seq`` and ``w_seq`` only when their pointer is not null.
  Training passes ``h_seq``; inference does not.
* backward: reverse time, SPEC 5 recurrences. ``V[t-1]`` is recomputed from the saved
  ``H[t-1]`` (``v_init`` at ``t = 0``); each ``H`` is loaded once. Every incoming gradient
  pointer may be null (no gradient for that output). PLIF's ``1/tau`` gradient is reduced
  per block in shared memory into ``r_tau_partials[blockIdx.x]``; the host sums those.

The per-neuron body is a ``__host__ __device__`` function ``<kernel>_neuron(i, ...)``
called by the ``__global__`` kernel (see :mod:`.prelude` for why).
"""

from __future__ import annotations

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
    ``"int64"``; launchers pass pointers and int64 as 64-bit integers."""

    name: str
    ctype: str
    kind: str

    def declaration(self) -> str:
        if self.kind == "pointer":
            return f"{self.ctype}__restrict__ {self.name}"
        return f"const {self.ctype} {self.name}"


def _pointer(name: str, storage: str, *, const: bool) -> KernelParam:
    return KernelParam(name, f"{'const ' if const else ''}{storage}* ", "pointer")


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
            ptrs.append(_pointer("r_tau_ptr", "float", const=True))
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
        names += ["grad_h_seq", "h_seq", "v_init"]
        ptrs += [_pointer(name, st, const=True) for name in names]
        if spec.has_r_tau:
            ptrs.append(_pointer("r_tau_ptr", "float", const=True))
        ptrs.append(_pointer("grad_x_seq", st, const=False))
        ptrs.append(_pointer("grad_v_init", st, const=False))
        if spec.has_w:
            ptrs.append(_pointer("grad_w_init", st, const=False))
        if spec.has_r_tau:
            ptrs.append(_pointer("r_tau_partials", "float", const=False))
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


def _neuron_params(variant: KernelVariant) -> tuple[KernelParam, ...]:
    index = KernelParam("i", "long long", "int64")
    return (index, *(p for p in kernel_params(variant) if p.name != "r_tau_partials"))


def _reset_expression(variant: KernelVariant, h: str, fired: str) -> str:
    if variant.soft_reset:
        return f"sj_reset_soft({h}, {fired}, v_threshold)"
    return f"sj_reset_hard({h}, {fired}, v_reset)"


def _gen_forward_body(w: CodeWriter, variant: KernelVariant, spec: NeuronKernelSpec) -> None:
    dt: DtypeSpec = DTYPES[variant.dtype]
    w.line(f"float v = {dt.load}(v_init + i);")
    if spec.has_w:
        w.line(f"float w = {dt.load}(w_init + i);")
    if spec.has_r_tau:
        w.line("const float r_tau = *r_tau_ptr;")
    with w.block("for (long long t = 0; t < T; ++t) {"):
        w.line("const long long k = t * N + i;")
        w.line(f"const float x = {dt.load}(x_seq + k);")
        w.line(f"const float h = {spec.charge[variant.decay_input]};")
        w.line("const bool fired = sj_fires(h, v_threshold);")
        w.line(f"{dt.store}(spike_seq + k, fired ? 1.0f : 0.0f);")
        w.line(f"if (h_seq != nullptr) {dt.store_h}(h_seq + k, h, v_threshold);")
        if spec.has_w:
            w.line(f"w = {spec.adaptation.adapt};")
        w.line(f"v = {_reset_expression(variant, 'h', 'fired')};")
        if spec.has_w:
            w.line(f"if (fired) w = {spec.adaptation.jump};")
        w.line(f"if (v_seq != nullptr) {dt.store}(v_seq + k, v);")
        if spec.has_w:
            w.line(f"if (w_seq != nullptr) {dt.store}(w_seq + k, w);")
    w.line(f"{dt.store}(v_last + i, v);")
    if spec.has_w:
        w.line(f"{dt.store}(w_last + i, w);")


def _reset_gradient(variant: KernelVariant) -> str:
    """``dL/dH`` from ``g_s = dL/dS`` and ``g_v = dL/dV[t]`` (SPEC 5)."""
    if variant.soft_reset:
        if variant.detach_reset:
            return "g_s * sg + g_v"
        return "g_s * sg + g_v * (1.0f - v_threshold * sg)"
    if variant.detach_reset:
        return "g_s * sg + g_v * (1.0f - s)"
    return "g_s * sg + g_v * (1.0f - s) + g_v * (v_reset - h) * sg"


def _gen_backward_body(w: CodeWriter, variant: KernelVariant, spec: NeuronKernelSpec) -> None:
    dt: DtypeSpec = DTYPES[variant.dtype]
    adaptation = spec.adaptation
    sg_args = ", ".join(
        ["h - v_threshold"]
        + [SURROGATE_PARAM_PREFIX + name for name in SURROGATES[variant.surrogate].params]
    )
    w.line(f"float g_v = grad_v_last != nullptr ? {dt.load}(grad_v_last + i) : 0.0f;")
    if spec.has_w:
        w.line(f"float g_w = grad_w_last != nullptr ? {dt.load}(grad_w_last + i) : 0.0f;")
    if spec.has_r_tau:
        w.line("const float r_tau = *r_tau_ptr;")
        w.line("float r_tau_grad = 0.0f;")
    if spec.needs_v_prev:
        w.line(f"const float v_first = {dt.load}(v_init + i);")
    w.line(f"float h = T > 0 ? {dt.load}(h_seq + (T - 1) * N + i) : 0.0f;")
    with w.block("for (long long t = T - 1; t >= 0; --t) {"):
        w.line("const long long k = t * N + i;")
        w.line("// H[t-1]: the next iteration's H, and where V[t-1] comes from")
        w.line(f"const float h_prev = t > 0 ? {dt.load}(h_seq + k - N) : 0.0f;")
        if spec.needs_v_prev:
            reset = _reset_expression(variant, "h_prev", "sj_fires(h_prev, v_threshold)")
            w.line(f"const float v = t > 0 ? {reset} : v_first;")
        w.line(f"if (grad_v_seq != nullptr) g_v = g_v + {dt.load}(grad_v_seq + k);")
        if spec.has_w:
            w.line(f"if (grad_w_seq != nullptr) g_w = g_w + {dt.load}(grad_w_seq + k);")
        if not variant.soft_reset:
            w.line("const float s = sj_fires(h, v_threshold) ? 1.0f : 0.0f;")
        w.line(f"const float sg = {surrogate_function_name(variant.surrogate)}({sg_args});")
        w.line(f"float g_s = grad_spike_seq != nullptr ? {dt.load}(grad_spike_seq + k) : 0.0f;")
        if spec.has_w:
            w.line(f"g_s = g_s + ({adaptation.dw_ds}) * g_w;  // W = W' + b S, S not detached")
        w.line(f"float g_h = {_reset_gradient(variant)};")
        if spec.has_w:
            w.line(f"g_h = g_h + g_w * ({adaptation.dw_dh});")
        w.line(f"if (grad_h_seq != nullptr) g_h = g_h + {dt.load}(grad_h_seq + k);")
        w.line(f"{dt.store}(grad_x_seq + k, {spec.grad_x[variant.decay_input]});")
        if spec.has_r_tau:
            w.line(f"r_tau_grad = r_tau_grad + {spec.grad_r_tau[variant.decay_input]};")
        if spec.has_w:
            w.line(f"g_w = g_w * ({adaptation.dw_dw}) + g_h * ({adaptation.dh_dw});")
        w.line(f"g_v = {spec.grad_v};")
        w.line("h = h_prev;")
    w.line(f"{dt.store}(grad_v_init + i, g_v);")
    if spec.has_w:
        w.line(f"{dt.store}(grad_w_init + i, g_w);")
    if spec.has_r_tau:
        w.line("return r_tau_grad;")


def _gen_global(w: CodeWriter, variant: KernelVariant, returns_partial: bool) -> None:
    name = variant.kernel_name
    call_args = ", ".join(p.name for p in _neuron_params(variant))
    w.line("#ifndef SJ_CUPY_HOST_TEST")
    _signature(
        w,
        f'extern "C" __global__ void __launch_bounds__(SJ_CUPY_BLOCK) {name}',
        kernel_params(variant),
    )
    with w.block("{"):
        w.line("const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;")
        if not returns_partial:
            w.line(f"if (i < N) {name}_neuron({call_args});")
        else:
            w.line("// Sum this block's d/d(1/tau) terms; out-of-range threads add 0.")
            w.line("float r_tau_grad = 0.0f;")
            w.line(f"if (i < N) r_tau_grad = {name}_neuron({call_args});")
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
    """The neuron function and the ``__global__`` kernel of ``variant``."""
    spec = NEURONS[variant.neuron]
    name = variant.kernel_name
    backward = variant.direction == "backward"
    returns_partial = backward and spec.has_r_tau
    w.line(f"// {variant.describe()}")
    _signature(
        w,
        f"SJ_INLINE {'float' if returns_partial else 'void'} {name}_neuron",
        _neuron_params(variant),
    )
    with w.block("{"):
        if backward:
            _gen_backward_body(w, variant, spec)
        else:
            _gen_forward_body(w, variant, spec)
    _gen_global(w, variant, returns_partial)
