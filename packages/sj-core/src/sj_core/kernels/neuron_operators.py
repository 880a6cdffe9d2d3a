"""The operator-key functions of a neuron kernel backend, derived from the statements.

A kernel backend (sj-triton, sj-cupy) writes one :class:`~.kernel_op.KernelOp` that runs
any neuron described by a :class:`NeuronKernelConfig`, wraps it in a
:class:`NeuronKernelRunner` and asks it for the ``<neuron>.multi_step`` and
``<neuron>.single_step`` functions of every statement. Those do, identically for every
backend:

* argument checks: a wrong shape, type or value is a ``ValueError``/``TypeError`` (the
  same as on the ``torch`` reference); an input or configuration the backend cannot run
  (dtype, device, surrogate, ``spiking=False``, mixed dtypes or devices) is an
  :class:`~sj_core.backends.UnsupportedByBackendError`, on which ``backend='auto'``
  falls back;
* ``T == 0`` (and empty steps): no launch; empty spikes attached to ``x_seq``'s graph
  and the initial states as the final ones;
* the kernel call, on contiguous tensors, returning ``(spike_seq, *final_states,
  v_seq | None)``.

Every neuron has the same kernel layout, so one :class:`~.kernel_op.KernelOp` serves
all: inputs ``[x_seq, v_init, w_init, r]`` and outputs ``[spike_seq, v_last, w_last,
v_seq, w_seq]``, where ``w_*`` exist for neurons with a second state (Izhikevich), ``r``
for a neuron with a tensor parameter (PLIF's ``r_tau``) and the sequences with
``store_v_seq`` (``None``, or empty placeholders on the traced path, otherwise). A
statement with more than two states or more than one tensor parameter does not fit and
is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

import torch

from ..backends.errors import UnsupportedByBackendError
from ..neuron.statements import FLAG, FLOAT, STATEMENTS, TENSOR, NeuronStatement
from ..reference import empty_spikes, split_operator_tensors
from .kernel_op import KernelOp

__all__ = [
    "KERNEL_DTYPES",
    "NeuronKernelConfig",
    "NeuronKernelRunner",
    "NeuronKernels",
    "surrogate_kernel_arguments",
]

#: The dtypes neuron kernels take (state and arithmetic in fp32 inside).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class NeuronKernelConfig(NamedTuple):
    """Everything about a neuron kernel call besides its tensors.

    Attributes:
        neuron: the statement's name (``"lif"``).
        surrogate: the surrogate's ``kernel_name``.
        hard_reset: ``v_reset`` given (else soft reset).
        detach_reset: the reset's spike is detached (gradients only).
        store_v_seq: the post-reset potentials are an output.
        flags: bit ``i`` is the statement's ``i``-th flag (``decay_input``...).
        v_threshold: the threshold.
        v_reset: ``V_r``: ``v_reset``, or 0.0 for soft reset.
        params: the statement's float parameters, in statement order.
        surrogate_params: the surrogate's ``kernel_params()`` values, in order.
    """

    neuron: str
    surrogate: str
    hard_reset: bool
    detach_reset: bool
    store_v_seq: bool
    flags: int
    v_threshold: float
    v_reset: float
    params: tuple[float, ...]
    surrogate_params: tuple[float, ...]

    @property
    def statement(self) -> NeuronStatement:
        return STATEMENTS[self.neuron]

    def flag_values(self) -> dict[str, bool]:
        """The statement's flags by name."""
        names = self.statement.names(FLAG)
        return {name: bool(self.flags >> i & 1) for i, name in enumerate(names)}

    def param_values(self) -> dict[str, float]:
        """The statement's float parameters by name."""
        return dict(zip(self.statement.names(FLOAT), self.params, strict=True))


