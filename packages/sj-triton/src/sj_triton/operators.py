"""The ``triton`` backend's operators, one per neuron statement and step mode.

Each ``<neuron>_multi_step`` / ``<neuron>_single_step`` implements the operator key
``<neuron>.multi_step`` / ``<neuron>.single_step`` (see :mod:`sj_core.backends.operators`)
with the Triton kernels, for IF, LIF, PLIF, QIF, EIF and Izhikevich; sj-core derives
them, with their checks and errors, from the neuron statements
(:class:`sj_core.kernels.NeuronKernelRunner`).

Example::

    >>> spike_seq, v_last, v_seq = lif_multi_step(
    ...     x_seq, v_init, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
    ...     detach_reset=False, surrogate_function=Sigmoid(), store_v_seq=True)
"""

from __future__ import annotations

import torch

from sj_core.kernels import NeuronKernelRunner, interpreter_enabled

from .neuron_kernel.kernel_op import NEURON_OP, SURROGATES

# Read once: torch.compile traces the operators, and a constant keeps os.environ out.
_INTERPRETER = interpreter_enabled()


def _device_ok(device: torch.device) -> str | None:
    if device.type == "cuda" or (device.type == "cpu" and _INTERPRETER):
        return None
    return (
        f"runs on CUDA tensors (or on the CPU under TRITON_INTERPRET=1); got a tensor on {device}"
    )


RUNNER = NeuronKernelRunner(
    NEURON_OP, backend="triton", surrogates=SURROGATES, device_ok=_device_ok
)
# if_multi_step, lif_multi_step, ..., izhikevich_single_step: one per operator key.
__all__ = ["RUNNER", *RUNNER.export(globals())]
