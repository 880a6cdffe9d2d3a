"""The kernels as ``torch.library`` operators: ``sj_cupy::multistep_forward`` and
``sj_cupy::multistep_backward``.

One operator pair serves every neuron family: the configuration (neuron, reset mode,
``decay_input``, ``detach_reset``, surrogate) arrives as constant arguments and selects
the generated kernel variant (its vector form when sizes and alignment allow:
:func:`sj_cupy.launch.choose_variant`). Fake implementations give ``torch.compile`` the output
shapes, and the forward's autograd formula calls the backward operator, so a compiled
graph sees no break. (No ``from __future__ import annotations`` here: ``custom_op``
reads the annotations to build the schema.)

Shapes: ``x_seq`` ``[T, *S]``, states ``[*S]``, ``r_tau`` ``[1]`` fp32. Outputs that a
configuration does not produce are empty tensors (``numel() == 0``), never ``None``.
"""

# ``Optional[Tensor]``, not ``Tensor | None``: the schema inference of the oldest torch
# this package supports (2.6) is the conservative target.
# ruff: noqa: UP045

from typing import Optional

import torch

from .codegen import NEURONS, SURROGATES, make_variant
from .codegen.kernels import SURROGATE_PARAM_PREFIX
from .launch import choose_variant, get_launcher, grid_blocks, pack_args

__all__ = [
    "EagerMultistep",
    "backward_impl",
    "forward_impl",
    "multistep_backward",
    "multistep_forward",
]

Tensor = torch.Tensor


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the codegen's dtype keys)."""
    return str(dtype).removeprefix("torch.")


def _require(neuron: str, name: str, tensor: Optional[Tensor], needed: bool) -> None:
    # A missing tensor would reach the kernel as a null pointer.
    if needed and tensor is None:
        raise ValueError(f"sj_cupy: neuron {neuron!r} needs {name}, got None")


def _check_runnable(*tensors: Optional[Tensor]) -> None:
    # The public operators validate everything with clear messages first; this guards the
    # raw op against host pointers reaching a GPU kernel.
    expected = get_launcher().device_type
    for tensor in tensors:
        if tensor is not None and tensor.device.type != expected:
            raise NotImplementedError(
                f"sj_cupy kernels run on {expected} tensors, got one on {tensor.device}"
            )


def _surrogate_values(surrogate: str, surrogate_params: list[float]) -> dict[str, float]:
    names = SURROGATES[surrogate].params
    if len(surrogate_params) != len(names):
        raise ValueError(f"{surrogate}: expected parameters {names}, got {surrogate_params}")
    return {
        SURROGATE_PARAM_PREFIX + n: float(v) for n, v in zip(names, surrogate_params, strict=True)
    }


def _scalar_values(neuron: str, neuron_scalars: list[float]) -> dict[str, float]:
    names = ("v_threshold", "v_reset", *NEURONS[neuron].scalars)
    if len(neuron_scalars) != len(names):
        raise ValueError(f"{neuron}: expected scalars {names}, got {len(neuron_scalars)} values")
    return dict(zip(names, neuron_scalars, strict=True))


# -- forward ------------------------------------------------------------------------------


