"""The backends the conformance grid runs, on this machine.

Each :class:`GridBackend` says how to get a neuron operator of one backend and where its
tensors live. On a machine without a GPU: ``triton`` runs under Triton's CPU interpreter,
``cupy`` runs its generated CUDA source compiled for the host (see :mod:`host_cuda`);
``inductor`` compiles the reference loops with ``torch.compile``; ``fused`` is the
``torch`` backend's fused loop (:mod:`sj_core.fused`), which has multi-step operators
only. The ``-cuda`` entries are marked ``gpu``. A backend whose package is not installed
is skipped with the reason. ``triton-recompute`` is the triton backend with every
training launch it can serve recomputing ``H`` in the backward
(``launch_config.RECOMPUTE_MAX_T``), a variant a GPU measurement may switch on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sj_core.kernels import interpreter_enabled

HAS_CUDA = torch.cuda.is_available()


def _installed(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


@dataclass(frozen=True)
class GridBackend:
    """One backend on one device type."""

    name: str  # the backend name: "triton", "cupy", "inductor", "torch", "fused"
    device: str  # "cpu" or "cuda"
    recompute: bool = False  # triton: the backward recomputes H where it can

    @property
    def id(self) -> str:
        variant = "-recompute" if self.recompute else ""
        return f"{self.name}{variant}-{self.device}"

    def skip_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None``."""
        if self.device == "cuda" and not HAS_CUDA:
            return "needs a CUDA GPU"
        if self.name == "triton":
            if not _installed("sj_triton") or not _installed("triton"):
                return "sj-triton (and triton) are not installed"
            if self.device == "cpu" and not interpreter_enabled():
                return "the triton backend runs on the CPU only under TRITON_INTERPRET=1"
        if self.name == "cupy":
            if not _installed("sj_cupy"):
                return "sj-cupy is not installed"
            if self.device == "cpu":
                from host_cuda import HOST_CXX

                if HOST_CXX is None:
                    return "no host C++ compiler (g++) to run the generated CUDA code"
            elif not _installed("cupy"):
                return "CuPy is not installed: pip install 'sj-cupy[cuda13]'"
        return None

    def operator(self, statement: str, mode: str = "multi_step") -> Callable:
        """The ``<statement>.<mode>`` operator of this backend."""
        if self.name == "torch":
            assert mode == "multi_step"
            from sj_core import reference

            return getattr(reference, f"multistep_{statement}")
        if self.name == "inductor":
            assert mode == "multi_step"
            from sj_core import inductor

            return getattr(inductor, f"multistep_{statement}")
        if self.name == "fused":
            if mode != "multi_step":
                pytest.skip("the torch backend's single step is the reference's neuron_step")
            from sj_core import fused

            return getattr(fused, f"multistep_{statement}")
        module = importlib.import_module(f"sj_{self.name}.operators")
        return getattr(module, f"{statement}_{mode}")

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the backend runnable for a test (the host launcher for ``cupy-cpu``, the
        recomputing backward for ``triton-recompute``)."""
        if self.recompute:
            from sj_triton.neuron_kernel import launch_config

            with launch_config.recompute_short_sequences():
                yield
            return
        if self.name != "cupy":
            yield
            return
        from host_cuda import HostLauncher, RecordingLauncher

        from sj_core.backends import registry
        from sj_cupy import launch

        if self.device == "cpu":
            launcher = HostLauncher(_host_build_dir())
        else:
            launcher = RecordingLauncher(launch.CupyLauncher())
        previous = launch.set_launcher(launcher)
        # Modules ask the registry, which finds no CuPy and no GPU on a CPU machine: hand
        # it the operators directly (a cached operator is not checked again).
        cached = {}
        if self.device == "cpu":
            for key in registry.get_backend("cupy").operators:
                if key != "flexsn":
                    neuron, mode = key.split(".")
                    cached[("cupy", key)] = self.operator(neuron, mode)
            registry._OPERATOR_CACHE.update(cached)
        try:
            yield
        finally:
            launch.set_launcher(previous)
            for key in cached:
                registry._OPERATOR_CACHE.pop(key, None)


_BUILD_DIR: Path | None = None


def _host_build_dir() -> Path:
    # One directory for the whole session: a variant compiled once is reused.
    global _BUILD_DIR
    if _BUILD_DIR is None:
        _BUILD_DIR = Path(tempfile.mkdtemp(prefix="sj_cupy_host_"))
    return _BUILD_DIR


KERNEL_BACKENDS = (
    GridBackend("triton", "cpu"),
    GridBackend("cupy", "cpu"),
    GridBackend("triton", "cuda"),
    GridBackend("cupy", "cuda"),
)
TRITON_RECOMPUTE = (
    GridBackend("triton", "cpu", recompute=True),
    GridBackend("triton", "cuda", recompute=True),
)
INDUCTOR = GridBackend("inductor", "cpu")
TORCH = GridBackend("torch", "cpu")
FUSED = GridBackend("fused", "cpu")


def backend_params(backends=KERNEL_BACKENDS) -> list:
    """``pytest.param`` s of ``backends`` (``-cuda`` ones marked ``gpu``)."""
    params = []
    for backend in backends:
        marks = [pytest.mark.gpu] if backend.device == "cuda" else []
        params.append(pytest.param(backend, id=backend.id, marks=marks))
    return params
