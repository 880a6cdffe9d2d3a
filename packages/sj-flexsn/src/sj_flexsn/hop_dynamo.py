"""Teach Dynamo (``torch.compile``'s bytecode tracer) to capture ``flex_sn_scan``.

Dynamo refuses a higher-order operator it has no rule for ("unsupported
HigherOrderOperator"), which under ``fullgraph=True`` is an error. PyTorch has no public
API for out-of-tree HOP rules, so this module is a compatibility shim over Dynamo's
private one: it adds a ``VariableTracker`` for ``flex_sn_scan`` and
``flex_sn_scan_final_state`` to ``torch._dynamo.variables.higher_order_ops``'s
name -> rule table. The rule

1. traces ``core`` once on one time step (``speculate_subgraph``), which turns tensors it
   captures (closures, module parameters) into extra body inputs ("lifted freevars");
2. installs that body as a ``GraphModule`` and emits one node
   ``flex_sn_scan(body, num_inputs, num_states, num_outputs, *flat_args, *freevars)``.

The lifted freevars become ordinary inputs of the operator, so AOTAutograd sees them and
gives them gradients. Importing this module registers the rule; :func:`register`
returns ``None`` on success or the reason it failed (private APIs move between torch
releases), which :func:`sj_flexsn.hop.dynamo_hop_available` reports.
"""

from __future__ import annotations

from typing import Any

import torch

from .hop_op import flex_sn_scan, flex_sn_scan_final_state

__all__ = ["register"]


def _one_step_like(x: torch.Tensor) -> torch.Tensor:
    # An example of one time step for tracing core. Not x[0]: T may be 0.
    return x.new_empty(x.shape[1:])


def _make_variable_class() -> type:
    from torch._dynamo.utils import _make_inlined, unpack_iterable
    from torch._dynamo.variables import higher_order_ops as hops
    from torch._dynamo.variables.builder import wrap_fx_proxy

    def unsupported(context: str, explanation: str) -> None:
        hops.unimplemented(
            gb_type="flex_sn_scan: unsupported call",
            context=context,
            explanation=explanation,
            hints=["Call flex_sn_scan(core_fn, num_inputs, num_states, num_outputs, *tensors)."],
        )

    class FlexSNScanVariable(hops.TorchHigherOrderOperatorVariable):
        """Dynamo's rule for ``flex_sn_scan(core_fn, ni, ns, no, *flat_args)``."""

        _HOP_NAME = "flex_sn_scan"
        # A graph break runs the operator eagerly, which is always correct.
        _ALLOW_FALLBACK_TO_EAGER = True

        def _call_function(self, tx: Any, args: list, kwargs: dict) -> Any:
            args, kwargs = hops.LazyVariableTracker.realize_all((args, kwargs))
            if kwargs or len(args) < 5:
                unsupported(str(args), "expects positional arguments only, with tensors")
            core, count_vars, tensor_vars = args[0], args[1:4], list(args[4:])
            if not all(v.is_python_constant() for v in count_vars):
                unsupported(str(count_vars), "num_inputs/num_states/num_outputs must be ints")
            ni, ns, no = (v.as_python_constant() for v in count_vars)
            hops._check_all_tensorvariable(tensor_vars)
            if len(tensor_vars) < ni + ns:
                unsupported(str(tensor_vars), "fewer tensors than num_inputs + num_states")

            with hops.discard_graph_changes(tx):
                steps = [_make_inlined(tx, _one_step_like)(x) for x in tensor_vars[:ni]]
            # Outputs not flattened: the body must return a flat tuple/list of tensors,
            # checked below, exactly what the eager loop accepts.
            (body_r, _), body_graph, freevars = hops.speculate_subgraph(
                tx,
                core,
                [*steps, *tensor_vars[ni:]],
                {},
                self._HOP_NAME,
                source_target=self.value,
                set_subgraph_inputs="flatten_manual",
                should_flatten_outputs=False,
                remove_consts_from_outputs=False,
                supports_input_mutation=False,
                supports_aliasing=False,
            )
            expected = f"core must return a tuple of num_outputs + num_states = {no + ns} tensors"
            if body_r.python_type() not in (tuple, list):
                unsupported(str(body_r), expected)
            returns = unpack_iterable(tx, body_r)
            if len(returns) != no + ns:
                unsupported(str(body_r), expected)
            hops._check_all_tensorvariable(returns)

            body = torch.fx.GraphModule(dict(tx.output.nn_modules), body_graph)
            body_name = tx.output.install_subgraph("flex_sn_scan_body", body)
            proxy_args = (
                hops.make_attr(tx, body_name),
                ni,
                ns,
                no,
                *(v.as_proxy() for v in tensor_vars),
                *freevars.keys(),
            )
            proxy = tx.output.create_proxy("call_function", self.value, proxy_args, {})
            return wrap_fx_proxy(tx=tx, proxy=proxy, example_value=None)

    return FlexSNScanVariable


def register() -> str | None:
    """Install the rule; ``None`` on success, else why it failed."""
    try:
        from torch._dynamo.variables import higher_order_ops as hops

        table = hops._hop_name_to_variable_class
        variable_class = _make_variable_class()
        for op in (flex_sn_scan, flex_sn_scan_final_state):
            table[op.__name__] = variable_class
    except Exception as error:  # private API: any change in torch lands here
        return f"{type(error).__name__}: {error}"
    return None
