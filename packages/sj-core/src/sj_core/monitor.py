"""Record what the layers of a network see and produce, with forward and backward hooks.

Each monitor hooks every module of a given type in a network and appends one record per
call, in call order, to :attr:`BaseMonitor.records`; ``monitor["name"]`` gives the
records of one layer. The names and semantics are those of the reference system's
``monitor`` module:

* :class:`OutputMonitor`: ``function_on_output(output)``;
* :class:`InputMonitor`: ``function_on_input(input)``;
* :class:`AttributeMonitor`: ``function_on_attribute(module.<attribute>)`` before or after
  each forward call (a neuron's membrane potential ``v``, or ``v_seq`` with
  ``store_v_seq=True``);
* :class:`GradOutputMonitor` and :class:`GradInputMonitor`: the gradient of the loss with
  respect to a module's output or input, during ``backward()``.

A record is what the function returns; the default keeps the tensor itself, which holds
on to the autograd graph during training: pass ``lambda x: x.detach()`` (or a reduction
such as ``lambda s: s.mean().item()``) when recording while training. A monitor removes
its hooks when it is used as a context manager and the block ends, when
:meth:`~BaseMonitor.remove_hooks` is called, or when it is garbage-collected.

Example::

    >>> net = nn.Sequential(layer.Linear(8, 4, step_mode="m"), neuron.IFNode(step_mode="m"))
    >>> with OutputMonitor(net, neuron.IFNode, lambda s: s.mean().item()) as rates:
    ...     net(torch.rand(5, 2, 8))                     # [T, N, features]
    ...     rates.monitored_layers, len(rates["1"])
    (['1'], 1)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = [
    "AttributeMonitor",
    "BaseMonitor",
    "GradInputMonitor",
    "GradOutputMonitor",
    "InputMonitor",
    "OutputMonitor",
]


def _identity(x: Any) -> Any:
    return x


def _unpack(values: Any) -> Any:
    """A hook's one-element tuple of inputs (or gradients) as its element."""
    return values[0] if isinstance(values, tuple) and len(values) == 1 else values


class BaseMonitor:
    """Hooks, records and the enable switch that every monitor shares.

    Attributes:
        monitored_layers: the names (as in ``net.named_modules()``) of the hooked modules.
        records: every record, in call order.
    """

    def __init__(self) -> None:
        self.hooks: list[Any] = []
        self.monitored_layers: list[str] = []
        self.records: list[Any] = []
        self._indices: dict[str, list[int]] = {}
        self._enabled = True

    def _modules(
        self, net: nn.Module, instance: type | tuple[type, ...] | None
    ) -> list[tuple[str, nn.Module]]:
        """The modules of ``net`` of type ``instance`` (``type(net)`` when ``None``)."""
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if instance is None:
            instance = type(net)
        types = instance if isinstance(instance, tuple) else (instance,)
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError(f"instance must be a module class or a tuple of them, got {instance!r}")
        found = [(name, m) for name, m in net.named_modules() if isinstance(m, types)]
        if not found:
            names = ", ".join(t.__name__ for t in types)
            raise ValueError(f"{type(net).__name__} contains no module of type {names}")
        for name, _ in found:
            self.monitored_layers.append(name)
            self._indices[name] = []
        return found

    def _hook(self, name: str, extract: Callable[..., Any]) -> Callable[..., None]:
        """A hook that records ``extract(monitor, *hook_args)`` under ``name`` while enabled.

        It refers to the monitor weakly, so that a monitor nobody holds any more is
        collected (and removes its hooks) instead of being kept alive by the network.
        """
        monitor = weakref.ref(self)

        def hook(*args: Any) -> None:
            owner = monitor()
            if owner is not None and owner._enabled:
                owner._indices[name].append(len(owner.records))
                owner.records.append(extract(owner, *args))

        return hook

    def __getitem__(self, key: int | str) -> Any:
        """``monitor[i]``: the ``i``-th record; ``monitor["name"]``: that layer's records."""
        if isinstance(key, int):
            return self.records[key]
        if isinstance(key, str):
            if key not in self._indices:
                raise KeyError(f"{key!r} is not monitored; monitored: {self.monitored_layers}")
            return [self.records[i] for i in self._indices[key]]
        raise TypeError(f"index a monitor with an int or a layer name, got {type(key).__name__}")

    def __len__(self) -> int:
        return len(self.records)

    def clear_recorded_data(self) -> None:
        """Forget every record (the hooks stay)."""
        self.records.clear()
        for indices in self._indices.values():
            indices.clear()

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


