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

__all__ = [
    "eif_multi_step",
    "eif_single_step",
    "if_multi_step",
    "if_single_step",
    "izhikevich_multi_step",
    "izhikevich_single_step",
    "lif_multi_step",
    "lif_single_step",
    "plif_multi_step",
    "plif_single_step",
    "qif_multi_step",
    "qif_single_step",
]

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
_OPERATORS = RUNNER.operators(module=__name__)

if_multi_step = _OPERATORS["if.multi_step"]
if_single_step = _OPERATORS["if.single_step"]
lif_multi_step = _OPERATORS["lif.multi_step"]
lif_single_step = _OPERATORS["lif.single_step"]
plif_multi_step = _OPERATORS["plif.multi_step"]
plif_single_step = _OPERATORS["plif.single_step"]
qif_multi_step = _OPERATORS["qif.multi_step"]
qif_single_step = _OPERATORS["qif.single_step"]
eif_multi_step = _OPERATORS["eif.multi_step"]
eif_single_step = _OPERATORS["eif.single_step"]
izhikevich_multi_step = _OPERATORS["izhikevich.multi_step"]
izhikevich_single_step = _OPERATORS["izhikevich.single_step"]
