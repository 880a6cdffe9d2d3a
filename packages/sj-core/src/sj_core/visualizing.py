"""Figures of spikes, firing rates, membrane potentials and feature maps (matplotlib).

Each function takes tensors (on any device; they are detached and copied to the CPU) or
arrays, checks their shapes, and returns a ``matplotlib.figure.Figure``. The figures are
made without ``pyplot``, so no window opens and no global figure list grows: they are
safe in scripts, tests and servers. Save one with ``fig.savefig("spikes.png")``; in a
notebook, a figure left as a cell's value is shown.

Shapes are time first, as everywhere in sj_core. Two kinds of functions:

* the reference system's, on one sample's data: :func:`plot_1d_spikes` (a raster of
  ``[T, N]`` spikes), :func:`plot_2d_heatmap`, :func:`plot_one_neuron_v_s`,
  :func:`plot_2d_feature_map`;
* per layer, on what a network produced: :func:`plot_spike_raster`,
  :func:`plot_firing_rate_heatmap`, :func:`plot_firing_rate_histogram` and
  :func:`plot_membrane_potential` take a layer's sequence ``[T, N, *]`` (a tensor, or a
  dict of them by layer name) or a monitor from :mod:`sj_core.monitor` (its
  ``sequence(layer)``; a :class:`~sj_core.monitor.FiringRateMonitor`'s rates).

Needs matplotlib (``pip install 'sj-core[plot]'``); importing this module does not.

Example::

    >>> node = neuron.LIFNode(step_mode="m", store_v_seq=True)
    >>> spikes = node(torch.rand(50, 1, 16) * 1.5)[:, 0]     # [T, N] of one sample
    >>> plot_1d_spikes(spikes, title="LIF layer").savefig("spikes.png")
    >>> plot_one_neuron_v_s(node.v_seq[:, 0, 3], spikes[:, 3]).savefig("neuron3.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    "plot_firing_rate_heatmap",
    "plot_firing_rate_histogram",
    "plot_membrane_potential",
    "plot_one_neuron_v_s",
    "plot_spike_raster",
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


# -- per layer: tensors or monitors -------------------------------------------------------


def _sequences(source: Any, layers: Sequence[str] | None) -> dict[str, np.ndarray]:
    """``{layer: [T, N, K] array}`` (neurons flattened) from a sequence ``[T, N, *]``, a
    dict of them, or a monitor's ``sequence(layer)`` (its recorded layers by default)."""
    if isinstance(source, (torch.Tensor, np.ndarray)):
        found: dict[str, Any] = {"": source}
    elif isinstance(source, Mapping):
        found = dict(source)
    elif hasattr(source, "sequence") and hasattr(source, "monitored_layers"):
        names = [n for n in source.monitored_layers if source[n]] if layers is None else layers
        found = {name: source.sequence(name) for name in names}
    else:
        raise TypeError(
            "expected a tensor [T, N, *], a dict of them by layer name, or a monitor; got "
            f"{type(source).__name__}"
        )
    if layers is not None and not hasattr(source, "sequence"):
        missing = [name for name in layers if name not in found]
        if missing:
            raise KeyError(f"layers {missing} are not in the data; it has {sorted(found)}")
        found = {name: found[name] for name in layers}
    if not found:
        raise ValueError("there is nothing to draw: no layer has recorded data")
    arrays = {}
    for name, data in found.items():
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().float().numpy()
        array = np.asarray(data, dtype=np.float64)
        if array.ndim < 2:
            label = f"layer {name!r}" if name else "the data"
            raise ValueError(f"{label} must have shape [T, N, *], got {list(array.shape)}")
        arrays[name] = array.reshape(array.shape[0], array.shape[1], -1)
    return arrays


def _one_sequence(source: Any, layer: str | None) -> tuple[str, np.ndarray]:
    arrays = _sequences(source, None if layer is None else [layer])
    if len(arrays) != 1:
        raise ValueError(f"the source holds layers {sorted(arrays)}: choose one with layer=...")
    return next(iter(arrays.items()))


def _sample(array: np.ndarray, sample: int) -> np.ndarray:
    if not -array.shape[1] <= sample < array.shape[1]:
        raise IndexError(f"sample {sample} is out of range for a batch of {array.shape[1]}")
    return array[:, sample]


