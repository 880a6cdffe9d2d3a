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
