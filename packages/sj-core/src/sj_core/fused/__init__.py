"""The fused torch path: every built-in neuron's ``T`` steps as one autograd node.

The ``torch`` backend (what CPU users, and ``backend='auto'`` on the CPU, get) runs a
multi-step neuron through :func:`fused_multistep`: a forward loop that builds no graph
and keeps only ``H`` (plus ``X`` or ``V[0]`` where a derivative reads them), and a
backward pass that runs the explicit reverse-time recurrences of SPEC section 5, derived
from the neuron's one statement (:mod:`sj_core.neuron.statements`) exactly as the kernel
backends derive theirs. The per-step autograd loop of :mod:`sj_core.reference` stays the
reference it is tested against (forward bitwise equal, gradients within rounding), and
still runs where the fused loop does not apply (see :mod:`.operators`): custom neurons
that override ``neuronal_charge``, ``spiking=False`` surrogates, traced calls
(``torch.compile``), and inside :func:`disabled`.

Modules: :mod:`.evaluate` (expressions on tensors), :mod:`.config` (a call's settings),
:mod:`.forward` and :mod:`.backward` (the two loops), :mod:`.function` (the
``autograd.Function``), :mod:`.operators` (the operator-key functions
``multistep_<neuron>`` and the choice of path).
"""

from .function import FusedMultiStep
from .operators import (
    disabled,
    fused_multistep,
    multistep_eif,
    multistep_if,
    multistep_izhikevich,
    multistep_lif,
    multistep_plif,
    multistep_qif,
)

__all__ = [
    "FusedMultiStep",
    "disabled",
    "fused_multistep",
    "multistep_eif",
    "multistep_if",
    "multistep_izhikevich",
    "multistep_lif",
    "multistep_plif",
    "multistep_qif",
]
