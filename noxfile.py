"""Developer sessions. ``nox -l`` lists them; README.md gives the test command.

Environments are built with uv when nox finds it (``pip install "nox[uv]"``: a warm
environment installs in seconds, a cold one downloads torch at network speed), else with
virtualenv and pip. Sessions need the Python they name on ``PATH`` (``python3.10`` to
``python3.13``); see docs/install.md.

The matrix sessions install torch from PyPI: its Linux wheels there are CUDA builds, which
bring about 3 GB of CUDA libraries (downloaded once into uv's cache, then linked).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
DEFAULT_PYTHON = "3.11"
# The default session's torch. pip and uv take a CPU build of it from a local wheel
# directory when pip's find-links names one (PIP_FIND_LINKS), else the PyPI build.
DEFAULT_TORCH = "2.13.0"
NEWEST_TORCH = "2.15.0"

# (Python, torch, extra pins): the combinations that matter. torch pins its Triton, so
# each row also tests one Triton: 2.6 -> 3.2 (the floors), 2.8 -> 3.4, 2.10 -> 3.6,
# 2.13 -> 3.7, 2.15 -> 3.9 (the newest of both).
# The CPU interpreter of Triton < 3.7 fails with numpy >= 2.4 (scalar conversions).
OLD_TRITON_NUMPY = ["numpy<2.4"]
TORCH_MATRIX = [
    ("3.10", "2.6.0", OLD_TRITON_NUMPY),
    ("3.12", "2.8.0", OLD_TRITON_NUMPY),
    ("3.11", "2.10.0", OLD_TRITON_NUMPY),
    ("3.12", "2.13.0", []),
    ("3.13", NEWEST_TORCH, []),
]

PACKAGES = ["packages/sj-core", "packages/sj-triton", "packages/sj-cupy", "packages/sj-flexsn"]
TEST_DEPS = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "scikit-learn>=1.2",
    "tqdm>=4.60",
    "loguru>=0.7",
]
# The reference system, which tests/conformance/test_reference_system.py runs our nodes
# against: its torch path imports with loguru alone, so none of its other dependencies.
# It needs Python >= 3.11; on 3.10 that test module skips.
REFERENCE_SYSTEM = 'spikingjelly==2.0.0; python_version >= "3.11"'
# Every test except the exhaustive ones (nox -s slow), on as many processes as cores.
PYTEST_ARGS = ["-n", "auto", "-m", "not slow"]


# A pip configuration may cap torch with a constraints file; the sessions ask for exact
# releases, so their installs lift it (uv reads no pip configuration anyway).
UNCAPPED = {"PIP_CONSTRAINT": os.devnull}


def _torch(session: nox.Session, version: str) -> None:
    """Install torch ``version`` (from pip's find-links first, when set: a local CPU build)."""
    find_links = os.environ.get("PIP_FIND_LINKS")
    links = ["--find-links", find_links] if find_links and _uses_uv(session) else []
    session.install(f"torch=={version}", *links, env=UNCAPPED)


def _uses_uv(session: nox.Session) -> bool:
    return getattr(session.virtualenv, "venv_backend", "") == "uv"


def _install_project(session: nox.Session, torch: str, pins: list[str] | None = None) -> None:
    """torch first (pinned), then the four packages editable, then test tools."""
    _torch(session, torch)
    editable = [arg for package in PACKAGES for arg in ("-e", package)]
    # Listing torch again keeps the resolver from moving it.
    session.install(*editable, *TEST_DEPS, f"torch=={torch}", *(pins or []), env=UNCAPPED)
    session.install("--no-deps", REFERENCE_SYSTEM)


def _run_pytest(session: nox.Session, *args: str) -> None:
    env = {}
    if "CUDA_VISIBLE_DEVICES" not in os.environ and not os.path.exists("/dev/nvidiactl"):
        # No GPU: run the Triton kernels under Triton's CPU interpreter.
        env["TRITON_INTERPRET"] = "1"
    session.run("python", "-m", "sj_core", "info", env=env)
    session.run("python", "-m", "pytest", *args, env=env)


@nox.session(python=DEFAULT_PYTHON)
def tests(session: nox.Session) -> None:
    """Every test but the slow ones, on every core (default torch, newest Triton).

    GPU tests skip without a CUDA device; ``nox -s tests -- tests/core -k lif`` narrows it.
    """
    _install_project(session, DEFAULT_TORCH, ["triton"])
    _run_pytest(session, *PYTEST_ARGS, *(session.posargs or ["tests"]))


@nox.session(python=DEFAULT_PYTHON)
def slow(session: nox.Session) -> None:
    """The exhaustive tests: every CUDA variant through nvcc, 1000 kernel build/release
    cycles, fresh-process caches, sm_90 compiles (default torch)."""
    _install_project(session, DEFAULT_TORCH, ["triton"])
    _run_pytest(session, "-n", "auto", "-m", "slow", *(session.posargs or ["tests"]))


@nox.session
@nox.parametrize(
    ("python", "torch", "pins"),
    TORCH_MATRIX,
    ids=[f"{python}-torch{torch.rsplit('.', 1)[0]}" for python, torch, _ in TORCH_MATRIX],
)
def matrix(session: nox.Session, torch: str, pins: list[str]) -> None:
    """The tests on one supported Python and torch pair (``nox -s matrix``: every pair)."""
    _install_project(session, torch, pins)
    _run_pytest(session, *PYTEST_ARGS, *(session.posargs or ["tests"]))


@nox.session(python=DEFAULT_PYTHON)
def build(session: nox.Session) -> None:
    """Wheels and sdists built with hatch, checked, installed alone and smoke-tested.

    The checks and the smoke test are tests/packaging/check_dists.py and smoke.py; the
    fresh environments get the built wheels and torch from the index, nothing else.
    """
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.install("hatch", "twine", "uv")
    for package in PACKAGES:
        with session.chdir(ROOT / package):
            # nox points uv at this session's environment (UV_PYTHON); hatch's own uv
            # must install hatchling into hatch's build environment instead.
            session.run("hatch", "build", str(dist), silent=True, env={"UV_PYTHON": None})
    session.run("twine", "check", "--strict", *sorted(str(p) for p in dist.iterdir()))
    session.run("python", "tests/packaging/check_dists.py", str(dist))
    for python, torch, requirements in SMOKE_ENVIRONMENTS:
        _smoke(session, dist, python, torch, requirements)


# Fresh environments of the build session: sj-core alone on the default torch (the
# install hints, no Triton), and every package with its extras on the newest torch.
SMOKE_ENVIRONMENTS = [
    (DEFAULT_PYTHON, DEFAULT_TORCH, ["sj-core"]),
    ("3.13", NEWEST_TORCH, ["sj-core[all]", "sj-cupy"]),
]


def _version_of(package: str) -> str:
    """A package's version, read from its ``__about__.py`` (its one place)."""
    name = package.replace("-", "_").split("[")[0]
    about = ROOT / "packages" / package.split("[")[0] / "src" / name / "__about__.py"
    return about.read_text().split('"')[1]


def _smoke(
    session: nox.Session, dist: Path, python: str, torch: str, requirements: list[str]
) -> None:
    """Create an empty environment, install the built wheels (and torch from the index)
    into it, and run tests/packaging/smoke.py there from outside the source tree."""
    env_dir = Path(session.create_tmp()).resolve() / f"wheels-py{python}-torch{torch}"
    session.run("uv", "venv", "-q", "--clear", "-p", python, str(env_dir))
    python_exe = str(env_dir / "bin" / "python")
    links = ["--find-links", str(dist)]
    if os.environ.get("PIP_FIND_LINKS"):
        links += ["--find-links", os.environ["PIP_FIND_LINKS"]]
    pinned = [f"{r}=={_version_of(r)}" for r in requirements]  # the wheels just built
    # A rebuilt wheel keeps its name: refresh uv's cache of our packages, not of torch.
    refresh = [arg for p in PACKAGES for arg in ("--refresh-package", Path(p).name)]
    session.run(
        "uv", "pip", "install", "-q", "-p", python_exe, *links, *refresh,
        f"torch=={torch}", *pinned,
    )  # fmt: skip
    smoke = ROOT / "tests" / "packaging" / "smoke.py"
    with session.chdir(session.create_tmp()):
        # -I: isolated mode, neither the working directory nor PYTHON* variables on sys.path.
        session.run(python_exe, "-I", str(smoke), *requirements, external=True)


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff==0.17.6")  # pinned: formatter output changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors (output in docs/_build/html)."""
    _torch(session, DEFAULT_TORCH)
    session.install("-e", "packages/sj-core", "-r", "docs/requirements.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=DEFAULT_PYTHON)
def demo(session: nox.Session) -> None:
    """Train a small spiking network on scikit-learn's digits (CPU, well under a minute),
    draw its activity and round-trip it through NIR."""
    _torch(session, DEFAULT_TORCH)
    session.install("-e", "packages/sj-core[demo,nir,plot]")
    session.run("python", "examples/train_digits.py", *session.posargs)


# The tests that need sj-core's optional extras (in the default session they skip), and
# the NIR interop with snnTorch, pinned: the tests rely on that release's conventions
# (its NIR exporter still calls nirtorch's extract_nir_graph).
EXTRAS_TESTS = [
    "tests/core/test_nir.py",
    "tests/core/test_nir_layers.py",
    "tests/core/test_nir_snntorch.py",
    "tests/core/test_nir_spikingjelly.py",
    "tests/core/test_visualizing.py",
    "tests/core/test_demo.py",
    "tests/core/test_docs_examples.py",
    "tests/core/test_optional_dependencies.py",
]
SNNTORCH = ["snntorch==1.0.0", "nirtorch==2.6"]


@nox.session(python=DEFAULT_PYTHON)
def extras(session: nox.Session) -> None:
    """sj-core's optional extras: NIR export/import (nir), figures (plot), snnTorch interop."""
    _torch(session, DEFAULT_TORCH)
    session.install("-e", "packages/sj-core[demo,nir,plot]", *TEST_DEPS, *SNNTORCH)
    session.run("python", "-m", "pytest", "-n", "auto", *(session.posargs or EXTRAS_TESTS))


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """GPU benchmark of the neuron kernels vs the copy-bandwidth floor (needs CUDA)."""
    _install_project(session, DEFAULT_TORCH, ["triton"])
    session.install("-e", "packages/sj-cupy[cuda13]")
    session.run("python", "benchmarks/bench_neurons.py", *session.posargs)
