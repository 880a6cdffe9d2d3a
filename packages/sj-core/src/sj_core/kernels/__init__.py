"""The plumbing every kernel backend shares, written once.

* :mod:`.kernel_op`: one kernel operator run three ways (eager launch, eager autograd,
  registered ``torch.library`` operators for tracers), the double-backward refusal and
  configuration as named fields.
* :mod:`.neuron_operators`: the operator-key functions of a neuron kernel backend,
  derived from the neuron statements, with one error policy.
* :mod:`.triton_interpreter`: whether Triton's CPU interpreter is on and can run, the
  availability check of Triton-based backends, and a lock that serialises launches.

A backend plugin supplies kernels (a :class:`KernelImplementation`), not semantics; see
the "Backends" documentation page.
"""

from .kernel_op import (
    KernelImplementation,
    KernelOp,
    flatten_config,
    is_traced_call,
    refuse_double_backward,
    unflatten_config,
)
from .neuron_operators import (
    KERNEL_DTYPES,
    NeuronKernelConfig,
    NeuronKernelRunner,
    NeuronKernels,
    surrogate_kernel_arguments,
)
from .triton_interpreter import interpreter_enabled, interpreter_problem, launch_lock, triton_check

__all__ = [
    "KERNEL_DTYPES",
    "KernelImplementation",
    "KernelOp",
    "NeuronKernelConfig",
    "NeuronKernelRunner",
    "NeuronKernels",
    "flatten_config",
    "interpreter_enabled",
    "interpreter_problem",
    "is_traced_call",
    "launch_lock",
    "refuse_double_backward",
    "surrogate_kernel_arguments",
    "triton_check",
    "unflatten_config",
]