class OutputMonitor(BaseMonitor):
    """Record ``function_on_output(output)`` of every module of type ``instance``.

    Args:
        net: the network.
        instance: the module class (or tuple of classes) to monitor; ``None`` monitors
            ``net`` itself.
        function_on_output: what to record from each output (default: the output).

    Example::

        >>> mon = OutputMonitor(net, neuron.LIFNode, lambda s: s.detach())
        >>> net(x_seq)                                 # x_seq: [T, N, *]
        >>> mon["1"][0].shape                          # the spikes of layer "1": [T, N, *]
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_output: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_output = function_on_output
        for name, module in self._modules(net, instance):
            hook = self._hook(
                name, lambda owner, m, inputs, out: owner.function_on_output(_unpack(out))
            )
            self.hooks.append(module.register_forward_hook(hook))


class InputMonitor(BaseMonitor):
    """Record ``function_on_input(input)`` of every module of type ``instance`` (the
    input itself when the module takes one argument, else the tuple of arguments).

    Args:
        net, instance: as in :class:`OutputMonitor`.
        function_on_input: what to record from each input (default: the input).

    Example::

        >>> currents = InputMonitor(net, neuron.LIFNode)   # what the neurons integrate
        >>> net(x_seq)
        >>> currents[0].shape                              # [T, N, *] in step mode 'm'
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_input: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_input = function_on_input
        for name, module in self._modules(net, instance):
            hook = self._hook(
                name, lambda owner, m, inputs, out: owner.function_on_input(_unpack(inputs))
            )
            self.hooks.append(module.register_forward_hook(hook))


class AttributeMonitor(BaseMonitor):
    """Record ``function_on_attribute(module.<attribute_name>)`` of every module of type
    ``instance``, before (``pre_forward=True``) or after each forward call.

    Args:
        attribute_name: the attribute to read, such as a neuron's ``"v"`` (after a call
            in step mode ``'m'``, the last step's potential ``[N, *]``) or ``"v_seq"``
            (every step's, ``[T, N, *]``, with ``store_v_seq=True``).
        pre_forward: read it before the call (``True``) or after (``False``).
        net, instance: as in :class:`OutputMonitor`.
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
        instance: type | tuple[type, ...] | None = None,
        function_on_attribute: Callable[[Any], Any] = _identity,
    ) -> None:
        if not isinstance(attribute_name, str):
            raise TypeError(f"attribute_name must be a string, got {type(attribute_name).__name__}")
        if not isinstance(pre_forward, bool):
            raise TypeError(f"pre_forward must be a bool, got {pre_forward!r}")
        super().__init__()
        self.attribute_name = attribute_name
        self.function_on_attribute = function_on_attribute
        for name, module in self._modules(net, instance):
            hook = self._hook(
                name,
                lambda owner, m, *rest: owner.function_on_attribute(
                    getattr(m, owner.attribute_name)
                ),
            )
            register = (
                module.register_forward_pre_hook if pre_forward else module.register_forward_hook
            )
            self.hooks.append(register(hook))


class GradOutputMonitor(BaseMonitor):
    """Record ``function_on_grad_output(dL/dY)`` of every module of type ``instance``:
    the gradient of the loss with respect to the module's output ``Y``, as ``backward()``
    passes through it.

    Args:
        net, instance: as in :class:`OutputMonitor`.
        function_on_grad_output: what to record from each gradient (default: itself).

    Example::

        >>> grads = GradOutputMonitor(net, neuron.LIFNode)
        >>> net(x_seq).sum().backward()
        >>> grads[0].shape                              # the last layer's first: [T, N, *]
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_grad_output: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_grad_output = function_on_grad_output
        for name, module in self._modules(net, instance):
            hook = self._hook(
                name,
                lambda owner, m, grad_in, grad_out: owner.function_on_grad_output(
                    _unpack(grad_out)
                ),
            )
            self.hooks.append(module.register_full_backward_hook(hook))


class GradInputMonitor(BaseMonitor):
    """Record ``function_on_grad_input(dL/dX)`` of every module of type ``instance``: the
    gradient of the loss with respect to the module's input ``X`` (``None`` when the
    input does not require a gradient).

    Args:
        net, instance: as in :class:`OutputMonitor`.
        function_on_grad_input: what to record from each gradient (default: itself).

    Example::

        >>> grads = GradInputMonitor(net, neuron.LIFNode, lambda g: g.norm().item())
        >>> net(x_seq).sum().backward()
        >>> grads.records                               # one norm per layer, last first
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_grad_input: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_grad_input = function_on_grad_input
        for name, module in self._modules(net, instance):
            hook = self._hook(
                name,
                lambda owner, m, grad_in, grad_out: owner.function_on_grad_input(_unpack(grad_in)),
            )
            self.hooks.append(module.register_full_backward_hook(hook))
