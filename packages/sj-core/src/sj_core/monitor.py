"""Record what the layers of a network see and produce, with forward and backward hooks.

Each monitor hooks the modules of a network chosen by type (``instance``) and/or by name
(``names``, shell-style patterns over ``net.named_modules()`` names) and appends one
record per call, in call order, to :attr:`BaseMonitor.records`; ``monitor["name"]`` gives
the records of one layer and :meth:`BaseMonitor.sequence` joins them along time. The
names and semantics of the first five are those of the reference system's ``monitor``:

* :class:`OutputMonitor`: ``function_on_output(output)``;
* :class:`InputMonitor`: ``function_on_input(input)``;
* :class:`AttributeMonitor`: ``function_on_attribute(module.<attribute>)`` before or after
  each forward call (a neuron's potential ``v``, any other memory, or ``v_seq``);
* :class:`GradOutputMonitor` and :class:`GradInputMonitor`: the gradient of the loss with
  respect to a module's output or input, during ``backward()``;

and two more record what is usually looked at:

* :class:`FiringRateMonitor`: each layer's firing rate per neuron, per call and overall
  (:meth:`~FiringRateMonitor.per_neuron`, :meth:`~FiringRateMonitor.per_layer`);
* :class:`MembranePotentialMonitor`: every step's membrane potential, in either step mode.

A record is what the function returns; the default keeps the tensor itself, which holds
on to the autograd graph during training. ``to_cpu=True`` stores detached CPU copies
instead, so that long runs do not fill GPU memory. :meth:`~BaseMonitor.disable` and
:meth:`~BaseMonitor.enable` pause and resume recording, :meth:`~BaseMonitor.clear`
forgets the records, :meth:`~BaseMonitor.remove_hooks` detaches the monitor, as does the
end of a ``with`` block or garbage collection. Hooks do not depend on the backend or the
step mode; see the docs (:doc:`/monitoring`) for what ``torch.compile`` does with them.

Example::

    >>> net = nn.Sequential(layer.Linear(8, 4, step_mode="m"), neuron.IFNode(step_mode="m"))
    >>> with OutputMonitor(net, neuron.IFNode, lambda s: s.mean().item()) as rates:
    ...     net(torch.rand(5, 2, 8))                     # [T, N, features]
    ...     rates.monitored_layers, len(rates["1"])
    (['1'], 1)
"""

from __future__ import annotations

import fnmatch
import math
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .neuron import BaseNode, SimpleBaseNode

__all__ = [
    "AttributeMonitor",
    "BaseMonitor",
    "FiringRateMonitor",
    "GradInputMonitor",
    "GradOutputMonitor",
    "InputMonitor",
    "MembranePotentialMonitor",
    "OutputMonitor",
]

ModuleTypes = type | tuple[type, ...] | None
Names = str | Iterable[str] | None

# What a record is along time, which :meth:`BaseMonitor.sequence` needs: one step [N, *],
# a sequence [T, N, *], or neither (gradients, values the module keeps per call).
STEP, SEQUENCE = "step", "sequence"


def _identity(x: Any) -> Any:
    return x


def _unpack(values: Any) -> Any:
    """A hook's one-element tuple of inputs (or gradients) as its element."""
    return values[0] if isinstance(values, tuple) and len(values) == 1 else values


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if type(value) in (tuple, list):
        return type(value)(_to_cpu(v) for v in value)
    if type(value) is dict:
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


def _by_step_mode(module: nn.Module) -> str | None:
    """A module's own output or input: a sequence in step mode 'm', one step in 's'."""
    return {"m": SEQUENCE, "s": STEP}.get(getattr(module, "step_mode", None))


def _untimed(module: nn.Module) -> None:
    return None


