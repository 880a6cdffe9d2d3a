"""The sj-cupy package without a GPU: imports, the backend entry, compiling every
generated kernel with ``nvcc``, and the PTX of the vector kernels (one 16-byte access per
tensor and step, lane arrays in registers)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time

import pytest

from sj_core import backends
from sj_core.neuron.statements import STATEMENTS
from sj_cupy import _backend
from sj_cupy.__about__ import __version__
from sj_cupy.codegen import all_variants, module_source
from sj_cupy.neuron_kernel import save_cuda_codes

NVCC = shutil.which("nvcc")
NEEDS_NVCC = "needs nvcc (the CUDA toolkit) on PATH"
INSTALL_HINT = "pip install 'sj-cupy[cuda12]' (or 'sj-cupy[cuda13]' for CUDA 13)"


def test_import_does_not_import_cupy():
    code = (
        "import sys\n"
        "import sj_cupy, sj_cupy._backend, sj_cupy.codegen, sj_cupy.neuron_kernel\n"
        "import sj_cupy.operators, sj_cupy.kernel_op, sj_cupy.launch, sj_cupy.compiler\n"
        "from sj_core import backends\n"
        "backends.refresh(); backends.list_backends(warn=False)\n"
        "assert 'cupy' not in sys.modules, 'cupy was imported'\n"
        "print(sj_cupy.__version__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__ == "0.1.0"


def test_backend_spec():
    spec = _backend.BACKEND
    assert (spec.name, spec.distribution, spec.devices, spec.priority) == (
        "cupy",
        "sj-cupy",
        ("cuda",),
        10,
    )
    # Every neuron statement of sj-core, in both step modes.
    assert set(STATEMENTS) == {"if", "lif", "plif", "qif", "eif", "izhikevich"}
    assert spec.operators == {
        f"{n}.{mode}": f"sj_cupy.operators:{n}_{mode}"
        for n in STATEMENTS
        for mode in ("multi_step", "single_step")
    }
    for key, target in spec.operators.items():  # every target exists, under its key
        module_name, _, attribute = target.partition(":")
        function = getattr(importlib.import_module(module_name), attribute)
        assert function.__name__ == key.replace(".", "_")


@pytest.fixture
def without_cupy(monkeypatch):
    """Make ``find_spec('cupy')`` find nothing, whatever is installed."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "cupy" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    backends.refresh()
    yield
    monkeypatch.undo()
    backends.refresh()


def test_check_says_what_to_install(without_cupy):
    assert _backend.BACKEND.available() == (False, f"CuPy is not installed: {INSTALL_HINT}")


def test_get_operator_without_cupy_says_what_to_install(without_cupy):
    if "cupy" not in backends.backend_names():
        pytest.skip("the sj-cupy distribution is not installed (no 'cupy' entry point)")
    with pytest.raises(backends.BackendUnavailableError) as error:
        backends.get_operator("cupy", "lif.multi_step")
    assert INSTALL_HINT in str(error.value)


def test_a_directory_named_cupy_is_not_cupy(tmp_path, monkeypatch):
    # This repository's tests/cupy is a namespace package "cupy" when tests/ is on
    # sys.path; the check must not take it for CuPy (an installed CuPy, a regular
    # package, is found before any namespace directory).
    (tmp_path / "cupy").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec("cupy")
    assert spec is not None
    found_directory = spec.origin is None
    assert _backend.cupy_installed() is not found_directory


