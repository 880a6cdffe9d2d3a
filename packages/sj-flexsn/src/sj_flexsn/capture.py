"""Capture: trace a user's single-step core to aten-level FX graphs.

``core(*inputs, *states) -> (*outputs, *new_states)`` is element-wise. Two traces:

* :func:`trace_inference_graph`: ``make_fx`` of ``core`` alone,
  ``[*inputs, *states, *captured] -> [*outputs, *new_states]``.
* :func:`trace_joint_graph`: ``make_fx`` of ``core`` followed by
  ``torch.autograd.grad``, i.e. the joint forward/backward graph that ``aot_function``
  builds, ``[*primals, *tangents] -> [*outputs, *new_states, *grads]``.
  :mod:`sj_flexsn.partition` splits it into forward and backward graphs. Tracing the
  joint graph ourselves (rather than through ``aot_function``'s runtime wrappers) keeps
  every output, tangent and gradient in a fixed position, which the kernels need.

Surrogate spike functions trace cleanly when they are ``torch.autograd.Function``\\ s
whose backward is written with tensor ops (every :mod:`sj_core.surrogate` function is):
the joint trace runs their custom backward, so the generated backward kernel uses the
surrogate gradient, not the gradient of the Heaviside forward. A straight-through or
sigmoid surrogate written directly with ops (``h + (spike - h).detach()``) works too.

*Captured tensors* are the tensors ``core`` uses that are not its arguments:
closure variables, module parameters and buffers, globals. :func:`find_captured_tensors`
finds them by running ``core`` once under a ``TorchFunctionMode`` that sees every tensor
passed to a torch function; the traces then substitute each one by an extra graph
argument, so the kernels read their current values at every call and parameters that
require grad receive gradients. Tensors the core creates itself (``torch.tensor(0.5)``)
stay constants.

All traces use fake tensors of one shape (:data:`TRACE_SHAPE`) for every argument,
inputs, states and captured tensors alike: the graph is then free of broadcasting
reductions, and an op that is not element-wise shows up as a shape change.

Example::

    >>> w = torch.nn.Parameter(torch.tensor(0.5))
    >>> spec = make_core_spec(lambda x, v: (x * w + v, v + x), 1, 1, 1)
    >>> spec.captured[0] is w
    True
    >>> gm = trace_inference_graph(spec)   # [x, v, w] -> [x * w + v, v + x], aten ops
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

import torch
from torch import fx
from torch._decomp import get_decompositions
from torch.fx.experimental.proxy_tensor import make_fx
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from .errors import FlexSNTraceError

__all__ = [
    "DECOMPOSITIONS",
    "TRACE_SHAPE",
    "CoreSpec",
    "JointGraph",
    "core_display_name",
    "find_captured_tensors",
    "make_core_spec",
    "trace_inference_graph",
    "trace_joint_graph",
]

# make_fx patches module-level state while it traces, so two traces at once (kernels
# built from several threads) corrupt each other: traces run one at a time. Reentrant,
# because a core may itself build a FlexSN kernel.
_TRACE_LOCK = threading.RLock()

#: The shape every traced argument has. Two dimensions of different sizes, so that a
#: reduction, transpose or reshape changes the shape and is caught.
TRACE_SHAPE = (2, 3)

_aten = torch.ops.aten

# Composite activations are decomposed into ops the lowering table knows, so users can
# write F.silu(x) or F.hardtanh(x) in a core.
DECOMPOSITIONS = get_decompositions(
    [
        _aten.addcdiv,
        _aten.addcmul,
        _aten.cosh,
        _aten.elu,
        _aten.elu_backward,
        _aten.frac,
        _aten.gelu,
        _aten.gelu_backward,
        _aten.hardsigmoid,
        _aten.hardsigmoid_backward,
        _aten.hardswish,
        _aten.hardswish_backward,
        _aten.hardtanh,
        _aten.hardtanh_backward,
        _aten.heaviside,
        _aten.leaky_relu,
        _aten.leaky_relu_backward,
        _aten.lerp,
        _aten.log10,
        _aten.sgn,
        _aten.silu,
        _aten.silu_backward,
        _aten.sinh,
        _aten.softplus,
        _aten.softplus_backward,
        _aten.xlogy,
    ]
)


def core_display_name(core: Callable) -> str:
    """A readable name of ``core`` for messages and generated function names."""
    name = getattr(core, "__qualname__", None) or getattr(core, "__name__", None)
    return name if isinstance(name, str) else type(core).__name__


@dataclasses.dataclass(frozen=True, eq=False)
class CoreSpec:
    """A user core with its signature and the tensors it captures.

    Attributes:
        core: ``core(*inputs, *states) -> (*outputs, *new_states)``.
        name: for messages.
        num_inputs, num_states, num_outputs: the signature.
        captured: the captured tensors, in order of first use; the kernels take them
            after the inputs and states.
    """

    core: Callable
    name: str
    num_inputs: int
    num_states: int
    num_outputs: int
    captured: tuple[torch.Tensor, ...]

    @property
    def num_args(self) -> int:
        """``num_inputs + num_states``: the arguments ``core`` itself takes."""
        return self.num_inputs + self.num_states

    @property
    def num_results(self) -> int:
        """``num_outputs + num_states``: the values ``core`` returns."""
        return self.num_outputs + self.num_states

    @property
    def num_captured(self) -> int:
        return len(self.captured)

    @property
    def captured_requires_grad(self) -> tuple[bool, ...]:
        return tuple(_differentiable(t) and t.requires_grad for t in self.captured)


@dataclasses.dataclass(frozen=True, eq=False)
class JointGraph:
    """The joint forward/backward graph of one step.

    ``gm`` takes ``[*primals, *tangents]`` (primals: inputs, states, captured; tangents:
    one per output and new state) and returns ``[*outputs, *new_states, *grads]``, with
    one gradient for each primal whose :attr:`grad_present` entry is true.
    """

    gm: fx.GraphModule
    spec: CoreSpec
    primal_requires_grad: tuple[bool, ...]
    grad_present: tuple[bool, ...]


def _differentiable(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


class _SwapCapturedTensors(TorchFunctionMode):
    """Replace captured tensors by stand-ins in every torch function call.

    ``replacements`` maps ``id(original) -> stand-in``. When ``make_stand_in`` is given,
    any tensor that is neither known (an argument, or produced by an earlier call) nor
    replaced yet is *discovered*: it gets a stand-in and is recorded in
    :attr:`discovered`. Strong references keep every ``id`` unique while the mode lives.
    """

    def __init__(
        self,
        replacements: dict[int, torch.Tensor],
        *,
        known: Sequence[torch.Tensor] = (),
        make_stand_in: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self._replacements = replacements
        self._known = {id(t): t for t in known}
        self._make_stand_in = make_stand_in
        self.discovered: list[torch.Tensor] = []

    def _swap(self, value: object) -> object:
        if not isinstance(value, torch.Tensor):
            return value
        key = id(value)
        stand_in = self._replacements.get(key)
        if stand_in is not None:
            return stand_in
        if self._make_stand_in is None or key in self._known:
            return value
        stand_in = self._make_stand_in(value)
        self._replacements[key] = stand_in
        self._known[id(stand_in)] = stand_in
        self.discovered.append(value)
        return stand_in

    def __torch_function__(self, func, types, args=(), kwargs=None):
        args = tree_map(self._swap, args)
        kwargs = tree_map(self._swap, kwargs or {})
        result = func(*args, **kwargs)
        if self._make_stand_in is not None:
            for leaf in tree_flatten(result)[0]:
                if isinstance(leaf, torch.Tensor):
                    self._known.setdefault(id(leaf), leaf)
        return result


def _core_code(core: Callable) -> object | None:
    """The code object of ``core`` (its function, or an ``nn.Module``'s forward)."""
    target = core.forward if isinstance(core, torch.nn.Module) else core
    return getattr(getattr(target, "__func__", target), "__code__", None)


def _raised_in_core(exc: BaseException, core: Callable) -> bool:
    """Whether ``exc`` propagated out of a call of ``core`` (its frame is in the
    traceback); when ``core``'s code cannot be seen, assume so and give the hints."""
    code = _core_code(core)
    if code is None:
        return True
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code is code:
            return True
        traceback = traceback.tb_next
    return False


def _trace_failure(
    core: Callable, spec_name: str, stage: str, exc: BaseException
) -> FlexSNTraceError:
    if not _raised_in_core(exc, core):
        # The error arose in the tracing machinery, not in code the user wrote.
        return FlexSNTraceError(
            f"sj_flexsn failed while tracing the FlexSN core {spec_name!r} ({stage}): "
            f"{type(exc).__name__}: {exc}. This is an error inside sj_flexsn or torch, not "
            "in the core; please report it."
        )
    return FlexSNTraceError(
        f"tracing the FlexSN core {spec_name!r} ({stage}) failed: {type(exc).__name__}: "
        f"{exc}. A core must be element-wise tensor code: no .item(), no Python control "
        "flow on tensor values, no reductions or reshapes across neurons."
    )


def _trace_dtype(tensor: torch.Tensor) -> torch.dtype:
    """Floating tensors are traced in fp32 (the kernels compute in fp32); others keep theirs."""
    return torch.float32 if _differentiable(tensor) else tensor.dtype


def _meta_like_trace(tensor: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    stand_in = torch.empty(TRACE_SHAPE, dtype=_trace_dtype(tensor), device="meta")
    return stand_in.requires_grad_(requires_grad and _differentiable(tensor))


def find_captured_tensors(
    core: Callable, num_args: int, requires_grad: Sequence[bool] | None = None
) -> tuple[torch.Tensor, ...]:
    """The tensors ``core`` uses besides its ``num_args`` arguments, in order of first use.

    ``core`` runs once on ``meta`` tensors (nothing is computed), with autograd on for
    the arguments ``requires_grad`` marks, as in the training trace.
    """
    flags = tuple(requires_grad) if requires_grad is not None else (True,) * num_args
    args = [torch.empty(TRACE_SHAPE, device="meta").requires_grad_(flag) for flag in flags]
    mode = _SwapCapturedTensors(
        {}, known=args, make_stand_in=lambda t: _meta_like_trace(t, t.requires_grad)
    )
    try:
        with _TRACE_LOCK, mode:
            core(*args)
    except Exception as exc:
        raise _trace_failure(
            core, core_display_name(core), "finding captured tensors", exc
        ) from exc
    return tuple(mode.discovered)


def _check_counts(num_inputs: int, num_states: int, num_outputs: int) -> None:
    for name, value in (
        ("num_inputs", num_inputs),
        ("num_states", num_states),
        ("num_outputs", num_outputs),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if num_inputs < 1:
        raise ValueError("FlexSN needs at least one input sequence (num_inputs >= 1)")
    if num_outputs + num_states < 1:
        raise ValueError("FlexSN needs at least one output or state")


def make_core_spec(
    core: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    requires_grad: Sequence[bool] | None = None,
) -> CoreSpec:
    """Validate the signature and find the tensors ``core`` captures."""
    if not callable(core):
        raise TypeError(f"core must be callable, got {type(core).__name__}")
    _check_counts(num_inputs, num_states, num_outputs)
    captured = find_captured_tensors(core, num_inputs + num_states, requires_grad)
    return CoreSpec(
        core=core,
        name=core_display_name(core),
        num_inputs=num_inputs,
        num_states=num_states,
        num_outputs=num_outputs,
        captured=captured,
    )


def _results_tuple(result: object, spec: CoreSpec) -> tuple[torch.Tensor, ...]:
    if isinstance(result, torch.Tensor):
        result = (result,)
    if not isinstance(result, (tuple, list)) or len(result) != spec.num_results:
        got = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
        raise FlexSNTraceError(
            f"FlexSN core {spec.name!r} must return num_outputs + num_states = "
            f"{spec.num_results} tensors (outputs, then new states), got {got}"
        )
    for index, value in enumerate(result):
        if not isinstance(value, torch.Tensor):
            raise FlexSNTraceError(
                f"FlexSN core {spec.name!r} returned a {type(value).__name__} at position "
                f"{index}; every output and new state must be a tensor"
            )
    return tuple(result)


def _fake_examples(spec: CoreSpec, flags: Sequence[bool]) -> list[torch.Tensor]:
    """One example per primal: fp32 (or the captured tensor's non-float dtype)."""
    examples = [torch.zeros(TRACE_SHAPE) for _ in range(spec.num_args)]
    examples += [torch.zeros(TRACE_SHAPE, dtype=_trace_dtype(t)) for t in spec.captured]
    return [e.requires_grad_(flag) for e, flag in zip(examples, flags, strict=True)]


def _run_core(spec: CoreSpec, primals: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    args, captured = primals[: spec.num_args], primals[spec.num_args :]
    replacements = {
        id(orig): stand_in for orig, stand_in in zip(spec.captured, captured, strict=True)
    }
    with _SwapCapturedTensors(replacements):
        return _results_tuple(spec.core(*args), spec)


def trace_inference_graph(spec: CoreSpec) -> fx.GraphModule:
    """``[*inputs, *states, *captured] -> [*outputs, *new_states]`` at aten level."""

    def step(*primals: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _run_core(spec, primals)

    examples = _fake_examples(spec, [False] * (spec.num_args + spec.num_captured))
    try:
        with _TRACE_LOCK:
            return make_fx(step, tracing_mode="fake", decomposition_table=DECOMPOSITIONS)(*examples)
    except FlexSNTraceError:
        raise
    except Exception as exc:
        raise _trace_failure(spec.core, spec.name, "inference trace", exc) from exc


def trace_joint_graph(spec: CoreSpec, requires_grad: Sequence[bool]) -> JointGraph:
    """The joint forward/backward graph of one step.

    Args:
        requires_grad: one flag per argument of ``core`` (inputs, then states): whether
            its gradient is traced. Captured tensors follow their own ``requires_grad``.
    """
    flags = tuple(bool(f) for f in requires_grad) + spec.captured_requires_grad
    num_primals = len(flags)
    grad_present: list[bool] = []
    # Captured originals that require grad: if a gradient reaches one of them, the core
    # used it somewhere the substitution could not see (e.g. as an argument of a custom
    # autograd.Function), and its kernel gradient would silently be zero.
    originals = [t for t in spec.captured if _differentiable(t) and t.requires_grad]

    def joint(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        primals, tangents = args[:num_primals], args[num_primals:]
        results = _run_core(spec, primals)
        differentiable = [i for i, r in enumerate(results) if r.requires_grad]
        wanted = [p for p, flag in zip(primals, flags, strict=True) if flag]
        grads: Sequence[torch.Tensor | None] = [None] * len(wanted)
        if differentiable and (wanted or originals):
            everything = torch.autograd.grad(
                [results[i] for i in differentiable],
                [*wanted, *originals],
                [tangents[i] for i in differentiable],
                allow_unused=True,
            )
            grads = everything[: len(wanted)]
            if any(g is not None for g in everything[len(wanted) :]):
                raise FlexSNTraceError(
                    f"FlexSN core {spec.name!r} passes a captured tensor that requires "
                    "grad into a custom torch.autograd.Function; its gradient cannot be "
                    "captured. Use it with tensor ops outside the Function instead."
                )
        per_primal = iter(grads)
        full = [next(per_primal) if flag else None for flag in flags]
        grad_present[:] = [g is not None for g in full]
        return (*results, *(g for g in full if g is not None))

    examples = _fake_examples(spec, flags)
    examples += [torch.zeros(TRACE_SHAPE) for _ in range(spec.num_results)]
    try:
        with _TRACE_LOCK:
            gm = make_fx(joint, tracing_mode="fake", decomposition_table=DECOMPOSITIONS)(*examples)
    except FlexSNTraceError:
        raise
    except Exception as exc:
        raise _trace_failure(spec.core, spec.name, "training trace", exc) from exc
    return JointGraph(
        gm=gm,
        spec=spec,
        primal_requires_grad=flags,
        grad_present=tuple(grad_present),
    )
