"""``python -m sj_core info``: what is installed, and which backends can run here."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import warnings

import torch

from . import backends
from .__about__ import __version__

__all__ = ["environment_report", "main"]

_PACKAGES = (
    "sj-core",
    "sj-triton",
    "sj-cupy",
    "sj-flexsn",
    "triton",
    "cupy-cuda12x",
    "cupy-cuda13x",
)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device_line() -> str:
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"CUDA {torch.version.cuda}: {names}"
    return "no CUDA device (CPU only)"


def _status(info: backends.BackendInfo) -> str:
    """'available', or why not. A backend assembled from several distributions (sj-flexsn
    adds the flexsn operator to triton and inductor) says which share cannot run; a
    reason that every share gives is said once."""
    problems = {}
    for spec in info.specs:
        ok, reason = spec.available()
        if not ok:
            problems[spec.distribution] = reason
    if not problems:
        return "available"
    if len(set(problems.values())) == 1:
        reasons = next(iter(problems.values()))
    else:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
    if len(problems) == len(info.specs):
        return f"unavailable: {reasons}"
    return f"available; its operators from {', '.join(problems)} are not: {reasons}"


def environment_report() -> str:
    """A readable report: versions, device, each backend with status and operators, and
    the first-party plugins that are not installed with the command that installs each.

    Reading it imports no backend: availability checks look at installed metadata and
    the device only.
    """
    lines = [
        f"sj-core {__version__}",
        f"python {platform.python_version()} ({sys.platform}), torch {torch.__version__}",
        f"device: {_device_line()}",
        "",
        "packages:",
    ]
    for name in _PACKAGES:
        version = _version(name)
        if version is not None:
            lines.append(f"  {name:<14} {version}")
    lines += ["", "backends:"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        infos = backends.list_backends()
    for info in infos:
        lines.append(f"  {info.name:<10} [{', '.join(info.distributions)}] {_status(info)}")
        for key in sorted(info.operators):
            lines.append(f"      {key}")
    for warning in caught:
        lines.append(f"  ! {warning.message}")
    lines += _missing_packages()
    return "\n".join(lines)


def _missing_packages() -> list[str]:
    """The first-party plugins that are not installed, each with its pip command."""
    missing = [p for p in backends.FIRST_PARTY_PACKAGES if _version(p.distribution) is None]
    if not missing:
        return []
    lines = ["", "not installed:"]
    for package in missing:
        lines.append(f"  {package.distribution:<10} {package.provides}")
        lines.append(f"      {package.install}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sj_core``."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] not in ("info", "-h", "--help"):
        print(f"unknown command {args[0]!r}; usage: python -m sj_core info", file=sys.stderr)
        return 2
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m sj_core info    # versions, device, backends and operators")
        return 0
    print(environment_report())
    return 0
