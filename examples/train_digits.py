"""Train a small spiking neural network on scikit-learn's handwritten digits.

The data set (1797 grey-scale 8x8 images, 10 classes) ships with scikit-learn, so nothing
is downloaded. The network sees each image for ``T`` time steps as a constant input
current (direct encoding) and answers with the firing rates of 10 output neurons:

    image [N, 64] --repeat T times--> [T, N, 64]
      -> Linear(64, 256) -> LIF -> Linear(256, 10) -> LIF -> spikes [T, N, 10]
      -> mean over T = firing rate [N, 10] -> the class that fires most

Training uses surrogate gradients (the spike is a step function in the forward pass, a
smooth ATan derivative in the backward pass) and backpropagation through time. The
neurons' state (membrane potential) is reset with ``functional.reset_net`` after every
batch, because each batch is a new set of independent sequences.

After training it looks inside the network and hands it on:

* with matplotlib (``pip install 'sj-core[plot]'``), it records the layers' spikes,
  potentials and firing rates with ``sj_core.monitor`` and draws them with
  ``sj_core.visualizing``: a raster of the hidden layer, a histogram of each layer's
  firing rates, one output neuron's potential and spikes, and the output firing rates
  per true class, as PNG files in ``--output-dir`` (it prints their paths);
* with nir (``pip install 'sj-core[nir]'``), it exports the network to a NIR file with
  ``sj_core.nir.to_nir``, loads it back with ``from_nir`` and checks that the copy makes
  the same predictions.

Run it (CPU, well under a minute)::

    python examples/train_digits.py                    # 15 epochs, T = 8, seed 0
    python examples/train_digits.py --epochs 5 --T 4 --device cuda --output-dir out

It exits with status 1 if the final test accuracy is below 95%, or if the network read
back from NIR predicts differently, so CI can run it as a check.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

from sj_core import functional, layer, monitor, neuron, surrogate

TARGET_ACCURACY = 0.95
NUM_CLASSES = 10
DEFAULT_OUTPUT_DIR = Path(tempfile.gettempdir()) / "sj-digits-demo"


@dataclass
class Digits:
    """Train and test tensors: images ``[N, 64]`` scaled to [0, 1], labels ``[N]``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class TrainResult:
    """What :func:`train` reports."""

    network: nn.Module  # the trained network (in eval mode)
    accuracy: float  # test accuracy after the last epoch, in [0, 1]
    seconds: float  # wall time of data loading + training + evaluation
    device: str
    backends: list[str]  # the backend each LIF layer ran on (``node.last_backend``)
    epoch_losses: list[float]
    epoch_accuracies: list[float]


def load_data(seed: int, device: torch.device) -> Digits:
    """A stratified 75/25 train/test split of the digits, as tensors on ``device``."""
    digits = load_digits()
    images = digits.data.astype("float32") / 16.0  # pixel values are 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, stratify=digits.target, random_state=seed
    )

    def tensor(array, dtype):
        return torch.as_tensor(array, dtype=dtype, device=device)

    return Digits(
        tensor(x_train, torch.float32),
        tensor(y_train, torch.long),
        tensor(x_test, torch.float32),
        tensor(y_test, torch.long),
    )


def build_network(hidden: int = 256) -> nn.Sequential:
    """Two fully connected layers of multi-step LIF neurons; input and output ``[T, N, *]``.

    ``backend='auto'`` lets each LIF layer pick the fastest installed backend for the
    input's device (a Triton or CuPy kernel on a GPU when installed, the PyTorch loop
    otherwise).
    """

    def lif() -> neuron.LIFNode:
        return neuron.LIFNode(
            tau=2.0,
            surrogate_function=surrogate.ATan(),
            detach_reset=True,
            step_mode="m",
            backend="auto",
        )

    return nn.Sequential(
        layer.Linear(64, hidden, step_mode="m"),
        lif(),
        layer.Linear(hidden, NUM_CLASSES, step_mode="m"),
        lif(),
    )


def firing_rates(net: nn.Module, images: torch.Tensor, T: int) -> torch.Tensor:
    """Present ``images`` ``[N, 64]`` for ``T`` steps; return output firing rates ``[N, 10]``."""
    x_seq = images.unsqueeze(0).expand(T, -1, -1)  # direct encoding: [T, N, 64]
    rates = net(x_seq).mean(dim=0)
    # Each call is a new batch of independent sequences: forget the membrane potentials.
    functional.reset_net(net)
    return rates


