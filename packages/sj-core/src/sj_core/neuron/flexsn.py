"""FlexSN: a spiking neuron defined by a user's single-step function (SPEC section 6).

The user writes one time step of the neuron as an element-wise function::

    core(*inputs, *states) -> (*outputs, *new_states)

and :class:`FlexSN` runs it like any other neuron, in both step modes. The ``'torch'``
backend (here) calls ``core`` eagerly once per step. The kernel backends (``'triton'``,
``'inductor'``, ``'hop'``; multi-step only) come from the separate package sj-flexsn,
which compiles ``core`` into a fused time-loop kernel; this module only asks the backend
registry for their ``flexsn`` operator (:mod:`sj_core.backends.operators`) and calls it::

    factory = backends.get_operator(backend, "flexsn")
    kernel = factory(core, num_inputs=..., num_states=..., num_outputs=...,
                     example_inputs=..., requires_grad=..., backend=backend)
    kernel(*input_seqs, *init_states)             -> (*output_seqs, *state_seqs)
    kernel.final_state(*input_seqs, *init_states) -> (*output_seqs, *final_states)

Any other installed backend that declares a ``flexsn`` operator is accepted too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import backends
from ..base import MemoryModule, placed_like
from ..functional.compact_registry import mark_checked_spikes
from ..kernels.triton_interpreter import interpreter_enabled
from .flexsn_validation import (
    check_core,
    check_core_returns,
    check_counts,
    check_elementwise_examples,
    check_example_inputs,
    check_example_outputs,
    check_requires_grad,
    check_states,
)
from .validation import check_bool

__all__ = ["FlexSN", "FlexSNKernel"]

#: Backends FlexSN knows by name; the kernel ones are provided by sj-flexsn.
KERNEL_BACKENDS = ("triton", "inductor", "hop")
BUILTIN_BACKENDS = ("torch", *KERNEL_BACKENDS)

Outputs = torch.Tensor | tuple[torch.Tensor, ...]


def _build_kernel(
    core: Callable,
    num_inputs: int,
    num_states: int,
    num_outputs: int,
    example_inputs: tuple[torch.Tensor, ...] | None,
    requires_grad: tuple[bool, ...] | None,
    backend: str,
) -> Any:
    # Raises BackendNotInstalledError ("pip install sj-flexsn") when no installed package
    # provides the operator: an explicitly named backend never falls back to 'torch'.
    factory = backends.get_operator(backend, "flexsn")
    return factory(
        core,
        num_inputs=num_inputs,
        num_states=num_states,
        num_outputs=num_outputs,
        example_inputs=example_inputs,
        requires_grad=requires_grad,
        backend=backend,
    )


def _no_keywords(kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"FlexSN's forward takes no keyword arguments, got {sorted(kwargs)}")


def _check_argument_count(owner: str, args: Sequence[Any], expected: int, what: str) -> None:
    if len(args) != expected:
        raise TypeError(f"{owner} takes {expected} tensors ({what}), got {len(args)}")
    for i, arg in enumerate(args):
        if not isinstance(arg, torch.Tensor):
            raise TypeError(f"{owner}: argument {i} must be a tensor, got {type(arg).__name__}")


class FlexSNKernel:
    """The bare multi-step kernel that sj-flexsn generates from ``core`` (``'triton'``).

    Calling it runs the whole sequence: ``(*input_seqs, *init_states) ->
    (*output_seqs, *state_seqs)``, inputs and outputs ``[T, ...]``, initial states one
    step ``[...]``, state sequences ``[T, ...]``.

    Args:
        core: ``(*inputs, *states) -> (*outputs, *new_states)``, element-wise.
        num_inputs, num_states, num_outputs: how many of each ``core`` takes/returns.
        example_inputs: optional example tensors ``(*inputs, *states)`` for tracing.
        requires_grad: optional bools, one per ``core`` argument, for the training kernels.

    Raises:
        RuntimeError: without a CUDA device, unless Triton's interpreter is on
            (``TRITON_INTERPRET=1``).
        ImportError: sj-flexsn is not installed (``pip install sj-flexsn``).

    Example::

        >>> kernel = FlexSNKernel(core, num_inputs=1, num_states=1, num_outputs=1)
        >>> spike_seq, v_seq = kernel(x_seq, v_init)       # [T, N], [N] -> [T, N], [T, N]
    """

    def __init__(
        self,
        core: Callable,
        num_inputs: int,
        num_states: int,
        num_outputs: int,
        example_inputs: Sequence[torch.Tensor] | None = None,
        requires_grad: Sequence[bool] | None = None,
    ) -> None:
        self.num_inputs, self.num_states, self.num_outputs = check_counts(
            num_inputs, num_states, num_outputs
        )
        self.core = check_core(core, self.num_inputs, self.num_states)
        example_inputs = check_example_inputs(example_inputs, self.num_inputs, self.num_states)
        requires_grad = check_requires_grad(requires_grad, self.num_inputs, self.num_states)
        if not torch.cuda.is_available() and not interpreter_enabled():
            raise RuntimeError(
                "FlexSNKernel runs generated Triton kernels and needs a CUDA device (or "
                "Triton's CPU interpreter: set TRITON_INTERPRET=1 before importing triton); "
                "use FlexSN(..., backend='torch') to run the core eagerly instead"
            )
        self.kernel = _build_kernel(
            core,
            self.num_inputs,
            self.num_states,
            self.num_outputs,
            example_inputs,
            requires_grad,
            backend="triton",
        )

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _check_argument_count(
            "FlexSNKernel", args, self.num_inputs + self.num_states, "*input_seqs, *init_states"
        )
        return self.kernel(*args)


class FlexSN(MemoryModule):
    """A spiking neuron defined by a single-step function ``core``.

    ``core(*inputs, *states) -> (*outputs, *new_states)`` must be element-wise and
    return a tuple (or list) of ``num_outputs + num_states`` tensors.

    * Step mode ``'s'``: ``forward(*inputs)`` with each input ``[N, *]`` runs ``core``
      once; the states persist across calls in the memory ``states`` (a list).
    * Step mode ``'m'``: ``forward(*input_seqs)`` with each input ``[T, N, *]`` runs all
      ``T`` steps and returns each output stacked over time, ``[T, N, *]``. The final
      states are kept in ``states`` (a following call continues from them), and with
      ``store_state_seqs=True`` the list ``state_seqs`` holds every state ``[T, ...]``.

    ``forward`` returns a single tensor when ``num_outputs == 1``; otherwise the outputs
    as :meth:`single_step_forward` (a tuple) or :meth:`multi_step_forward` (a list)
    return them, as the reference system does (``num_outputs == 0``, a core that only
    updates its states, returns an empty one). States start from :meth:`init_states`
    (zeros like one step of the first input; override it in a subclass) and again after
    :meth:`reset`. The explicit state is ``(states,)``: one memory holding the list of
    states (``state_seqs`` is an observation, outside it).

    Args:
        core: the single-step function (a function or an ``nn.Module``).
        num_inputs: number of inputs (>= 1).
        num_states: number of states (>= 0).
        num_outputs: number of outputs (>= 0).
        example_inputs: example tensors ``(*inputs, *states)`` for the kernel backends'
            tracing (passed to sj-flexsn; unused by ``'torch'``).
        requires_grad: one bool per ``core`` argument, for the kernel backends' training
            kernels (unused by ``'torch'``).
        step_mode: ``'s'`` or ``'m'``.
        backend: ``'torch'`` (eager loop, always available), or ``'triton'``,
            ``'inductor'``, ``'hop'`` (need ``pip install sj-flexsn``; step mode ``'m'``
            only), or another installed backend that provides the ``flexsn`` operator.
            The default ``'triton'`` follows the reference system.
        store_state_seqs: in step mode ``'m'``, keep the state sequences in
            ``state_seqs``.
        example_outputs: one step of each output, ``(*outputs,)``: its shape and dtype
            build the empty outputs ``[0, *shape]`` of a ``T == 0`` input on the
            ``'torch'`` backend without running ``core``.

    Example::

        >>> def lif_core(x, v):
        ...     h = v + (x - v) / 2.0
        ...     s = (h >= 1.0).to(h.dtype)
        ...     return s, h * (1.0 - s)
        >>> node = FlexSN(lif_core, 1, 1, 1, step_mode="m", backend="torch")
        >>> node(torch.rand(8, 4)).shape                   # x_seq [T, N]
        torch.Size([8, 4])
    """

    def __init__(
        self,
        core: Callable,
        num_inputs: int,
        num_states: int,
        num_outputs: int,
        example_inputs: Sequence[torch.Tensor] | None = None,
        requires_grad: Sequence[bool] | None = None,
        step_mode: str = "m",
        backend: str = "triton",
        store_state_seqs: bool = False,
        example_outputs: Sequence[torch.Tensor] | None = None,
    ) -> None:
        num_inputs, num_states, num_outputs = check_counts(num_inputs, num_states, num_outputs)
        super().__init__()
        self.num_inputs = num_inputs
        self.num_states = num_states
        self.num_outputs = num_outputs
        self.core = check_core(core, num_inputs, num_states)
        self.example_inputs = check_example_inputs(example_inputs, num_inputs, num_states)
        self.requires_grad = check_requires_grad(requires_grad, num_inputs, num_states)
        self.example_outputs = check_example_outputs(example_outputs, num_outputs)
        self.store_state_seqs = store_state_seqs
        self.register_memory("states", None)
        self._backend = "torch"
        self._set_kernel(None)
        self.step_mode = step_mode
        self.backend = backend

    @property
    def store_state_seqs(self) -> bool:
        """Whether step mode ``'m'`` keeps every state ``[T, ...]`` in ``state_seqs``."""
        return self._store_state_seqs

    @store_state_seqs.setter
    def store_state_seqs(self, value: bool) -> None:
        self._store_state_seqs = check_bool("store_state_seqs", value)
        self.state_seqs = None

    def reset(self) -> None:
        """Back to the initial states (made again at the next call); clears ``state_seqs``."""
        super().reset()
        self.state_seqs = None

    # -- backend -------------------------------------------------------------------------

    def supported_backends_for(self, step_mode: str) -> tuple[str, ...]:
        """Backend names FlexSN accepts in ``step_mode`` (kernel ones may still need
        ``pip install sj-flexsn``)."""
        if step_mode == "s":
            return ("torch",)
        third_party = backends.supported_backends("flexsn")
        return BUILTIN_BACKENDS + tuple(n for n in third_party if n not in BUILTIN_BACKENDS)

    @property
    def supported_backends(self) -> tuple[str, ...]:
        return self.supported_backends_for(self.step_mode)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._check_backend(name, self.step_mode)
        kernel = None
        if name in ("triton", "inductor"):
            # The generated kernels: checked here, before anything is built or traced.
            check_elementwise_examples(self.example_inputs, self.example_outputs, name)
        if name != "torch":
            kernel = _build_kernel(
                self.core,
                self.num_inputs,
                self.num_states,
                self.num_outputs,
                self.example_inputs,
                self.requires_grad,
                name,
            )
        self._backend = name
        self._set_kernel(kernel)

    @property
    def kernel(self) -> Any:
        """The kernel built by the backend's ``flexsn`` operator; ``None`` for ``'torch'``."""
        return self._kernel

    def _set_kernel(self, kernel: Any) -> None:
        # Stored around nn.Module.__setattr__: a kernel that is itself a Module (holding
        # ``core``) must not become a submodule, or ``core``'s parameters would appear a
        # second time in state_dict under another prefix.
        object.__setattr__(self, "_kernel", kernel)

    def _check_backend(self, name: str, step_mode: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"backend must be a string, got {type(name).__name__}")
        known = self.supported_backends_for("m")
        if name not in known:
            raise ValueError(f"FlexSN supports backend in {known}, got {name!r}")
        if step_mode == "s" and name != "torch":
            raise ValueError(
                f"FlexSN backend {name!r} runs whole sequences and needs step_mode 'm'; "
                "in step_mode 's' use backend='torch'"
            )

    def _validate_step_mode(self, value: str) -> None:
        self._check_backend(getattr(self, "_backend", "torch"), value)

    # -- states --------------------------------------------------------------------------

    @staticmethod
    def init_states(num_states: int, step_mode: str, *args: torch.Tensor) -> list[torch.Tensor]:
        """The initial states: ``num_states`` zero tensors shaped, typed and placed like one
        step of the first input (``args[0]`` in step mode ``'s'``, ``args[0][0]`` in
        ``'m'``). Override it (as a static method) for other initial states.

        Args:
            num_states: how many states ``core`` takes.
            step_mode: ``'s'`` or ``'m'``, the mode of the call.
            args: the forward inputs, ``(*inputs,)``.
        """
        first = args[0]
        step_shape = first.shape if step_mode == "s" else first.shape[1:]
        return [first.new_zeros(step_shape) for _ in range(num_states)]

    def _fresh_states(self, inputs: Sequence[torch.Tensor], step_mode: str) -> list[torch.Tensor]:
        states = self.init_states(self.num_states, step_mode, *inputs)
        return check_states(states, self.num_states, "init_states")

    def _current_states(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The states this call starts from (see :meth:`materialize_states`), kept."""
        self.states = self._materialized(inputs, self.states, self.step_mode)
        return self.states

    def _materialized(
        self, inputs: Sequence[torch.Tensor], states: list[torch.Tensor] | None, step_mode: str
    ) -> list[torch.Tensor]:
        first = inputs[0]
        step_shape = first.shape if step_mode == "s" else first.shape[1:]
        if states is None:
            states = self._fresh_states(inputs, step_mode)
        elif any(state.shape != step_shape for state in states):
            # A new batch size, or states that a custom init_states shapes otherwise:
            # compare with what it makes for this input.
            fresh = self._fresh_states(inputs, step_mode)
            if [f.shape for f in fresh] != [s.shape for s in states]:
                states = fresh
        # Floating states follow the input's dtype; every state follows its device.
        return [
            placed_like(s, first) if s.is_floating_point() else s.to(first.device) for s in states
        ]

    def materialize_states(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str
    ) -> tuple[Any, ...]:
        """``(states,)`` ready to run (pure), as BaseNode handles its memories: made by
        :meth:`init_states` when ``None`` (the first call, after :meth:`reset`), made
        afresh when the input's step shape changed (a new batch size), converted to the
        input's dtype and device when those changed."""
        self._check_inputs(inputs, step_mode)
        (values,) = states
        return (self._materialized(inputs, values, step_mode),)

    # -- forward -------------------------------------------------------------------------

    def _check_inputs(self, args: Sequence[Any], step_mode: str) -> None:
        what = "*inputs, one step each" if step_mode == "s" else "*input_seqs, [T, ...] each"
        _check_argument_count(type(self).__name__, args, self.num_inputs, what)
        if step_mode == "m":
            lengths = {x.shape[0] if x.dim() > 0 else None for x in args}
            if None in lengths or len(lengths) != 1:
                shapes = [tuple(x.shape) for x in args]
                raise ValueError(
                    f"{type(self).__name__} in step_mode 'm' expects every input to be "
                    f"[T, ...] with the same T, got shapes {shapes}"
                )

    def _run_core(self, *args: torch.Tensor) -> Sequence[torch.Tensor]:
        returns = self.core(*args)
        return check_core_returns(returns, self.num_outputs, self.num_states)

    def _states_of(self, inputs: tuple[Any, ...], states: tuple[Any, ...], mode: str) -> list:
        if len(states) != 1:
            raise ValueError(
                f"FlexSN's explicit state is (states,), one list of {self.num_states} "
                f"tensors (or None); got {len(states)} values"
            )
        return self._materialized(inputs, states[0], mode)

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[list[torch.Tensor]]]:
        """One step, pure: ``(outputs, (new states,))`` from the inputs ``[N, *]`` each and
        ``(states,)`` (a list of ``num_states`` tensors, or ``None`` for
        :meth:`init_states`)."""
        _no_keywords(kwargs)
        inputs = tuple(inputs)
        self._check_inputs(inputs, "s")
        returns = self._run_core(*inputs, *self._states_of(inputs, states, "s"))
        return tuple(returns[: self.num_outputs]), (list(returns[self.num_outputs :]),)

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[list[torch.Tensor]]]:
        """``T`` steps, pure, on the module's backend: ``(outputs [T, ...] each, (final
        states,))`` from the inputs ``[T, N, *]`` each and ``(states,)``."""
        _no_keywords(kwargs)
        inputs = tuple(inputs)
        self._check_inputs(inputs, "m")
        outputs, final_states, _ = self._sequence(
            inputs, self._states_of(inputs, states, "m"), store_state_seqs=False
        )
        return tuple(outputs), (list(final_states),)

    def single_step_forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One step: inputs ``[N, *]`` each -> the tuple of outputs ``[N, *]``; updates
        ``states``."""
        self._check_inputs(args, "s")
        outputs, (self.states,) = self.single_step_functional_forward(
            args, (self._current_states(args),)
        )
        return outputs

    def multi_step_forward(self, *args: torch.Tensor) -> list[torch.Tensor]:
        """``T`` steps: inputs ``[T, N, *]`` each -> the list of outputs ``[T, N, *]``;
        updates ``states`` (and ``state_seqs`` when ``store_state_seqs``)."""
        self._check_inputs(args, "m")
        states = self._current_states(args)
        outputs, final_states, state_seqs = self._sequence(
            args, states, store_state_seqs=self.store_state_seqs
        )
        self.states = list(final_states)
        self.state_seqs = state_seqs
        return list(outputs)

    def forward(self, *args: torch.Tensor) -> Outputs:
        """``forward(*inputs)``; see the class docstring for shapes and return values."""
        if self.step_mode == "s":
            outputs = self.single_step_forward(*args)
        else:
            outputs = self.multi_step_forward(*args)
        for output in outputs:  # compact_spikes(): outputs that are exactly 0 or 1
            mark_checked_spikes(output)
        return outputs[0] if len(outputs) == 1 else outputs

    def _sequence(
        self, inputs: Sequence[torch.Tensor], states: list[torch.Tensor], store_state_seqs: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        if self._kernel is None:
            return self._torch_multi_step(inputs, states, store_state_seqs)
        return self._kernel_multi_step(inputs, states, store_state_seqs)

    def _torch_multi_step(
        self, inputs: Sequence[torch.Tensor], states: list[torch.Tensor], store_state_seqs: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        """The eager time loop: ``(outputs [T, ...], final states, state_seqs | None)``."""
        T = inputs[0].shape[0]
        if T == 0:
            return self._empty_sequence(inputs, states, store_state_seqs)
        output_steps: list[list[torch.Tensor]] = [[] for _ in range(self.num_outputs)]
        state_steps: list[list[torch.Tensor]] = [[] for _ in range(self.num_states)]
        for t in range(T):
            returns = self._run_core(*(x[t] for x in inputs), *states)
            states = list(returns[self.num_outputs :])
            for steps, output in zip(output_steps, returns[: self.num_outputs], strict=True):
                steps.append(output)
            if store_state_seqs:
                for steps, state in zip(state_steps, states, strict=True):
                    steps.append(state)
        outputs = [torch.stack(steps) for steps in output_steps]
        state_seqs = [torch.stack(steps) for steps in state_steps] if store_state_seqs else None
        return outputs, states, state_seqs

    def _empty_sequence(
        self, inputs: Sequence[torch.Tensor], states: list[torch.Tensor], store_state_seqs: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        # With T == 0 there is no step to run core on, so the output shapes and dtypes
        # must come from the user's templates.
        if self.example_outputs is None:
            raise ValueError(
                "FlexSN(backend='torch') got an empty sequence (T == 0) and cannot run core "
                "to learn the output shapes: pass example_outputs=(one step of each output,) "
                "when constructing it"
            )
        device = inputs[0].device
        # Empty, but attached to the inputs' and states' graph: backward gives zeros.
        zero = sum(t.sum() for t in (*inputs, *states)) * 0
        outputs = [
            template.new_empty((0, *template.shape), device=device) + zero.to(template.dtype)
            for template in self.example_outputs
        ]
        state_seqs = None
        if store_state_seqs:
            state_seqs = [
                state.new_empty((0, *state.shape)) + zero.to(state.dtype) for state in states
            ]
        return outputs, [state.clone() for state in states], state_seqs

    def _kernel_multi_step(
        self, inputs: Sequence[torch.Tensor], states: list[torch.Tensor], store_state_seqs: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        """The sj-flexsn kernel: it handles training vs inference and ``T == 0`` itself."""
        if store_state_seqs:
            returns = self._split_kernel_returns(self._kernel(*inputs, *states), "kernel")
            outputs, state_seqs = returns[: self.num_outputs], returns[self.num_outputs :]
            empty = inputs[0].shape[0] == 0
            final_states = [
                state.clone() if empty else seq[-1]
                for seq, state in zip(state_seqs, states, strict=True)
            ]
            return outputs, final_states, state_seqs
        returns = self._split_kernel_returns(
            self._kernel.final_state(*inputs, *states), "kernel.final_state"
        )
        return returns[: self.num_outputs], returns[self.num_outputs :], None

    def _split_kernel_returns(self, returns: Any, name: str) -> list[torch.Tensor]:
        expected = self.num_outputs + self.num_states
        if not isinstance(returns, (tuple, list)) or len(returns) != expected:
            raise RuntimeError(
                f"FlexSN backend {self._backend!r}: {name} returned "
                f"{len(returns) if isinstance(returns, (tuple, list)) else type(returns).__name__}"
                f" values, expected num_outputs + num_states = {expected}"
            )
        return list(returns)

    # -- pickling ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Generated kernels hold compiled code that cannot be pickled; they are built
        # again on load (from sj-flexsn's disk cache of generated sources).
        state = super().__getstate__()
        state.pop("_kernel", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._set_kernel(None)
        if self._backend != "torch":
            self.backend = self._backend

    # -- memories that are lists of tensors ----------------------------------------------

    def _apply(self, fn, recurse=True):
        # MemoryModule moves tensor memories; ``states`` and ``state_seqs`` are lists of
        # tensors, so move their items here (for .to(), .cuda(), .half(), .double()).
        module = super()._apply(fn, recurse)
        for name in ("states", "state_seqs"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, [fn(item) for item in value])
        return module

    def detach(self) -> None:
        """Detach the states (and state sequences) from the graph (truncated BPTT)."""
        super().detach()
        for name in ("states", "state_seqs"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, [item.detach() for item in value])

    def extra_repr(self) -> str:
        return (
            f"num_inputs={self.num_inputs}, num_states={self.num_states}, "
            f"num_outputs={self.num_outputs}, step_mode={self.step_mode}, "
            f"backend={self.backend}, store_state_seqs={self.store_state_seqs}"
        )
