"""The on-disk cache of generated kernel sources (``sj_flexsn.compile``).

Generated modules are written once to a content-keyed file under ``SJ_FLEXSN_CACHE_DIR``
and imported from it; a second process generating the same kernels imports the existing
files without writing them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flexsn_triton_cases import require_flexsn

require_flexsn()

from sj_flexsn import compile as flexsn_compile  # noqa: E402

SOURCE = textwrap.dedent(
    """\
    import triton
    import triton.language as tl


    @triton.jit
    def answer_kernel(out_ptr):
        tl.store(out_ptr, 42.0)
    """
)

# Build one core's kernels in a fresh process and report the cache files it used.
CHILD = textwrap.dedent(
    """\
    import json, sys
    from sj_flexsn import compile as flexsn_compile
    from sj_flexsn.kernel import build_inference_kernel, build_training_kernels

    def core(x, v):
        h = v + (x - v) / 2.0
        spike = (h >= 1.0).float()
        return spike, h * (1.0 - spike)

    seen = []
    real = flexsn_compile.load_generated_module

    def spy(source):
        generated = real(source)
        seen.append((str(generated.path), generated.created))
        return generated

    flexsn_compile.load_generated_module = spy
    import sj_flexsn.template as template
    template.load_generated_module = spy
    build_inference_kernel(core, 1, 1, 1)
    build_training_kernels(core, 1, 1, 1)
    print(json.dumps(seen))
    """
)


def test_source_is_written_once_under_a_content_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SJ_FLEXSN_CACHE_DIR", str(tmp_path))
    first = flexsn_compile.load_generated_module(SOURCE)
    assert first.path.parent == tmp_path
    assert first.path.name == f"flexsn_{flexsn_compile.source_key(SOURCE)}.py"
    assert first.path.read_text() == SOURCE
    assert hasattr(first.module, "answer_kernel")
    again = flexsn_compile.load_generated_module(SOURCE)
    assert again.module is first.module and not again.created
    other = flexsn_compile.load_generated_module(SOURCE + "\n# another kernel\n")
    assert other.path != first.path


def test_cache_dir_defaults_to_the_user_cache(monkeypatch):
    monkeypatch.delenv("SJ_FLEXSN_CACHE_DIR", raising=False)
    assert flexsn_compile.cache_dir() == Path.home() / ".cache" / "sj_flexsn"


def _run_child(cache_dir: Path) -> list[tuple[str, bool]]:
    env = dict(os.environ, SJ_FLEXSN_CACHE_DIR=str(cache_dir), TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return [tuple(item) for item in json.loads(result.stdout.strip().splitlines()[-1])]


@pytest.mark.slow  # two fresh processes import torch and triton
def test_a_second_process_reuses_the_files(tmp_path):
    first = _run_child(tmp_path)
    # inference, forward, backward: three distinct modules, all written by process 1.
    paths = {path for path, _ in first}
    assert len(paths) == 3
    assert all(created for _, created in first)
    mtimes = {path: os.stat(path).st_mtime_ns for path in paths}
    second = _run_child(tmp_path)
    assert {path for path, _ in second} == paths
    assert not any(created for _, created in second)
    assert {path: os.stat(path).st_mtime_ns for path in paths} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)
