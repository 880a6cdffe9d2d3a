"""Surrogate gradient functions.

A spiking neuron fires with the Heaviside step ``S = Θ(x)`` (``x = H - V_th``; a spike
at equality), which has no useful gradient. A surrogate keeps the step in the forward
pass and uses the derivative of a smooth *primitive* ``g(x)`` in the backward pass.
With ``spiking=False`` the forward pass outputs the primitive itself (differentiated by
autograd as usual).

Every surrogate exposes the pieces a kernel backend needs to reproduce it exactly:
:attr:`SurrogateFunctionBase.kernel_name` and :meth:`SurrogateFunctionBase.kernel_params`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

__all__ = [
    "SurrogateFunctionBase",
    "heaviside",
    "Sigmoid",
    "ATan",
]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """``1`` where ``x >= 0`` else ``0``, in ``x``'s dtype."""
    return (x >= 0).to(x.dtype)


class _SpikeWithSurrogate(torch.autograd.Function):
    """Heaviside forward; ``grad * gradient_fn(x, *params)`` backward."""

    @staticmethod
    def forward(ctx, x, gradient_fn, *params):
        ctx.save_for_backward(x)
        ctx.gradient_fn = gradient_fn
        ctx.params = params
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_x = grad_output * ctx.gradient_fn(x, *ctx.params)
        return (grad_x, None) + (None,) * len(ctx.params)


class SurrogateFunctionBase(nn.Module):
    """Base class of surrogate functions.

    Subclasses define two static methods taking ``(x, *params)``:
    ``primitive_function`` (the smooth function, ``spiking=False`` forward) and
    ``surrogate_gradient`` (its closed-form derivative, used in the backward of the
    spiking forward), and list their parameter names in :attr:`param_names`.

    Args:
        alpha: the sharpness parameter (its meaning depends on the subclass).
        spiking: output spikes (Heaviside) if true, else the primitive.

    Shapes: any; the output has the input's shape and dtype.
    """

    #: Names of the constructor's float parameters, in the order the static methods
    #: take them.
    param_names: ClassVar[tuple[str, ...]] = ("alpha",)
    #: Whether ``spiking=False`` is possible (a primitive exists).
    has_primitive: ClassVar[bool] = True

    def __init__(self, alpha: float, spiking: bool = True) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.spiking = True
        self.set_spiking_mode(spiking)

    # -- the two functions every subclass provides ------------------------------------

    @staticmethod
    def primitive_function(x: torch.Tensor, *params: float) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, *params: float) -> torch.Tensor:
        raise NotImplementedError

    # -- public API ------------------------------------------------------------------

    @property
    def params(self) -> tuple[float, ...]:
        """The parameter values, in :attr:`param_names` order."""
        return tuple(getattr(self, name) for name in self.param_names)

    @property
    def kernel_name(self) -> str:
        """The name kernel backends use to look up this surrogate's formula."""
        return type(self).__name__

    def kernel_params(self) -> dict[str, float]:
        """Parameter name -> value, everything a kernel needs besides the name."""
        return dict(zip(self.param_names, self.params, strict=True))

    def set_spiking_mode(self, spiking: bool) -> None:
        """Switch between spike output (``True``) and primitive output (``False``)."""
        if not isinstance(spiking, bool):
            raise TypeError(f"spiking must be a bool, got {type(spiking).__name__}")
        if not spiking and not self.has_primitive:
            raise ValueError(
                f"{type(self).__name__} has no primitive function; it supports spiking=True only"
            )
        self.spiking = spiking

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate gradient at ``x`` (what the spiking backward multiplies by)."""
        return self.surrogate_gradient(x, *self.params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return _SpikeWithSurrogate.apply(x, self.surrogate_gradient, *self.params)
        return self.primitive_function(x, *self.params)

    def extra_repr(self) -> str:
        values = ", ".join(f"{name}={value}" for name, value in self.kernel_params().items())
        return f"{values}, spiking={self.spiking}"


class Sigmoid(SurrogateFunctionBase):
    """``g(x) = sigmoid(alpha x)``; ``g'(x) = alpha s (1 - s)`` with ``s = sigmoid(alpha x)``."""

    def __init__(self, alpha: float = 4.0, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.sigmoid(alpha * x)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1.0 - s)


class ATan(SurrogateFunctionBase):
    """``g(x) = atan(pi alpha x / 2) / pi + 1/2``.

    ``g'(x) = (alpha / 2) / (1 + (pi alpha x / 2)^2)``.
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2)
