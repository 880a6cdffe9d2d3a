"""One kernel operator, three ways to run it: the plumbing every kernel backend shares.

A kernel backend implements a :class:`KernelImplementation` (launch the forward kernel,
launch the backward kernel, say what the backward needs) and wraps it in a
:class:`KernelOp`, which runs it

* **eagerly without a graph** (no input needs a gradient): a direct launch;
* **eagerly with a graph**: through a ``torch.autograd.Function``, which refuses double
  backward clearly (``create_graph=True`` would silently drop second-order terms);
* **traced** (``torch.compile``, ``make_fx``, fake tensors, tensor subclasses, functorch
  transforms): through ``torch.library`` operators ``<namespace>::<name>_forward`` and
  ``<name>_backward``, with fake implementations and registered autograd, so that
  compilers see one opaque node (``triton_op`` when the kernels are Triton kernels and
  torch provides it, so that Inductor sees the kernels themselves).

Going through the dispatcher costs tens of microseconds per call in Python, as long as
the kernels themselves at small ``T``: that is why eager calls bypass it.

Configuration is a ``NamedTuple`` of ``str``, ``bool``, ``int`` and ``float`` fields
(code reads ``config.hard_reset``, never ``config[1]``). At the operator boundary it is
flattened into ``(words: str, ints: list[int], floats: list[float])``, which
``torch.library`` schemas accept and Dynamo traces, and rebuilt on the other side.

Example::

    class LIFKernels:                      # a KernelImplementation
        backend = "mine"
        def num_outputs(self, config): return 3
        ...
    LIF_OP = KernelOp("sj_mine", "lif", LIFKernels(), LIFConfig)
    spike_seq, v_last, v_seq = LIF_OP(config, [x_seq, v_init])
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Sequence
from typing import Any, List, Optional, Protocol  # noqa: UP035 (torch 2.6 schemas)

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ..backends.errors import UnsupportedByBackendError

__all__ = [
    "KernelImplementation",
    "KernelOp",
    "flatten_config",
    "is_traced_call",
    "refuse_double_backward",
    "unflatten_config",
]

_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_is_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)


def is_traced_call(tensors: Sequence[Tensor | None]) -> bool:
    """Whether this call must go through the registered operators: something traces it
    (``torch.compile``, a dispatch mode such as ``make_fx`` or fake tensors) or a tensor
    is not a plain tensor (a subclass, a functorch wrapper)."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return True
    for tensor in tensors:
        if tensor is None:
            continue
        if type(tensor) not in _PLAIN_TENSOR_TYPES:
            return True
        if _is_functorch_wrapped is not None and _is_functorch_wrapped(tensor):
            return True
    return False


def refuse_double_backward(backend: str) -> None:
    """Raise when a backward pass runs with ``create_graph=True``.

    Kernel backwards are not differentiable; running them inside a graph would give
    second derivatives of zero without any error.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"the {backend} kernels have no second derivative: a backward pass with "
            "create_graph=True (a gradient penalty, torch.func.grad, higher-order "
            "gradients) needs backend='torch'"
        )


# -- configuration at the operator boundary ------------------------------------------------


def flatten_config(config: tuple) -> tuple[str, list[int], list[float]]:
    """A ``NamedTuple`` of ``str``, ``bool``, ``int``, ``float`` and ``tuple[float, ...]``
    fields as ``("w1|w2", ints, floats)`` (a tuple adds its length to ``ints``)."""
    words, ints, floats = [], [], []
    for value in config:
        if isinstance(value, str):
            words.append(value)
        elif isinstance(value, (bool, int)):
            ints.append(int(value))
        elif isinstance(value, tuple):
            ints.append(len(value))
            floats.extend(float(item) for item in value)
        else:
            floats.append(float(value))
    return "|".join(words), ints, floats


@functools.cache
def _field_types(config_type: type) -> tuple[type, ...]:
    hints = typing.get_type_hints(config_type)
    return tuple(hints[name] for name in config_type._fields)


def unflatten_config(
    config_type: type, words: str, ints: Sequence[int], floats: Sequence[float]
) -> Any:
    """Rebuild what :func:`flatten_config` flattened."""
    word_values = iter(words.split("|") if words else ())
    int_values, float_values = iter(ints), iter(floats)
    values = []
    for kind in _field_types(config_type):
        if kind is str:
            values.append(next(word_values))
        elif kind is bool:
            values.append(bool(next(int_values)))
        elif kind is int:
            values.append(int(next(int_values)))
        elif kind is float:
            values.append(float(next(float_values)))
        else:  # tuple[float, ...]
            values.append(tuple(float(next(float_values)) for _ in range(next(int_values))))
    return config_type(*values)


# -- what a backend supplies ---------------------------------------------------------------


class KernelImplementation(Protocol):
    """What a kernel backend implements for one operator.

    ``inputs`` is a list of tensors (``None`` for absent optional ones). ``launch`` is
    the identity in eager mode and ``torch.library.wrap_triton`` inside a ``triton_op``;
    Triton kernels are launched as ``launch(kernel)[grid](...)``.
    """

    #: The backend's name, for messages.
    backend: str

    def num_outputs(self, config: Any) -> int:
        """How many of ``forward``'s results users see (the rest serve the backward)."""

    def retain(self, config: Any) -> object | None:
        """An object the autograd graph keeps until the backward pass has run (kernels
        that must outlive their owner), or ``None``."""

    def forward(
        self, config: Any, inputs: list[Tensor | None], *, save: bool, launch: Callable,
        placeholders: bool,
    ) -> list[Tensor | None]:  # fmt: skip
        """Run the forward kernel. Returns the ``num_outputs`` outputs, then what the
        backward pass needs (when ``save``). With ``placeholders``, absent results are
        empty tensors (operators must return tensors); without, ``None``."""

    def saved(
        self, config: Any, inputs: list[Tensor | None], results: list[Tensor | None]
    ) -> list[Tensor | None]:
        """The tensors to keep for the backward pass, from the inputs and results."""

    def backward(
        self, config: Any, saved: list[Tensor | None], grads: list[Tensor | None],
        needs: list[bool], *, launch: Callable,
    ) -> list[Tensor | None]:  # fmt: skip
        """Gradients of the inputs (``None`` where ``needs`` is false) from the gradients
        of the ``num_outputs`` outputs (``None`` where there is none)."""

    def fake_forward(self, config: Any, inputs: list[Tensor | None], save: bool) -> list[Tensor]:
        """Shapes and dtypes of ``forward``'s results, with placeholders."""

    def fake_backward(
        self, config: Any, saved: list[Tensor | None], grads: list[Tensor | None],
        needs: list[bool],
    ) -> list[Tensor | None]:  # fmt: skip
        """Shapes and dtypes of ``backward``'s results."""


