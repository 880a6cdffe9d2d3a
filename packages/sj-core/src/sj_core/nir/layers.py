"""Stateless layers <-> NIR nodes.

NIR shapes leave out the batch (and time) dimensions, so a per-sample shape here is one
sample of one step: ``[C, H, W]`` for a convolution, ``[features]`` for a linear layer.
``Flatten``'s ``start_dim``/``end_dim`` count those per-sample dimensions in NIR and the
batch-first ones in torch (``torch.nn.Flatten()``'s ``start_dim=1`` is NIR's 0), as
snnTorch writes them.

=================================================  =====================================
sj_core / torch                                    NIR
=================================================  =====================================
``layer.Linear``, ``nn.Linear``                    ``Affine`` (``Linear`` without bias)
``nn.Conv1d`` (``SeqToANNContainer`` in ``'m'``)   ``Conv1d`` (zero bias when it has none)
``layer.Conv2d``, ``nn.Conv2d``                    ``Conv2d`` (zero bias when it has none)
``layer.AvgPool2d``, ``nn.AvgPool2d``              ``AvgPool2d``
``AvgPool2d(divisor_override=1)``,                 ``SumPool2d``
``nn.LPPool2d(norm_type=1)``
``layer.Flatten``, ``nn.Flatten``                  ``Flatten``
=================================================  =====================================

sj_core has no ``Conv1d`` layer of its own: an imported ``Conv1d`` is an ``nn.Conv1d``,
inside a :class:`~sj_core.layer.SeqToANNContainer` in step mode ``'m'`` (time folded
into the batch). An imported ``SumPool2d`` is a ``layer.AvgPool2d`` with
``divisor_override=1``: the sum over each window, zero padding included.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import layer

__all__ = ["EXPORTED_LAYERS", "IMPORTED_LAYERS", "layer_to_nir", "nir_to_layer"]

#: The layers :func:`layer_to_nir` converts (for error messages).
EXPORTED_LAYERS = (
    "Linear, Conv1d, Conv2d, AvgPool2d (divisor_override=1: a sum), LPPool2d (norm_type=1), "
    "Flatten (sj_core.layer or torch.nn)"
)
#: The NIR nodes :func:`nir_to_layer` converts (for error messages).
IMPORTED_LAYERS = "Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten"


def _array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.numpy().copy()


def _pair(value: int | tuple[int, ...]) -> np.ndarray:
    return np.array((value, value) if isinstance(value, int) else tuple(value), dtype=np.int64)


def _unsupported(module: nn.Module, what: str) -> NotImplementedError:
    return NotImplementedError(f"{type(module).__name__} with {what} has no NIR equivalent")


def layer_to_nir(module: nn.Module, in_shape: tuple[int, ...], nir: ModuleType) -> Any | None:
    """The NIR node of layer ``module`` given its per-sample input shape, or ``None`` when
    ``module`` is none of :data:`EXPORTED_LAYERS`."""
    if isinstance(module, nn.Linear):
        return _linear(module, in_shape, nir)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv(module, in_shape, nir)
    if isinstance(module, nn.AvgPool2d):
        return _avg_pool2d(module, nir)
    if isinstance(module, nn.LPPool2d):
        return _lp_pool2d(module, nir)
    if isinstance(module, nn.Flatten):
        return _flatten(module, in_shape, nir)
    return None


def _linear(module: nn.Linear, in_shape: tuple[int, ...], nir: ModuleType) -> Any:
    if len(in_shape) != 1:
        # NIR's Affine maps one vector; a torch Linear over [*, features] maps many.
        raise NotImplementedError(
            f"{type(module).__name__} receives per-sample inputs of shape {list(in_shape)}; "
            "NIR's Affine takes a vector: flatten the input first (in a multi-step network, "
            "a torch.nn.Linear sees [T, N, features]: use sj_core.layer.Linear(..., "
            "step_mode='m') or wrap it in a SeqToANNContainer)"
        )
    if module.bias is None:
        return nir.Linear(weight=_array(module.weight))
    return nir.Affine(weight=_array(module.weight), bias=_array(module.bias))


def _conv(module: nn.Conv1d | nn.Conv2d, in_shape: tuple[int, ...], nir: ModuleType) -> Any:
    one_d = isinstance(module, nn.Conv1d)
    if module.padding_mode != "zeros":
        raise _unsupported(module, f"padding_mode={module.padding_mode!r}")
    if module.groups != 1:
        # NIR's convolutions take their input channels from the weight, in_channels / groups.
        raise _unsupported(module, f"groups={module.groups} (NIR's convolution types assume 1)")
    layout = "[C, L]" if one_d else "[C, H, W]"
    if len(in_shape) != len(layout.split(",")):
        raise ValueError(
            f"{type(module).__name__} received per-sample inputs of shape {list(in_shape)}; "
            f"expected {layout}"
        )
    weight = _array(module.weight)
    bias = (
        _array(module.bias)
        if module.bias is not None
        else np.zeros(weight.shape[0], dtype=weight.dtype)
    )
    if one_d:
        # NIR's Conv1d holds plain integers, where torch keeps 1-tuples.
        (stride,), (dilation,) = module.stride, module.dilation
        padding = module.padding if isinstance(module.padding, str) else module.padding[0]
        return nir.Conv1d(
            input_shape=int(in_shape[1]),
            weight=weight,
            stride=int(stride),
            padding=padding if isinstance(padding, str) else int(padding),
            dilation=int(dilation),
            groups=module.groups,
            bias=bias,
        )
    padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
    return nir.Conv2d(
        input_shape=tuple(in_shape[1:]),
        weight=weight,
        stride=_pair(module.stride),
        padding=padding,
        dilation=_pair(module.dilation),
        groups=module.groups,
        bias=bias,
    )


def _avg_pool2d(module: nn.AvgPool2d, nir: ModuleType) -> Any:
    padding = _pair(module.padding)
    if module.ceil_mode:
        raise _unsupported(module, "ceil_mode=True")
    stride = _pair(module.kernel_size if module.stride is None else module.stride)
    if module.divisor_override == 1:
        # Dividing by 1 sums each window (padded zeros add nothing): NIR's SumPool2d.
        return nir.SumPool2d(kernel_size=_pair(module.kernel_size), stride=stride, padding=padding)
    if module.divisor_override is not None:
        raise _unsupported(module, f"divisor_override={module.divisor_override}")
    if padding.any() and not module.count_include_pad:
        raise _unsupported(module, "padding and count_include_pad=False")
    return nir.AvgPool2d(kernel_size=_pair(module.kernel_size), stride=stride, padding=padding)


def _lp_pool2d(module: nn.LPPool2d, nir: ModuleType) -> Any:
    if float(module.norm_type) != 1.0:
        raise _unsupported(module, f"norm_type={module.norm_type} (norm_type=1 is a sum)")
    if module.ceil_mode:
        raise _unsupported(module, "ceil_mode=True")
    stride = module.kernel_size if module.stride is None else module.stride
    return nir.SumPool2d(
        kernel_size=_pair(module.kernel_size), stride=_pair(stride), padding=_pair(0)
    )


def _flatten(module: nn.Flatten, in_shape: tuple[int, ...], nir: ModuleType) -> Any:
    def per_sample(dim: int, name: str) -> int:
        if dim == 0:
            raise _unsupported(module, f"{name}=0 (flattening the batch dimension)")
        return dim - 1 if dim > 0 else dim

    return nir.Flatten(
        input_type={"input": np.array(in_shape, dtype=np.int64)},
        start_dim=per_sample(module.start_dim, "start_dim"),
        end_dim=per_sample(module.end_dim, "end_dim"),
    )


# -- import --------------------------------------------------------------------------------


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _padding(value: Any) -> str | tuple[int, ...]:
    # NIR files keep "same"/"valid" as text, numbers as arrays.
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) else _ints(value)


def _copy(parameter: torch.Tensor, array: Any) -> None:
    with torch.no_grad():
        parameter.copy_(torch.as_tensor(np.asarray(array)).reshape(parameter.shape))


def nir_to_layer(node_name: str, node: Any, step_mode: str, nir: ModuleType) -> nn.Module | None:
    """The sj_core layer of NIR ``node`` in ``step_mode``, or ``None`` when it is none of
    :data:`IMPORTED_LAYERS`."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _import_linear(node_name, node, step_mode, nir)
    if isinstance(node, nir.Conv1d):
        return _import_conv1d(node, step_mode)
    if isinstance(node, nir.Conv2d):
        return _import_conv2d(node, step_mode)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return layer.AvgPool2d(
            kernel_size=_ints(node.kernel_size),
            stride=_ints(node.stride),
            padding=_ints(node.padding),
            divisor_override=1 if isinstance(node, nir.SumPool2d) else None,
            step_mode=step_mode,
        )
    if isinstance(node, nir.Flatten):
        # NIR counts the dimensions of one sample; sj_core's Flatten those of one step [N, *].
        def batch_first(dim: int) -> int:
            return dim + 1 if dim >= 0 else dim

        return layer.Flatten(
            batch_first(int(node.start_dim)), batch_first(int(node.end_dim)), step_mode=step_mode
        )
    return None


