"""Smoke test of the installed wheels, run by ``nox -s build`` in a fresh environment that
holds only the built wheels and their dependencies (no source tree on ``sys.path``).

Usage: ``python -I tests/packaging/smoke.py REQUIREMENT...`` (what was installed:
``sj-core`` alone, or ``sj-core[all] sj-cupy``). Each check prints one line; the first
failure raises.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

FIRST_PARTY = {"sj-triton": "triton", "sj-cupy": "cupy", "sj-flexsn": "hop"}


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter of this environment (isolated mode)."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{code!r} failed:\n{result.stderr}"
    return result


def check_installed_from_wheels() -> None:
    import sj_core

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for name in ["sj_core", *(d.replace("-", "_") for d in FIRST_PARTY if installed(d))]:
        module = __import__(name)
        location = Path(module.__file__).resolve()
        assert location.is_relative_to(site), f"{name} imported from {location}, not {site}"
        assert (location.parent / "py.typed").is_file(), f"{name} ships no py.typed"
    print(f"ok  sj-core {sj_core.__version__} and its plugins import from {site}")


def check_info() -> None:
    """Every backend with its status; every first-party plugin either listed as a backend
    or named with its pip command; nothing on stderr (no warnings)."""
    result = run("from sj_core.info import main; main(['info'])", TRITON_INTERPRET="0")
    report, errors = result.stdout, result.stderr
    assert errors == "", f"info wrote to stderr:\n{errors}"
    backends = report[report.index("backends:\n") :].split("\n\n")[0].splitlines()[1:]
    headers = {line.split()[0]: line for line in backends if not line.startswith("      ")}
    assert headers["torch"].endswith("] available"), headers
    assert "] available" in headers["inductor"], headers  # sj-flexsn's share may not be
    for distribution, backend in FIRST_PARTY.items():
        if installed(distribution):
            assert backend in headers, f"{backend} missing from:\n{report}"
            assert " available" in headers[backend] or "unavailable: " in headers[backend]
        else:
            assert f"  {distribution}" in report and "pip install" in report, report
    if installed("sj-triton"):
        assert "unavailable: no CUDA device (set TRITON_INTERPRET=1" in headers["triton"]
    if installed("sj-cupy") and not installed("cupy-cuda12x"):
        cupy_missing = "unavailable: CuPy is not installed: pip install 'sj-cupy[cuda12]'"
        assert cupy_missing in headers["cupy"], headers
    print("ok  python -m sj_core info lists every backend with its status, no warnings")


def check_training_step() -> None:
    """A LIF network trains one step on the CPU, without a warning."""
    import torch

    from sj_core import functional, layer, neuron

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            layer.Linear(6, 16, step_mode="m"),
            neuron.LIFNode(tau=2.0, step_mode="m", backend="auto"),
            layer.Linear(16, 3, step_mode="m"),
        )
        optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
        x_seq = torch.rand(4, 8, 6) * 3
        before = [p.detach().clone() for p in net.parameters()]
        loss = net(x_seq).mean(0).square().sum()
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert changed == len(before), f"only {changed} of {len(before)} tensors were updated"
    assert net[1].last_backend == "torch"  # 'auto' on a CPU without the interpreter
    print(f"ok  a LIF network trained one step on the CPU (loss {loss.item():.4f})")


def check_install_hints() -> None:
    from sj_core import backends, neuron

    for distribution, backend in FIRST_PARTY.items():
        if installed(distribution):
            continue
        try:
            neuron.LIFNode(step_mode="m", backend=backend)
        except backends.BackendNotInstalledError as exc:
            assert f"pip install {distribution}" in str(exc).replace("'", ""), str(exc)
        else:
            raise AssertionError(f"backend={backend!r} without {distribution} did not raise")
    if not installed("sj-flexsn"):
        try:
            neuron.FlexSN(lambda x, v: (x, v), 1, 1, 1, step_mode="m", backend="triton")
        except ImportError as exc:
            assert "pip install sj-flexsn" in str(exc), str(exc)
        else:
            raise AssertionError("FlexSN backend='triton' without sj-flexsn did not raise")
    print("ok  missing plugins name their pip command")


INTERPRETER = """
import torch
from sj_core import neuron

torch.manual_seed(0)
x = (torch.rand(5, 3, 7) * 2).requires_grad_()
results = {}
for backend in ("torch", "triton"):
    node = neuron.LIFNode(tau=2.0, step_mode="m", backend=backend)
    spikes = node(x)
    (grad,) = torch.autograd.grad((spikes * torch.arange(7.0)).sum(), x)
    results[backend] = (spikes, node.v, grad)
for a, b in zip(results["torch"], results["triton"]):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
assert node.last_backend == "triton"
print(int(results["triton"][0].sum()))
"""

FLEXSN = """
import torch
from sj_core import neuron

def core(x, v):
    h = v + (x - v) / 2.0
    spike = (h >= 1.0).to(x.dtype)
    return spike, h * (1.0 - spike)

x = torch.rand(6, 4, 5) * 3
expected = neuron.FlexSN(core, 1, 1, 1, step_mode="m", backend="torch")(x)
actual = neuron.FlexSN(core, 1, 1, 1, step_mode="m", backend="triton")(x)
torch.testing.assert_close(actual, expected)
print(int(actual.sum()))
"""


def check_triton_interpreter() -> None:
    """With TRITON_INTERPRET=1 the Triton kernels run on the CPU (numpy comes along) and
    match the torch backend; FlexSN's generated kernels too."""
    if not installed("sj-triton"):
        return
    spikes = run(INTERPRETER, TRITON_INTERPRET="1").stdout.strip()
    print(f"ok  sj-triton's kernels under Triton's CPU interpreter match torch ({spikes} spikes)")
    if installed("sj-flexsn"):
        spikes = run(FLEXSN, TRITON_INTERPRET="1").stdout.strip()
        print(f"ok  a FlexSN kernel generated for the interpreter matches torch ({spikes} spikes)")


def check_no_broken_plugin() -> None:
    from sj_core import backends

    assert backends.broken_backends() == {}, backends.broken_backends()
    print("ok  every installed plugin registered (plugin API versions match)")


if __name__ == "__main__":
    print(f"smoke test of {' '.join(sys.argv[1:])} on python {sys.version.split()[0]}")
    check_installed_from_wheels()
    check_info()
    check_training_step()
    check_install_hints()
    check_triton_interpreter()
    check_no_broken_plugin()
