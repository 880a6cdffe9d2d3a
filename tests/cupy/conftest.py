"""Shared setup of the cupy backend's own tests.

Without a GPU the generated kernels still run: :class:`host_cuda.HostLauncher` compiles a
variant's per-thread functions with the host C++ compiler and runs them on CPU tensors
(see ``tests/support/host_cuda.py``). Installed as sj-cupy's launcher, it sends the real
operators through that code, so the Python glue (which variant a call picks, argument
packing, the PLIF block reduction) is checked on every run. On a GPU the same tests run
through CuPy, behind a :class:`host_cuda.RecordingLauncher`.

Either launcher records the variants it ran (``launcher.launches``): tests read them with
:func:`cupy_cases.launched_vecs` to check that a call ran the vector or the scalar kernel.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sj_cupy", reason="sj-cupy is not installed")

from cupy_cases import require_cuda_and_cupy
from host_cuda import HOST_CXX, HostLauncher, RecordingLauncher

from sj_cupy import launch


@pytest.fixture(scope="session")
def _host_launcher_instance(tmp_path_factory) -> HostLauncher:
    # One launcher (and build directory) for the session: each variant compiles once.
    if HOST_CXX is None:
        pytest.skip("needs a host C++ compiler (g++) to run the generated kernels on the CPU")
    return HostLauncher(tmp_path_factory.mktemp("sj_cupy_host"))


@pytest.fixture
def host_launcher(_host_launcher_instance):
    """sj-cupy's kernels run on the CPU (host-compiled) for one test."""
    previous = launch.set_launcher(_host_launcher_instance)
    _host_launcher_instance.launches.clear()
    yield _host_launcher_instance
    launch.set_launcher(previous)


@pytest.fixture(
    params=[
        pytest.param("cpu", id="cpu-host"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
    ]
)
def device(request):
    """Where the kernels run: ``"cpu"`` (the generated code compiled for the host) or
    ``"cuda"`` (CuPy/NVRTC, marked ``gpu``). Either way the active launcher records the
    variants it ran."""
    if request.param == "cpu":
        launcher = request.getfixturevalue("_host_launcher_instance")
        launcher.launches.clear()
    else:
        require_cuda_and_cupy()
        launcher = RecordingLauncher(launch.CupyLauncher())
    previous = launch.set_launcher(launcher)
    yield request.param
    launch.set_launcher(previous)