def forward_impl(
    x_seq: Tensor,
    v_init: Tensor,
    w_init: Optional[Tensor],
    r_tau: Optional[Tensor],
    neuron: str,
    soft_reset: bool,
    decay_input: bool,
    detach_reset: bool,
    surrogate: str,
    neuron_scalars: list[float],
    surrogate_params: list[float],
    store_v_seq: bool,
    store_w_seq: bool,
    save_h_seq: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``T`` steps of a neuron. Returns ``(spike_seq, v_last, w_last, v_seq, w_seq, h_seq)``.

    ``neuron_scalars`` is ``[v_threshold, v_reset (0 for soft reset), *neuron scalars]``
    (see :data:`sj_cupy.codegen.NEURONS`); ``surrogate_params`` follow the surrogate's
    ``kernel_params()`` order (only the backward uses them). ``h_seq`` (the pre-reset
    potentials the backward needs) is written only when ``save_h_seq``.
    """
    _check_runnable(x_seq, v_init, w_init, r_tau)
    _require(neuron, "w_init", w_init, NEURONS[neuron].has_w)
    _require(neuron, "r_tau", r_tau, NEURONS[neuron].has_r_tau)
    x_seq, v_init = x_seq.contiguous(), v_init.contiguous()
    has_w = NEURONS[neuron].has_w
    if has_w:
        w_init = w_init.contiguous()
    T, N = x_seq.shape[0], v_init.numel()
    spike_seq = torch.empty_like(x_seq)
    v_last = torch.empty_like(v_init)
    w_last = torch.empty_like(v_init) if has_w else x_seq.new_empty(0)
    v_seq = torch.empty_like(x_seq) if store_v_seq else x_seq.new_empty(0)
    w_seq = torch.empty_like(x_seq) if store_w_seq and has_w else x_seq.new_empty(0)
    h_seq = torch.empty_like(x_seq) if save_h_seq else x_seq.new_empty(0)
    if N > 0:
        scalar = make_variant(
            neuron,
            "forward",
            soft_reset=soft_reset,
            decay_input=decay_input,
            dtype=dtype_name(x_seq.dtype),
        )
        values = {
            "x_seq": x_seq,
            "v_init": v_init,
            "w_init": w_init,
            "r_tau_ptr": r_tau,
            "spike_seq": spike_seq,
            "v_last": v_last,
            "w_last": w_last if has_w else None,
            "h_seq": h_seq if save_h_seq else None,
            "v_seq": v_seq if store_v_seq else None,
            "w_seq": w_seq if w_seq.numel() else None,
            "T": T,
            "N": N,
            **_scalar_values(neuron, neuron_scalars),
        }
        variant = choose_variant(scalar, values)
        get_launcher().launch(
            variant, pack_args(variant, values), grid_blocks(variant, N), x_seq.device
        )
    return spike_seq, v_last, w_last, v_seq, w_seq, h_seq


multistep_forward = torch.library.custom_op("sj_cupy::multistep_forward", mutates_args=())(
    forward_impl
)


@multistep_forward.register_fake
def _multistep_forward_fake(
    x_seq,
    v_init,
    w_init,
    r_tau,
    neuron,
    soft_reset,
    decay_input,
    detach_reset,
    surrogate,
    neuron_scalars,
    surrogate_params,
    store_v_seq,
    store_w_seq,
    save_h_seq,
):
    has_w = NEURONS[neuron].has_w
    sequence = x_seq.new_empty(x_seq.shape)
    return (
        sequence,
        v_init.new_empty(v_init.shape),
        v_init.new_empty(v_init.shape) if has_w else x_seq.new_empty(0),
        x_seq.new_empty(x_seq.shape) if store_v_seq else x_seq.new_empty(0),
        x_seq.new_empty(x_seq.shape) if store_w_seq and has_w else x_seq.new_empty(0),
        x_seq.new_empty(x_seq.shape) if save_h_seq else x_seq.new_empty(0),
    )


# -- backward -----------------------------------------------------------------------------


def _incoming(grad: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """An incoming gradient as the kernel reads it: ``None`` when absent or empty (an
    unused placeholder output), else contiguous in the kernel's dtype."""
    if grad is None or grad.numel() == 0:
        return None
    return grad.to(dtype).contiguous()


def backward_impl(
    grad_spike_seq: Optional[Tensor],
    grad_v_last: Optional[Tensor],
    grad_w_last: Optional[Tensor],
    grad_v_seq: Optional[Tensor],
    grad_w_seq: Optional[Tensor],
    grad_h_seq: Optional[Tensor],
    h_seq: Tensor,
    v_init: Tensor,
    r_tau: Optional[Tensor],
    neuron: str,
    soft_reset: bool,
    decay_input: bool,
    detach_reset: bool,
    surrogate: str,
    neuron_scalars: list[float],
    surrogate_params: list[float],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`multistep_forward`: ``(grad_x_seq, grad_v_init, grad_w_init,
    grad_r_tau)``; ``grad_w_init`` is empty unless Izhikevich, ``grad_r_tau`` (``[1]``
    fp32) empty unless PLIF. Each incoming gradient may be ``None``."""
    _check_runnable(h_seq, v_init, r_tau)
    _require(neuron, "r_tau", r_tau, NEURONS[neuron].has_r_tau)
    h_seq, v_init = h_seq.contiguous(), v_init.contiguous()
    spec = NEURONS[neuron]
    dtype = h_seq.dtype
    T, N = h_seq.shape[0], v_init.numel()
    grad_x_seq = torch.empty_like(h_seq)
    grad_v_init = torch.empty_like(v_init)
    grad_w_init = torch.empty_like(v_init) if spec.has_w else h_seq.new_empty(0)
    partials = None
    if N > 0:
        scalar = make_variant(
            neuron,
            "backward",
            soft_reset=soft_reset,
            decay_input=decay_input,
            dtype=dtype_name(dtype),
            detach_reset=detach_reset,
            surrogate=surrogate,
        )
        values = {
            "grad_spike_seq": _incoming(grad_spike_seq, dtype),
            "grad_v_last": _incoming(grad_v_last, dtype),
            "grad_w_last": _incoming(grad_w_last, dtype),
            "grad_v_seq": _incoming(grad_v_seq, dtype),
            "grad_w_seq": _incoming(grad_w_seq, dtype),
            "grad_h_seq": _incoming(grad_h_seq, dtype),
            "h_seq": h_seq,
            "v_init": v_init,
            "r_tau_ptr": r_tau,
            "grad_x_seq": grad_x_seq,
            "grad_v_init": grad_v_init,
            "grad_w_init": grad_w_init if spec.has_w else None,
            "T": T,
            "N": N,
            **_scalar_values(neuron, neuron_scalars),
            **_surrogate_values(surrogate, surrogate_params),
        }
        variant = choose_variant(scalar, values)
        n_blocks = grid_blocks(variant, N)
        if spec.has_r_tau:
            # One slot per block, each written by its block: no zero fill needed.
            partials = torch.empty(n_blocks, dtype=torch.float32, device=h_seq.device)
            values["r_tau_partials"] = partials
        get_launcher().launch(variant, pack_args(variant, values), n_blocks, h_seq.device)
    elif spec.has_r_tau:
        partials = torch.zeros(1, dtype=torch.float32, device=h_seq.device)
    # The per-block partial sums of d/d(1/tau) are added here, on the device (no sync).
    grad_r_tau = partials.sum().reshape(1) if partials is not None else h_seq.new_empty(0)
    return grad_x_seq, grad_v_init, grad_w_init, grad_r_tau


multistep_backward = torch.library.custom_op("sj_cupy::multistep_backward", mutates_args=())(
    backward_impl
)


@multistep_backward.register_fake
def _multistep_backward_fake(
    grad_spike_seq,
    grad_v_last,
    grad_w_last,
    grad_v_seq,
    grad_w_seq,
    grad_h_seq,
    h_seq,
    v_init,
    r_tau,
    neuron,
    soft_reset,
    decay_input,
    detach_reset,
    surrogate,
    neuron_scalars,
    surrogate_params,
):
    spec = NEURONS[neuron]
    return (
        h_seq.new_empty(h_seq.shape),
        v_init.new_empty(v_init.shape),
        v_init.new_empty(v_init.shape) if spec.has_w else h_seq.new_empty(0),
        h_seq.new_empty(1, dtype=torch.float32) if spec.has_r_tau else h_seq.new_empty(0),
    )


# -- autograd -------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output):
    # inputs: (x_seq, v_init, w_init, r_tau, *config [neuron .. surrogate_params],
    # store_v_seq, store_w_seq, save_h_seq); the backward needs the config as it is.
    _, v_init, w_init, r_tau = inputs[:4]
    # Outputs nobody differentiates (h_seq, unused placeholders...) then arrive as None
    # rather than as materialised zero tensors the backward would have to read.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(output[5], v_init, r_tau)
    ctx.config = tuple(inputs[4:11])
    ctx.saved_h_seq = inputs[13]
    ctx.has_w = w_init is not None


def _backward(ctx, grad_spike_seq, grad_v_last, grad_w_last, grad_v_seq, grad_w_seq, grad_h_seq):
    return _backward_with(
        multistep_backward,
        ctx,
        grad_spike_seq,
        grad_v_last,
        grad_w_last,
        grad_v_seq,
        grad_w_seq,
        grad_h_seq,
    )


def _backward_with(backward, ctx, *incoming):
    if not ctx.saved_h_seq:
        raise RuntimeError(
            "sj_cupy::multistep_forward ran with save_h_seq=False (the inference kernel), "
            "so it cannot be differentiated; pass save_h_seq=True when gradients are needed"
        )
    h_seq, v_init, r_tau = ctx.saved_tensors
    grad_x_seq, grad_v_init, grad_w_init, grad_r_tau = backward(
        *incoming, h_seq, v_init, r_tau, *ctx.config
    )
    return (
        grad_x_seq,
        grad_v_init,
        grad_w_init if ctx.has_w else None,
        grad_r_tau if r_tau is not None else None,
    ) + (None,) * 10


multistep_forward.register_autograd(_backward, setup_context=_setup_context)


# -- eager path ---------------------------------------------------------------------------


class EagerMultistep(torch.autograd.Function):
    """The registered operators' computation for eager mode, without the dispatcher.

    Dispatching a ``torch.library`` operator and its registered autograd costs hundreds of
    microseconds per call, as long as the kernels themselves at small ``T``; eager calls
    run the same implementations directly. ``torch.compile`` traces the operators.
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, w_init, r_tau, *config):
        outputs = forward_impl(x_seq, v_init, w_init, r_tau, *config)
        _setup_context(ctx, (x_seq, v_init, w_init, r_tau, *config), outputs)
        ctx.mark_non_differentiable(outputs[5])
        return outputs

    @staticmethod
    def backward(ctx, *incoming):
        if torch.is_grad_enabled():
            # create_graph=True would silently drop the second-order terms.
            raise RuntimeError(
                "sj_cupy kernels have no second derivative (create_graph=True); "
                "use backend='torch' for higher-order gradients"
            )
        return _backward_with(backward_impl, ctx, *incoming)