def _import_linear(node_name: str, node: Any, step_mode: str, nir: ModuleType) -> nn.Module:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise NotImplementedError(
            f"NIR node {node_name!r} ({type(node).__name__}) has a weight of shape "
            f"{list(weight.shape)}; sj_core imports 2-D weights [out, in]"
        )
    has_bias = isinstance(node, nir.Affine)
    module = layer.Linear(weight.shape[1], weight.shape[0], bias=has_bias, step_mode=step_mode)
    _copy(module.weight, weight)
    if has_bias:
        _copy(module.bias, node.bias)
    return module


def _import_conv1d(node: Any, step_mode: str) -> nn.Module:
    weight = np.asarray(node.weight)
    groups = int(node.groups)
    conv = nn.Conv1d(
        weight.shape[1] * groups,  # the weight holds in_channels / groups
        weight.shape[0],
        kernel_size=weight.shape[2],
        stride=_ints(node.stride),
        padding=_padding(node.padding),
        dilation=_ints(node.dilation),
        groups=groups,
    )
    _copy(conv.weight, weight)
    _copy(conv.bias, node.bias)
    # sj_core has no Conv1d layer: in 'm' the container folds time into the batch.
    return layer.SeqToANNContainer(conv) if step_mode == "m" else conv


def _import_conv2d(node: Any, step_mode: str) -> nn.Module:
    weight = np.asarray(node.weight)
    groups = int(node.groups)
    module = layer.Conv2d(
        weight.shape[1] * groups,  # the weight holds in_channels / groups
        weight.shape[0],
        kernel_size=tuple(weight.shape[2:]),
        stride=_ints(node.stride),
        padding=_padding(node.padding),
        dilation=_ints(node.dilation),
        groups=groups,
        step_mode=step_mode,
    )
    _copy(module.weight, weight)
    _copy(module.bias, node.bias)
    return module