def surrogate_kernel_arguments(
    surrogate_function: Any, backend: str, supported: Collection[str]
) -> tuple[str, tuple[float, ...]]:
    """``(kernel_name, parameter values)`` of a surrogate a kernel backend can run.

    Raises:
        UnsupportedByBackendError: not a ``SurrogateFunctionBase``, in ``spiking=False``
            mode, or not among ``supported``; the message lists what is supported.
    """
    name = getattr(surrogate_function, "kernel_name", None)
    listing = ", ".join(supported)
    if not isinstance(name, str) or not hasattr(surrogate_function, "kernel_params"):
        raise UnsupportedByBackendError(
            f"the {backend} backend needs a sj_core.surrogate.SurrogateFunctionBase, got "
            f"{type(surrogate_function).__name__}; supported: {listing}"
        )
    if not getattr(surrogate_function, "spiking", True):
        raise UnsupportedByBackendError(
            f"the {backend} backend supports only spiking surrogate functions (it emits "
            f"binary spikes); {name}(spiking=False) outputs the smooth primitive: use "
            "backend='torch' for it"
        )
    if name not in supported:
        raise UnsupportedByBackendError(
            f"the {backend} backend has no kernel for surrogate {name}; supported: {listing} "
            "(use backend='torch' for others)"
        )
    return name, tuple(float(v) for v in surrogate_function.kernel_params().values())


def _check_tensors(
    backend: str,
    x_seq: torch.Tensor,
    tensors: tuple[torch.Tensor, ...],
    device_ok: Callable[[torch.device], str | None],
) -> None:
    if x_seq.dtype not in KERNEL_DTYPES:
        raise UnsupportedByBackendError(
            f"the {backend} backend takes float32, float16 and bfloat16 inputs, got "
            f"{x_seq.dtype} (use backend='torch' for it)"
        )
    problem = device_ok(x_seq.device)
    if problem is not None:
        raise UnsupportedByBackendError(f"the {backend} backend {problem}")
    for tensor in tensors:
        if tensor.device != x_seq.device:
            raise UnsupportedByBackendError(
                f"the {backend} backend needs every tensor on x_seq's device {x_seq.device}, "
                f"got one on {tensor.device}"
            )


def _config(
    statement: NeuronStatement,
    kwargs: Mapping[str, Any],
    backend: str,
    surrogates: Collection[str],
) -> NeuronKernelConfig:
    kwargs = dict(kwargs)
    store_v_seq = kwargs.pop("store_v_seq", False)
    try:
        v_threshold = kwargs.pop("v_threshold")
        v_reset = kwargs.pop("v_reset")
        detach_reset = kwargs.pop("detach_reset")
        surrogate_function = kwargs.pop("surrogate_function")
    except KeyError as missing:
        raise TypeError(f"{statement.title} operator: missing keyword argument {missing}") from None
    if torch.compiler.is_compiling():
        # Under torch.compile(dynamic=True) the floats can be symbolic, and checking them
        # would break the graph: they were checked when the module's attributes were set,
        # and an eager call of the same operator checks them.
        params = {name: kwargs[name] for name in statement.names(FLOAT) + statement.names(FLAG)}
    else:
        params, v_threshold, v_reset = statement.validate(kwargs, v_threshold, v_reset)
    if not isinstance(detach_reset, bool) or not isinstance(store_v_seq, bool):
        raise TypeError("detach_reset and store_v_seq must be bools")
    surrogate, surrogate_params = surrogate_kernel_arguments(
        surrogate_function, backend, surrogates
    )
    flags = 0
    for i, name in enumerate(statement.names(FLAG)):
        flags |= int(params[name]) << i
    return NeuronKernelConfig(
        neuron=statement.name,
        surrogate=surrogate,
        hard_reset=v_reset is not None,
        detach_reset=detach_reset,
        store_v_seq=store_v_seq,
        flags=flags,
        v_threshold=v_threshold,
        v_reset=0.0 if v_reset is None else v_reset,
        params=tuple(params[name] for name in statement.names(FLOAT)),
        surrogate_params=surrogate_params,
    )


