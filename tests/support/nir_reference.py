"""An independent simulator of NIR graphs, for testing ``sj_core.nir``.

It reads NIR's equations as the NIR documentation states them, one forward-Euler step of
``dt`` at a time, in float64 NumPy (convolution and pooling use torch's functional ops
on the NIR arrays):

* ``LIF``: ``v += dt/tau (v_leak - v + r I)``; spike where ``v > v_threshold`` (strictly);
  there ``v = v_reset``. ``LI``: the same without spikes; the output is ``v``.
* ``IF``: ``v += r I`` (``r`` is the gain per step, as snnTorch, Norse and Sinabs read it)
  or, with ``integrator="per_second"``, ``v += dt r I`` (NIR's ``dv/dt = r I`` integrated
  over ``dt``, as SpikingJelly reads it); then as LIF. ``I``: the same; the output is ``v``.
* ``Conv1d``: a direct sum over channels and kernel taps (NumPy). ``SumPool2d``: the sum of
  each window of the zero-padded input, from NumPy strides (no pooling operator).
* Several edges into a node are summed.

Spiking neurons start at ``v_reset``, as sj_core's do (NIR leaves it open), the others
at 0. ``margin`` is the smallest ``|v - v_threshold|`` met by a spiking node before its
reset: when it is clearly above float32 rounding, a simulation in float32 must produce
the same spikes.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Simulation:
    outputs: np.ndarray  # [T, N, *out]
    margin: float  # smallest distance of a spiking potential to its threshold


def _order(graph: nir.NIRGraph) -> tuple[list[str], dict[str, list[str]]]:
    preds = {name: [s for s, d in graph.edges if d == name] for name in graph.nodes}
    done: list[str] = []
    while len(done) < len(graph.nodes):
        ready = [n for n in graph.nodes if n not in done and all(p in done for p in preds[n])]
        assert ready, "the reference simulator runs feed-forward graphs only"
        done += ready
    return done, preds


def _batched(array: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(array, dtype=np.float64), x.shape[1:])


def simulate(
    graph: nir.NIRGraph, x_seq: np.ndarray, dt: float, integrator: str = "per_step"
) -> Simulation:
    """Run ``graph`` on ``x_seq`` ``[T, N, *in]``; return its outputs ``[T, N, *out]``.
    ``integrator``: how ``IF`` and ``I`` read ``r`` (``"per_step"`` or ``"per_second"``)."""
    assert integrator in ("per_step", "per_second")
    gain_dt = dt if integrator == "per_second" else 1.0
    order, preds = _order(graph)
    (input_name,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    (output_name,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    state: dict[str, np.ndarray] = {}
    margin = np.inf
    outputs = []
    for x in np.asarray(x_seq, dtype=np.float64):
        values = {input_name: x}
        for name in order:
            if name == input_name:
                continue
            node = graph.nodes[name]
            i = sum(values[p] for p in preds[name])
            if isinstance(node, nir.Output):
                values[name] = i
                continue
            values[name], node_margin = _step(node, i, state, name, dt, gain_dt)
            margin = min(margin, node_margin)
        outputs.append(values[output_name])
    return Simulation(np.stack(outputs), float(margin))


def _step(node, i, state, name, dt, gain_dt):
    if isinstance(node, nir.Affine):
        return i @ np.asarray(node.weight, np.float64).T + node.bias, np.inf
    if isinstance(node, nir.Linear):
        return i @ np.asarray(node.weight, np.float64).T, np.inf
    if isinstance(node, nir.Conv2d):
        out = F.conv2d(
            torch.from_numpy(i),
            torch.from_numpy(np.asarray(node.weight, np.float64)),
            torch.from_numpy(np.asarray(node.bias, np.float64)),
            stride=tuple(int(s) for s in node.stride),
            padding=tuple(int(p) for p in node.padding),
            dilation=tuple(int(d) for d in node.dilation),
            groups=int(node.groups),
        )
        return out.numpy(), np.inf
    if isinstance(node, nir.Conv1d):
        return _conv1d(node, i), np.inf
    if isinstance(node, nir.SumPool2d):
        return _sum_pool2d(node, i), np.inf
    if isinstance(node, nir.AvgPool2d):
        out = F.avg_pool2d(
            torch.from_numpy(i),
            tuple(int(k) for k in node.kernel_size),
            tuple(int(s) for s in node.stride),
            tuple(int(p) for p in node.padding),
        )
        return out.numpy(), np.inf
    if isinstance(node, nir.Flatten):
        # NIR's dimensions leave out the batch, which comes first here.
        start = node.start_dim + 1 if node.start_dim >= 0 else i.ndim + node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else i.ndim + node.end_dim
        return i.reshape(*i.shape[:start], -1, *i.shape[end + 1 :]), np.inf
    if isinstance(node, (nir.I, nir.LI)):
        v = state.get(name, np.zeros_like(i))
        r = _batched(node.r, i)
        if isinstance(node, nir.I):
            v = v + gain_dt * r * i
        else:
            v = v + dt / _batched(node.tau, i) * (_batched(node.v_leak, i) - v + r * i)
        state[name] = v
        return v, np.inf
    if isinstance(node, (nir.IF, nir.LIF)):
        v_reset = _batched(node.v_reset, i)
        v = state.get(name, np.array(v_reset))
        r = _batched(node.r, i)
        if isinstance(node, nir.IF):
            v = v + gain_dt * r * i
        else:
            v = v + dt / _batched(node.tau, i) * (_batched(node.v_leak, i) - v + r * i)
        threshold = _batched(node.v_threshold, i)
        spikes = v > threshold
        state[name] = np.where(spikes, v_reset, v)
        return spikes.astype(np.float64), float(np.abs(v - threshold).min())
    raise NotImplementedError(f"the reference simulator has no {type(node).__name__}")


def _conv1d(node: nir.Conv1d, x: np.ndarray) -> np.ndarray:
    """``x`` ``[N, C_in, L]``: out[n, o, l] = b[o] + sum_{c, k} w[o, c, k] x[n, c, l s + k d]."""
    weight = np.asarray(node.weight, np.float64)
    out_channels, group_in, taps = weight.shape
    groups, stride, dilation = int(node.groups), int(node.stride), int(node.dilation)
    padding = int(np.asarray(node.padding))  # the tests write integer padding
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    length = (padded.shape[2] - dilation * (taps - 1) - 1) // stride + 1
    out = np.zeros((x.shape[0], out_channels, length))
    group_out = out_channels // groups
    for o in range(out_channels):
        first = (o // group_out) * group_in  # the input channels of o's group
        for c in range(group_in):
            for k in range(taps):
                start = k * dilation
                window = padded[:, first + c, start : start + stride * (length - 1) + 1 : stride]
                out[:, o] += weight[o, c, k] * window
    return out + np.asarray(node.bias, np.float64)[None, :, None]


def _sum_pool2d(node: nir.SumPool2d, x: np.ndarray) -> np.ndarray:
    """``x`` ``[N, C, H, W]``: the sum of each ``kernel_size`` window of the zero-padded
    input, windows ``stride`` apart."""
    (kh, kw), (sh, sw), (ph, pw) = (
        tuple(int(v) for v in np.broadcast_to(np.asarray(a), (2,)))
        for a in (node.kernel_size, node.stride, node.padding)
    )
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    return windows[:, :, ::sh, ::sw].sum(axis=(-2, -1))


#: How far every potential must stay from its threshold for float32 to fire alike.
MARGIN = 1e-5


def assert_simulates_like(
    graph: nir.NIRGraph,
    x: torch.Tensor,
    out: torch.Tensor,
    dt: float,
    integrator: str = "per_step",
) -> None:
    """``out`` ``[T, N, *]`` (an sj_core network's output on ``x``) equals the simulation of
    ``graph`` on ``x``; the input must keep every potential ``MARGIN`` from its threshold."""
    reference = simulate(graph, x.double().numpy(), dt, integrator)
    assert reference.margin > MARGIN, "the test input comes too close to a threshold"
    np.testing.assert_allclose(out.double().numpy(), reference.outputs, rtol=1e-5, atol=1e-5)
