"""Running sj-cupy's generated CUDA kernels on the CPU, for machines without a GPU.

The per-thread functions of every generated kernel are plain C++ (``__host__
__device__``), so :class:`HostLauncher` compiles a variant's source with the host C++
compiler, wraps it in a loop over threads and blocks that mimics the grid, and calls it
through ``ctypes`` on CPU tensors. Installed as sj-cupy's launcher
(:func:`sj_cupy.launch.set_launcher`), it sends the real operators through that code, so
the equations, the backward recurrences, the lane packing of the vector kernels (the very
same per-lane code, with the 16-byte accesses done by ``memcpy``) and the Python glue are
checked without a GPU. Only the ``__global__`` wrappers, the PTX conversions and CuPy
itself need the GPU tests.

Every launcher here records the variants it ran (``launcher.launches``), and refuses a
vector kernel with sizes or pointers the GPU would fault on.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

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


def check_vector_launch(variant, args: tuple) -> None:
    """What the GPU would fault on (a misaligned 16-byte access) or silently get wrong (a
    partial last vector): the host must never launch a vector kernel with such arguments."""
    from sj_cupy.codegen import VECTOR_BYTES, kernel_params

    if variant.vec == 1:
        return
    params = kernel_params(variant)
    n = args[[p.name for p in params].index("N")]
    assert n % variant.vec == 0, f"{variant.kernel_name} launched with N = {n}"
    for param, value in zip(params, args, strict=True):
        if param.per_neuron:
            assert value % VECTOR_BYTES == 0, f"{variant.kernel_name}: {param.name} misaligned"


def host_program(variant) -> str:
    """The variant's source plus ``extern "C" run(kernel args..., n_blocks)``: the grid
    as two loops (blocks, threads; thread ``j`` of a block owns neurons from
    ``(block * BLOCK + j) * vec``), each block's tensor-parameter partial sum in its slot."""
    from sj_cupy.codegen import BLOCK, kernel_params, kernel_source

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
    """An sj-cupy launcher that runs generated kernels on the CPU."""

    device_type = "cpu"

    def __init__(self, build_dir: Path) -> None:
        if HOST_CXX is None:
            raise RuntimeError("no host C++ compiler (g++) to run the generated kernels")
        self._build_dir = build_dir
        self._functions: dict = {}
        self.launches: list = []

    def function(self, variant):
        from sj_cupy.codegen import kernel_params

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
                        HOST_CXX, "-O1", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC",
                        "-Wall", "-Wno-unused-parameter", "-Wno-unused-variable",
                        str(source_path), "-o", str(library_path),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )  # fmt: skip
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


class RecordingLauncher:
    """Runs kernels through another launcher (CuPy on the GPU) and records the variants,
    checking first that a vector kernel gets sizes and pointers it can take."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.device_type = inner.device_type
        self.launches: list = []

    def launch(self, variant, args, n_blocks, device) -> None:
        check_vector_launch(variant, args)
        self.launches.append(variant)
        self.inner.launch(variant, args, n_blocks, device)
