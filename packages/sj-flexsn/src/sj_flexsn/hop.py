"""FlexSN's time scan as a higher-order operator that ``torch.compile`` can capture.

This is the ``hop`` backend of FlexSN (SPEC section 6). The pieces live in small modules;
this one gathers the public API and builds the backend's kernel object:

* :func:`eager_scan`, :func:`eager_scan_final_state` — the scan as a Python loop, the
  semantics everything else matches (:mod:`sj_flexsn.hop_eager`).
* :class:`FlexSNScan`, :data:`flex_sn_scan`, :data:`flex_sn_scan_final_state` — the scan
  as a HOP with autograd, functionalization, fake and proxy tracing
  (:mod:`sj_flexsn.hop_op`).
* :func:`dynamo_hop_available` — whether Dynamo captures ``flex_sn_scan`` as one node,
  closures and parameters included (:mod:`sj_flexsn.hop_dynamo`).
* ``lowerable_*`` — experimental scans through PyTorch's ``scan`` / ``while_loop``
  operators (:mod:`sj_flexsn.hop_lowerable`).
* :func:`build_hop_kernel` — the ``flexsn`` operator of the ``hop`` backend.

Under ``torch.compile`` the scan unrolls into ``T`` copies of ``core``'s aten ops
(AOTAutograd traces through the operator); gradients therefore reach inputs, initial
states and every tensor ``core`` captures, compiled or not. Unrolling fixes ``T``: each
new sequence length compiles a new graph (Dynamo's recompile limit then applies).

Example::

    >>> def lif(x, v):
    ...     h = v + (x - v) / 2.0
    ...     s = (h >= 1.0).to(h.dtype)
    ...     return s, h * (1.0 - s)
    >>> spike_seq, v_seq = flex_sn_scan(lif, 1, 1, 1, torch.rand(8, 4), torch.zeros(4))
    >>> kernel = build_hop_kernel(lif, num_inputs=1, num_states=1, num_outputs=1)
    >>> spike_seq, v_last = kernel.final_state(torch.rand(8, 4), torch.zeros(4))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sj_core.neuron.flexsn_validation import (
    check_core,
    check_counts,
    check_example_inputs,
    check_requires_grad,
)

from . import hop_dynamo
from .hop_eager import OutputTemplateSpecs, eager_scan, eager_scan_final_state
from .hop_lowerable import (
    lowerable_scan,
    lowerable_scan_available,
    lowerable_scan_final_state,
    lowerable_while_loop_available,
    lowerable_while_loop_scan,
    lowerable_while_loop_scan_final_state,
)
from .hop_op import FlexSNScan, flex_sn_scan, flex_sn_scan_final_state, scan_body

__all__ = [
    "FlexSNScan",
    "HopScanKernel",
    "OutputTemplateSpecs",
    "build_hop_kernel",
    "dynamo_hop_available",
    "dynamo_hop_unavailable_reason",
    "eager_scan",
    "eager_scan_final_state",
    "flex_sn_scan",
    "flex_sn_scan_final_state",
    "lowerable_scan",
    "lowerable_scan_available",
    "lowerable_scan_final_state",
    "lowerable_while_loop_available",
    "lowerable_while_loop_scan",
    "lowerable_while_loop_scan_final_state",
]

_DYNAMO_REGISTRATION_ERROR: str | None = hop_dynamo.register()


def dynamo_hop_available() -> bool:
    """Whether Dynamo's rule for ``flex_sn_scan`` is installed.

    When ``True``, ``torch.compile(fullgraph=True)`` captures ``flex_sn_scan`` (and
    ``flex_sn_scan_final_state``) as one node whose body is ``core`` traced once, with
    captured tensors lifted to inputs. When ``False`` (a torch whose private Dynamo API
    changed; see :func:`dynamo_hop_unavailable_reason`), a direct ``flex_sn_scan`` call
    is a graph break, but :func:`build_hop_kernel`'s kernels still compile without one:
    under ``torch.compile`` they hand Dynamo the plain Python loop to trace instead.
    """
    return _DYNAMO_REGISTRATION_ERROR is None


def dynamo_hop_unavailable_reason() -> str | None:
    """Why :func:`dynamo_hop_available` is ``False`` (``None`` when it is ``True``)."""
    return _DYNAMO_REGISTRATION_ERROR


class HopScanKernel:
    """The ``hop`` backend's FlexSN kernel: ``core`` scanned over time by ``flex_sn_scan``.

    ``kernel(*input_seqs, *init_states) -> (*output_seqs, *state_seqs)`` and
    ``kernel.final_state(*input_seqs, *init_states) -> (*output_seqs, *final_states)``;
    inputs and outputs ``[T, ...]``, states one step ``[...]``. Runs on any device
    ``core`` runs on (CPU, CUDA). ``T == 0`` gives empty outputs (``core`` runs once on
    zeros to learn their shapes) and clones of the initial states as final states.

    Build it with :func:`build_hop_kernel`.
    """

    def __init__(self, core: Callable, num_inputs: int, num_states: int, num_outputs: int):
        self.core = core
        self.num_inputs = num_inputs
        self.num_states = num_states
        self.num_outputs = num_outputs

    def _check(self, args: Sequence[object], method: str) -> None:
        expected = self.num_inputs + self.num_states
        if len(args) != expected:
            raise TypeError(
                f"HopScanKernel{method} takes num_inputs + num_states = {expected} tensors "
                f"(*input_seqs, *init_states), got {len(args)}"
            )

    def _run(self, args: tuple[torch.Tensor, ...], final_state: bool) -> tuple[torch.Tensor, ...]:
        counts = (self.num_inputs, self.num_states, self.num_outputs)
        if torch.compiler.is_dynamo_compiling() and not dynamo_hop_available():
            # Without the Dynamo rule the operator would be a graph break; Dynamo can
            # trace the same loop written in plain Python instead. The operator object is
            # not even referenced on this path: Dynamo cannot build a variable for it.
            return scan_body(self.core, *counts, args, final_state)
        op = flex_sn_scan_final_state if final_state else flex_sn_scan
        return op(self.core, *counts, *args)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(*input_seqs, *init_states) -> (*output_seqs, *state_seqs)``."""
        self._check(args, "")
        return self._run(args, final_state=False)

    def final_state(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(*input_seqs, *init_states) -> (*output_seqs, *final_states)``."""
        self._check(args, ".final_state")
        return self._run(args, final_state=True)

    def __repr__(self) -> str:
        return (
            f"HopScanKernel(num_inputs={self.num_inputs}, num_states={self.num_states}, "
            f"num_outputs={self.num_outputs})"
        )


def build_hop_kernel(
    core: Callable,
    *,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    example_inputs: Sequence[torch.Tensor] | None = None,
    requires_grad: Sequence[bool] | None = None,
    backend: str = "hop",
) -> HopScanKernel:
    """The ``flexsn`` operator of the ``hop`` backend: a kernel that scans ``core``.

    Args:
        core: ``(*inputs, *states) -> (*outputs, *new_states)``, element-wise, returning
            a tuple or list of tensors; a function or an ``nn.Module``. Tensors it
            captures (closures, parameters) receive gradients.
        num_inputs, num_states, num_outputs: what ``core`` takes and returns.
        example_inputs: optional one step of each input and state (checked; ``core`` is
            not called before the first scan: constructing runs none of the user's code).
        requires_grad: optional, one bool per ``core`` argument. Accepted for the shared
            factory contract and checked; autograd decides what needs gradients here.
        backend: must be ``"hop"``.

    Raises:
        ValueError: ``backend`` is not ``"hop"``, or a count/argument is invalid.
        TypeError: ``core`` is not callable, or an argument has the wrong type.

    Example::

        >>> kernel = build_hop_kernel(lif, num_inputs=1, num_states=1, num_outputs=1)
        >>> spike_seq, v_seq = kernel(x_seq, v_init)          # [T, N], [N]
    """
    if backend != "hop":
        raise ValueError(f"build_hop_kernel builds the 'hop' backend only, got backend={backend!r}")
    num_inputs, num_states, num_outputs = check_counts(num_inputs, num_states, num_outputs)
    core = check_core(core, num_inputs, num_states)
    example_inputs = check_example_inputs(example_inputs, num_inputs, num_states)
    check_requires_grad(requires_grad, num_inputs, num_states)
    return HopScanKernel(core, num_inputs, num_states, num_outputs)