class NeuronKernelRunner:
    """Runs a backend's neuron :class:`~.kernel_op.KernelOp` for any statement, with the
    shared checks (see the module docstring), and derives the operator-key functions.

    Args:
        op: the backend's neuron kernel operator (config :class:`NeuronKernelConfig`).
        backend: the backend's name, for messages.
        surrogates: the surrogate ``kernel_name`` s it has kernels for.
        device_ok: ``device -> None`` if the kernels run on it, else the end of a
            sentence saying where they run ("runs on CUDA tensors, got ...").
    """

    def __init__(
        self,
        op: KernelOp,
        *,
        backend: str,
        surrogates: Collection[str],
        device_ok: Callable[[torch.device], str | None],
    ) -> None:
        self.op = op
        self.backend = backend
        self.surrogates = tuple(surrogates)
        self.device_ok = device_ok

    def run(
        self, statement: NeuronStatement, x_seq: torch.Tensor, *tensors: torch.Tensor, **kwargs: Any
    ) -> tuple[torch.Tensor | None, ...]:
        """Every output of the kernels: ``(spike_seq, v_last, w_last, v_seq, w_seq)``
        (``None`` for the second state's outputs of one-state neurons, and for the
        sequences without ``store_v_seq``). ``tensors`` and ``kwargs`` as in the
        ``<neuron>.multi_step`` operator."""
        backend = self.backend
        states, parameters = split_operator_tensors(statement, x_seq, tensors)
        config = _config(statement, kwargs, backend, self.surrogates)
        _check_tensors(backend, x_seq, states + parameters, self.device_ok)
        for state in states:
            if state.dtype != x_seq.dtype:
                raise UnsupportedByBackendError(
                    f"the {backend} backend needs the initial states in x_seq's dtype "
                    f"{x_seq.dtype}, got {state.dtype}"
                )
        two_states = len(states) == 2
        if x_seq.numel() == 0:  # T == 0 or an empty step: nothing to launch
            sequence = empty_spikes(x_seq) if config.store_v_seq else None
            w_seq = sequence if two_states else None
            return (
                empty_spikes(x_seq),
                states[0],
                states[1] if two_states else None,
                sequence,
                w_seq,
            )
        w_init = states[1].contiguous() if two_states else None
        r = parameters[0].reshape(1).contiguous() if parameters else None
        outputs = self.op(config, [x_seq.contiguous(), states[0].contiguous(), w_init, r])
        spike_seq, v_last, w_last, v_seq, w_seq = outputs
        if not config.store_v_seq:
            v_seq = w_seq = None
        if not two_states:
            w_last = w_seq = None
        return spike_seq, v_last, w_last, v_seq, w_seq

    def operators(
        self, module: str, statements: Collection[NeuronStatement] | None = None
    ) -> dict[str, Callable[..., tuple]]:
        """Operator key -> function, for each statement (default: every built-in one).

        Args:
            module: the module that exposes the functions as ``<neuron>_multi_step`` and
                ``<neuron>_single_step`` (their ``__module__``, so that they pickle by
                name).
        """
        operators = {}
        for statement in statements if statements is not None else STATEMENTS.values():
            if len(statement.states) > 2 or len(statement.names(TENSOR)) > 1:
                raise ValueError(
                    f"{statement.title} has states {statement.states} and tensor parameters "
                    f"{statement.names(TENSOR)}: neuron kernels take at most two states and "
                    "one tensor parameter"
                )
            multi = self._multi_step(statement, module)
            operators[f"{statement.name}.multi_step"] = multi
            operators[f"{statement.name}.single_step"] = self._single_step(statement, multi, module)
        return operators

    def export(self, namespace: dict[str, Any]) -> list[str]:
        """Define every operator in a module's ``namespace`` (its ``globals()``) as
        ``<neuron>_multi_step`` / ``<neuron>_single_step``; returns the names, for
        ``__all__``. The functions' ``__module__`` is the namespace's module."""
        names = []
        for function in self.operators(module=namespace["__name__"]).values():
            namespace[function.__name__] = function
            names.append(function.__name__)
        return names

    def _multi_step(self, statement: NeuronStatement, module: str) -> Callable[..., tuple]:
        run = self.run
        two_states = len(statement.states) == 2

        def operator(x_seq, *tensors, **kwargs):
            spike_seq, v_last, w_last, v_seq, _ = run(statement, x_seq, *tensors, **kwargs)
            if two_states:
                return spike_seq, v_last, w_last, v_seq
            return spike_seq, v_last, v_seq

        return statement.operator_function(
            operator,
            name=f"{statement.name}_multi_step",
            module=module,
            doc=f"Operator ``{statement.operator_key}`` of the {self.backend} backend "
            "(see :mod:`sj_core.backends.operators`).",
        )

    def _single_step(self, statement: NeuronStatement, multi_step: Callable, module: str):
        def operator(x, *tensors, **kwargs):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"x must be a tensor, got {type(x).__name__}")
            outputs = multi_step(x.unsqueeze(0), *tensors, **kwargs, store_v_seq=False)
            return (outputs[0][0], *outputs[1:-1])

        function = statement.operator_function(
            operator,
            name=f"{statement.name}_single_step",
            module=module,
            doc=f"Operator ``{statement.name}.single_step`` of the {self.backend} backend: "
            "one step, run as a sequence of length 1.",
        )
        del function.__signature__  # the single step has no store_v_seq
        return function


