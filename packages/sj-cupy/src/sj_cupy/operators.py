"""The cupy backend's operators, with the calling conventions of
:mod:`sj_core.backends.operators` (the same signatures as :mod:`sj_core.reference`).

Multi-step operators take ``x_seq`` ``[T, *S]`` and initial states ``[*S]`` (fp32, fp16
or bf16, on one CUDA device) and return ``(spike_seq, v_last, v_seq | None)``
(Izhikevich: ``(spike_seq, v_last, w_last, v_seq | None)``); gradients flow to ``x_seq``,
the initial states and PLIF's ``r_tau``. Single-step operators run the multi-step kernel
with ``T = 1``. Unsupported configurations raise ``NotImplementedError`` before any work.

Example::

    >>> spike_seq, v_last, v_seq = lif_multi_step(
    ...     x_seq, v_init, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
    ...     detach_reset=False, surrogate_function=Sigmoid(), store_v_seq=True)
"""

from __future__ import annotations

import torch

from .codegen import NEURONS
from .ops import EagerMultistep, forward_impl, multistep_forward
from .validation import check_surrogate, check_tensors

__all__ = [
    "eif_multi_step",
    "if_multi_step",
    "if_single_step",
    "izhikevich_multi_step",
    "lif_multi_step",
    "lif_single_step",
    "plif_multi_step",
    "qif_multi_step",
    "run_multistep",
]


def run_multistep(
    neuron: str,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    w_init: torch.Tensor | None = None,
    r_tau: torch.Tensor | None = None,
    *,
    v_threshold: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate_function: object,
    decay_input: bool = False,
    store_v_seq: bool = False,
    store_w_seq: bool = False,
    save_h_seq: bool | None = None,
    **scalars: float,
) -> tuple[torch.Tensor, ...]:
    """Validate, then run ``sj_cupy::multistep_forward``.

    ``scalars`` are the neuron's own parameters (``tau``, ``v_c``...). ``save_h_seq``
    defaults to "when autograd will need it" (the training kernel); otherwise only the
    spikes and the final state are written (inference).

    Returns:
        ``(spike_seq, v_last, w_last, v_seq, w_seq, h_seq)``; outputs not produced are
        empty tensors.
    """
    spec = NEURONS[neuron]
    if spec.has_w and w_init is None:
        raise ValueError(f"{neuron} needs w_init, its initial adaptation state [*S]")
    if spec.has_r_tau and r_tau is None:
        raise ValueError(f"{neuron} needs r_tau, a one-element tensor 1/tau")
    surrogate, surrogate_params = check_surrogate(surrogate_function)
    check_tensors(x_seq, v_init=v_init, w_init=w_init, r_tau=r_tau)
    if r_tau is not None:
        r_tau = r_tau.reshape(1).to(torch.float32).contiguous()
    needs_graph = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x_seq, v_init, w_init, r_tau)
    )
    if save_h_seq is None:
        save_h_seq = needs_graph
    neuron_scalars = [float(v_threshold), 0.0 if v_reset is None else float(v_reset)]
    neuron_scalars += [float(scalars[name]) for name in spec.scalars]
    if torch.compiler.is_compiling():
        run = multistep_forward  # the registered operator: what the compiler traces
    elif needs_graph:
        run = EagerMultistep.apply  # eager training: autograd without the dispatcher
    else:
        run = forward_impl  # eager inference: just the launch
    return run(
        x_seq.contiguous(),
        v_init.contiguous(),
        None if w_init is None else w_init.contiguous(),
        r_tau,
        neuron,
        v_reset is None,
        bool(decay_input),
        bool(detach_reset),
        surrogate,
        neuron_scalars,
        surrogate_params,
        bool(store_v_seq),
        bool(store_w_seq),
        bool(save_h_seq),
    )


def _optional(store_v_seq: bool, v_seq: torch.Tensor) -> torch.Tensor | None:
    return v_seq if store_v_seq else None


