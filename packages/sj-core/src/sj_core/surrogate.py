"""Surrogate gradient functions.

A spiking neuron fires with the Heaviside step ``S = Θ(x)`` (``x = H - V_th``; a spike
at equality), which has no useful gradient. A surrogate keeps the step in the forward
pass and uses the derivative of a smooth *primitive* ``g(x)`` in the backward pass.
With ``spiking=False`` the forward pass outputs the primitive itself (differentiated by
autograd as usual).

Every surrogate exposes the pieces a kernel backend needs to reproduce it exactly:
:attr:`SurrogateFunctionBase.kernel_name` and :meth:`SurrogateFunctionBase.kernel_params`.
The formulas are those of SPEC.md section 4.

Conventions of the primitives: piecewise functions are built with ``torch.where``, and
every branch is evaluated at a *safe* argument outside its own region (``x`` where the
branch is used, a harmless constant elsewhere), so an unused branch never produces
``nan``/``inf`` values or gradients (``where`` multiplies an unused branch's gradient
by zero, and ``0 * inf = nan``).

Example::

    >>> sg = ATan(alpha=2.0)
    >>> x = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    >>> sg(x)  # spikes
    tensor([0., 1., 1.], grad_fn=<_SpikeWithSurrogateBackward>)
    >>> sg(x).sum().backward()
    >>> torch.allclose(x.grad, sg.gradient(x.detach()))
    True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SurrogateFunctionBase",
    "heaviside",
    "Sigmoid",
    "ATan",
    "PiecewiseQuadratic",
    "PiecewiseExp",
    "SoftSign",
    "SuperSpike",
    "Erf",
    "PiecewiseLeakyReLU",
    "QPseudoSpike",
    "LeakyKReLU",
    "S2NN",
    "NonzeroSignLogAbs",
    "LogTailedReLU",
    "Rect",
    "SquarewaveFourierSeries",
    "FakeNumericalGradient",
]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """``1`` where ``x >= 0`` else ``0``, in ``x``'s dtype."""
    return (x >= 0).to(x.dtype)


# -- parameter checks ---------------------------------------------------------------------