def _panel_title(title: str, name: str) -> str:
    return " ".join(part for part in (title, f"layer {name}" if name else "") if part)


def plot_spike_raster(
    source: Any,
    layer: str | None = None,
    sample: int = 0,
    title: str = "",
    plot_firing_rate: bool = True,
    figsize: FigSize = (8.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """A raster of one layer's spikes for one sample, with each neuron's firing rate.

    Args:
        source: the layer's spikes ``[T, N, *]``, a dict of them by layer name, or a
            monitor that recorded them (such as ``OutputMonitor(net, neuron.LIFNode)``).
        layer: which layer, when the source holds several.
        sample: which sample of the batch.
        title: the raster's title (the layer's name is added).
        plot_firing_rate, figsize, dpi: as in :func:`plot_1d_spikes`.

    Returns:
        :func:`plot_1d_spikes`'s figure of ``spikes[:, sample]`` (neurons flattened).

    Example::

        >>> spikes = monitor.OutputMonitor(net, neuron.LIFNode)
        >>> net(x_seq)                                     # [T, N, features]
        >>> plot_spike_raster(spikes, layer="1").savefig("raster.png")
    """
    name, array = _one_sequence(source, layer)
    return plot_1d_spikes(
        _sample(array, sample),
        title=_panel_title(title, name),
        plot_firing_rate=plot_firing_rate,
        figsize=figsize,
        dpi=dpi,
    )


def _rates_per_neuron(source: Any, layers: Sequence[str] | None) -> dict[str, np.ndarray]:
    """Each layer's firing rate per neuron ``[K]``: a FiringRateMonitor's, or the mean
    over steps and samples of a sequence."""
    if hasattr(source, "per_neuron"):
        rates = source.per_neuron()
        names = list(rates) if layers is None else layers
        missing = [name for name in names if name not in rates]
        if missing:
            raise KeyError(f"layers {missing} have no recorded rates; recorded: {sorted(rates)}")
        return {n: rates[n].detach().cpu().double().numpy().reshape(-1) for n in names}
    return {name: array.mean(axis=(0, 1)) for name, array in _sequences(source, layers).items()}


def plot_firing_rate_histogram(
    source: Any,
    layers: Sequence[str] | None = None,
    bins: int = 20,
    title: str = "",
    figsize: FigSize | None = None,
    dpi: float = 100,
) -> Figure:
    """One histogram per layer of its neurons' firing rates (spikes per step), with the
    layer's mean rate as a dashed line.

    Args:
        source: spikes ``[T, N, *]``, a dict of them by layer name, a monitor of spikes,
            or a :class:`~sj_core.monitor.FiringRateMonitor`.
        layers: which layers (default: all recorded ones).
        bins: histogram bins over ``[0, 1]`` (wider when a rate exceeds 1).
        title: added to each panel's title.
        figsize, dpi: the figure's size in inches (default: 4 x 3 per layer) and resolution.

    Returns:
        The figure, one axes per layer in order; each axes' bars count the neurons whose
        rate falls in each bin.

    Example::

        >>> rates = monitor.FiringRateMonitor(net)
        >>> net(x_seq)
        >>> plot_firing_rate_histogram(rates).savefig("rates.png")
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    rates = _rates_per_neuron(source, layers)
    fig = _figure(figsize or (4.0 * len(rates), 3.0), dpi)
    axes = np.atleast_1d(fig.subplots(1, len(rates), squeeze=False)[0])
    for ax, (name, values) in zip(axes, rates.items(), strict=True):
        top = max(1.0, float(values.max(initial=0.0)))
        ax.hist(values, bins=bins, range=(0.0, top), color="tab:blue")
        ax.axvline(values.mean(), color="tab:red", linestyle="--", label="mean")
        ax.legend(loc="best")
        _label(ax, _panel_title(title, name), "firing rate (spikes per step)", "neurons")
        _integer_ticks(ax.yaxis)
    return fig


def plot_firing_rate_heatmap(
    source: Any,
    layers: Sequence[str] | None = None,
    title: str = "",
    figsize: FigSize | None = None,
    dpi: float = 100,
) -> Figure:
    """One heatmap per layer of each neuron's firing rate over time: the fraction of the
    batch that fired at each step (time along x, neurons along y).

    A :class:`~sj_core.monitor.FiringRateMonitor` has no steps: its heatmap shows each
    recorded call (a batch, an epoch...) along x, and each neuron's rate in that call.

    Args:
        source: spikes ``[T, N, *]``, a dict of them by layer name, a monitor of spikes,
            or a :class:`~sj_core.monitor.FiringRateMonitor`.
        layers: which layers (default: all recorded ones).
        title: added to each panel's title.
        figsize, dpi: the figure's size in inches (default: 8 x 3 per layer) and resolution.

    Returns:
        The figure: one axes per layer, in order, whose image is the rates
        ``[neurons, T]``; then their colour bars.

    Example::

        >>> spikes = monitor.OutputMonitor(net, neuron.LIFNode)
        >>> net(x_seq)
        >>> plot_firing_rate_heatmap(spikes).savefig("rates_over_time.png")
    """
    if hasattr(source, "per_neuron"):
        names = [n for n in source.monitored_layers if source[n]] if layers is None else layers
        panels = {
            name: np.stack([r.detach().cpu().double().numpy().reshape(-1) for r in source[name]])
            for name in names
        }
        xlabel = "recorded call"
        if not panels:
            raise ValueError("there is nothing to draw: no layer has recorded data")
    else:
        panels = {n: a.mean(axis=1) for n, a in _sequences(source, layers).items()}
        xlabel = "time step"
    fig = _figure(figsize or (8.0, 3.0 * len(panels)), dpi)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, panels.items(), strict=True):
        image = ax.imshow(
            values.T, aspect="auto", origin="lower", interpolation="nearest", vmin=0.0
        )
        fig.colorbar(image, ax=ax, label="spikes per step")
        _label(ax, _panel_title(title, name), xlabel, "neuron index")
        _integer_ticks(ax.xaxis)
        _integer_ticks(ax.yaxis)
    return fig


def plot_membrane_potential(
    source: Any,
    layer: str | None = None,
    sample: int = 0,
    neurons: Sequence[int] | None = None,
    v_threshold: float | None = None,
    title: str = "",
    figsize: FigSize = (8.0, 4.0),
    dpi: float = 100,
) -> Figure:
    """Membrane potential traces of a few neurons of one layer, with the threshold.

    Args:
        source: potentials ``[T, N, *]`` (such as ``node.v_seq`` with
            ``store_v_seq=True``), a dict of them by layer name, or a
            :class:`~sj_core.monitor.MembranePotentialMonitor`.
        layer: which layer, when the source holds several.
        sample: which sample of the batch.
        neurons: indices of the (flattened) neurons to draw (default: the first five).
        v_threshold: the threshold line; a MembranePotentialMonitor knows each layer's,
            otherwise it must be given.
        title: the figure's title (the layer's name is added).
        figsize, dpi: the figure's size in inches and resolution.

    Returns:
        The figure: one line per neuron (labelled by index), then the threshold line.

    Example::

        >>> v = monitor.MembranePotentialMonitor(net)
        >>> net(x_seq)
        >>> plot_membrane_potential(v, layer="1", neurons=[0, 3]).savefig("v.png")
    """
    name, array = _one_sequence(source, layer)
    if v_threshold is None:
        v_threshold = getattr(source, "v_thresholds", {}).get(name)
    if v_threshold is None:
        raise ValueError("give v_threshold: the source does not know the layer's threshold")
    traces = _sample(array, sample)  # [T, K]
    chosen = list(range(min(5, traces.shape[1]))) if neurons is None else list(neurons)
    if not chosen or not all(-traces.shape[1] <= i < traces.shape[1] for i in chosen):
        raise IndexError(f"neurons {chosen} must be indices below {traces.shape[1]}")
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    steps = np.arange(traces.shape[0])
    for i in chosen:
        ax.plot(steps, traces[:, i], marker=".", label=f"neuron {i}")
    ax.axhline(v_threshold, color="tab:red", linestyle="--", label="v_threshold")
    ax.legend(loc="best")
    _label(ax, _panel_title(title, name), "time step", "membrane potential")
    _integer_ticks(ax.xaxis)
    return fig
