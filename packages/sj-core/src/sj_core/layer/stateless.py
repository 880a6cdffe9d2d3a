"""Step-mode-aware versions of PyTorch's stateless layers.

Each class subclasses the torch layer, so parameters, buffers and ``state_dict`` keys
are the torch layer's (checkpoints interchange). In step mode ``'s'`` a layer *is* the
torch layer. In step mode ``'m'`` its input is a sequence ``[T, N, *]``: time is folded
into the batch (``[T * N, *]``), the torch layer runs once, and the result is unfolded
to ``[T, N, *out]``. For :class:`BatchNorm2d` that means statistics over ``T * N``.

Example::

    >>> conv = Conv2d(3, 8, kernel_size=3, padding=1, step_mode="m")
    >>> conv(torch.rand(4, 2, 3, 16, 16)).shape      # [T, N, C, H, W]
    torch.Size([4, 2, 8, 16, 16])
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..base import StepModule
from ._shapes import check_multi_step_input

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "TimeFoldedLayer",
]


def _unfold_time(y: Any, steps: int, batch: int) -> Any:
    """``[T * N, *]`` -> ``[T, N, *]`` for a tensor or each tensor of a tuple."""
    if isinstance(y, tuple):  # MaxPool2d(return_indices=True): (output, indices)
        return tuple(item.unflatten(0, (steps, batch)) for item in y)
    return y.unflatten(0, (steps, batch))


def _with_step_mode(base_repr: str, step_mode: str) -> str:
    return f"{base_repr}, step_mode={step_mode}" if base_repr else f"step_mode={step_mode}"


class TimeFoldedLayer(StepModule):
    """Mixin for a torch layer: itself in ``'s'``; time folded into batch in ``'m'``.

    Put it before the torch layer in the bases so that its :meth:`forward` wraps the
    layer's; set the class attributes for other ranks. Example::

        class Conv1d(TimeFoldedLayer, nn.Conv1d):
            multi_step_layout = "[T, N, C, L]"
            multi_step_dim = 4

            def __init__(self, *args, step_mode="s", **kwargs):
                super().__init__(*args, **kwargs)
                self.step_mode = step_mode
    """

    #: Input layout accepted in step mode ``'m'`` (for error messages).
    multi_step_layout: ClassVar[str] = "[T, N, C, H, W]"
    #: Input rank required in step mode ``'m'``.
    multi_step_dim: ClassVar[int] = 5

    def forward(self, x: torch.Tensor) -> Any:
        """``x``: one step ``[N, *]`` in ``'s'``; a sequence ``[T, N, *]`` in ``'m'``."""
        if self.step_mode == "s":
            return super().forward(x)
        check_multi_step_input(
            self,
            x,
            min_dim=self.multi_step_dim,
            max_dim=self.multi_step_dim,
            layout=self.multi_step_layout,
        )
        steps, batch = x.shape[0], x.shape[1]
        return _unfold_time(super().forward(x.flatten(0, 1)), steps, batch)

    def extra_repr(self) -> str:
        return _with_step_mode(super().extra_repr(), self.step_mode)


class Linear(nn.Linear, StepModule):
    """``nn.Linear`` with a step mode; input ``[N, *, in]`` (``'s'``) or
    ``[T, N, *, in]`` (``'m'``), output with ``in`` replaced by ``out_features``.

    The linear map acts on the last dimension only, so ``'m'`` needs no folding.

    Example::

        >>> Linear(4, 3, step_mode="m")(torch.rand(5, 2, 4)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        step_mode: str = "s",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            check_multi_step_input(
                self, x, min_dim=3, max_dim=None, layout="[T, N, *, in_features]"
            )
        return super().forward(x)

    def extra_repr(self) -> str:
        return _with_step_mode(super().extra_repr(), self.step_mode)


class Conv2d(TimeFoldedLayer, nn.Conv2d):
    """``nn.Conv2d`` with a step mode; input ``[N, C, H, W]`` (``'s'``) or
    ``[T, N, C, H, W]`` (``'m'``).

    Example::

        >>> Conv2d(3, 8, 3, step_mode="m")(torch.rand(4, 2, 3, 9, 9)).shape
        torch.Size([4, 2, 8, 7, 7])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        step_mode: str = "s",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self.step_mode = step_mode


class BatchNorm2d(TimeFoldedLayer, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with a step mode; input ``[N, C, H, W]`` (``'s'``) or
    ``[T, N, C, H, W]`` (``'m'``, statistics over ``T * N * H * W`` per channel).

    Example::

        >>> BatchNorm2d(8, step_mode="m")(torch.rand(4, 2, 8, 5, 5)).shape
        torch.Size([4, 2, 8, 5, 5])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        step_mode: str = "s",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.step_mode = step_mode


class MaxPool2d(TimeFoldedLayer, nn.MaxPool2d):
    """``nn.MaxPool2d`` with a step mode; input ``[N, C, H, W]`` (``'s'``) or
    ``[T, N, C, H, W]`` (``'m'``). With ``return_indices=True`` both outputs are
    unfolded to ``[T, N, C, H_out, W_out]`` in ``'m'``.

    Example::

        >>> MaxPool2d(2, step_mode="m")(torch.rand(4, 2, 3, 8, 8)).shape
        torch.Size([4, 2, 3, 4, 4])
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
        step_mode: str = "s",
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        self.step_mode = step_mode


class AvgPool2d(TimeFoldedLayer, nn.AvgPool2d):
    """``nn.AvgPool2d`` with a step mode; input ``[N, C, H, W]`` (``'s'``) or
    ``[T, N, C, H, W]`` (``'m'``).

    Example::

        >>> AvgPool2d(2, step_mode="m")(torch.rand(4, 2, 3, 8, 8)).shape
        torch.Size([4, 2, 3, 4, 4])
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        step_mode: str = "s",
    ) -> None:
        super().__init__(
            kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        )
        self.step_mode = step_mode


class AdaptiveAvgPool2d(TimeFoldedLayer, nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` with a step mode; input ``[N, C, H, W]`` (``'s'``) or
    ``[T, N, C, H, W]`` (``'m'``).

    Example::

        >>> AdaptiveAvgPool2d(1, step_mode="m")(torch.rand(4, 2, 3, 8, 8)).shape
        torch.Size([4, 2, 3, 1, 1])
    """

    def __init__(
        self, output_size: int | None | tuple[int | None, int | None], step_mode: str = "s"
    ) -> None:
        super().__init__(output_size)
        self.step_mode = step_mode


class Flatten(nn.Flatten, StepModule):
    """``nn.Flatten`` with a step mode. ``start_dim`` and ``end_dim`` count the
    dimensions of *one step* in both modes, so the time dimension is never flattened.

    Example::

        >>> Flatten(step_mode="m")(torch.rand(4, 2, 3, 5, 5)).shape   # [T, N, C, H, W]
        torch.Size([4, 2, 75])
        >>> Flatten()(torch.rand(2, 3, 5, 5)).shape                    # [N, C, H, W]
        torch.Size([2, 75])
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, step_mode: str = "s") -> None:
        super().__init__(start_dim, end_dim)
        self.step_mode = step_mode

    def _sequence_dim(self, dim: int, step_rank: int, x: torch.Tensor) -> int:
        """A dim of one step -> the same dim of the ``[T, *step]`` sequence."""
        if not -step_rank <= dim < step_rank:
            raise IndexError(
                f"Flatten dim {dim} is out of range for one step of rank {step_rank} "
                f"(input in step_mode 'm' of shape {tuple(x.shape)})"
            )
        return dim + 1 if dim >= 0 else dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``'s'``: as ``nn.Flatten``. ``'m'``: ``[T, *step]`` -> ``[T, *flattened step]``."""
        if self.step_mode == "s":
            return super().forward(x)
        check_multi_step_input(self, x, min_dim=2, max_dim=None, layout="[T, N, *]")
        step_rank = x.dim() - 1
        start = self._sequence_dim(self.start_dim, step_rank, x)
        end = self._sequence_dim(self.end_dim, step_rank, x)
        return x.flatten(start, end)

    def extra_repr(self) -> str:
        return _with_step_mode(super().extra_repr(), self.step_mode)