def _nvcc_ptx(source_path, output_path, extra=()):
    return subprocess.Popen(
        [
            NVCC,
            "-arch=sm_90",
            "--ptx",
            "--fmad=false",
            *extra,
            "-o",
            str(output_path),
            str(source_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason=NEEDS_NVCC)
def test_every_variant_compiles_with_nvcc(tmp_path):
    # The whole save_cuda_codes output (3168 kernels: 1584 scalar, 1584 vector), compiled
    # to PTX in two halves at once (CI has two cores; each half gets every other variant,
    # so both get as many vector kernels). With nvcc 13 on two cores: 70-90 s wall.
    variants = list(all_variants())
    halves = [variants[0::2], variants[1::2]]
    whole = tmp_path / "all.cu"
    save_cuda_codes(str(whole))
    assert whole.read_text() == module_source(variants)
    started = time.monotonic()
    jobs = []
    for index, half in enumerate(halves):
        source = tmp_path / f"half{index}.cu"
        source.write_text(module_source(half))
        jobs.append(_nvcc_ptx(source, tmp_path / f"half{index}.ptx"))
    for job in jobs:
        output, _ = job.communicate(timeout=900)
        assert job.returncode == 0, output[-5000:]
        assert "warning" not in output.lower(), output[-5000:]
    elapsed = time.monotonic() - started
    print(f"nvcc --ptx of {len(variants)} kernels: {elapsed:.0f} s")
    ptx = "".join((tmp_path / f"half{i}.ptx").read_text() for i in range(2))
    for variant in variants:
        assert f".entry {variant.kernel_name}(" in ptx


def _sample_variants():
    """One forward and one backward per neuron, dtype and layout (scalar, vector)."""
    seen, sample = set(), []
    for variant in all_variants():
        key = (variant.neuron, variant.dtype, variant.direction, variant.vec)
        if key not in seen:
            seen.add(key)
            sample.append(variant)
    return sample


@pytest.mark.skipif(NVCC is None, reason=NEEDS_NVCC)
def test_sample_kernels_assemble_with_ptxas(tmp_path):
    # PTX-level checks (the inline cvt instructions of fp16, the shared-memory reduction)
    # happen in ptxas: assemble one forward and one backward per neuron, dtype and layout.
    sample = _sample_variants()
    source = tmp_path / "sample.cu"
    source.write_text(module_source(sample))
    cubin = tmp_path / "sample.cubin"
    result = subprocess.run(
        [NVCC, "-arch=sm_90", "-cubin", "--fmad=false", "-o", str(cubin), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    binary = cubin.read_bytes()
    for variant in sample:  # each kernel's symbol is in the assembled binary
        assert variant.kernel_name.encode() + b"\0" in binary, variant.kernel_name


# Global memory accesses in PTX: "ld.global.nc.v4.f32", "st.global.u16", ...
_GLOBAL_ACCESS = re.compile(r"\b(ld|st)\.global((?:\.\w+)*)")


@pytest.mark.skipif(NVCC is None, reason=NEEDS_NVCC)
def test_vector_kernels_use_16_byte_accesses_and_registers(tmp_path):
    # The point of the vector kernels: every per-neuron tensor is read and written with
    # 16-byte vector instructions (ld.global[.nc].v4 / st.global.v4), and the lane arrays
    # live in registers (no local memory). The scalar kernels have no vector accesses.
    sample = _sample_variants()
    source = tmp_path / "sample.cu"
    source.write_text(module_source(sample))
    job = _nvcc_ptx(source, tmp_path / "sample.ptx")
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-5000:]
    ptx = (tmp_path / "sample.ptx").read_text()
    entries = dict(re.findall(r"\.visible \.entry (\w+)\((.*?)\n\}\n", ptx, flags=re.DOTALL))
    assert len(entries) == len(sample) == 2 * 6 * 3 * 2
    for variant in sample:
        body = entries[variant.kernel_name]
        accesses = [(op, suffix) for op, suffix in _GLOBAL_ACCESS.findall(body)]
        vector = [a for a in accesses if ".v4." in a[1] + "."]
        element = [a for a in accesses if a not in vector]
        if variant.vec == 1:
            assert not vector, variant.kernel_name
            continue
        assert {op for op, _ in vector} == {"ld", "st"}, variant.kernel_name
        assert all(suffix.endswith((".v4.f32", ".v4.u32", ".v4.b32")) for _, suffix in vector)
        # Single-element accesses only for PLIF's scalars: the 1/tau read and (backward)
        # the block's partial sum.
        allowed = 2 if variant.neuron == "plif" and variant.direction == "backward" else 1
        assert len(element) <= (allowed if variant.neuron == "plif" else 0), (
            variant.kernel_name,
            element,
        )
        assert ".local" not in body, f"{variant.kernel_name} uses local memory"
