"""Shared setup of the cupy backend's tests.

Without a GPU the generated kernels still run: their per-thread functions are plain C++
(``__host__ __device__``), so :class:`HostLauncher` compiles a variant's source with the
host C++ compiler, wraps it in a loop over threads and blocks that mimics the grid, and
calls it through ``ctypes`` on CPU tensors. Installing it (fixture ``host_launcher``)
sends the real ``sj_cupy::multistep_*`` operators through that code, so the equations,
the backward recurrences, the lane packing of the vector kernels (the very same per-lane
code, with the 16-byte accesses done by ``memcpy``) and the Python glue, including the
choice between scalar and vector kernels, are checked on every CI run. Only the
``__global__`` wrappers, the PTX conversions and CuPy itself need the GPU tests.

Every launcher used here records the variants it ran (``launcher.launches``), so tests can
check which kernel (scalar or vector) a call chose, on the CPU and on the GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

sj_cupy = pytest.importorskip("sj_cupy", reason="sj-cupy is not installed")

from cupy_cases import RecordingLauncher, check_vector_launch, require_cuda_and_cupy  # noqa: E402

from sj_cupy import launch  # noqa: E402
from sj_cupy.codegen import BLOCK, KernelVariant, kernel_params, kernel_source  # noqa: E402

HOST_CXX = shutil.which("g++") or shutil.which("c++")

_CTYPES = {
    "pointer": ctypes.c_void_p,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "int64": ctypes.c_longlong,
}

# Lets the CUDA source compile as C++: the qualifiers vanish, the kernels are left out.
_HOST_PREAMBLE = """
#include <math.h>
#define __host__
#define __device__
#define __forceinline__ inline
#define SJ_CUPY_HOST_TEST
"""


def host_program(variant: KernelVariant) -> str:
    """The variant's source plus ``extern "C" run(kernel args..., n_blocks)``: the grid
    as two loops (blocks, threads; thread ``j`` of a block owns neurons from
    ``(block * BLOCK + j) * vec``), each block's PLIF partial sum into its slot."""
    params = kernel_params(variant)
    neuron_args = ", ".join(["i"] + [p.name for p in params if p.name != "r_tau_partials"])
    declarations = ", ".join(
        f"{p.ctype}{p.name}" if p.kind == "pointer" else f"{p.ctype} {p.name}" for p in params
    )
    partial = any(p.name == "r_tau_partials" for p in params)
    call = f"{variant.kernel_name}_thread({neuron_args})"
    body = f"acc += {call};" if partial else f"{call};"
    store = "r_tau_partials[block] = acc;" if partial else ""
    return f"""{_HOST_PREAMBLE}
{kernel_source(variant)}
extern "C" void run({declarations}, long long n_blocks)
{{
    for (long long block = 0; block < n_blocks; ++block) {{
        float acc = 0.0f;
        for (long long j = 0; j < {BLOCK}; ++j) {{
            const long long i = (block * {BLOCK} + j) * {variant.vec};
            if (i >= N) break;
            {body}
        }}
        {store}
        (void)acc;
    }}
}}
"""


class HostLauncher:
    """A :class:`sj_cupy.launch.Launcher` that runs generated kernels on the CPU."""

    device_type = "cpu"

    def __init__(self, build_dir: Path) -> None:
        self._build_dir = build_dir
        self._functions: dict[KernelVariant, ctypes._CFuncPtr] = {}
        self.launches: list[KernelVariant] = []

    def function(self, variant: KernelVariant):
        function = self._functions.get(variant)
        if function is None:
            source = host_program(variant)
            digest = hashlib.sha256(source.encode()).hexdigest()[:16]
            source_path = self._build_dir / f"{variant.kernel_name}_{digest}.cpp"
            library_path = source_path.with_suffix(".so")
            if not library_path.exists():
                source_path.write_text(source)
                subprocess.run(
                    [
                        HOST_CXX,
                        "-O1",
                        "-std=c++17",
                        "-ffp-contract=off",
                        "-shared",
                        "-fPIC",
                        "-Wall",
                        "-Wno-unused-parameter",
                        "-Wno-unused-variable",
                        str(source_path),
                        "-o",
                        str(library_path),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            function = ctypes.CDLL(str(library_path)).run
            function.argtypes = [_CTYPES[p.kind] for p in kernel_params(variant)]
            function.argtypes += [ctypes.c_longlong]
            function.restype = None
            self._functions[variant] = function
        return function

    def launch(self, variant, args, n_blocks, device) -> None:
        assert device.type == "cpu", device
        check_vector_launch(variant, args)
        self.launches.append(variant)
        self.function(variant)(*args, n_blocks)


@pytest.fixture(scope="session")
def host_build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sj_cupy_host")


@pytest.fixture(scope="session")
def _host_launcher_instance(host_build_dir) -> HostLauncher:
    if HOST_CXX is None:
        pytest.skip("no host C++ compiler (g++) to run the generated kernels on the CPU")
    return HostLauncher(host_build_dir)


@pytest.fixture
def host_launcher(_host_launcher_instance):
    """Route the sj_cupy operators to the CPU for one test."""
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
    """Where the kernels run: ``"cpu"`` (the generated code compiled for the host, see the
    module doc) or ``"cuda"`` (CuPy/NVRTC on the GPU, tests marked ``gpu``). Either way
    the active launcher records what it ran (:func:`cupy_cases.launched_vecs`)."""
    if request.param == "cpu":
        launcher = request.getfixturevalue("_host_launcher_instance")
        launcher.launches.clear()
    else:
        require_cuda_and_cupy()
        launcher = RecordingLauncher(launch.CupyLauncher())
    previous = launch.set_launcher(launcher)
    yield request.param
    launch.set_launcher(previous)
