"""What one call of the fused loop needs besides its tensors.

Example::

    >>> config = FusedConfig(LIF, {"tau": 2.0, "decay_input": True}, 1.0, 0.0, False,
    ...                      False, Sigmoid.surrogate_gradient, (4.0,))
    >>> sorted(config.backward_reads())
    []
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..neuron.statements import TENSOR, KernelEquations, NeuronStatement, kernel_equations
from .evaluate import Value

__all__ = ["FusedConfig"]


@dataclass(frozen=True)
class FusedConfig:
    """One call's non-tensor arguments.

    Attributes:
        statement: the neuron.
        params: its float and flag parameters (validated).
        v_threshold: ``V_th``.
        v_reset: ``V_reset``, or ``None`` for soft reset.
        detach_reset: the reset's spike is detached (gradients only).
        store_v_seq: the post-reset potentials are an output.
        surrogate_gradient: ``(x, *surrogate_params) -> sg``, the function the surrogate's
            own backward calls, and its parameters as they were at the forward call.
    """

    statement: NeuronStatement
    params: Mapping[str, Any]
    v_threshold: float
    v_reset: float | None
    detach_reset: bool
    store_v_seq: bool
    surrogate_gradient: Callable[..., torch.Tensor]
    surrogate_params: tuple[Any, ...]

    @property
    def v_r(self) -> float:
        """``V_r`` of the equations: ``v_reset``, or 0 for soft reset."""
        return 0.0 if self.v_reset is None else self.v_reset

    @functools.cached_property
    def equations(self) -> KernelEquations:
        """The statement's expressions and derivatives for these flags and reset mode."""
        flags = {k: v for k, v in self.params.items() if isinstance(v, bool)}
        return kernel_equations(self.statement, flags, self.v_reset is not None)

    def backward_reads(self) -> frozenset[str]:
        """Which of ``x`` and ``v`` (``V[t-1]``) the backward pass reads."""
        return self.equations.backward_reads

    def symbol_values(self, tensors: Sequence[torch.Tensor]) -> dict[str, Value]:
        """The per-call symbols: float parameters, ``v_reset``, ``v_threshold`` and the
        tensor parameters (as 0-d tensors)."""
        values: dict[str, Value] = {k: v for k, v in self.params.items() if not isinstance(v, bool)}
        values["v_reset"] = self.v_r
        values["v_threshold"] = self.v_threshold
        for name, tensor in zip(self.statement.names(TENSOR), tensors, strict=True):
            values[name] = tensor.reshape(())
        return values
