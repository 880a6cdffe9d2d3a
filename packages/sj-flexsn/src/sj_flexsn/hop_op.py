"""``flex_sn_scan``: the FlexSN time scan as a PyTorch higher-order operator (HOP).

A HOP is an operator whose first argument is a function. Keeping the scan one operator
lets ``torch.compile`` capture it as a single graph node with ``core`` traced once as
its body (see :mod:`sj_flexsn.hop_dynamo`), instead of tracing ``T`` Python iterations.

Calling convention (see :mod:`sj_flexsn.hop_eager` for shapes)::

    flex_sn_scan(core_fn, num_inputs, num_states, num_outputs, *flat_args)
        -> (*output_seqs, *state_seqs)
    flex_sn_scan_final_state(core_fn, num_inputs, num_states, num_outputs, *flat_args)
        -> (*output_seqs, *final_states)

Every dispatch key implementation runs the same eager time loop
(:func:`~sj_flexsn.hop_eager.run_scan`); they differ only in where they sit:

* ``Autograd`` (grad mode on): run the loop right here, so autograd records the natural
  graph of ``T`` chained ``core`` calls, including tensors ``core`` captures (no
  hand-written backward). With grad off it redispatches below autograd.
* ``Functionalize``: make ``core`` functional and redispatch on unwrapped tensors.
* ``ProxyTorchDispatchMode`` (make_fx / AOTAutograd tracing): re-enter the tracer and run
  the loop, which unrolls the scan into ``T`` copies of ``core``'s aten ops. Inductor
  therefore sees only ordinary aten ops and needs no lowering for this operator.
* ``FakeTensorMode``: the loop on fake tensors gives the output metadata.
* ``CompositeExplicitAutograd`` (CPU, CUDA, ... below autograd): the loop itself.

``T == 0``: no template can be passed through the operator, so ``core`` runs once on
zeros (no grad, untraced) to learn the output shapes and dtypes; the results are empty
and still attached to autograd (zero gradients), see
:func:`~sj_flexsn.hop_eager.empty_scan_results`.

Not registered: functorch transforms (``vmap``, ``torch.func.grad``) and pre-dispatch
export; calling the operator under them raises PyTorch's "no kernel" error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._C import DispatchKey
from torch._ops import HigherOrderOperator
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import ProxyTorchDispatchMode

from .hop_eager import check_scan_args, empty_scan_results, probe_output_template_specs, run_scan

__all__ = ["FlexSNScan", "flex_sn_scan", "flex_sn_scan_final_state", "scan_body"]


def scan_body(
    core_fn: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    flat_args: tuple[torch.Tensor, ...],
    final_state: bool,
) -> tuple[torch.Tensor, ...]:
    """What every implementation of the operator computes (arguments already checked)."""
    if flat_args[0].shape[0] == 0:
        specs = probe_output_template_specs(core_fn, num_inputs, num_states, num_outputs, flat_args)
        return empty_scan_results(
            num_inputs, num_states, num_outputs, flat_args, specs, final_state
        )
    return run_scan(core_fn, num_inputs, num_states, num_outputs, flat_args, final_state)


def _register_fake(hop: HigherOrderOperator, loop: Callable) -> None:
    """Register ``loop`` as the fake-tensor implementation of ``hop``, on any torch >= 2.6.

    Newer torch offers ``register_fake(..., skip_cache=True)`` (no fake-tensor caching:
    ``core_fn`` differs between calls with equal tensor arguments); older releases lack
    the keyword (2.11) or the function; there a ``FakeTensorMode`` implementation, which
    is never cached, does the same.
    """
    try:
        from torch._higher_order_ops.utils import register_fake
    except ImportError:
        register_fake = None
    if register_fake is not None:
        try:
            register_fake(hop, loop, skip_cache=True)
            return
        except TypeError:
            pass

    def fake(mode: FakeTensorMode, *args: Any) -> Any:
        with mode:
            return loop(*args)

    hop.py_impl(FakeTensorMode)(fake)


class FlexSNScan(HigherOrderOperator):
    """The FlexSN scan operator; ``final_state`` picks which states it returns.

    ``FlexSNScan()`` is ``flex_sn_scan`` (state sequences); use the module-level
    instances rather than making new ones (a HOP registers itself by name).

    Example::

        >>> spike_seq, v_seq = flex_sn_scan(lif_core, 1, 1, 1, x_seq, v_init)
        >>> spike_seq, v_last = flex_sn_scan_final_state(lif_core, 1, 1, 1, x_seq, v_init)
    """

    def __init__(self, name: str = "flex_sn_scan", final_state: bool = False) -> None:
        super().__init__(name)
        self.final_state = final_state
        self._register_implementations()

    def __call__(
        self,
        core_fn: Callable,
        num_inputs: int,
        num_states: int,
        num_outputs: int,
        *flat_args: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        if not callable(core_fn):
            raise TypeError(f"{self._name}: core_fn must be callable, got {type(core_fn).__name__}")
        check_scan_args(num_inputs, num_states, num_outputs, flat_args, self._name)
        return super().__call__(core_fn, num_inputs, num_states, num_outputs, *flat_args)

    def _loop(self, core_fn: Callable, ni: int, ns: int, no: int, *flat_args: Any):
        return scan_body(core_fn, ni, ns, no, flat_args, self.final_state)

    def _register_implementations(self) -> None:
        self.py_impl(DispatchKey.CompositeExplicitAutograd)(self._loop)
        self.py_impl(DispatchKey.Autograd)(self._autograd)
        self.py_functionalize_impl(self._functionalize)
        self.py_impl(ProxyTorchDispatchMode)(self._trace)
        _register_fake(self, self._loop)

    def _autograd(self, core_fn: Callable, ni: int, ns: int, no: int, *flat_args: Any):
        # Not py_autograd_impl: it skips autograd when no *argument* requires grad, but an
        # eager core may capture a parameter (a closure, an nn.Module core) that does.
        # With grad enabled, running the loop here lets autograd see every step.
        if torch.is_grad_enabled():
            return self._loop(core_fn, ni, ns, no, *flat_args)
        with torch._C._AutoDispatchBelowAutograd():
            return self(core_fn, ni, ns, no, *flat_args)

    def _functionalize(self, ctx: Any, core_fn: Callable, ni: int, ns: int, no: int, *flat_args):
        unwrapped = ctx.unwrap_tensors(flat_args)
        with ctx.redispatch_to_next():
            out = self(ctx.functionalize(core_fn), ni, ns, no, *unwrapped)
        return ctx.wrap_tensors(out)

    def _trace(self, mode: ProxyTorchDispatchMode, core_fn: Callable, ni, ns, no, *flat_args):
        # The dispatcher popped ``mode`` before calling us; re-entering it records the
        # loop's aten ops in the graph being traced.
        with mode:
            return self._loop(core_fn, ni, ns, no, *flat_args)


flex_sn_scan = FlexSNScan("flex_sn_scan", final_state=False)
flex_sn_scan_final_state = FlexSNScan("flex_sn_scan_final_state", final_state=True)
