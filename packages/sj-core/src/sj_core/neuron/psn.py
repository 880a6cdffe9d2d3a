"""Parallel spiking neurons (PSN family): neurons without reset, written as matrix forms.

Without a reset, the charge of a neuron over ``T`` steps is linear in its inputs, so a
whole sequence can be computed at once as ``H = W X + B`` with ``X`` the input flattened
to ``[T, N*]`` (SPEC section 3; Fang et al., "Parallel Spiking Neurons with High
Efficiency and Long-term Dependencies Learning Ability", 2023).

* :class:`PSN`: a full learnable ``[T, T]`` matrix; multi-step only.
* :class:`MaskedPSN`: ``W`` masked to a band of width ``k`` (each step sees the last
  ``k`` inputs), reached gradually through ``lambda_``; both step modes.
* :class:`SlidingPSN`: ``k`` weights shared by every step (a causal convolution over
  time); works for any ``T``; both step modes.

State-dict keys match the reference system, so its checkpoints load unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..base import MemoryModule, MultiStepModule
from ..functional.compact_registry import mark_module_spikes
from ..functional.psn_steps import masked_psn_step, sliding_psn_step
from ..surrogate import ATan, SurrogateFunctionBase

__all__ = ["PSN", "MaskedPSN", "SlidingPSN"]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _default_surrogate(surrogate_function: SurrogateFunctionBase | None) -> nn.Module:
    # A fresh ATan per instance: a default argument object would be shared by every
    # neuron, so set_spiking_mode on one would silently change all of them.
    if surrogate_function is None:
        return ATan()
    if not callable(surrogate_function):
        raise TypeError(
            "surrogate_function must be a sj_core.surrogate.SurrogateFunctionBase (or a "
            f"callable), got {type(surrogate_function).__name__}"
        )
    return surrogate_function


def _kaiming_uniform(*shape: int) -> torch.Tensor:
    # The same initialisation as nn.Linear's weight (and the reference system's PSNs).
    weight = torch.empty(shape)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


def _check_sequence(module: nn.Module, x_seq: Any, T: int | None) -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{type(module).__name__} expects a tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(
            f"{type(module).__name__} in multi-step mode expects an input of shape "
            f"[T, N, *] (at least 2-D), got shape {tuple(x_seq.shape)}"
        )
    if T is not None and x_seq.shape[0] != T:
        raise ValueError(
            f"{type(module).__name__} was built for T={T} time steps, but the input has "
            f"{x_seq.shape[0]} (shape {tuple(x_seq.shape)})"
        )


def _one_input(module: nn.Module, inputs: tuple[Any, ...], kwargs: dict) -> tuple[Any]:
    """The single input of a PSN's functional forward (which takes no keywords)."""
    if kwargs:
        raise TypeError(f"{type(module).__name__} takes no keyword arguments, got {sorted(kwargs)}")
    if len(inputs) != 1:
        raise TypeError(f"{type(module).__name__} takes one input tensor, got {len(inputs)}")
    return tuple(inputs)


def _check_step(module: nn.Module, x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__} expects a tensor, got {type(x).__name__}")


