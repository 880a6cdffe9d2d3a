"""The ``python`` blocks of the monitoring and NIR guides run, as a reader would run them.

Each page's blocks are executed in order in one namespace, in a temporary working
directory (the examples write files). A block that needs an optional package that is
not installed (by its imports, or by drawing with ``sj_core.visualizing``) skips the
rest of the page with the install command as the reason; the blocks before it have run.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["monitoring.md", "nir.md", "explicit_state.md"]

#: Optional packages the examples use, and how to get each.
INSTALL = {
    "nir": "nir is not installed: pip install 'sj-core[nir]'",
    "matplotlib": "matplotlib is not installed: pip install 'sj-core[plot]'",
    "snntorch": "snnTorch is not installed (nox -s extras installs it)",
    "nirtorch": "nirtorch is not installed (nox -s extras installs it)",
}

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_IMPORT = re.compile(r"^\s*(?:import|from)\s+(\w+)", re.MULTILINE)


def python_blocks(page: str) -> list[str]:
    """The page's fenced ``python`` blocks, in order."""
    return _BLOCK.findall((DOCS / page).read_text())


def _needs(code: str) -> list[str]:
    needed = set(_IMPORT.findall(code)) & set(INSTALL)
    if "visualizing" in code:
        needed.add("matplotlib")
    if "snntorch" in needed:
        needed.add("nirtorch")  # snnTorch's NIR modules import it
    return sorted(needed)


@pytest.mark.parametrize("page", PAGES)
def test_page_has_examples(page):
    assert len(python_blocks(page)) >= 3


# snnTorch 1.0.0's NIR exporter, in nir.md's example, still calls this nirtorch function.
@pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated")
@pytest.mark.parametrize("page", PAGES)
def test_examples_run_in_order(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.removesuffix('.md')}"}
    for i, code in enumerate(python_blocks(page)):
        missing = [m for m in _needs(code) if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"{page}, block {i} and later: {INSTALL[missing[0]]}")
        exec(compile(code, f"{DOCS / page} (python block {i})", "exec"), namespace)