class NeuronKernels:
    """The parts of a :class:`~.kernel_op.KernelImplementation` that every neuron kernel
    backend shares, given the common layout (module docstring) and this convention for
    what the backward keeps: ``saved = [h_seq, x_seq | None, v_init | None, r | None]``,
    ``h_seq`` the pre-reset potentials ``[T, *S]`` (the forward's last result when it
    saves), or ``None`` where :meth:`keeps_h` says the backward recomputes them from
    ``x_seq`` and ``v_init``.

    A backend subclasses it and writes ``forward``, ``saved`` and ``backward``.
    """

    backend = "kernel"

    def num_outputs(self, config: NeuronKernelConfig) -> int:
        return 5  # spike_seq, v_last, w_last, v_seq, w_seq

    def retain(self, config: NeuronKernelConfig) -> None:
        return None

    def keeps_h(self, config: NeuronKernelConfig, T: int) -> bool:
        """Whether a training forward over ``T`` steps keeps ``H`` for the backward."""
        return True

    @staticmethod
    def results(
        x_seq: torch.Tensor, outputs: list[torch.Tensor | None], placeholders: bool
    ) -> list[torch.Tensor | None]:
        """``outputs`` with absent ones as empty tensors when ``placeholders``."""
        if not placeholders:
            return outputs
        return [x_seq.new_empty(0) if t is None else t for t in outputs]

    def fake_forward(
        self, config: NeuronKernelConfig, inputs: list[torch.Tensor | None], save: bool
    ) -> list[torch.Tensor]:
        x_seq, v_init, w_init, _ = inputs
        store = config.store_v_seq
        outputs = [
            torch.empty_like(x_seq),
            torch.empty_like(v_init),
            None if w_init is None else torch.empty_like(w_init),
            torch.empty_like(x_seq) if store else None,
            torch.empty_like(x_seq) if store and w_init is not None else None,
            torch.empty_like(x_seq) if save and self.keeps_h(config, x_seq.shape[0]) else None,
        ]
        return self.results(x_seq, outputs, placeholders=True)  # one placeholder each

    def fake_backward(
        self,
        config: NeuronKernelConfig,
        saved: list[torch.Tensor | None],
        grads: list[torch.Tensor | None],
        needs: list[bool],
    ) -> list[torch.Tensor | None]:
        h_seq, x_seq, _, r = saved
        like = x_seq if h_seq is None else h_seq  # [T, *S], the dtype of the gradients
        step = like.shape[1:]
        has_w = config.statement.adaptation is not None
        return [
            torch.empty_like(like),
            like.new_empty(step) if needs[1] else None,
            like.new_empty(step) if has_w and needs[2] else None,
            None if r is None else r.new_empty((1,)),
        ]