def _identity(kernel: Any) -> Any:
    return kernel


def _absent(tensors: Sequence[Tensor], present: Sequence[bool]) -> list[Tensor | None]:
    """The operator's inputs with ``None`` again where a placeholder stood in."""
    return [t if p else None for t, p in zip(tensors, present, strict=True)]


def functorch_transform_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ...) is running.

    Not while ``torch.compile`` traces: Dynamo runs its own functorch interpreters (the
    compiled graph calls the registered operators, which need no transform support).
    """
    if torch.compiler.is_compiling():
        return False
    functorch = getattr(torch._C, "_functorch", None)
    peek = getattr(functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


class _EagerKernelFunction(torch.autograd.Function):
    """The eager training path: the implementation under autograd, no dispatcher."""

    @staticmethod
    def forward(ctx, op: KernelOp, config: Any, *inputs: Tensor | None):
        impl = op.implementation
        inputs = list(inputs)
        results = impl.forward(config, inputs, save=True, launch=_identity, placeholders=False)
        ctx.op, ctx.config, ctx.retained = op, config, impl.retain(config)
        ctx.save_for_backward(*impl.saved(config, inputs, results))
        ctx.set_materialize_grads(False)
        return tuple(results[: impl.num_outputs(config)])

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        impl = ctx.op.implementation
        refuse_double_backward(impl.backend)
        needs = list(ctx.needs_input_grad[2:])
        results = impl.backward(
            ctx.config, list(ctx.saved_tensors), list(grads), needs, launch=_identity
        )
        return (None, None, *results)


class KernelOp:
    """A :class:`KernelImplementation` as a callable that picks eager or traced execution.

    Args:
        namespace: the ``torch.library`` namespace (``"sj_triton"``).
        name: the operator name; registers ``<namespace>::<name>_forward`` and
            ``<name>_backward``.
        implementation: the :class:`KernelImplementation`.
        config_type: the ``NamedTuple`` type of its configuration.
        triton: register with ``torch.library.triton_op`` (the implementation launches
            Triton kernels through ``launch``) when this torch has it and ``use_triton_op``
            is true; otherwise with ``custom_op`` and the implementation's fakes.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        implementation: KernelImplementation,
        config_type: type,
        *,
        use_triton_op: bool = False,
    ) -> None:
        self.implementation = implementation
        self.config_type = config_type
        self.qualname = f"{namespace}::{name}"
        self.use_triton_op = use_triton_op and hasattr(torch.library, "triton_op")
        self.forward_op, self.backward_op = self._register(namespace, name)

    def __call__(self, config: Any, inputs: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
        """Run the operator on ``inputs`` with ``config``; returns the ``num_outputs``
        outputs (``None`` for absent ones on the eager paths, empty tensors traced).

        Raises:
            UnsupportedByBackendError: inside a ``torch.func`` transform (``grad``,
                ``vmap``, ...), which the kernels do not implement (``'auto'`` then runs
                the torch backend).
        """
        impl = self.implementation
        if functorch_transform_active():
            raise UnsupportedByBackendError(
                f"the {impl.backend} backend's kernels do not run under torch.func transforms "
                "(grad, vmap, jacrev, ...); use backend='torch' (or 'auto') for them"
            )
        inputs = list(inputs)
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in inputs
        )
        if is_traced_call(inputs):
            results = self.forward_op(*self.op_arguments(config, inputs, save=needs_grad))
            return tuple(results[: impl.num_outputs(config)])
        if needs_grad:
            return _EagerKernelFunction.apply(self, config, *inputs)
        results = impl.forward(config, inputs, save=False, launch=_identity, placeholders=False)
        return tuple(results[: impl.num_outputs(config)])

    def op_arguments(self, config: Any, inputs: Sequence[Tensor | None], *, save: bool) -> tuple:
        """The arguments of :attr:`forward_op` for a call: ``(tensors, present, words, ints,
        floats, save)``.

        Absent inputs travel as empty placeholders flagged in ``present``: torch's
        custom-op autograd does not see the tensors of a list that holds a ``None``.
        """
        anchor = next(t for t in inputs if t is not None)
        present = [t is not None for t in inputs]
        tensors = [anchor.new_empty(0) if t is None else t for t in inputs]
        return (tensors, present, *flatten_config(config), save)

    # -- registration --------------------------------------------------------------------

    def _decode(self, words: str, ints: Sequence[int], floats: Sequence[float]) -> Any:
        return unflatten_config(self.config_type, words, ints, floats)

    def _register(self, namespace: str, name: str):
        impl = self.implementation
        if self.use_triton_op:
            from torch.library import wrap_triton

            def define(op_name):
                return torch.library.triton_op(f"{namespace}::{op_name}", mutates_args=())

            launch = wrap_triton
        else:

            def define(op_name):
                return torch.library.custom_op(f"{namespace}::{op_name}", mutates_args=())

            launch = _identity

        decode = self._decode

        def forward(
            inputs: List[Tensor],  # noqa: UP006
            present: List[bool],  # noqa: UP006
            words: str,
            ints: List[int],  # noqa: UP006
            floats: List[float],  # noqa: UP006
            save: bool,
        ) -> List[Tensor]:  # noqa: UP006
            config = decode(words, ints, floats)
            return list(
                impl.forward(
                    config, _absent(inputs, present), save=save, launch=launch, placeholders=True
                )
            )

        def backward(
            saved: List[Optional[Tensor]],  # noqa: UP006, UP045
            grads: List[Optional[Tensor]],  # noqa: UP006, UP045
            words: str,
            ints: List[int],  # noqa: UP006
            floats: List[float],  # noqa: UP006
            needs: List[bool],  # noqa: UP006
        ) -> List[Tensor]:  # noqa: UP006
            config = decode(words, ints, floats)
            results = impl.backward(config, saved, grads, needs, launch=launch)
            return [g for g, need in zip(results, needs, strict=True) if need]

        forward.__name__ = f"{name}_forward"
        backward.__name__ = f"{name}_backward"
        forward_op = define(f"{name}_forward")(forward)
        backward_op = define(f"{name}_backward")(backward)

        if not self.use_triton_op:

            @forward_op.register_fake
            def _(inputs, present, words, ints, floats, save):
                config = decode(words, ints, floats)
                return list(impl.fake_forward(config, _absent(inputs, present), save))

            @backward_op.register_fake
            def _(saved, grads, words, ints, floats, needs):
                results = impl.fake_backward(decode(words, ints, floats), saved, grads, needs)
                return [g for g, need in zip(results, needs, strict=True) if need]

        def setup_context(ctx, inputs, output):
            tensors, present, words, ints, floats, _ = inputs
            config = decode(words, ints, floats)
            ctx.save_for_backward(*impl.saved(config, _absent(tensors, present), list(output)))
            ctx.flat_config = (words, list(ints), list(floats))
            ctx.num_outputs = impl.num_outputs(config)
            ctx.retained = impl.retain(config)
            ctx.mark_non_differentiable(*output[ctx.num_outputs :])
            ctx.set_materialize_grads(False)

        def backward_formula(ctx, grads):
            refuse_double_backward(impl.backend)
            needs = [bool(n) for n in ctx.needs_input_grad[0]]
            compact = backward_op(
                list(ctx.saved_tensors), list(grads[: ctx.num_outputs]), *ctx.flat_config, needs
            )
            per_input = iter(compact)
            grads_in = [next(per_input) if need else None for need in needs]
            # torch expects the structure of needs_input_grad: a list where it has one (an
            # empty float list counts as a list of tensors), None elsewhere.
            rest = [
                [None] * len(n) if isinstance(n, (list, tuple)) else None
                for n in ctx.needs_input_grad[1:]
            ]
            return (grads_in, *rest)

        forward_op.register_autograd(backward_formula, setup_context=setup_context)
        return forward_op, backward_op
