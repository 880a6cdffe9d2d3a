"""``sj_core.visualizing``: each figure shows exactly the data it was given.

The checks read the drawn artists back (image arrays, marker positions, bar lengths, line
data) and compare them with the input, transformed here with NumPy.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib", reason="matplotlib is not installed: pip install 'sj-core[plot]'")

from sj_core import visualizing

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _spikes(steps: int, neurons: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, neurons, generator=generator) < 0.3).float()


def test_heatmap_shows_time_along_x_and_neurons_along_y():
    values = torch.randn(12, 5, generator=torch.Generator().manual_seed(1))
    fig = visualizing.plot_2d_heatmap(values, title="v", xlabel="t", ylabel="i")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), values.numpy().T, rtol=1e-6)
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("v", "t", "i")
    assert len(fig.axes) == 2  # the heatmap and its colour bar


def test_raster_marks_every_spike_and_the_rates_are_spikes_per_step():
    spikes = _spikes(20, 6)
    fig = visualizing.plot_1d_spikes(spikes)
    raster, rates = fig.axes
    marks = {tuple(p) for p in raster.collections[0].get_offsets().tolist()}
    t, i = np.nonzero(spikes.numpy())
    assert marks == {(float(a), float(b)) for a, b in zip(t, i, strict=True)}
    widths = [bar.get_width() for bar in rates.patches]
    np.testing.assert_allclose(widths, spikes.numpy().sum(axis=0) / 20)


def test_raster_without_rates_has_one_axes():
    fig = visualizing.plot_1d_spikes(_spikes(5, 3), plot_firing_rate=False)
    assert len(fig.axes) == 1


def test_feature_maps_are_tiled_row_by_row_with_blank_gaps():
    maps = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    fig = visualizing.plot_2d_feature_map(maps, nrows=2, ncols=3, space=1)
    shown = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    expected = np.full((2 * 2 + 1, 3 * 3 + 2), np.nan)
    for c in range(5):
        row, col = divmod(c, 3)
        expected[row * 3 : row * 3 + 2, col * 4 : col * 4 + 3] = maps[c]
    np.testing.assert_array_equal(shown, expected)


def test_one_neuron_figure_shows_potential_threshold_reset_and_spike_times():
    v = torch.tensor([0.2, 0.7, 0.0, 0.5, 0.0])
    s = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0])
    fig = visualizing.plot_one_neuron_v_s(v, s, v_threshold=0.9, v_reset=-0.1)
    top, bottom = fig.axes
    potential, threshold, reset = top.lines
    np.testing.assert_allclose(potential.get_ydata(), v.numpy())
    assert list(threshold.get_ydata()) == [0.9, 0.9] and list(reset.get_ydata()) == [-0.1, -0.1]
    assert [p[0] for p in bottom.collections[0].get_offsets().tolist()] == [2.0, 4.0]
    soft = visualizing.plot_one_neuron_v_s(v, s, v_reset=None)
    assert len(soft.axes[0].lines) == 2  # no reset line for a soft reset


def test_figures_save_as_png_without_pyplot(tmp_path):
    # In a fresh interpreter: pyplot (GUI backends, a global figure list) is never loaded.
    path = tmp_path / "raster.png"
    script = (
        "import sys, torch\n"
        "from sj_core import visualizing\n"
        f"visualizing.plot_1d_spikes(torch.eye(4)).savefig({str(path)!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: visualizing.plot_2d_heatmap(torch.zeros(3)), r"array must have shape \[T, N\]"),
        (lambda: visualizing.plot_1d_spikes(torch.full((3, 2), 0.5)), "must hold spikes"),
        (
            lambda: visualizing.plot_2d_feature_map(torch.zeros(7, 2, 2), nrows=2, ncols=3),
            "7 maps, more than",
        ),
        (
            lambda: visualizing.plot_2d_feature_map(torch.zeros(2, 2, 2), nrows=0, ncols=3),
            "nrows must be an integer >= 1",
        ),
        (
            lambda: visualizing.plot_one_neuron_v_s(torch.zeros(4), torch.zeros(3)),
            "same length",
        ),
    ],
    ids=["heatmap-rank", "not-spikes", "too-many-maps", "bad-grid", "lengths"],
)
def test_wrong_inputs_are_refused_with_the_expected_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- per layer, from tensors or monitors ---------------------------------------------------


def _recorded_net():
    """A small network run once in step mode 'm' under three monitors, and its input."""
    from torch import nn

    from sj_core import functional, layer, monitor, neuron

    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(6, 8, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=0.4, step_mode="m"),
        layer.Linear(8, 4, step_mode="m"),
        neuron.IFNode(v_threshold=0.3, step_mode="m"),
    )
    with torch.no_grad():
        for fc in (net[0], net[2]):
            fc.weight.abs_()
    spikes = monitor.OutputMonitor(net, neuron.BaseNode, lambda s: s.detach())
    rates = monitor.FiringRateMonitor(net)
    v = monitor.MembranePotentialMonitor(net)
    x = torch.rand(12, 3, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(x)
    functional.reset_net(net)
    for mon in (spikes, rates, v):
        mon.remove_hooks()  # the records stay; later runs of net add none
    return net, x, spikes, rates, v


def _layer_outputs(net, x):
    """The neuron layers' outputs computed here, layer by layer (not through monitors)."""
    from sj_core import functional

    with torch.no_grad():
        hidden = net[1](net[0](x))
        out = net[3](net[2](hidden))
    functional.reset_net(net)
    return {"1": hidden, "3": out}


