"""Argument and input checks shared by the neuron modules.

Each raises ``TypeError``/``ValueError`` naming the argument and what is accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..surrogate import Sigmoid

__all__ = [
    "check_bool",
    "check_float",
    "check_input",
    "check_positive",
    "check_surrogate",
    "check_tau",
]


def check_float(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """``value`` as a float; ``TypeError`` naming ``name`` if it is not a real number."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        accepted = "a float or None" if allow_none else "a float"
        raise TypeError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if value != value:  # NaN; written so that torch.compile can trace it (not math.isnan)
        raise ValueError(f"{name} must be a number, got nan")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool; ``TypeError`` naming ``name`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return value


def check_surrogate(surrogate_function: Any) -> Callable:
    if surrogate_function is None:
        return Sigmoid(alpha=4.0)
    if not callable(surrogate_function):
        raise TypeError(
            "surrogate_function must be a sj_core.surrogate.SurrogateFunctionBase (or a "
            f"callable), got {type(surrogate_function).__name__}"
        )
    return surrogate_function


def check_input(module: torch.nn.Module, x: torch.Tensor, step_mode: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__} expects a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{type(module).__name__} expects a floating-point input "
            f"(float16, bfloat16, float32 or float64), got {x.dtype}"
        )
    if step_mode == "m" and x.dim() < 2:
        raise ValueError(
            f"{type(module).__name__} in step_mode 'm' expects an input of shape "
            f"[T, N, *] (at least 2-D), got shape {tuple(x.shape)}"
        )


def check_tau(name: str, tau: Any) -> float:
    """``tau`` as a float; it must be > 1 so that the decay ``1 - 1/tau`` is in (0, 1)."""
    tau = check_float(name, tau)
    if not tau > 1.0:
        raise ValueError(
            f"{name} must be > 1 (so that the decay 1 - 1/{name} is in (0, 1)), got {tau}"
        )
    return tau


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless it is > 0."""
    value = check_float(name, value)
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value
