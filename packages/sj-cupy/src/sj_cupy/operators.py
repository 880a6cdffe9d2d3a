"""The ``cupy`` backend's operators, one per neuron statement and step mode.

Each ``<neuron>_multi_step`` / ``<neuron>_single_step`` implements the operator key
``<neuron>.multi_step`` / ``<neuron>.single_step`` (see :mod:`sj_core.backends.operators`)
with the generated CUDA kernels, for every neuron of sj-core's statements; sj-core
derives them, with their checks and errors, from the statements
(:class:`sj_core.kernels.NeuronKernelRunner`).

Example::

    >>> spike_seq, v_last, v_seq = lif_multi_step(
    ...     x_seq, v_init, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
    ...     detach_reset=False, surrogate_function=Sigmoid(), store_v_seq=True)
"""

from __future__ import annotations

import torch

from sj_core.kernels import NeuronKernelRunner

from .codegen import SURROGATES
from .kernel_op import NEURON_OP
from .launch import device_type


def _device_ok(device: torch.device) -> str | None:
    expected = device_type()  # "cuda", unless a test runs the kernels on the host
    if device.type == expected:
        return None
    return f"runs on {expected} tensors, got one on {device} (use backend='torch' there)"


RUNNER = NeuronKernelRunner(
    NEURON_OP, backend="cupy", surrogates=tuple(SURROGATES), device_ok=_device_ok
)
# if_multi_step, lif_multi_step, ..., izhikevich_single_step: one per operator key.
__all__ = ["RUNNER", *RUNNER.export(globals())]