class BaseMonitor:
    """Hooks, records and the switches that every monitor shares.

    Attributes:
        monitored_layers: the names (as in ``net.named_modules()``) of the hooked modules.
        records: every record, in call order.
        to_cpu: whether records are stored as detached CPU copies.
    """

    def __init__(self, *, to_cpu: bool = False) -> None:
        if not isinstance(to_cpu, bool):
            raise TypeError(f"to_cpu must be a bool, got {to_cpu!r}")
        self.hooks: list[Any] = []
        self.monitored_layers: list[str] = []
        self.records: list[Any] = []
        self.to_cpu = to_cpu
        self._indices: dict[str, list[int]] = {}
        self._layouts: list[str | None] = []
        self._enabled = True

    def _modules(
        self, net: nn.Module, instance: ModuleTypes, names: Names
    ) -> list[tuple[str, nn.Module]]:
        """The modules of ``net`` of type ``instance`` whose names match ``names``; with
        neither, ``net`` itself."""
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if instance is None and names is None:
            instance = type(net)
        types = (
            None if instance is None else (instance if isinstance(instance, tuple) else (instance,))
        )
        if types is not None and (not types or not all(isinstance(t, type) for t in types)):
            raise TypeError(f"instance must be a module class or a tuple of them, got {instance!r}")
        patterns = _patterns(names)
        found = [
            (name, module)
            for name, module in net.named_modules()
            if (types is None or isinstance(module, types))
            and (patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns))
        ]
        if not found:
            wanted = [] if types is None else ["of type " + ", ".join(t.__name__ for t in types)]
            wanted += [] if patterns is None else [f"named like {patterns}"]
            raise ValueError(f"{type(net).__name__} contains no module {' and '.join(wanted)}")
        for name, _ in found:
            self.monitored_layers.append(name)
            self._indices[name] = []
        return found

    def _hook(
        self,
        name: str,
        extract: Callable[..., Any],
        layout: Callable[[nn.Module], str | None],
    ) -> Callable[..., None]:
        """A hook that records ``extract(monitor, module, *hook_args)`` under ``name``
        while enabled.

        It refers to the monitor weakly, so that a monitor nobody holds any more is
        collected (and removes its hooks) instead of being kept alive by the network.
        """
        monitor = weakref.ref(self)

        def hook(module: nn.Module, *args: Any) -> None:
            owner = monitor()
            if owner is not None and owner._enabled:
                owner._append(name, extract(owner, module, *args), layout(module))

        return hook

    def _append(self, name: str, record: Any, layout: str | None) -> None:
        if self.to_cpu:
            record = _to_cpu(record)
        self._indices[name].append(len(self.records))
        self.records.append(record)
        self._layouts.append(layout)

    def __getitem__(self, key: int | str) -> Any:
        """``monitor[i]``: the ``i``-th record; ``monitor["name"]``: that layer's records."""
        if isinstance(key, int):
            return self.records[key]
        if isinstance(key, str):
            return [self.records[i] for i in self._layer_indices(key)]
        raise TypeError(f"index a monitor with an int or a layer name, got {type(key).__name__}")

    def _layer_indices(self, layer: str) -> list[int]:
        if layer not in self._indices:
            raise KeyError(f"{layer!r} is not monitored; monitored: {self.monitored_layers}")
        return self._indices[layer]

    def __len__(self) -> int:
        return len(self.records)

    def sequence(self, layer: str) -> torch.Tensor:
        """The records of ``layer`` joined along time, ``[T, N, *]``: a call in step mode
        ``'s'`` adds one step ``[N, *]``, a call in ``'m'`` its sequence ``[T, N, *]``.

        Needs tensor records of one batch size; gradients and per-call values (such as
        ``v`` after a multi-step call) have no time axis and raise ``ValueError``.
        """
        indices = self._layer_indices(layer)
        if not indices:
            raise ValueError(f"nothing has been recorded for {layer!r}")
        parts = []
        for i in indices:
            record, layout = self.records[i], self._layouts[i]
            if layout is None or not isinstance(record, torch.Tensor):
                raise ValueError(
                    f"the records of {layer!r} are not per-step tensors (record {i}: "
                    f"{type(record).__name__}, {'no time axis' if layout is None else layout})"
                )
            parts.append(record.unsqueeze(0) if layout == STEP else record)
        return torch.cat(parts)

    def clear(self) -> None:
        """Forget every record (the hooks stay)."""
        self.records.clear()
        self._layouts.clear()
        for indices in self._indices.values():
            indices.clear()

    def clear_recorded_data(self) -> None:
        """:meth:`clear`, by the reference system's name."""
        self.clear()

    def enable(self) -> None:
        """Record again after :meth:`disable`."""
        self._enabled = True

    def disable(self) -> None:
        """Stop recording (the hooks stay, doing nothing)."""
        self._enabled = False

    def is_enable(self) -> bool:
        """Whether the monitor is recording."""
        return self._enabled

    def remove_hooks(self) -> None:
        """Detach the monitor from the network; the records stay."""
        for handle in self.hooks:
            handle.remove()
        self.hooks.clear()

    def __enter__(self) -> BaseMonitor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove_hooks()

    def __del__(self) -> None:
        if hasattr(self, "hooks"):  # __init__ may have failed before creating it
            self.remove_hooks()


