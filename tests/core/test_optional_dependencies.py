"""sj-core's optional extras: importing ``sj_core`` needs none of them, and using a
feature whose extra is missing says what to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from sj_core import layer, neuron

OPTIONAL = ("nir", "nirtorch", "matplotlib", "snntorch", "h5py")

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import sj_core
    after_import = sorted(sys.modules)
    import sj_core.monitor, sj_core.nir, sj_core.visualizing
    sj_core.nir.to_nir, sj_core.nir.from_nir, sj_core.visualizing.plot_1d_spikes
    print(json.dumps({"after_import": after_import, "after_submodules": sorted(sys.modules)}))
    """
)


def test_importing_sj_core_and_its_optional_modules_imports_no_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("after_import", "after_submodules"):
        loaded = sorted({m.split(".")[0] for m in report[key]} & set(OPTIONAL))
        assert loaded == [], f"{key}: {loaded}"
    assert "sj_core.nir" not in report["after_import"]  # imported on first access only


def test_lazy_submodules_are_attributes_of_sj_core() -> None:
    import sj_core
    import sj_core.monitor as monitor

    assert sj_core.monitor is monitor
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sj_core.nothing  # noqa: B018


def test_nir_functions_without_nir_say_what_to_install(monkeypatch) -> None:
    from sj_core.nir import from_nir, to_nir

    monkeypatch.setitem(sys.modules, "nir", None)  # as if it were not installed
    net = nn.Sequential(layer.Linear(2, 2, step_mode="m"), neuron.IFNode(step_mode="m"))
    with pytest.raises(ImportError, match=r"to_nir needs the 'nir' package.*sj-core\[nir\]"):
        to_nir(net, torch.zeros(1, 1, 2))
    with pytest.raises(ImportError, match=r"from_nir needs the 'nir' package.*sj-core\[nir\]"):
        from_nir("graph.nir")


def test_figures_without_matplotlib_say_what_to_install(monkeypatch) -> None:
    from sj_core import visualizing

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"needs matplotlib.*sj-core\[plot\]"):
        visualizing.plot_1d_spikes(torch.zeros(3, 2))
