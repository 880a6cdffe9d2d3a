"""Multi-step neuron kernels with the reference system's function names (``seeds/001``).

Each ``multistep_*_ptt`` function runs the same kernels as the backend operators
(:mod:`sj_cupy.operators`) and returns what the reference system's function returns.
Shapes: ``x_seq`` ``[T, N, *]``, initial states ``[N, *]``; every returned sequence is
``[T, N, *]`` (EIF's ``v_v_seq``: ``[T + 1, N, *]``). Gradients flow to the inputs, the
initial states and PLIF's ``reciprocal_tau`` through every output.

Example::

    >>> spike_seq, v_seq = multistep_lif_ptt(
    ...     x_seq, v_init, True, 2.0, 1.0, 0.0, False, surrogate.Sigmoid())
    >>> save_cuda_codes("kernels.cu")   # every generated variant, one file
"""

from __future__ import annotations

import logging

import torch

from sj_core.neuron.statements import EIF, IF, IZHIKEVICH, LIF, PLIF, QIF
from sj_core.waiting import long_work

from .codegen import all_variants, module_source
from .operators import RUNNER

_LOG = logging.getLogger(__name__)

__all__ = [
    "multistep_eif_ptt",
    "multistep_if_ptt",
    "multistep_izhikevich_ptt",
    "multistep_lif_ptt",
    "multistep_plif_ptt",
    "multistep_qif_ptt",
    "save_cuda_codes",
]


def save_cuda_codes(cu_file_path: str = "./neuron_kernel_sample.cu") -> None:
    """Write the CUDA source of every generated kernel variant (every neuron, reset mode,
    ``detach_reset``, ``decay_input``, dtype and surrogate, each with one neuron per thread
    and vectorized: 3168 kernels) to one ``.cu`` file."""
    variants = list(all_variants())
    what = f"writing the CUDA source of {len(variants)} kernel variants to {cu_file_path}"
    with long_work(_LOG, what), open(cu_file_path, "w", encoding="utf-8") as file:
        file.write(module_source(variants))


def multistep_if_ptt(x_seq, v_init, v_threshold, v_reset, detach_reset, surrogate_function):
    """IF neuron: returns ``(spike_seq, v_seq)`` (``v_seq`` the post-reset potentials)."""
    spike_seq, _, _, v_seq, _ = RUNNER.run(
        IF,
        x_seq,
        v_init,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    return spike_seq, v_seq


def multistep_lif_ptt(
    x_seq, v_init, decay_input, tau, v_threshold, v_reset, detach_reset, surrogate_function
):
    """LIF neuron: returns ``(spike_seq, v_seq)``."""
    spike_seq, _, _, v_seq, _ = RUNNER.run(
        LIF,
        x_seq,
        v_init,
        tau=tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    return spike_seq, v_seq


def multistep_plif_ptt(
    x_seq,
    v_init,
    reciprocal_tau,
    decay_input,
    v_threshold,
    v_reset,
    detach_reset,
    surrogate_function,
):
    """Parametric LIF (``reciprocal_tau`` a one-element tensor ``1/tau``): returns
    ``(spike_seq, v_seq, reciprocal_tau)``."""
    spike_seq, _, _, v_seq, _ = RUNNER.run(
        PLIF,
        x_seq,
        v_init,
        reciprocal_tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    return spike_seq, v_seq, reciprocal_tau


def multistep_qif_ptt(
    x_seq, v_init, tau, v_threshold, v_reset, v_rest, v_c, a0, detach_reset, surrogate_function
):
    """Quadratic IF: returns ``(spike_seq, v_seq)``."""
    spike_seq, _, _, v_seq, _ = RUNNER.run(
        QIF,
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
        store_v_seq=True,
    )
    return spike_seq, v_seq


def multistep_izhikevich_ptt(
    x_seq,
    v_init,
    w_init,
    tau,
    v_threshold,
    v_reset,
    v_rest,
    a,
    b,
    tau_w,
    v_c,
    a0,
    detach_reset,
    surrogate_function,
):
    """Izhikevich: returns ``(spike_seq, v_seq, w_seq)`` (``w_seq`` the adaptation after
    each step, spike jump included)."""
    spike_seq, _, _, v_seq, w_seq = RUNNER.run(
        IZHIKEVICH,
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
        store_v_seq=True,
    )
    return spike_seq, v_seq, w_seq


def multistep_eif_ptt(
    x_seq,
    v_init,
    tau,
    v_threshold,
    v_reset,
    v_rest,
    theta_rh,
    delta_T,
    detach_reset,
    surrogate_function,
):
    """Exponential IF: returns ``(spike_seq, v_v_seq, h_seq)``, as the reference system:
    ``v_v_seq`` ``[T + 1, N, *]`` is ``v_init`` followed by the post-reset potentials and
    ``h_seq`` ``[T, N, *]`` the pre-reset (charged) potentials."""
    params = {"tau": tau, "delta_T": delta_T, "theta_rh": theta_rh, "v_rest": v_rest}
    spike_seq, _, _, v_seq, _ = RUNNER.run(
        EIF,
        x_seq,
        v_init,
        **params,
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    v_v_seq = torch.cat((v_init.unsqueeze(0), v_seq))
    # H[t] from X[t] and V[t-1], all steps at once with the statement's own equation
    # (differentiable: gradients reach x_seq, v_init and, through v_seq, the kernels).
    v_r = 0.0 if v_reset is None else v_reset
    h_seq = EIF.charge(x_seq, v_v_seq[:-1], **params, v_r=v_r)
    return spike_seq, v_v_seq, h_seq