@torch.no_grad()
def evaluate(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, T: int) -> float:
    """Test accuracy in [0, 1]."""
    net.eval()
    predictions = firing_rates(net, images, T).argmax(dim=1)
    return (predictions == labels).float().mean().item()


@contextlib.contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch's CPU operators on one thread while training on the CPU.

    The tensors here are tiny (a batch is 64 x 256 numbers per step), so intra-op
    threads cannot speed anything up and only add synchronisation; on a busy machine
    that overhead made training 15 times slower.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    epochs: int = 15,
    T: int = 8,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    lr: float = 1e-2,
    progress: bool = True,
) -> TrainResult:
    """Train the network and return the final test accuracy, timings and backends used."""
    if epochs < 1 or T < 1:
        raise ValueError(f"epochs and T must be >= 1, got epochs={epochs}, T={T}")
    with single_cpu_thread(torch.device(device)):
        return _train(epochs, T, seed, device, batch_size, lr, progress)


def _train(
    epochs: int, T: int, seed: int, device: str, batch_size: int, lr: float, progress: bool
) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    torch_device = torch.device(device)
    data = load_data(seed, torch_device)
    net = build_network().to(torch_device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    shuffler = torch.Generator().manual_seed(seed)
    epoch_losses: list[float] = []
    epoch_accuracies: list[float] = []

    bar = tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        net.train()
        order = torch.randperm(len(data.y_train), generator=shuffler).to(torch_device)
        total_loss = 0.0
        for batch in order.split(batch_size):
            rates = firing_rates(net, data.x_train[batch], T)
            # The target firing rate is 1 for the right class and 0 for the others.
            target = F.one_hot(data.y_train[batch], NUM_CLASSES).float()
            loss = F.mse_loss(rates, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
        epoch_losses.append(total_loss / len(data.y_train))
        epoch_accuracies.append(evaluate(net, data.x_test, data.y_test, T))
        bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}", test_acc=f"{epoch_accuracies[-1]:.2%}")
        if progress:
            tqdm.write(
                f"epoch {epoch:3d}  loss {epoch_losses[-1]:.4f}  "
                f"test accuracy {epoch_accuracies[-1]:.2%}"
            )

    return TrainResult(
        network=net,
        accuracy=epoch_accuracies[-1],
        seconds=time.perf_counter() - start,
        device=str(torch_device),
        backends=[m.last_backend for m in net.modules() if isinstance(m, neuron.LIFNode)],
        epoch_losses=epoch_losses,
        epoch_accuracies=epoch_accuracies,
    )


@dataclass
class Activity:
    """The monitors that watched the LIF layers ("1" and "3") during ``record_activity``."""

    spikes: monitor.OutputMonitor  # each layer's spikes [T, N, features]
    potentials: monitor.MembranePotentialMonitor  # each layer's potential at every step
    rates: monitor.FiringRateMonitor  # each layer's firing rate per neuron
    v_threshold: float
    v_reset: float | None


@torch.no_grad()
def record_activity(net: nn.Module, images: torch.Tensor, T: int) -> Activity:
    """Show ``images`` ``[N, 64]`` to ``net`` and record every LIF layer with monitors
    (on the CPU, whatever the device)."""
    net.eval()
    lif = neuron.LIFNode
    with (
        monitor.OutputMonitor(net, lif, to_cpu=True) as spikes,
        monitor.MembranePotentialMonitor(net, lif, to_cpu=True) as potentials,
        monitor.FiringRateMonitor(net, lif, to_cpu=True) as rates,
    ):
        firing_rates(net, images, T)
    last = [m for m in net.modules() if isinstance(m, lif)][-1]
    return Activity(spikes, potentials, rates, last.v_threshold, last.v_reset)


def class_firing_rates(output_spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean firing rate of each output neuron for the images of each true class:
    ``[T, N, 10]`` spikes and ``[N]`` labels -> ``[classes, neurons]``."""
    rates = output_spikes.mean(dim=0)  # [N, 10]
    return torch.stack([rates[labels == c].mean(dim=0) for c in range(NUM_CLASSES)])


#: The figures :func:`save_figures` writes, ``<name>.png`` each.
FIGURES = ("hidden_raster", "firing_rates", "output_neuron", "output_rates")


def save_figures(net: nn.Module, data: Digits, T: int, out_dir: Path) -> dict[str, object]:
    """Draw the test set's activity; write ``<name>.png`` for each of :data:`FIGURES`;
    return the figures."""
    from sj_core import visualizing

    activity = record_activity(net, data.x_test, T)
    hidden, output = "1", "3"  # the LIF layers' names in the nn.Sequential
    label = int(data.y_test[0])
    output_spikes = activity.spikes.sequence(output)  # [T, N, 10]
    figures = {
        "hidden_raster": visualizing.plot_spike_raster(
            activity.spikes, layer=hidden, sample=0, title=f"first test image (a {label}),"
        ),
        "firing_rates": visualizing.plot_firing_rate_histogram(
            activity.rates, title="test set,", figsize=(8.0, 3.0)
        ),
        "output_neuron": visualizing.plot_one_neuron_v_s(
            activity.potentials.sequence(output)[:, 0, label],
            output_spikes[:, 0, label],
            v_threshold=activity.v_threshold,
            v_reset=activity.v_reset,
            title=f"output neuron {label}, first test image (a {label})",
        ),
        "output_rates": visualizing.plot_2d_heatmap(
            class_firing_rates(output_spikes, data.y_test.cpu()),
            title="output firing rates by true class",
            xlabel="true class",
            ylabel="output neuron",
            colorbar_label="spikes per step",
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        figure.savefig(out_dir / f"{name}.png")
    rates = ", ".join(f"{rate:.3f}" for rate in activity.rates.per_layer().values())
    print(f"mean firing rates (spikes per step), hidden and output layers: {rates}")
    return figures


@dataclass
class NIRCheck:
    """What :func:`nir_round_trip` did."""

    path: Path  # the NIR file written
    agreeing: int  # test images the reloaded network classifies as the trained one does
    total: int


@torch.no_grad()
def nir_round_trip(net: nn.Module, data: Digits, T: int, path: Path) -> NIRCheck:
    """Export ``net`` to a NIR file, load it back, and compare their test predictions."""
    import nir

    from sj_core.nir import from_nir, to_nir

    net.eval()
    graph = to_nir(net, data.x_test[:1].unsqueeze(0).expand(T, -1, -1))  # [T, 1, 64]
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(path, graph)
    reloaded = from_nir(path).to(data.x_test.device)
    ours = firing_rates(net, data.x_test, T).argmax(dim=1)
    theirs = firing_rates(reloaded, data.x_test, T).argmax(dim=1)
    return NIRCheck(path, int((ours == theirs).sum()), len(ours))


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--T", type=int, default=8, help="time steps per image (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--device", default=default_device, help=f"torch device (default {default_device})"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where the figures and the NIR file go (default {DEFAULT_OUTPUT_DIR})",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.T < 1:
        parser.error("--epochs and --T must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"device: {args.device}; T = {args.T}, epochs = {args.epochs}, seed = {args.seed}")
    result = train(epochs=args.epochs, T=args.T, seed=args.seed, device=args.device)
    print(f"LIF layers ran on backend: {', '.join(result.backends)}")
    print(f"final test accuracy: {result.accuracy:.2%} (target >= {TARGET_ACCURACY:.0%})")
    print(f"wall time: {result.seconds:.1f} s")
    status = 0
    if result.accuracy < TARGET_ACCURACY:
        print("FAILED: accuracy below target", file=sys.stderr)
        status = 1
    data = load_data(args.seed, torch.device(args.device))
    with single_cpu_thread(torch.device(args.device)):
        if _installed("matplotlib"):
            save_figures(result.network, data, args.T, args.output_dir)
            for name in FIGURES:
                print(f"figure: {args.output_dir / f'{name}.png'}")
        else:
            print("figures skipped: matplotlib is not installed (pip install 'sj-core[plot]')")
        if _installed("nir"):
            check = nir_round_trip(result.network, data, args.T, args.output_dir / "digits.nir")
            print(
                f"NIR: wrote {check.path}; read back with from_nir, it makes the same "
                f"prediction on {check.agreeing}/{check.total} test images"
            )
            if check.agreeing != check.total:
                print(
                    "FAILED: the network read back from NIR predicts differently", file=sys.stderr
                )
                status = 1
        else:
            print("NIR export skipped: nir is not installed (pip install 'sj-core[nir]')")
    return status


if __name__ == "__main__":
    sys.exit(main())
