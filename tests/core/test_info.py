"""``python -m sj_core info``: versions, device, and every backend with status and operators.

The subprocess runs in this test's environment, so its report is compared with what the
registry says in-process; the report's format is checked on a fake set of plugins.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from helpers import FakeEntryPoint, FakePlugins, make_spec

import sj_core
from sj_core import backends
from sj_core import info as info_module
from sj_core.info import main


@pytest.fixture
def plugins(monkeypatch):
    with FakePlugins(monkeypatch) as fake:
        yield fake


def _run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sj_core", *args], capture_output=True, text=True, timeout=120
    )


def _backend_sections(report: str) -> dict[str, tuple[str, list[str]]]:
    """Backend name -> (its header line, its operator keys), parsed from the report."""
    lines = report.splitlines()
    sections: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in lines[lines.index("backends:") + 1 :]:
        if not line:  # the end of the section
            break
        if line.startswith("      "):
            sections[current][1].append(line.strip())
        elif line.startswith("  ") and not line.startswith("  !"):
            current = line.split()[0]
            sections[current] = (line, [])
    return sections


def _expected_header(info) -> re.Pattern:
    ok, reason = info.available()
    status = "available" if ok else f"unavailable: {re.escape(reason)}"
    distributions = re.escape(", ".join(info.distributions))
    return re.compile(rf"^  {re.escape(info.name)} +\[{distributions}\] {status}$")


def test_info_subprocess_reports_versions_and_every_backend() -> None:
    result = _run_module("info")
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert report.splitlines()[0] == f"sj-core {sj_core.__version__}"
    assert f"torch {torch.__version__}" in report
    assert f"python {sys.version_info.major}.{sys.version_info.minor}." in report
    device = "no CUDA device (CPU only)" if not torch.cuda.is_available() else "CUDA "
    assert f"device: {device}" in report
    sections = _backend_sections(report)
    infos = backends.list_backends(warn=False)
    assert list(sections) == [info.name for info in infos]
    for info in infos:
        header, operators = sections[info.name]
        assert _expected_header(info).match(header), header
        assert operators == sorted(info.operators)


def test_info_subprocess_rejects_an_unknown_command() -> None:
    result = _run_module("bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown command 'bogus'" in result.stderr
    assert "usage: python -m sj_core info" in result.stderr


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag: str, capsys) -> None:
    assert main([flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m sj_core info")


def test_no_command_prints_the_report(plugins, capsys) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out.startswith(f"sj-core {sj_core.__version__}\n")


def test_report_format_with_fake_plugins(plugins, capsys) -> None:
    op = plugins.operator("lif", len)
    plugins.add(make_spec("fast", {"lif.multi_step": op, "if.multi_step": op}))
    plugins.add(make_spec("fast", {"flexsn": op}, distribution="sj-fast-extra"))
    plugins.add(make_spec("dark", {"lif.multi_step": op}, check=lambda: (False, "no fake chip")))
    plugins.add_entry_point(
        FakeEntryPoint("broken", "sj_broken._backend:BACKEND", ImportError("boom"))
    )
    assert main(["info"]) == 0  # a broken plugin does not fail the report
    report = capsys.readouterr().out
    sections = _backend_sections(report)
    assert list(sections) == ["torch", "inductor", "dark", "fast"]
    assert sections["fast"] == (
        "  fast       [sj-fast, sj-fast-extra] available",
        ["flexsn", "if.multi_step", "lif.multi_step"],
    )
    assert sections["dark"] == (
        "  dark       [sj-dark] unavailable: no fake chip",
        ["lif.multi_step"],
    )
    assert sections["torch"][1] == [
        "eif.multi_step",
        "if.multi_step",
        "izhikevich.multi_step",
        "lif.multi_step",
        "plif.multi_step",
        "qif.multi_step",
    ]
    broken = [line for line in report.splitlines() if line.startswith("  !")]
    assert len(broken) == 1
    assert "'broken' failed to load" in broken[0] and "ImportError: boom" in broken[0]


def test_plugins_that_are_not_installed_are_listed_with_their_command(
    plugins, monkeypatch, capsys
) -> None:
    installed = {"sj-core": sj_core.__version__, "sj-cupy": "0.1.0"}
    monkeypatch.setattr(info_module, "_version", installed.get)
    assert main(["info"]) == 0
    report = capsys.readouterr().out
    missing = report[report.index("\nnot installed:\n") :].strip().splitlines()[1:]
    assert missing == [
        "  sj-triton  backend 'triton': Triton kernels for every neuron (CUDA; CPU under "
        "TRITON_INTERPRET=1)",
        "      pip install sj-triton",
        "  sj-flexsn  FlexSN kernels generated from your own neuron (backends 'triton', "
        "'inductor', 'hop')",
        "      pip install sj-flexsn",
    ]


def test_nothing_is_listed_as_missing_when_every_plugin_is_installed(
    plugins, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(info_module, "_version", lambda name: "0.1.0")
    assert main(["info"]) == 0
    assert "not installed" not in capsys.readouterr().out


def test_every_first_party_install_command_installs_its_package() -> None:
    for package in backends.FIRST_PARTY_PACKAGES:
        command = package.install.split("  (")[0]
        assert command.startswith("pip install "), command
        assert package.distribution in command


def test_status_of_a_backend_assembled_from_several_distributions(plugins, capsys) -> None:
    op = plugins.operator("lif", len)
    dark = {"check": lambda: (False, "no fake chip")}
    plugins.add(make_spec("half", {"lif.multi_step": op}))
    plugins.add(make_spec("half", {"flexsn": op}, distribution="sj-half-extra", **dark))
    plugins.add(make_spec("same", {"lif.multi_step": op}, **dark))
    plugins.add(make_spec("same", {"flexsn": op}, distribution="sj-same-extra", **dark))
    plugins.add(make_spec("mixed", {"lif.multi_step": op}, **dark))
    plugins.add(
        make_spec("mixed", {"flexsn": op}, distribution="sj-mixed-x", check=lambda: (False, "no"))
    )
    assert main(["info"]) == 0
    sections = _backend_sections(capsys.readouterr().out)
    assert sections["half"][0] == (
        "  half       [sj-half, sj-half-extra] available; its operators from sj-half-extra "
        "are not: no fake chip"
    )
    assert sections["same"][0] == "  same       [sj-same, sj-same-extra] unavailable: no fake chip"
    assert sections["mixed"][0] == (
        "  mixed      [sj-mixed, sj-mixed-x] unavailable: sj-mixed: no fake chip; sj-mixed-x: no"
    )
