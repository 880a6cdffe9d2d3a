"""The neuron kernels as one :class:`sj_core.kernels.KernelOp`: ``sj_cupy::neuron``.

:class:`CupyNeuronKernels` picks the generated kernel variant for a
:class:`~sj_core.kernels.NeuronKernelConfig` (its vector form when sizes and alignment
allow: :func:`sj_cupy.launch.choose_variant`), allocates the outputs and launches it;
sj-core's plumbing runs it eagerly (directly, or under a ``torch.autograd.Function``) or,
when traced, through the registered operators ``sj_cupy::neuron_forward`` and
``sj_cupy::neuron_backward`` (``custom_op`` s with fake implementations).

Layout (every neuron): inputs ``[x_seq [T, *S], v_init [*S], w_init [*S] | None,
r_tau [1] | None]``; results ``[spike_seq, v_last, w_last, v_seq, w_seq, h_seq]``, the
last being the pre-reset potentials the backward needs (when ``save``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sj_core.kernels import KernelOp, NeuronKernelConfig, NeuronKernels

from .codegen import NEURONS, SURROGATES, make_variant
from .codegen.kernels import SURROGATE_PARAM_PREFIX
from .launch import choose_variant, get_launcher, grid_blocks, pack_args

__all__ = ["NEURON_OP", "CupyNeuronKernels", "dtype_name"]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the codegen's dtype keys)."""
    return str(dtype).removeprefix("torch.")


def _decay_input(config: NeuronKernelConfig) -> bool:
    return config.flag_values().get("decay_input", False)


def _scalar_values(config: NeuronKernelConfig) -> dict[str, float]:
    return {"v_threshold": config.v_threshold, "v_reset": config.v_reset, **config.param_values()}


def _incoming(grad: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """An incoming gradient as the kernel reads it: ``None`` when absent (or an empty
    placeholder output's), else contiguous in the kernel's dtype."""
    if grad is None or grad.numel() == 0:
        return None
    return grad.to(dtype).contiguous()


class CupyNeuronKernels(NeuronKernels):
    """:class:`sj_core.kernels.KernelImplementation` of every neuron on CuPy/NVRTC."""

    backend = "cupy"

    def forward(
        self,
        config: NeuronKernelConfig,
        inputs: list[Tensor | None],
        *,
        save: bool,
        launch: Callable,
        placeholders: bool,
    ) -> list[Tensor | None]:
        x_seq, v_init, w_init, r_tau = inputs
        spec = NEURONS[config.neuron]
        T, N = x_seq.shape[0], v_init.numel()
        spike_seq = torch.empty_like(x_seq)
        v_last = torch.empty_like(v_init)
        w_last = torch.empty_like(v_init) if spec.has_w else None
        v_seq = torch.empty_like(x_seq) if config.store_v_seq else None
        w_seq = torch.empty_like(x_seq) if config.store_v_seq and spec.has_w else None
        h_seq = torch.empty_like(x_seq) if save else None
        scalar = make_variant(
            config.neuron,
            "forward",
            soft_reset=not config.hard_reset,
            decay_input=_decay_input(config),
            dtype=dtype_name(x_seq.dtype),
        )
        values = {
            "x_seq": x_seq,
            "v_init": v_init,
            "w_init": w_init,
            "r_tau_ptr": None if r_tau is None else r_tau.float(),
            "spike_seq": spike_seq,
            "v_last": v_last,
            "w_last": w_last,
            "h_seq": h_seq,
            "v_seq": v_seq,
            "w_seq": w_seq,
            "T": T,
            "N": N,
            **_scalar_values(config),
        }
        variant = choose_variant(scalar, values)
        get_launcher().launch(
            variant, pack_args(variant, values), grid_blocks(variant, N), x_seq.device
        )
        return self.results(x_seq, [spike_seq, v_last, w_last, v_seq, w_seq, h_seq], placeholders)

    def saved(
        self, config: NeuronKernelConfig, inputs: list[Tensor | None], results: list[Tensor | None]
    ) -> list[Tensor | None]:
        x_seq, v_init, _, r_tau = inputs
        equations = NEURONS[config.neuron].equations(_decay_input(config))
        return [
            results[5],
            x_seq if equations.needs_x else None,
            v_init if equations.needs_v_prev else None,
            r_tau,
        ]

    def backward(
        self,
        config: NeuronKernelConfig,
        saved: list[Tensor | None],
        grads: list[Tensor | None],
        needs: list[bool],
        *,
        launch: Callable,
    ) -> list[Tensor | None]:
        h_seq, x_seq, v_init, r_tau = saved
        if h_seq is None or h_seq.numel() == 0:
            raise RuntimeError(
                "sj_cupy: backward through a forward that kept nothing for it "
                "(an inference launch); this is a bug in the caller"
            )
        spec = NEURONS[config.neuron]
        dtype = h_seq.dtype
        grad_spike, grad_v_last, grad_w_last, grad_v_seq, grad_w_seq = (
            _incoming(g, dtype) for g in grads
        )
        if not config.store_v_seq:
            grad_v_seq = grad_w_seq = None
        T, N = h_seq.shape[0], h_seq[0].numel()
        step = h_seq.shape[1:]
        grad_x_seq = torch.empty_like(h_seq)
        grad_v_init = h_seq.new_empty(step)
        grad_w_init = h_seq.new_empty(step) if spec.has_w else None
        scalar = make_variant(
            config.neuron,
            "backward",
            soft_reset=not config.hard_reset,
            decay_input=_decay_input(config),
            dtype=dtype_name(dtype),
            detach_reset=config.detach_reset,
            surrogate=config.surrogate,
        )
        surrogate_names = SURROGATES[config.surrogate].params
        values = {
            "grad_spike_seq": grad_spike,
            "grad_v_last": grad_v_last,
            "grad_w_last": grad_w_last,
            "grad_v_seq": grad_v_seq,
            "grad_w_seq": grad_w_seq,
            "h_seq": h_seq,
            "v_init": v_init,
            "x_seq": x_seq,
            "r_tau_ptr": None if r_tau is None else r_tau.float(),
            "grad_x_seq": grad_x_seq,
            "grad_v_init": grad_v_init,
            "grad_w_init": grad_w_init,
            "T": T,
            "N": N,
            **_scalar_values(config),
            **{
                SURROGATE_PARAM_PREFIX + name: value
                for name, value in zip(surrogate_names, config.surrogate_params, strict=True)
            },
        }
        variant = choose_variant(scalar, values)
        n_blocks = grid_blocks(variant, N)
        partials = None
        if spec.has_r_tau:
            # One slot per block, each written by its block: no zero fill needed.
            partials = torch.empty(n_blocks, dtype=torch.float32, device=h_seq.device)
            values["r_tau_partials"] = partials
        get_launcher().launch(variant, pack_args(variant, values), n_blocks, h_seq.device)
        grad_r_tau = None
        if partials is not None:
            # The per-block partial sums of dL/dr are added on the device (no sync).
            grad_r_tau = partials.sum().reshape(1).to(r_tau.dtype)
        return [
            grad_x_seq,
            grad_v_init if needs[1] else None,
            grad_w_init if needs[2] else None,
            grad_r_tau,
        ]


NEURON_OP = KernelOp("sj_cupy", "neuron", CupyNeuronKernels(), NeuronKernelConfig)
