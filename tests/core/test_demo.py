"""The demo, ``examples/train_digits.py``: it learns, reports honestly, and gates CI.

The fast tests run the demo's ``train`` in-process with a small budget and check its
reported accuracy against an accuracy computed here independently (our own split with
scikit-learn, our own encoding and read-out, scikit-learn's ``accuracy_score``). The
figures and the NIR round trip are checked the same way, when matplotlib and nir are
installed. The full run, as users and CI start it, is marked ``slow``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the demo needs scikit-learn (pip install sj-core[demo])")
pytest.importorskip("tqdm", reason="the demo needs tqdm (pip install sj-core[demo])")

from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

DEMO = Path(__file__).resolve().parents[2] / "examples" / "train_digits.py"


def _load_demo():
    spec = importlib.util.spec_from_file_location("train_digits_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the file executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


@pytest.fixture(scope="module")
def short_run():
    """Two epochs with the default T and seed (about a second on one CPU core)."""
    return demo.train(epochs=2, T=8, seed=0, device="cpu", progress=False)


def _independent_test_spikes(
    network: torch.nn.Module, T: int, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """The output spikes ``[T, N, 10]`` of ``network`` on a 25% stratified test split
    built here, not by the demo, and that split's labels."""
    digits = load_digits()
    _, x_test, _, y_test = train_test_split(
        digits.data / 16.0,
        digits.target,
        test_size=0.25,
        stratify=digits.target,
        random_state=seed,
    )
    images = torch.tensor(x_test, dtype=torch.float32)
    with torch.no_grad():
        spikes = network(images.repeat(T, 1, 1))  # [T, N, 10], one copy per time step
        for module in network.modules():
            if hasattr(module, "reset"):
                module.reset()
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}, "the read-out must be spikes"
    return spikes, y_test


def _independent_test_accuracy(network: torch.nn.Module, T: int, seed: int) -> float:
    """Accuracy of ``network`` on the test split built here."""
    spikes, labels = _independent_test_spikes(network, T, seed)
    return accuracy_score(labels, spikes.sum(dim=0).argmax(dim=1).numpy())


def test_short_training_reaches_a_sensible_accuracy(short_run):
    independent = _independent_test_accuracy(short_run.network, T=8, seed=0)
    assert short_run.accuracy == pytest.approx(independent, abs=1e-6)
    assert short_run.accuracy > 0.85
    assert short_run.epoch_accuracies[-1] == short_run.accuracy
    assert len(short_run.epoch_losses) == 2
    assert short_run.epoch_losses[1] < short_run.epoch_losses[0]


def test_auto_backend_runs_the_torch_loop_on_the_cpu(short_run):
    # backend='auto' picks kernel backends only for the devices they declare (CUDA), so on
    # the CPU both LIF layers must report the torch fallback.
    assert short_run.backends == ["torch", "torch"]
    assert short_run.device == "cpu"


def test_split_is_stratified_75_25():
    data = demo.load_data(seed=0, device=torch.device("cpu"))
    assert len(data.y_train) + len(data.y_test) == 1797
    assert len(data.y_test) == 450  # ceil(0.25 * 1797)
    totals = torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10)
    in_test = torch.bincount(data.y_test, minlength=10)
    assert torch.all((in_test - 0.25 * totals).abs() <= 1.0)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0


def test_training_restores_the_torch_thread_count():
    before = torch.get_num_threads()
    demo.train(epochs=1, T=1, seed=0, progress=False)
    assert torch.get_num_threads() == before


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    ("target", "expected_status"), [(0.0, 0), (1.01, 1)], ids=["target-met", "target-missed"]
)
def test_exit_status_follows_the_accuracy_target(
    monkeypatch, capsys, tmp_path, target, expected_status
):
    monkeypatch.setattr(demo, "TARGET_ACCURACY", target)
    argv = ["--epochs", "1", "--T", "2", "--device", "cpu", "--output-dir", str(tmp_path)]
    status = demo.main(argv)
    assert status == expected_status
    out = capsys.readouterr().out
    assert "LIF layers ran on backend: torch, torch" in out
    assert re.search(r"final test accuracy: \d+\.\d\d%", out)
    if _importable("matplotlib"):
        for name in ("hidden_raster", "firing_rates", "output_neuron", "output_rates"):
            assert f"figure: {tmp_path / name}.png" in out  # says where each one is
            assert (tmp_path / f"{name}.png").is_file()
    else:
        assert "figures skipped: matplotlib is not installed" in out
    if _importable("nir"):
        assert re.search(r"same prediction on (\d+)/\1 test images", out)
    else:
        assert "NIR export skipped: nir is not installed" in out


def test_figures_show_the_recorded_activity(short_run, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (sj-core[plot])")
    data = demo.load_data(seed=0, device=torch.device("cpu"))
    figures = demo.save_figures(short_run.network, data, 8, tmp_path)
    for name in ("hidden_raster", "firing_rates", "output_neuron", "output_rates"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    spikes, labels = _independent_test_spikes(short_run.network, T=8, seed=0)
    # The histogram of the output layer's rates per neuron (its second panel).
    per_neuron = spikes.mean(dim=(0, 1)).double().numpy()
    counts, _ = np.histogram(per_neuron, bins=20, range=(0.0, 1.0))
    bars = figures["firing_rates"].axes[1].patches
    np.testing.assert_array_equal([bar.get_height() for bar in bars], counts)
    # The mean firing rate of every output neuron over the test images of each class.
    expected = np.zeros((10, 10))
    for c in range(10):
        expected[c] = spikes[:, labels == c].mean(dim=(0, 1)).numpy()
    shown = figures["output_rates"].axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, expected.T, rtol=1e-6)  # classes along x
    first = figures["output_neuron"].axes[1].collections[0].get_offsets()[:, 0]
    fired = np.nonzero(spikes[:, 0, labels[0]].numpy())[0]
    np.testing.assert_array_equal(first, fired)  # the true class's neuron, first image


def test_nir_round_trip_keeps_every_prediction(short_run, tmp_path):
    pytest.importorskip("nir", reason="nir is not installed (sj-core[nir])")
    from sj_core.nir import from_nir

    data = demo.load_data(seed=0, device=torch.device("cpu"))
    check = demo.nir_round_trip(short_run.network, data, 8, tmp_path / "digits.nir")
    assert (check.agreeing, check.total) == (450, 450)
    reloaded = from_nir(tmp_path / "digits.nir")
    assert _independent_test_accuracy(reloaded, T=8, seed=0) == pytest.approx(
        short_run.accuracy, abs=1e-6
    )


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--T", "0"]], ids=["no-epochs", "no-steps"])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit) as excinfo:
        demo.parse_args(argv)
    assert excinfo.value.code == 2


@pytest.mark.slow
def test_full_demo_run_reaches_95_percent(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(DEMO), "--device", "cpu", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    match = re.search(r"final test accuracy: (\d+\.\d+)%", completed.stdout)
    assert match is not None, completed.stdout
    assert float(match.group(1)) >= 95.0