def test_spike_raster_of_a_monitored_layer_marks_that_samples_spikes():
    net, x, spikes, _, _ = _recorded_net()
    expected = _layer_outputs(net, x)["1"][:, 2]  # [T, 8], sample 2
    fig = visualizing.plot_spike_raster(spikes, layer="1", sample=2)
    marks = {tuple(p) for p in fig.axes[0].collections[0].get_offsets().tolist()}
    t, i = np.nonzero(expected.numpy())
    assert marks == {(float(a), float(b)) for a, b in zip(t, i, strict=True)} and marks
    assert fig.axes[0].get_title() == "layer 1"
    # A tensor with feature maps: the neurons are flattened.
    maps = _spikes(6, 2 * 3 * 2).reshape(6, 1, 2, 3, 2)
    fig = visualizing.plot_spike_raster(maps)
    t, i = np.nonzero(maps.reshape(6, -1).numpy())
    assert len(fig.axes[0].collections[0].get_offsets()) == len(t)


@pytest.mark.parametrize("kind", ["spikes", "rates"])
def test_firing_rate_histogram_counts_neurons_per_rate(kind):
    net, x, spikes, rates, _ = _recorded_net()
    source = spikes if kind == "spikes" else rates
    fig = visualizing.plot_firing_rate_histogram(source, bins=5)
    outputs = _layer_outputs(net, x)
    assert len(fig.axes) == 2
    for ax, name in zip(fig.axes, ("1", "3"), strict=True):
        per_neuron = outputs[name].mean(dim=(0, 1)).double().numpy()
        counts, _ = np.histogram(per_neuron, bins=5, range=(0.0, 1.0))
        np.testing.assert_array_equal([bar.get_height() for bar in ax.patches], counts)
        mean_line = ax.lines[0].get_xdata()[0]
        assert mean_line == pytest.approx(per_neuron.mean())
        assert ax.get_title() == f"layer {name}"


def test_firing_rate_heatmap_shows_the_batch_rate_at_each_step():
    net, x, spikes, rates, _ = _recorded_net()
    outputs = _layer_outputs(net, x)
    fig = visualizing.plot_firing_rate_heatmap(spikes)
    assert len(fig.axes) == 4  # two heatmaps, two colour bars
    for ax, name in zip(fig.axes[:2], ("1", "3"), strict=True):
        expected = outputs[name].mean(dim=1).numpy().T  # [neurons, T]
        np.testing.assert_allclose(ax.images[0].get_array(), expected, rtol=1e-6)
    # A FiringRateMonitor has no steps: one column per recorded call.
    fig = visualizing.plot_firing_rate_heatmap(rates, layers=["3"])
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, outputs["3"].mean(dim=(0, 1)).numpy()[:, None], rtol=1e-6)
    assert fig.axes[0].get_xlabel() == "recorded call"


def test_membrane_potential_traces_and_the_layers_threshold():
    net, x, _, _, v = _recorded_net()
    net[1].store_v_seq = True
    with torch.no_grad():
        net[1](net[0](x))
    expected = net[1].v_seq[:, 1]  # [T, 8], sample 1, from the node itself
    fig = visualizing.plot_membrane_potential(v, layer="1", sample=1, neurons=[0, 5])
    first, second, threshold = fig.axes[0].lines
    np.testing.assert_allclose(first.get_ydata(), expected[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(second.get_ydata(), expected[:, 5].numpy(), rtol=1e-6)
    assert list(threshold.get_ydata()) == [0.4, 0.4]  # the monitor knows the threshold
    assert [line.get_label() for line in fig.axes[0].lines] == [
        "neuron 0",
        "neuron 5",
        "v_threshold",
    ]
    from_tensor = visualizing.plot_membrane_potential(expected[:, None], v_threshold=0.4)
    assert len(from_tensor.axes[0].lines) == 6  # five neurons by default, and the threshold


@pytest.mark.parametrize(
    "draw",
    [
        lambda s, r, v: visualizing.plot_spike_raster(s, layer="3"),
        lambda s, r, v: visualizing.plot_firing_rate_histogram(r),
        lambda s, r, v: visualizing.plot_firing_rate_heatmap(s),
        lambda s, r, v: visualizing.plot_membrane_potential(v, layer="1"),
    ],
    ids=["raster", "histogram", "heatmap", "membrane"],
)
def test_per_layer_figures_render_to_png(draw, tmp_path):
    _, _, spikes, rates, v = _recorded_net()
    path = tmp_path / "figure.png"
    draw(spikes, rates, v).savefig(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s, v: visualizing.plot_spike_raster(s), ValueError, "choose one with layer="),
        (lambda s, v: visualizing.plot_spike_raster(s, layer="9"), KeyError, "not monitored"),
        (
            lambda s, v: visualizing.plot_spike_raster(s, layer="1", sample=3),
            IndexError,
            "sample 3 is out of range for a batch of 3",
        ),
        (
            lambda s, v: visualizing.plot_membrane_potential(torch.zeros(3, 1, 2)),
            ValueError,
            "give v_threshold",
        ),
        (
            lambda s, v: visualizing.plot_membrane_potential(v, layer="1", neurons=[8]),
            IndexError,
            "below 8",
        ),
        (
            lambda s, v: visualizing.plot_firing_rate_histogram({"a": torch.zeros(3)}),
            ValueError,
            r"layer 'a' must have shape \[T, N, \*\]",
        ),
        (lambda s, v: visualizing.plot_firing_rate_heatmap([1, 2]), TypeError, "a monitor"),
    ],
    ids=["several-layers", "unknown-layer", "sample", "no-threshold", "neuron", "rank", "type"],
)
def test_per_layer_figures_refuse_what_they_cannot_draw(call, error, message):
    _, _, spikes, _, v = _recorded_net()
    with pytest.raises(error, match=message):
        call(spikes, v)