def if_multi_step(
    x_seq, v_init, *, v_threshold, v_reset, detach_reset, surrogate_function, store_v_seq=False
):
    """IF neuron over ``T`` steps (operator ``if.multi_step``)."""
    spike_seq, v_last, _, v_seq, _, _ = run_multistep(
        "if",
        x_seq,
        v_init,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_last, _optional(store_v_seq, v_seq)


def lif_multi_step(
    x_seq,
    v_init,
    *,
    tau,
    decay_input,
    v_threshold,
    v_reset,
    detach_reset,
    surrogate_function,
    store_v_seq=False,
):
    """LIF neuron over ``T`` steps (operator ``lif.multi_step``)."""
    spike_seq, v_last, _, v_seq, _, _ = run_multistep(
        "lif",
        x_seq,
        v_init,
        tau=tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_last, _optional(store_v_seq, v_seq)


def plif_multi_step(
    x_seq,
    v_init,
    r_tau,
    *,
    decay_input,
    v_threshold,
    v_reset,
    detach_reset,
    surrogate_function,
    store_v_seq=False,
):
    """Parametric LIF over ``T`` steps (operator ``plif.multi_step``); ``r_tau`` is a
    one-element tensor ``1/tau`` and receives the gradient summed over neurons and steps."""
    spike_seq, v_last, _, v_seq, _, _ = run_multistep(
        "plif",
        x_seq,
        v_init,
        r_tau=r_tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_last, _optional(store_v_seq, v_seq)


def qif_multi_step(
    x_seq,
    v_init,
    *,
    tau,
    v_c,
    a0,
    v_rest,
    v_threshold,
    v_reset,
    detach_reset,
    surrogate_function,
    store_v_seq=False,
):
    """Quadratic IF over ``T`` steps (operator ``qif.multi_step``)."""
    spike_seq, v_last, _, v_seq, _, _ = run_multistep(
        "qif",
        x_seq,
        v_init,
        tau=tau,
        v_c=v_c,
        a0=a0,
        v_rest=v_rest,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_last, _optional(store_v_seq, v_seq)


def eif_multi_step(
    x_seq,
    v_init,
    *,
    tau,
    delta_T,
    theta_rh,
    v_rest,
    v_threshold,
    v_reset,
    detach_reset,
    surrogate_function,
    store_v_seq=False,
):
    """Exponential IF over ``T`` steps (operator ``eif.multi_step``)."""
    spike_seq, v_last, _, v_seq, _, _ = run_multistep(
        "eif",
        x_seq,
        v_init,
        tau=tau,
        delta_T=delta_T,
        theta_rh=theta_rh,
        v_rest=v_rest,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_last, _optional(store_v_seq, v_seq)


def izhikevich_multi_step(
    x_seq,
    v_init,
    w_init,
    *,
    tau,
    v_c,
    a0,
    v_rest,
    a,
    b,
    tau_w,
    v_threshold,
    v_reset,
    detach_reset,
    surrogate_function,
    store_v_seq=False,
):
    """Izhikevich over ``T`` steps (operator ``izhikevich.multi_step``); returns
    ``(spike_seq, v_last, w_last, v_seq | None)``."""
    spike_seq, v_last, w_last, v_seq, _, _ = run_multistep(
        "izhikevich",
        x_seq,
        v_init,
        w_init,
        tau=tau,
        v_c=v_c,
        a0=a0,
        v_rest=v_rest,
        a=a,
        b=b,
        tau_w=tau_w,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=store_v_seq,
    )
    return spike_seq, v_last, w_last, _optional(store_v_seq, v_seq)


def if_single_step(x, v, *, v_threshold, v_reset, detach_reset, surrogate_function):
    """One IF step (operator ``if.single_step``): ``x``, ``v`` ``[*S]`` -> ``(spike, v)``."""
    spike_seq, v_new, _ = if_multi_step(
        x.unsqueeze(0),
        v,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
    )
    return spike_seq[0], v_new


def lif_single_step(
    x, v, *, tau, decay_input, v_threshold, v_reset, detach_reset, surrogate_function
):
    """One LIF step (operator ``lif.single_step``): ``x``, ``v`` ``[*S]`` -> ``(spike, v)``."""
    spike_seq, v_new, _ = lif_multi_step(
        x.unsqueeze(0),
        v,
        tau=tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
    )
    return spike_seq[0], v_new
