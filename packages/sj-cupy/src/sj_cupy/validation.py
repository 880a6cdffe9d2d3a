"""Checks run before any work: what the cupy kernels can run, with messages that say
what is supported (SPEC 9: never silently emit something else).

Everything here raises ``NotImplementedError`` for a configuration the backend cannot
run (so ``backend='auto'`` may fall back), and ``ValueError`` for inconsistent shapes.
"""

from __future__ import annotations

import torch

from sj_core.surrogate import SurrogateFunctionBase

from .codegen import DTYPES, SURROGATES
from .launch import device_type

__all__ = ["check_surrogate", "check_tensors"]

_SUPPORTED_SURROGATES = ", ".join(SURROGATES)
# A dict keyed by dtype (not str(dtype)): cheap, and torch.compile traces it without fuss.
_KERNEL_DTYPES = {getattr(torch, name): name for name in DTYPES}
_SUPPORTED_DTYPES = ", ".join(str(dtype) for dtype in _KERNEL_DTYPES)


def check_surrogate(surrogate_function: object) -> tuple[str, list[float]]:
    """The kernel name and parameter values of a supported spiking surrogate.

    Raises:
        NotImplementedError: not a ``SurrogateFunctionBase``, a surrogate without a
            kernel, parameters other than the kernel's, or ``spiking=False``.
    """
    if not isinstance(surrogate_function, SurrogateFunctionBase):
        raise NotImplementedError(
            "the cupy backend needs a sj_core.surrogate.SurrogateFunctionBase (one of "
            f"{_SUPPORTED_SURROGATES}); got {type(surrogate_function).__name__}"
        )
    name = surrogate_function.kernel_name
    spec = SURROGATES.get(name)
    if spec is None:
        raise NotImplementedError(
            f"the cupy backend has no kernel for surrogate {name!r}; supported surrogates: "
            f"{_SUPPORTED_SURROGATES} (use backend='torch' for others)"
        )
    if not surrogate_function.spiking:
        raise NotImplementedError(
            f"the cupy backend emits binary spikes and does not support {name} with "
            "spiking=False (the smooth primitive as output); use backend='torch', or "
            "spiking=True"
        )
    params = surrogate_function.kernel_params()
    if tuple(params) != spec.params:
        raise NotImplementedError(
            f"the cupy kernel of {name} takes parameters {spec.params}, but this "
            f"surrogate reports {tuple(params)}"
        )
    return name, [float(params[p]) for p in spec.params]


def check_tensors(x_seq: torch.Tensor, **states: torch.Tensor | None) -> None:
    """``x_seq`` ``[T, *S]`` and the per-step ``states`` (``[*S]``, or ``[1]`` for
    ``r_tau``): a supported dtype, on the kernels' device type, all on one device.

    Raises:
        NotImplementedError: dtype, device type or mixed devices/dtypes.
        ValueError: a state whose shape is not one step of ``x_seq``.
    """
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"x_seq must be a tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 1:
        raise ValueError("x_seq must be [T, *S], got a 0-d tensor")
    if x_seq.dtype not in _KERNEL_DTYPES:
        raise NotImplementedError(
            f"the cupy backend does not support {x_seq.dtype}; supported dtypes: "
            f"{_SUPPORTED_DTYPES} (use backend='torch' for float64)"
        )
    expected_type = device_type()
    if x_seq.device.type != expected_type:
        raise NotImplementedError(
            f"the cupy backend runs on {expected_type} tensors, got x_seq on "
            f"{x_seq.device} (use backend='torch' there)"
        )
    for name, state in states.items():
        if state is None:
            continue
        if state.device != x_seq.device:
            raise NotImplementedError(
                f"the cupy backend needs every tensor on x_seq's device {x_seq.device}; "
                f"{name} is on {state.device}"
            )
        if name == "r_tau":
            if state.numel() != 1:
                raise ValueError(f"r_tau must have one element, got shape {tuple(state.shape)}")
            continue
        if state.dtype != x_seq.dtype:
            raise NotImplementedError(
                f"the cupy backend needs {name} in x_seq's dtype {x_seq.dtype}, got {state.dtype}"
            )
        if tuple(state.shape) != tuple(x_seq.shape[1:]):
            raise ValueError(
                f"{name} shape {tuple(state.shape)} does not match one step of x_seq "
                f"{tuple(x_seq.shape[1:])}"
            )
