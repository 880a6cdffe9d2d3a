"""The eager execution path: the wrappers called directly, without the op dispatcher.

The ``sj_flexsn`` custom operators (:mod:`sj_flexsn.custom_ops`) are what ``torch.compile``
and other tracers see. Outside tracing, going through ``torch.library``'s Python
dispatch and autograd glue costs about 100 microseconds per training call, as much as the
kernels themselves at small ``T``; this module runs the same wrappers with the same saved
tensors through a plain ``torch.autograd.Function`` instead. :func:`use_eager_path`
decides which path a call takes.

Example::

    >>> outputs = FlexSNTrainingFunction.apply(entry, handle, True, x_seq, v_init)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .custom_ops import FlexSNKernelHandle
from .wrapper import backward_with_layout, flexsn_forward

__all__ = ["FlexSNTrainingFunction", "use_eager_path"]

_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def use_eager_path(tensors: Sequence[torch.Tensor]) -> bool:
    """True unless something traces the call (``torch.compile``, a dispatch mode such as
    ``make_fx`` or fake tensors, or tensor subclasses): those need the custom ops."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    return all(type(t) in _PLAIN_TENSOR_TYPES for t in tensors)


class FlexSNTrainingFunction(torch.autograd.Function):
    """Training forward and backward kernels of one handle, for eager mode.

    ``apply(entry, handle, store_state_seqs, *tensors) -> (*outputs, *states)`` with
    ``tensors = (*input_seqs, *init_states, *captured)``; the same contract as
    ``sj_flexsn::forward`` and its registered backward. ``handle`` only names the kernels
    in messages; ``entry`` holds them.
    """

    @staticmethod
    def forward(ctx, entry: FlexSNKernelHandle, handle: int, store_state_seqs: bool, *tensors):
        info = entry.training_info
        results = flexsn_forward(
            entry.forward_kernel, info, *tensors, store_state_seqs=store_state_seqs
        )
        base = info.num_outputs + info.num_states
        # Each intermediate is re-read from an input, an output, or a stored buffer.
        saved = [tensors[-m - 1] if m < 0 else results[m] for m in info.c2k_return_mapping[base:]]
        captured = tensors[info.num_inputs + info.num_states :]
        ctx.save_for_backward(*saved, *captured)
        x = tensors[0]
        # ``entry`` (the kernels) lives on the context: no registry lookup, and no handle
        # reference to count, in the backward pass.
        ctx.flexsn_call = (entry, len(saved), x.shape[0], x.shape[1:], x.dtype, x.device)
        ctx.set_materialize_grads(False)
        return results[:base]

    @staticmethod
    def backward(ctx, *grads):
        entry, num_saved, T, step, dtype, device = ctx.flexsn_call
        stored = ctx.saved_tensors
        results = backward_with_layout(
            entry.backward_kernel,
            entry.training_info,
            grads,
            stored[:num_saved],
            stored[num_saved:],
            T=T,
            step=step,
            dtype=dtype,
            device=device,
            needs_input_grad=ctx.needs_input_grad[3:],
        )
        return (None, None, None, *results)
