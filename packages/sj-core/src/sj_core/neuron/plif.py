"""Parametric leaky integrate-and-fire neuron (learnable time constant)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..surrogate import SurrogateFunctionBase
from .base_node import BaseNode
from .statements import PLIF
from .validation import check_tau

__all__ = ["ParametricLIFNode"]


class ParametricLIFNode(BaseNode):
    """Parametric LIF neuron (Fang et al., 2021): LIF with a learnable ``1/tau = sigmoid(w)``.

    ``w`` is a scalar parameter initialised to ``-ln(init_tau - 1)`` so that
    ``1/tau = 1/init_tau``; its gradient sums over every neuron and time step.

    Args:
        init_tau: initial membrane time constant, > 1.
        decay_input: as in :class:`~sj_core.neuron.LIFNode`.
        Others: as in :class:`~sj_core.neuron.BaseNode`.

    Equations: :data:`sj_core.neuron.statements.PLIF`; kernel backends: operator key
    ``plif.multi_step`` (``r_tau = sigmoid(w)`` is passed as a one-element tensor).
    """

    statement = PLIF

    def __init__(
        self,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        init_tau = check_tau("init_tau", init_tau)
        params, _, _ = PLIF.validate({"decay_input": decay_input}, v_threshold, v_reset)
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend, store_v_seq
        )
        self.decay_input = params["decay_input"]
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    @property
    def tau(self) -> float:
        """The current time constant ``1 / sigmoid(w)`` (a Python float)."""
        return 1.0 / torch.sigmoid(self.w.detach()).item()

    @property
    def r_tau(self) -> torch.Tensor:
        """``1/tau = sigmoid(w)``, differentiable (the statement's tensor parameter)."""
        return self.w.sigmoid()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau:.4g}, decay_input={self.decay_input}"