def _patterns(names: Names) -> tuple[str, ...] | None:
    if names is None:
        return None
    patterns = (names,) if isinstance(names, str) else tuple(names)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"names must be a pattern or an iterable of patterns, got {names!r}")
    return patterns


class OutputMonitor(BaseMonitor):
    """Record ``function_on_output(output)`` of every module of type ``instance`` (and/or
    whose name matches ``names``).

    Args:
        net: the network.
        instance: the module class (or tuple of classes) to monitor; with ``names`` also
            ``None``, ``net`` itself is monitored.
        function_on_output: what to record from each output (default: the output).
        names: shell-style patterns (``"features.*"``) or exact names of modules, as in
            ``net.named_modules()`` (``""`` is ``net``); with ``instance``, both must match.
        to_cpu: store detached CPU copies of the records.

    Example::

        >>> mon = OutputMonitor(net, neuron.LIFNode, lambda s: s.detach())
        >>> net(x_seq)                                 # x_seq: [T, N, *]
        >>> mon["1"][0].shape                          # the spikes of layer "1": [T, N, *]
    """

    def __init__(
        self,
        net: nn.Module,
        instance: ModuleTypes = None,
        function_on_output: Callable[[Any], Any] = _identity,
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(to_cpu=to_cpu)
        self.function_on_output = function_on_output
        for name, module in self._modules(net, instance, names):
            hook = self._hook(
                name,
                lambda owner, m, inputs, out: owner.function_on_output(_unpack(out)),
                _by_step_mode,
            )
            self.hooks.append(module.register_forward_hook(hook))


class InputMonitor(BaseMonitor):
    """Record ``function_on_input(input)`` of every module of type ``instance`` (the
    input itself when the module takes one argument, else the tuple of arguments).

    Args:
        net, instance, names, to_cpu: as in :class:`OutputMonitor`.
        function_on_input: what to record from each input (default: the input).

    Example::

        >>> currents = InputMonitor(net, neuron.LIFNode)   # what the neurons integrate
        >>> net(x_seq)
        >>> currents[0].shape                              # [T, N, *] in step mode 'm'
    """

    def __init__(
        self,
        net: nn.Module,
        instance: ModuleTypes = None,
        function_on_input: Callable[[Any], Any] = _identity,
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(to_cpu=to_cpu)
        self.function_on_input = function_on_input
        for name, module in self._modules(net, instance, names):
            hook = self._hook(
                name,
                lambda owner, m, inputs, out: owner.function_on_input(_unpack(inputs)),
                _by_step_mode,
            )
            self.hooks.append(module.register_forward_hook(hook))


class AttributeMonitor(BaseMonitor):
    """Record ``function_on_attribute(module.<attribute_name>)`` of every module of type
    ``instance``, before (``pre_forward=True``) or after each forward call.

    Any memory works (a neuron's ``v``, Izhikevich's ``w``, ...): in step mode ``'s'``
    one record per step. After a call in step mode ``'m'``, ``v`` is the last step's
    potential ``[N, *]``; every step's is ``v_seq`` ``[T, N, *]`` with
    ``store_v_seq=True`` (or use :class:`MembranePotentialMonitor`, which sets it).
    :meth:`~BaseMonitor.sequence` joins per-step records and ``*_seq`` attributes.

    Args:
        attribute_name: the attribute to read.
        pre_forward: read it before the call (``True``) or after (``False``).
        net, instance, names, to_cpu: as in :class:`OutputMonitor`.
        function_on_attribute: what to record from the attribute (default: itself).

    Example::

        >>> v = AttributeMonitor("v", False, net, neuron.LIFNode, lambda v: v.clone())
        >>> net(x_seq)
        >>> v["1"][0].shape                              # [N, *]
    """

    def __init__(
        self,
        attribute_name: str,
        pre_forward: bool,
        net: nn.Module,
        instance: ModuleTypes = None,
        function_on_attribute: Callable[[Any], Any] = _identity,
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        if not isinstance(attribute_name, str):
            raise TypeError(f"attribute_name must be a string, got {type(attribute_name).__name__}")
        if not isinstance(pre_forward, bool):
            raise TypeError(f"pre_forward must be a bool, got {pre_forward!r}")
        super().__init__(to_cpu=to_cpu)
        self.attribute_name = attribute_name
        self.function_on_attribute = function_on_attribute
        for name, module in self._modules(net, instance, names):
            hook = self._hook(
                name,
                lambda owner, m, *rest: owner.function_on_attribute(
                    getattr(m, owner.attribute_name)
                ),
                self._layout,
            )
            register = (
                module.register_forward_pre_hook if pre_forward else module.register_forward_hook
            )
            self.hooks.append(register(hook))

    def _layout(self, module: nn.Module) -> str | None:
        mode = getattr(module, "step_mode", None)
        if mode == "s":
            return STEP
        return SEQUENCE if mode == "m" and self.attribute_name.endswith("_seq") else None


class GradOutputMonitor(BaseMonitor):
    """Record ``function_on_grad_output(dL/dY)`` of every module of type ``instance``:
    the gradient of the loss with respect to the module's output ``Y``, as ``backward()``
    passes through it (so the last layer comes first).

    Args:
        net, instance, names, to_cpu: as in :class:`OutputMonitor`.
        function_on_grad_output: what to record from each gradient (default: itself).

    Example::

        >>> grads = GradOutputMonitor(net, neuron.LIFNode)
        >>> net(x_seq).sum().backward()
        >>> grads[0].shape                              # the last layer's first: [T, N, *]
    """

    def __init__(
        self,
        net: nn.Module,
        instance: ModuleTypes = None,
        function_on_grad_output: Callable[[Any], Any] = _identity,
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(to_cpu=to_cpu)
        self.function_on_grad_output = function_on_grad_output
        for name, module in self._modules(net, instance, names):
            hook = self._hook(
                name,
                lambda owner, m, grad_in, grad_out: owner.function_on_grad_output(
                    _unpack(grad_out)
                ),
                _untimed,
            )
            self.hooks.append(module.register_full_backward_hook(hook))


class GradInputMonitor(BaseMonitor):
    """Record ``function_on_grad_input(dL/dX)`` of every module of type ``instance``: the
    gradient of the loss with respect to the module's input ``X`` (``None`` when the
    input does not require a gradient).

    Args:
        net, instance, names, to_cpu: as in :class:`OutputMonitor`.
        function_on_grad_input: what to record from each gradient (default: itself).

    Example::

        >>> grads = GradInputMonitor(net, neuron.LIFNode, lambda g: g.norm().item())
        >>> net(x_seq).sum().backward()
        >>> grads.records                               # one norm per layer, last first
    """

    def __init__(
        self,
        net: nn.Module,
        instance: ModuleTypes = None,
        function_on_grad_input: Callable[[Any], Any] = _identity,
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(to_cpu=to_cpu)
        self.function_on_grad_input = function_on_grad_input
        for name, module in self._modules(net, instance, names):
            hook = self._hook(
                name,
                lambda owner, m, grad_in, grad_out: owner.function_on_grad_input(_unpack(grad_in)),
                _untimed,
            )
            self.hooks.append(module.register_full_backward_hook(hook))


def _rate_of_call(owner: BaseMonitor, module: nn.Module, inputs: Any, out: Any) -> tuple:
    """The call's mean output per neuron ``[*]`` and how many (step, sample) pairs it
    averages: ``[T, N, *]`` in step mode ``'m'``, ``[N, *]`` in ``'s'``."""
    spikes = _unpack(out).detach()
    leading = 2 if getattr(module, "step_mode", "s") == "m" else 1
    count = math.prod(spikes.shape[:leading])
    if count == 0:  # T == 0: no step to average
        return torch.zeros(spikes.shape[leading:], device=spikes.device), 0
    return spikes.float().mean(dim=tuple(range(leading))), count


class FiringRateMonitor(BaseMonitor):
    """Firing rates (spikes per step) of every spiking layer, per neuron and per layer.

    Each call adds one record, that call's rate per neuron ``[*]`` (averaged over its
    steps and samples); :meth:`per_neuron` and :meth:`per_layer` average over everything
    recorded, each call weighted by its number of steps and samples. Only these small
    tensors are kept, so it can run through a whole training.

    Args:
        net, names, to_cpu: as in :class:`OutputMonitor`.
        instance: the modules whose outputs are spikes (default: the spiking neurons).

    Example::

        >>> rates = FiringRateMonitor(net)
        >>> net(x_seq)                                   # [T, N, features]
        >>> rates.per_layer()                            # {'1': 0.12, '3': 0.05}
        >>> rates.per_neuron()["1"].shape                # [features]
    """

    def __init__(
        self,
        net: nn.Module,
        instance: ModuleTypes = (BaseNode, SimpleBaseNode),
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(to_cpu=to_cpu)
        self._counts: list[int] = []
        for name, module in self._modules(net, instance, names):
            self.hooks.append(
                module.register_forward_hook(self._hook(name, _rate_of_call, _untimed))
            )

    def _append(self, name: str, record: Any, layout: str | None) -> None:
        rate, count = record
        self._counts.append(count)
        super()._append(name, rate, layout)

    def clear(self) -> None:
        super().clear()
        self._counts.clear()

    def per_neuron(self) -> dict[str, torch.Tensor]:
        """Each recorded layer's firing rate per neuron ``[*]`` (one step, one sample)."""
        rates = {}
        for name in self.monitored_layers:
            indices = [i for i in self._indices[name] if self._counts[i] > 0]
            if indices:
                total = sum(self.records[i] * self._counts[i] for i in indices)
                rates[name] = total / sum(self._counts[i] for i in indices)
        return rates

    def per_layer(self) -> dict[str, float]:
        """Each recorded layer's firing rate: the mean over its neurons of
        :meth:`per_neuron`."""
        return {name: float(rates.mean()) for name, rates in self.per_neuron().items()}


class MembranePotentialMonitor(BaseMonitor):
    """Every step's membrane potential ``v`` of every neuron layer, in both step modes.

    Records detached tensors: in step mode ``'s'`` a copy of ``v`` after each step
    ``[N, *]``; in ``'m'`` the call's post-reset potentials ``v_seq`` ``[T, N, *]``, for
    which it sets ``store_v_seq=True`` on the hooked neurons (removing the hooks restores
    their setting). :meth:`~BaseMonitor.sequence` gives ``[T, N, *]`` either way.

    Args:
        net, names, to_cpu: as in :class:`OutputMonitor`.
        instance: the neurons to record (default: :class:`~sj_core.neuron.BaseNode`; they
            need ``v`` and ``store_v_seq``).

    Example::

        >>> v = MembranePotentialMonitor(net)
        >>> net(x_seq)                                   # [T, N, features]
        >>> v.sequence("1").shape                        # [T, N, features]
    """

    def __init__(
        self,
        net: nn.Module,
        instance: ModuleTypes = BaseNode,
        *,
        names: Names = None,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(to_cpu=to_cpu)
        found = self._modules(net, instance, names)
        lacking = [name for name, m in found if not hasattr(m, "store_v_seq")]
        if lacking:
            raise TypeError(
                f"modules {lacking} have no store_v_seq, so their per-step potentials are "
                "not kept in step mode 'm'; record them with AttributeMonitor('v', ...) in "
                "step mode 's'"
            )
        self._stored_v_seq = [(m, m.store_v_seq) for _, m in found]
        #: Each layer's threshold, for the threshold line of plot_membrane_potential.
        self.v_thresholds = {name: getattr(m, "v_threshold", None) for name, m in found}
        for name, module in found:
            module.store_v_seq = True
            self.hooks.append(
                module.register_forward_hook(self._hook(name, _potential, _by_step_mode))
            )

    def remove_hooks(self) -> None:
        """Detach the monitor and restore the neurons' ``store_v_seq``; the records stay."""
        super().remove_hooks()
        for module, stored in getattr(self, "_stored_v_seq", ()):
            module.store_v_seq = stored
        self._stored_v_seq = []


def _potential(owner: BaseMonitor, module: nn.Module, inputs: Any, out: Any) -> torch.Tensor:
    if module.step_mode == "m":
        return module.v_seq.detach()
    # A kernel backend may update v in place at the next step: keep this step's copy.
    return module.v.detach().clone()
