"""Figures of spikes, membrane potentials and feature maps (matplotlib).

Each function takes tensors (on any device; they are detached and copied to the CPU) or
arrays, checks their shapes, and returns a ``matplotlib.figure.Figure``. The figures are
made without ``pyplot``, so no window opens and no global figure list grows: they are
safe in scripts, tests and servers. Save one with ``fig.savefig("spikes.png")``; in a
notebook, a figure left as a cell's value is shown.

Shapes are time first, as everywhere in sj_core: a layer's spikes over a sequence are
``[T, N]`` (one sample's ``N`` neurons; flatten feature maps first).

Needs matplotlib (``pip install 'sj-core[plot]'``); importing this module does not.

Example::

    >>> node = neuron.LIFNode(step_mode="m", store_v_seq=True)
    >>> spikes = node(torch.rand(50, 1, 16) * 1.5)[:, 0]     # [T, N] of one sample
    >>> plot_1d_spikes(spikes, title="LIF layer").savefig("spikes.png")
    >>> plot_one_neuron_v_s(node.v_seq[:, 0, 3], spikes[:, 3]).savefig("neuron3.png")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "INSTALL_HINT",
    "plot_1d_spikes",
    "plot_2d_feature_map",
    "plot_2d_heatmap",
    "plot_one_neuron_v_s",
]

#: What to run when matplotlib is missing.
INSTALL_HINT = "pip install 'sj-core[plot]'"

FigSize = tuple[float, float]


def _figure(figsize: FigSize, dpi: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"sj_core.visualizing needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from exc
    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _as_array(name: str, data: Any, layout: str) -> np.ndarray:
    """``data`` as a float numpy array with as many dimensions as ``layout`` names."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().float().numpy()
    array = np.asarray(data, dtype=np.float64)
    ndim = layout.count(",") + 1
    if array.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout}, got shape {list(array.shape)}")
    return array


def _as_spikes(name: str, data: Any, layout: str) -> np.ndarray:
    spikes = _as_array(name, data, layout)
    if not np.isin(spikes, (0.0, 1.0)).all():
        raise ValueError(
            f"{name} must hold spikes (0 or 1); got values such as "
            f"{spikes[~np.isin(spikes, (0.0, 1.0))][:3].tolist()}"
        )
    return spikes


