"""Developer sessions. ``nox -l`` lists them; ``nox -s tests`` is what CI runs.

Torch wheels are large (a CUDA build pulls about 3 GB of CUDA libraries), so the default
``tests`` session uses the on-disk CPU wheel of this project's machines, and the
version matrix lives in its own session, ``tests_torch``.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# The torch version of the default session: a CPU wheel kept on this project's machines
# (pip's find-links picks it up; elsewhere pip downloads it).
DEFAULT_TORCH = "2.13.0"
# The support matrix: the floor (2.6 brought torch.library.triton_op), one in the
# middle, and the newest pip installs here (pip is capped at torch<=2.14.1).
TORCH_MATRIX = ["2.6.0", "2.10.0", "2.14.1"]

PACKAGES = ["packages/sj-core", "packages/sj-triton", "packages/sj-cupy", "packages/sj-flexsn"]
TEST_DEPS = ["pytest>=8", "scikit-learn>=1.2", "tqdm>=4.60", "loguru>=0.7"]
# The reference system, which tests/conformance/test_reference_system.py runs our nodes
# against: its torch path imports with loguru alone, so none of its other dependencies.
REFERENCE_SYSTEM = "spikingjelly==2.0.0"


def _install_project(session: nox.Session, torch_version: str, *, triton: bool = True) -> None:
    """torch first (pinned), then the four packages editable, then test tools."""
    session.install(f"torch=={torch_version}")
    editable = [arg for package in PACKAGES for arg in ("-e", package)]
    extra = ["triton"] if triton else []
    session.install(*editable, *TEST_DEPS, *extra)
    session.install("--no-deps", REFERENCE_SYSTEM)


def _run_pytest(session: nox.Session) -> None:
    env = {}
    if "CUDA_VISIBLE_DEVICES" not in os.environ and not os.path.exists("/dev/nvidiactl"):
        # No GPU: run the Triton kernels under Triton's CPU interpreter.
        env["TRITON_INTERPRET"] = "1"
    session.run("python", "-m", "sj_core", "info", env=env)
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]), env=env)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """All tests with the default torch (GPU tests skip without a CUDA device)."""
    _install_project(session, DEFAULT_TORCH)
    _run_pytest(session)


@nox.session(python="3.11")
@nox.parametrize("torch", TORCH_MATRIX, ids=[v.rsplit(".", 1)[0] for v in TORCH_MATRIX])
def tests_torch(session: nox.Session, torch: str) -> None:
    """The tests against another torch version: ``nox -s "tests_torch(2.6)" -- tests/core``."""
    _install_project(session, torch)
    _run_pytest(session)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff==0.17.6")  # pinned: formatter output changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors (output in docs/_build/html)."""
    session.install(f"torch=={DEFAULT_TORCH}")
    session.install("-e", "packages/sj-core", "-r", "docs/requirements.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Train a small spiking network on scikit-learn's digits (CPU, well under a minute),
    draw its activity and round-trip it through NIR."""
    session.install(f"torch=={DEFAULT_TORCH}")
    session.install("-e", "packages/sj-core[demo,nir,plot]")
    session.run("python", "examples/train_digits.py", *session.posargs)


# The tests that need sj-core's optional extras (in the default session they skip), and
# the NIR interop with snnTorch, pinned: the tests rely on that release's conventions
# (its NIR exporter still calls nirtorch's extract_nir_graph).
EXTRAS_TESTS = [
    "tests/core/test_nir.py",
    "tests/core/test_nir_snntorch.py",
    "tests/core/test_visualizing.py",
    "tests/core/test_demo.py",
    "tests/core/test_optional_dependencies.py",
]
SNNTORCH = ["snntorch==1.0.0", "nirtorch==2.6"]


@nox.session(python="3.11")
def extras(session: nox.Session) -> None:
    """sj-core's optional extras: NIR export/import (nir), figures (plot), snnTorch interop."""
    session.install(f"torch=={DEFAULT_TORCH}")
    session.install("-e", "packages/sj-core[demo,nir,plot]", *TEST_DEPS, *SNNTORCH)
    session.run("python", "-m", "pytest", *(session.posargs or EXTRAS_TESTS))


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """GPU benchmark of the neuron kernels vs the copy-bandwidth floor (needs CUDA)."""
    _install_project(session, DEFAULT_TORCH)
    session.install("-e", "packages/sj-cupy[cuda13]")
    session.run("python", "benchmarks/bench_neurons.py", *session.posargs)