class PSN(nn.Module, MultiStepModule):
    """Parallel Spiking Neuron: ``H = W X + B``, ``S = surrogate(H)``; multi-step only.

    ``W`` is a learnable ``[T, T]`` matrix (Kaiming-uniform, ``a = sqrt(5)``) and ``B`` a
    learnable ``[T, 1]`` threshold initialised to -1.

    Args:
        T: number of time steps; every input must have exactly ``T`` steps.
        surrogate_function: surrogate spike function (default: a new ``ATan()``).

    Shapes: ``x_seq`` ``[T, N, *]`` -> spikes ``[T, N, *]``.

    Example::

        >>> psn = PSN(T=4)
        >>> psn(torch.rand(4, 2, 3)).shape
        torch.Size([4, 2, 3])
    """

    def __init__(self, T: int, surrogate_function: SurrogateFunctionBase | None = None) -> None:
        super().__init__()
        self.T = _check_positive_int("T", T)
        self.surrogate_function = _default_surrogate(surrogate_function)
        self.weight = nn.Parameter(_kaiming_uniform(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        _check_sequence(self, x_seq, self.T)
        h_seq = torch.addmm(self.bias, self.weight, x_seq.flatten(1))
        spikes = self.surrogate_function(h_seq).view(x_seq.shape)
        return mark_module_spikes(spikes, self.surrogate_function)  # for compact_spikes()

    def extra_repr(self) -> str:
        return f"T={self.T}"


class MaskedPSN(MemoryModule):
    """Masked PSN: ``H = (W * M_k(lambda)) X + B``, ``S = surrogate(H)``.

    ``mask0[i][j] = 1`` for ``j <= i <= j + k - 1`` (step ``i`` sees inputs
    ``i - k + 1 .. i``), else 0. The mask tightens during training through ``lambda_``:
    ``M_k(lambda) = lambda * mask0 + (1 - lambda) * J`` (``J`` all ones), and exactly
    ``mask0`` once ``lambda_ >= 1``. Set it with ``module.lambda_ = 0.3``.

    Single-step mode needs ``lambda_ >= 1`` (then step ``t`` depends only on the last
    ``k`` inputs, kept in the memory ``queue``); it counts steps in ``time_step`` and
    raises ``OverflowError`` past ``T`` steps (call :meth:`reset` between sequences).

    Args:
        k: order (band width) of the mask.
        T: number of time steps.
        lambda_init: initial ``lambda_``.
        surrogate_function: surrogate spike function (default: a new ``ATan()``).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).

    Example::

        >>> psn = MaskedPSN(k=2, T=4, lambda_init=1.0, step_mode="m")
        >>> psn(torch.rand(4, 8)).shape
        torch.Size([4, 8])
    """

    def __init__(
        self,
        k: int,
        T: int,
        lambda_init: float = 0.0,
        surrogate_function: SurrogateFunctionBase | None = None,
        step_mode: str = "s",
    ) -> None:
        super().__init__()
        self.k = _check_positive_int("k", k)
        self.T = _check_positive_int("T", T)
        if isinstance(lambda_init, bool) or not isinstance(lambda_init, (int, float)):
            raise TypeError(f"lambda_init must be a float, got {lambda_init!r}")
        self.surrogate_function = _default_surrogate(surrogate_function)
        self.register_memory("time_step", 0)
        self.register_memory("queue", [])
        self.weight = nn.Parameter(_kaiming_uniform(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        self.register_buffer("_lambda_", torch.tensor(float(lambda_init)))
        ones = torch.ones(T, T)
        self.register_buffer("mask0", torch.tril(ones) * torch.triu(ones, -(k - 1)))
        self.register_buffer("mask1", ones.clone())
        self.step_mode = step_mode

    @property
    def lambda_(self) -> torch.Tensor:
        """The masking progress (a 0-d buffer); assign a float to change it."""
        return self._lambda_

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"lambda_ must be a float, got {value!r}")
        self._lambda_.fill_(float(value))

    @staticmethod
    def gen_masked_weight(
        lambda_: torch.Tensor, mask0: torch.Tensor, mask1: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """``(lambda_ * mask0 + (1 - lambda_) * mask1) * weight``, all ``[T, T]``."""
        return (lambda_ * mask0 + (1.0 - lambda_) * mask1) * weight

    def masked_weight(self) -> torch.Tensor:
        """The effective ``[T, T]`` weight; exactly ``weight * mask0`` once ``lambda_ >= 1``.

        Clamping ``lambda_`` at 1 gives ``mask0 + 0 * mask1 = mask0`` bit for bit, so no
        host-side ``if`` on the buffer (a GPU sync) is needed.
        """
        lambda_ = self._lambda_.clamp(max=1.0)
        return self.gen_masked_weight(lambda_, self.mask0, self.mask1, self.weight)

    def single_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """One step, pure: ``((spike [N, *],), (time_step + 1, queue))`` from ``(x [N, *],)``
        and the states ``(time_step, queue)`` (:func:`~sj_core.functional.masked_psn_step`)."""
        (x,), (time_step, queue) = _one_input(self, inputs, kwargs), states
        _check_step(self, x)
        if not bool(self._lambda_ >= 1.0):
            raise ValueError(
                "MaskedPSN in single-step mode needs lambda_ >= 1 (only then does a step "
                f"depend on just the last k={self.k} inputs); got lambda_="
                f"{self._lambda_.item()}. Use step_mode='m' or set lambda_ = 1.0."
            )
        if time_step + 1 > self.T:
            raise OverflowError(
                f"MaskedPSN was built for T={self.T} time steps and has already run "
                f"{time_step}; call reset() before the next sequence"
            )
        spike, time_step, queue = masked_psn_step(
            x, time_step, tuple(queue), self.masked_weight(), self.bias, self.k,
            self.surrogate_function,
        )  # fmt: skip
        return (mark_module_spikes(spike, self.surrogate_function),), (time_step, list(queue))

    def multi_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """The whole sequence ``x_seq`` ``[T, N, *]`` -> ``((spikes [T, N, *],), states)``
        (the states are not used, and returned as they are)."""
        (x_seq,) = _one_input(self, inputs, kwargs)
        _check_sequence(self, x_seq, self.T)
        h_seq = torch.addmm(self.bias, self.masked_weight(), x_seq.flatten(1))
        spikes = self.surrogate_function(h_seq).view(x_seq.shape)
        return (mark_module_spikes(spikes, self.surrogate_function),), tuple(states)

    def extra_repr(self) -> str:
        return f"lambda_={self._lambda_.item()}, T={self.T}, k={self.k}, step_mode={self.step_mode}"


class SlidingPSN(MemoryModule):
    """Sliding PSN: ``H[t] = sum_i W_i X[t - k + 1 + i] + B``, ``S = surrogate(H)``.

    ``k`` learnable weights shared by every step (inputs before the first step count as
    zero) and a scalar threshold ``B`` initialised to -1. Works for any ``T``.

    Multi-step backends: ``'gemm'`` multiplies by the banded ``[T, T]`` matrix of
    :meth:`gen_gemm_weight`; ``'conv'`` runs a causal ``conv1d`` over time. Both compute
    the same values (up to float rounding). Single-step mode keeps the last ``k`` inputs
    in the memory ``queue``.

    Args:
        k: order (number of weights).
        exp_init: initialise ``W = (1/2^(k-1), ..., 1/4, 1/2, 1)``; otherwise
            Kaiming-uniform (``a = sqrt(5)``).
        surrogate_function: surrogate spike function (default: a new ``ATan()``).
        step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``).
        backend: ``'gemm'`` or ``'conv'`` (multi-step only).

    Example::

        >>> psn = SlidingPSN(k=3, step_mode="m", backend="conv")
        >>> psn(torch.rand(6, 2, 5)).shape
        torch.Size([6, 2, 5])
    """

    supported_backends = ("gemm", "conv")

    def __init__(
        self,
        k: int,
        exp_init: bool = True,
        surrogate_function: SurrogateFunctionBase | None = None,
        step_mode: str = "s",
        backend: str = "gemm",
    ) -> None:
        super().__init__()
        self.k = _check_positive_int("k", k)
        if not isinstance(exp_init, bool):
            raise TypeError(f"exp_init must be a bool, got {exp_init!r}")
        self.surrogate_function = _default_surrogate(surrogate_function)
        self.register_memory("queue", [])
        if exp_init:
            # Powers of two are exact in floating point: W_{k-1} = 1, halving leftwards.
            weight = torch.pow(2.0, -torch.arange(k - 1, -1, -1, dtype=torch.float32))
        else:
            weight = _kaiming_uniform(1, k)[0]
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.tensor(-1.0))
        self.step_mode = step_mode
        self.backend = backend

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in self.supported_backends:
            raise ValueError(
                f"SlidingPSN supports backend in {self.supported_backends}, got {value!r}"
            )
        self._backend = value

    def gen_gemm_weight(self, T: int) -> torch.Tensor:
        """The ``[T, T]`` matrix ``M`` with ``H = M X``: ``M[i, j] = W[k - 1 - (i - j)]`` for
        ``0 <= i - j < k``, else 0 (row ``i`` holds the last weights in columns
        ``max(0, i + 1 - k) .. i``)."""
        if isinstance(T, bool) or not isinstance(T, int) or T < 0:
            raise ValueError(f"T must be a non-negative int, got {T!r}")
        steps = torch.arange(T, device=self.weight.device)
        lag = steps[:, None] - steps[None, :]  # i - j
        in_band = (lag >= 0) & (lag < self.k)
        index = (self.k - 1 - lag).clamp(0, self.k - 1)
        return torch.where(in_band, self.weight[index], self.weight.new_zeros(()))

    def single_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """One step, pure: ``((spike [N, *],), (queue,))`` from ``(x [N, *],)`` and the
        state ``(queue,)`` (:func:`~sj_core.functional.sliding_psn_step`)."""
        (x,), (queue,) = _one_input(self, inputs, kwargs), states
        _check_step(self, x)
        spike, queue = sliding_psn_step(
            x, tuple(queue), self.weight, self.bias, self.surrogate_function
        )
        return (mark_module_spikes(spike, self.surrogate_function),), (list(queue),)

    def multi_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """The whole sequence ``x_seq`` ``[T, N, *]`` -> ``((spikes [T, N, *],), states)``
        (the state is not used, and returned as it is)."""
        (x_seq,) = _one_input(self, inputs, kwargs)
        _check_sequence(self, x_seq, None)
        x_flat = x_seq.flatten(1)  # [T, N*]
        if self._backend == "gemm" or x_seq.shape[0] == 0:
            # (conv1d cannot run on an empty sequence; the gemm form handles T == 0.)
            h_seq = torch.addmm(self.bias, self.gen_gemm_weight(x_seq.shape[0]), x_flat)
        else:
            # conv1d is a cross-correlation; left-padding by k - 1 makes it causal.
            x_time_last = F.pad(x_flat.t().unsqueeze(1), (self.k - 1, 0))  # [N*, 1, T+k-1]
            h_flat = F.conv1d(x_time_last, self.weight.view(1, 1, -1))  # [N*, 1, T]
            h_seq = h_flat.squeeze(1).t() + self.bias
        spikes = self.surrogate_function(h_seq).reshape(x_seq.shape)
        return (mark_module_spikes(spikes, self.surrogate_function),), tuple(states)

    def extra_repr(self) -> str:
        return f"k={self.k}, step_mode={self.step_mode}, backend={self.backend}"
