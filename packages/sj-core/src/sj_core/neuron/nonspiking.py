"""Non-spiking nodes: integrate the input without threshold, firing or reset.

They output the membrane potential sequence, or one value per neuron decoded from it
(``decode``), e.g. as the read-out layer of a network whose loss wants real values. As in
the reference layout, they are also importable from :mod:`~sj_core.neuron.base_node`,
:mod:`~sj_core.neuron.integrate_and_fire` and :mod:`~sj_core.neuron.lif`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import MultiStepModule
from .validation import check_input, check_tau

__all__ = ["DECODES", "NonSpikingBaseNode", "NonSpikingIFNode", "NonSpikingLIFNode"]

#: Accepted ``decode`` values (``'last_mem'``, the reference system's spelling, is an alias
#: of ``'last-mem'``).
DECODES: tuple[str | None, ...] = (None, "max-mem", "max-abs-mem", "mean-mem", "last-mem")
_DECODE_ALIASES = {"last_mem": "last-mem"}


def _check_decode(decode: str | None) -> str | None:
    decode = _DECODE_ALIASES.get(decode, decode) if isinstance(decode, str) else decode
    if decode not in DECODES:
        raise ValueError(
            f"decode must be one of {DECODES} (or the alias 'last_mem'), got {decode!r}"
        )
    return decode


def _max_abs(v_seq: torch.Tensor) -> torch.Tensor:
    """The value (with its sign) of largest magnitude over dim 0.

    Compares the max and the min over time, as the reference system does; when they have
    equal magnitude (``+m`` and ``-m``) the negative one is returned.
    """
    v_max = v_seq.max(dim=0).values
    v_min = v_seq.min(dim=0).values
    return torch.where(v_max.abs() > v_min.abs(), v_max, v_min)


class NonSpikingBaseNode(nn.Module, MultiStepModule):
    """Base class of non-spiking nodes; multi-step only.

    ``V`` starts at zero on every forward; each step :meth:`neuronal_charge` updates
    ``self.v`` from ``V[t-1]`` to ``V[t]``. The output depends on ``decode``:

    * ``None``: the potentials of every step, ``[T, N, *]``;
    * ``'max-mem'``: the maximum over time, ``[N, *]``;
    * ``'max-abs-mem'``: the value of largest magnitude over time (sign kept), ``[N, *]``;
    * ``'mean-mem'``: the mean over time, ``[N, *]``;
    * ``'last-mem'`` (alias ``'last_mem'``): ``V[T-1]``, ``[N, *]``.

    Args:
        decode: one of the above.

    Subclasses implement :meth:`neuronal_charge`.
    """

    def __init__(self, decode: str | None = None) -> None:
        super().__init__()
        self._step_mode = "m"
        self.decode = decode
        #: The potential after the last step of the last forward call (``None`` before).
        self.v: torch.Tensor | None = None

    @property
    def decode(self) -> str | None:
        return self._decode

    @decode.setter
    def decode(self, value: str | None) -> None:
        self._decode = _check_decode(value)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        """Update ``self.v`` from ``V[t-1]`` to ``V[t]`` given ``x`` ``[N, *]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``x_seq``: ``[T, N, *]`` -> ``[T, N, *]`` (``decode=None``) or ``[N, *]``."""
        check_input(self, x_seq, "m")
        self.v = x_seq.new_zeros(x_seq.shape[1:])
        if x_seq.shape[0] == 0:
            if self.decode is None:
                return torch.empty_like(x_seq)
            raise ValueError(f"decode={self.decode!r} needs at least one time step, got T=0")
        v_seq = []
        for t in range(x_seq.shape[0]):
            self.neuronal_charge(x_seq[t])
            v_seq.append(self.v)
        if self.decode == "last-mem":
            return v_seq[-1]
        v_seq = torch.stack(v_seq)
        if self.decode is None:
            return v_seq
        if self.decode == "max-mem":
            return v_seq.max(dim=0).values
        if self.decode == "max-abs-mem":
            return _max_abs(v_seq)
        return v_seq.mean(dim=0)  # 'mean-mem'

    def extra_repr(self) -> str:
        return f"decode={self.decode!r}"


class NonSpikingIFNode(NonSpikingBaseNode):
    """Non-spiking IF node: ``V[t] = V[t-1] + X[t]``.

    Example::

        >>> node = NonSpikingIFNode(decode="last-mem")
        >>> node(torch.tensor([[1.0], [2.0], [-0.5]])).tolist()
        [2.5]
    """

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x


class NonSpikingLIFNode(NonSpikingBaseNode):
    """Non-spiking LIF node: ``V[t] = V[t-1] + (X[t] - V[t-1]) / tau``.

    Args:
        tau: membrane time constant, > 1.
        decode: as in :class:`NonSpikingBaseNode`.

    Example::

        >>> node = NonSpikingLIFNode(tau=2.0)
        >>> node(torch.tensor([[2.0], [2.0]])).flatten().tolist()
        [1.0, 1.5]
    """

    def __init__(self, tau: float = 2.0, decode: str | None = None) -> None:
        super().__init__(decode)
        self.tau = check_tau("tau", tau)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + (x - self.v) / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()