def plot_2d_heatmap(
    array: Any,
    title: str = "",
    xlabel: str = "time step",
    ylabel: str = "neuron index",
    colorbar_label: str = "magnitude",
    int_x_ticks: bool = True,
    int_y_ticks: bool = True,
    figsize: FigSize = (8.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """A heatmap of ``array`` ``[T, N]``: ``T`` along the x axis, ``N`` along the y axis,
    such as the membrane potentials of ``N`` neurons over ``T`` steps.

    Args:
        array: values ``[T, N]`` (a tensor or an array).
        title, xlabel, ylabel, colorbar_label: text of the figure.
        int_x_ticks, int_y_ticks: put ticks at integers only (steps, indices).
        figsize, dpi: the figure's size in inches and resolution.

    Returns:
        The figure; its one image shows ``array.T`` (row ``i`` is neuron ``i``).

    Example::

        >>> node = neuron.LIFNode(step_mode="m", store_v_seq=True)
        >>> node(torch.rand(32, 1, 10))
        >>> plot_2d_heatmap(node.v_seq[:, 0], title="membrane potential")
    """
    values = _as_array("array", array, "[T, N]")
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    image = ax.imshow(values.T, aspect="auto", origin="lower", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    _label(ax, title, xlabel, ylabel)
    if int_x_ticks:
        _integer_ticks(ax.xaxis)
    if int_y_ticks:
        _integer_ticks(ax.yaxis)
    return fig


def plot_1d_spikes(
    spikes: Any,
    title: str = "",
    xlabel: str = "time step",
    ylabel: str = "neuron index",
    plot_firing_rate: bool = True,
    firing_rate_title: str = "firing rate",
    figsize: FigSize = (8.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """A raster plot of ``spikes`` ``[T, N]``: a mark at ``(t, i)`` where neuron ``i``
    fired at step ``t``; beside it, each neuron's firing rate (spikes per step).

    Args:
        spikes: zeros and ones ``[T, N]``.
        title, xlabel, ylabel: text of the raster.
        plot_firing_rate: add the firing-rate panel (one bar per neuron).
        firing_rate_title: its title.
        figsize, dpi: the figure's size in inches and resolution.

    Returns:
        The figure: the raster in ``fig.axes[0]`` and, when asked for, the rates in
        ``fig.axes[1]``.

    Example::

        >>> spikes = neuron.IFNode(step_mode="m")(torch.rand(20, 1, 8))[:, 0]   # [T, N]
        >>> plot_1d_spikes(spikes).savefig("raster.png")
    """
    values = _as_spikes("spikes", spikes, "[T, N]")
    steps, neurons = values.shape
    fig = _figure(figsize, dpi)
    if plot_firing_rate:
        raster, rates = fig.subplots(1, 2, sharey=True, width_ratios=(4, 1))
    else:
        raster, rates = fig.add_subplot(), None
    t, i = np.nonzero(values)
    raster.scatter(t, i, marker="|", color="black", s=max(4.0, 300.0 / max(neurons, 1)))
    raster.set_xlim(-0.5, steps - 0.5)
    raster.set_ylim(-0.5, neurons - 0.5)
    _label(raster, title, xlabel, ylabel)
    _integer_ticks(raster.xaxis)
    _integer_ticks(raster.yaxis)
    if rates is not None:
        rates.barh(np.arange(neurons), values.mean(axis=0), height=0.8, color="tab:blue")
        rates.set_xlim(0.0, 1.0)
        _label(rates, firing_rate_title, "spikes per step", "")
    return fig


def plot_2d_feature_map(
    x: Any,
    nrows: int,
    ncols: int,
    space: int = 1,
    title: str = "",
    figsize: FigSize = (8.0, 8.0),
    dpi: float = 100,
) -> Figure:
    """The ``C`` maps of ``x`` ``[C, H, W]`` (such as one step of a convolutional layer's
    spikes or potentials) tiled row by row into an ``nrows x ncols`` grid.

    Args:
        x: feature maps ``[C, H, W]``, ``C <= nrows * ncols``.
        nrows, ncols: the grid.
        space: blank pixels between the maps.
        title: the figure's title.
        figsize, dpi: the figure's size in inches and resolution.

    Returns:
        The figure; its one image is the tiled array (``NaN``, drawn blank, in the gaps).

    Example::

        >>> conv_spikes = net[1](net[0](images))            # [T, N, C, H, W] in step mode 'm'
        >>> plot_2d_feature_map(conv_spikes[0, 0], nrows=4, ncols=8)
    """
    maps = _as_array("x", x, "[C, H, W]")
    channels, height, width = maps.shape
    for name, value, low in (("nrows", nrows, 1), ("ncols", ncols, 1), ("space", space, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if channels > nrows * ncols:
        raise ValueError(
            f"x has {channels} maps, more than the nrows x ncols = {nrows * ncols} grid holds"
        )
    tiled = np.full(
        (nrows * height + (nrows - 1) * space, ncols * width + (ncols - 1) * space), np.nan
    )
    for c in range(channels):
        top, left = (c // ncols) * (height + space), (c % ncols) * (width + space)
        tiled[top : top + height, left : left + width] = maps[c]
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    ax.imshow(tiled, interpolation="nearest", cmap="gray")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def plot_one_neuron_v_s(
    v: Any,
    s: Any,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    title: str = "",
    figsize: FigSize = (8.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """One neuron over time: its membrane potential ``v`` ``[T]`` with the threshold (and
    reset) as dashed lines above, its spikes ``s`` ``[T]`` below.

    Args:
        v: the potential at every step ``[T]`` (such as ``node.v_seq[:, n, i]``).
        s: its spikes ``[T]``.
        v_threshold: drawn as a dashed line.
        v_reset: drawn as a dotted line; ``None`` (soft reset) draws none.
        title: the figure's title.
        figsize, dpi: the figure's size in inches and resolution.

    Returns:
        The figure: the potential in ``fig.axes[0]``, the spikes in ``fig.axes[1]``.

    Example::

        >>> node = neuron.LIFNode(step_mode="m", store_v_seq=True)
        >>> s = node(torch.full((30, 1), 1.2))[:, 0]           # [T, N] -> [T]
        >>> plot_one_neuron_v_s(node.v_seq[:, 0], s, v_threshold=node.v_threshold)
    """
    potential = _as_array("v", v, "[T]")
    spikes = _as_spikes("s", s, "[T]")
    if potential.shape != spikes.shape:
        raise ValueError(
            f"v and s must have the same length, got {potential.shape[0]} and {spikes.shape[0]}"
        )
    steps = np.arange(potential.shape[0])
    fig = _figure(figsize, dpi)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot(steps, potential, color="tab:blue", marker=".", label="v")
    top.axhline(v_threshold, color="tab:red", linestyle="--", label="v_threshold")
    if v_reset is not None:
        top.axhline(v_reset, color="tab:gray", linestyle=":", label="v_reset")
    top.legend(loc="best")
    _label(top, title, "", "membrane potential")
    bottom.scatter(
        steps[spikes == 1], np.zeros(int(spikes.sum())), marker="|", color="black", s=200
    )
    bottom.set_yticks([])
    _label(bottom, "", "time step", "spikes")
    _integer_ticks(bottom.xaxis)
    return fig


def _label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