def _real(owner: str, name: str, value: Any) -> float:
    """``value`` as a finite float; ``TypeError``/``ValueError`` naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: {name} must be a real number (int or float), "
            f"got {value!r} ({type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return value


def _greater(owner: str, name: str, value: Any, bound: float) -> float:
    """``value`` as a float that must be ``> bound`` (the formula is undefined otherwise)."""
    value = _real(owner, name, value)
    if not value > bound:
        raise ValueError(f"{owner}: {name} must be > {bound}, got {value}")
    return value


def _full(x: torch.Tensor, mask: torch.Tensor, inside: float, outside: float) -> torch.Tensor:
    """``inside`` where ``mask`` else ``outside``, in ``x``'s dtype and shape.

    (``torch.where`` on two Python scalars would return the default dtype.)
    """
    return torch.where(mask, torch.full_like(x, inside), torch.full_like(x, outside))


# -- the spiking autograd function and the base class -------------------------------------


class _SpikeWithSurrogate(torch.autograd.Function):
    """Heaviside forward; ``grad * gradient_fn(x, *params)`` backward.

    Written with a separate ``setup_context`` and a generated vmap rule, so that the
    ``torch.func`` transforms (``grad``, ``vmap``, ``functional_call``) accept it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, gradient_fn, *params):
        return heaviside(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, gradient_fn, *params = inputs
        ctx.save_for_backward(x)
        ctx.gradient_fn = gradient_fn
        ctx.params = tuple(params)

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
    A subclass whose parameters are not a single ``alpha`` calls
    :meth:`_init_surrogate` instead of ``SurrogateFunctionBase.__init__``.

    Args:
        alpha: the sharpness parameter (its meaning depends on the subclass).
        spiking: output spikes (Heaviside) if true, else the primitive.

    Shapes: any; the output has the input's shape and dtype.

    Example::

        >>> sg = Sigmoid(alpha=4.0, spiking=False)
        >>> sg(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    #: Names of the constructor's numeric parameters, in the order the static methods
    #: take them. Kernel backends read them through :meth:`kernel_params`; never rename.
    param_names: ClassVar[tuple[str, ...]] = ("alpha",)
    #: Whether ``spiking=False`` is possible (a primitive exists).
    has_primitive: ClassVar[bool] = True

    def __init__(self, alpha: float, spiking: bool = True) -> None:
        self._init_surrogate(spiking, alpha=_real(type(self).__name__, "alpha", alpha))

    def _init_surrogate(self, spiking: bool, **params: float) -> None:
        """Initialise the module, store ``params`` as attributes and set the mode.

        ``params`` must be exactly :attr:`param_names` (already validated by the caller).
        """
        nn.Module.__init__(self)
        if tuple(params) != self.param_names:
            raise TypeError(
                f"{type(self).__name__}: parameters {tuple(params)} do not match "
                f"param_names {self.param_names}"
            )
        for name, value in params.items():
            setattr(self, name, value)
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
            if not (torch.is_grad_enabled() and x.requires_grad):
                # Nothing will be differentiated: skip the autograd Function (inference).
                return heaviside(x)
            return _SpikeWithSurrogate.apply(x, self.surrogate_gradient, *self.params)
        return self.primitive_function(x, *self.params)

    def extra_repr(self) -> str:
        values = ", ".join(f"{name}={value}" for name, value in self.kernel_params().items())
        return f"{values}, spiking={self.spiking}"


# -- the surrogates of SPEC section 4 -----------------------------------------------------


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


class PiecewiseQuadratic(SurrogateFunctionBase):
    """``g(x) = -alpha^2 x |x| / 2 + alpha x + 1/2`` for ``|x| <= 1/alpha``; 0 below, 1 above.

    ``g'(x) = -alpha^2 |x| + alpha`` for ``|x| <= 1/alpha``, else 0. ``alpha > 0``.
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(_greater("PiecewiseQuadratic", "alpha", alpha, 0.0), spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        inside = -(alpha**2) / 2 * x * x.abs() + alpha * x + 0.5
        return torch.where(x.abs() <= 1.0 / alpha, inside, heaviside(x))

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        inside = -(alpha**2) * x.abs() + alpha
        return torch.where(x.abs() <= 1.0 / alpha, inside, torch.zeros_like(x))


class PiecewiseExp(SurrogateFunctionBase):
    """``g(x) = e^(alpha x) / 2`` for ``x < 0``, ``1 - e^(-alpha x) / 2`` else.

    ``g'(x) = (alpha / 2) e^(-alpha |x|)``.
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        negative = x < 0
        # Each exponential only sees its own half-line (0 elsewhere): no overflow there.
        x_neg = torch.where(negative, x, torch.zeros_like(x))
        x_pos = torch.where(negative, torch.zeros_like(x), x)
        return torch.where(
            negative, torch.exp(alpha * x_neg) / 2, 1 - torch.exp(-alpha * x_pos) / 2
        )

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha / 2 * torch.exp(-alpha * x.abs())


class SoftSign(SurrogateFunctionBase):
    """``g(x) = (softsign(alpha x) + 1) / 2``; ``g'(x) = 1 / (2 alpha (1/alpha + |x|)^2)``.

    ``alpha > 0``.
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(_greater("SoftSign", "alpha", alpha, 0.0), spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return (F.softsign(alpha * x) + 1) / 2

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return 1 / (2 * alpha * (1 / alpha + x.abs()) ** 2)


class SuperSpike(SurrogateFunctionBase):
    """Spiking only (no primitive): ``g'(x) = alpha / (|x| + 1)^2``."""

    has_primitive: ClassVar[bool] = False

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha / (x.abs() + 1) ** 2


class Erf(SurrogateFunctionBase):
    """``g(x) = erfc(-alpha x) / 2``; ``g'(x) = (alpha / sqrt(pi)) e^(-(alpha x)^2)``."""

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.special.erfc(-alpha * x) / 2

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha / math.sqrt(math.pi) * torch.exp(-((alpha * x) ** 2))


class PiecewiseLeakyReLU(SurrogateFunctionBase):
    """A linear ramp of width ``2w`` with leaky tails of slope ``c``.

    ``g(x) = x / (2w) + 1/2`` for ``|x| < w``, ``c x + c w`` below, ``c x - c w + 1`` above;
    ``g'(x) = 1 / (2w)`` for ``|x| < w``, else ``c`` (SPEC 9: the reference's torch
    formula, on every backend). ``w > 0``.
    """

    param_names: ClassVar[tuple[str, ...]] = ("w", "c")

    def __init__(self, w: float = 1.0, c: float = 0.01, spiking: bool = True) -> None:
        name = "PiecewiseLeakyReLU"
        self._init_surrogate(spiking, w=_greater(name, "w", w, 0.0), c=_real(name, "c", c))

    @staticmethod
    def primitive_function(x: torch.Tensor, w: float, c: float) -> torch.Tensor:
        tails = torch.where(x < 0, c * x + c * w, c * x - c * w + 1)
        return torch.where(x.abs() < w, x / (2 * w) + 0.5, tails)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, w: float, c: float) -> torch.Tensor:
        return _full(x, x.abs() < w, 1 / (2 * w), c)


class QPseudoSpike(SurrogateFunctionBase):
    """``g'(x) = (1 + 2|x| / (alpha - 1))^(-alpha)``, a tail that decays like ``|x|^-alpha``.

    ``g(x) = 1 - (1 + 2x/(alpha-1))^(1-alpha) / 2`` for ``x >= 0``,
    ``(1 - 2x/(alpha-1))^(1-alpha) / 2`` for ``x < 0``. ``alpha > 1``.
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(_greater("QPseudoSpike", "alpha", alpha, 1.0), spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        nonnegative = x >= 0
        # Each power sees a base >= 1 (0 substituted outside its half-line).
        x_pos = torch.where(nonnegative, x, torch.zeros_like(x))
        x_neg = torch.where(nonnegative, torch.zeros_like(x), x)
        upper = 1 - (1 + 2 * x_pos / (alpha - 1)) ** (1 - alpha) / 2
        lower = (1 - 2 * x_neg / (alpha - 1)) ** (1 - alpha) / 2
        return torch.where(nonnegative, upper, lower)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return (1 + 2 * x.abs() / (alpha - 1)) ** (-alpha)


class LeakyKReLU(SurrogateFunctionBase):
    """``g(x) = k x`` for ``x >= 0``, ``leak x`` below; ``g'(x) = k`` or ``leak``.

    The argument order ``(spiking, leak, k)`` is the reference system's.
    """

    param_names: ClassVar[tuple[str, ...]] = ("leak", "k")

    def __init__(self, spiking: bool = True, leak: float = 0.0, k: float = 1.0) -> None:
        name = "LeakyKReLU"
        self._init_surrogate(spiking, leak=_real(name, "leak", leak), k=_real(name, "k", k))

    @staticmethod
    def primitive_function(x: torch.Tensor, leak: float, k: float) -> torch.Tensor:
        return torch.where(x >= 0, k * x, leak * x)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, leak: float, k: float) -> torch.Tensor:
        return _full(x, x >= 0, k, leak)


class S2NN(SurrogateFunctionBase):
    """Sigmoid below zero, a logarithm above.

    ``g(x) = sigmoid(alpha x)`` for ``x < 0``, ``beta ln(|x + 1| + 1e-5) + 1/2`` else;
    ``g'(x) = alpha s (1 - s)`` (``s = sigmoid(alpha x)``) for ``x < 0``, ``beta / (x + 1)``
    else. (The ``1e-5`` in the primitive is the reference's; the gradient omits it, so the
    two differ by a relative ``1e-5`` for ``x >= 0``.)
    """

    param_names: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    def __init__(self, alpha: float = 4.0, beta: float = 1.0, spiking: bool = True) -> None:
        name = "S2NN"
        self._init_surrogate(
            spiking, alpha=_real(name, "alpha", alpha), beta=_real(name, "beta", beta)
        )

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        negative = x < 0
        x_pos = torch.where(negative, torch.zeros_like(x), x)  # keeps the log's argument >= 1
        upper = beta * torch.log((x_pos + 1).abs() + 1e-5) + 0.5
        return torch.where(negative, torch.sigmoid(alpha * x), upper)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        negative = x < 0
        s = torch.sigmoid(alpha * x)
        x_pos = torch.where(negative, torch.zeros_like(x), x)  # no division by 0 at x = -1
        return torch.where(negative, alpha * s * (1 - s), beta / (x_pos + 1))


class NonzeroSignLogAbs(SurrogateFunctionBase):
    """``g(x) = s log(alpha s x + 1)`` with ``s = +1`` for ``x >= 0`` else ``-1``.

    ``g'(x) = 1 / (1/alpha + |x|)``. ``alpha > 0`` (``1/alpha`` and the log's argument).
    Note the primitive is odd around 0 (it is not a step-like function in ``[0, 1]``).
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(_greater("NonzeroSignLogAbs", "alpha", alpha, 0.0), spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        # Written with s (not |x|) so autograd gives the right slope alpha at x = 0.
        s = heaviside(x) * 2 - 1
        return s * torch.log(alpha * s * x + 1)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return 1 / (1 / alpha + x.abs())


class LogTailedReLU(SurrogateFunctionBase):
    """``g(x) = ln x + 1`` for ``x > 1``, ``leaky_relu(x, alpha)`` else.

    ``g'(x) = alpha`` for ``x <= 0``, ``1`` for ``0 < x <= 1``, ``1/x`` for ``x > 1``.
    """

    def __init__(self, alpha: float = 0.0, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        tail = x > 1
        x_tail = torch.where(tail, x, torch.ones_like(x))  # log of a number >= 1 only
        return torch.where(tail, torch.log(x_tail) + 1, F.leaky_relu(x, alpha))

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        tail = x > 1
        x_tail = torch.where(tail, x, torch.ones_like(x))
        return torch.where(tail, 1 / x_tail, _full(x, x > 0, 1.0, alpha))


class Rect(SurrogateFunctionBase):
    """``g(x) = clamp(alpha x + 1/2, 0, 1)``; ``g'(x) = alpha`` for ``|x| < 1/(2 alpha)``, else 0.

    ``alpha > 0``.
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(_greater("Rect", "alpha", alpha, 0.0), spiking)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.clamp(alpha * x + 0.5, 0.0, 1.0)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return _full(x, x.abs() < 1 / (2 * alpha), alpha, 0.0)


class SquarewaveFourierSeries(SurrogateFunctionBase):
    """The first ``n - 1`` odd terms of the Fourier series of a square wave of period ``T``.

    ``g(x) = 1/2 + (2/pi) sum_{i=1}^{n-1} sin((2i-1) w x) / (2i-1)``, ``w = 2 pi / T_period``;
    ``g'(x) = (4 / T_period) sum_{i=1}^{n-1} cos((2i-1) w x)``.
    ``n`` is an int ``>= 2`` (kept as an int in :meth:`kernel_params`), ``T_period > 0``.
    """

    param_names: ClassVar[tuple[str, ...]] = ("n", "T_period")

    def __init__(self, n: int = 2, T_period: float = 8.0, spiking: bool = True) -> None:
        name = "SquarewaveFourierSeries"
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{name}: n must be an int >= 2, got {n!r} ({type(n).__name__})")
        if n < 2:
            raise ValueError(f"{name}: n must be an int >= 2, got {n}")
        T_period = _greater(name, "T_period", T_period, 0.0)
        self._init_surrogate(spiking, n=int(n), T_period=T_period)

    @staticmethod
    def primitive_function(x: torch.Tensor, n: int, T_period: float) -> torch.Tensor:
        w = 2 * math.pi / T_period
        total = torch.zeros_like(x)
        for i in range(1, n):
            total = total + torch.sin((2 * i - 1) * w * x) / (2 * i - 1)
        return 0.5 + 2 / math.pi * total

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, n: int, T_period: float) -> torch.Tensor:
        w = 2 * math.pi / T_period
        total = torch.zeros_like(x)
        for i in range(1, n):
            total = total + torch.cos((2 * i - 1) * w * x)
        return 4 / T_period * total


class FakeNumericalGradient(SurrogateFunctionBase):
    """Spiking only (no primitive): ``g'(x) = min(1/|x|, alpha)`` (``alpha`` at ``x = 0``)."""

    has_primitive: ClassVar[bool] = False

    def __init__(self, alpha: float = 0.3, spiking: bool = True) -> None:
        super().__init__(alpha, spiking)

    @staticmethod
    def surrogate_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
        # 1/0 = inf in floating point, so x = 0 gets alpha without a special case.
        return torch.clamp(torch.reciprocal(x.abs()), max=alpha)
