"""The plugin contract: what a backend package tells sj-core about itself.

A plugin declares one entry point per backend name in the group ``sj.backends``; the
entry point names a :class:`BackendSpec`. Loading that object must be cheap: it must not
import the heavy dependency (Triton, CuPy) the backend needs. Operators are given as
``"module:function"`` strings and imported only when first used.

Example (``pyproject.toml`` of a plugin)::

    [project.entry-points."sj.backends"]
    triton = "sj_triton._backend:BACKEND"

and ``sj_triton/_backend.py``::

    BACKEND = BackendSpec(
        name="triton",
        distribution="sj-triton",
        requirements=("triton>=3.2",),
        check=_cuda_or_interpreter,          # () -> (ok, reason)
        operators={"lif.multi_step": "sj_triton.neuron_kernel.lif:lif_multi_step"},
        devices=("cuda",),
        priority=20,
    )

Several distributions may contribute operators to one backend name (sj-flexsn adds the
``flexsn`` operator to ``triton`` and ``inductor``); the registry merges them.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["BackendSpec", "check_requirements"]

# "name", "name[extra]" or "name>=1.2": enough for first-party plugin requirements.
_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(?:>=\s*([0-9][0-9.]*))?\s*$"
)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def check_requirements(requirements: tuple[str, ...]) -> tuple[bool, str]:
    """Check that each ``"name"`` or ``"name>=version"`` requirement is installed.

    Only the distribution metadata is read; nothing is imported.

    Returns:
        ``(True, "")`` or ``(False, reason)``.
    """
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            return False, f"cannot parse requirement {requirement!r}"
        name, minimum = match.group(1), match.group(2)
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return False, f"{name} is not installed (needs {requirement})"
        if minimum and _version_tuple(installed) < _version_tuple(minimum):
            return False, f"{name} {installed} is installed, needs {requirement}"
    return True, ""


@dataclass(frozen=True)
class BackendSpec:
    """Description of a backend (or of one distribution's share of it).

    Attributes:
        name: the backend name users pass as ``backend=...``.
        distribution: the distribution that provides it (``"sj-triton"``).
        operators: operator key -> ``"module:function"``, imported lazily.
        requirements: distributions (``"name"`` or ``"name>=x.y"``) that must be
            installed; checked before anything is imported.
        check: optional ``() -> (ok, reason)`` run after the requirements, e.g. to
            look for a CUDA device. It must not import heavy modules either.
        devices: device types (``torch.device.type``) the backend runs on; used by
            ``backend='auto'``.
        priority: preference for ``backend='auto'`` (higher first).
        description: one line for ``python -m sj_core info``.
    """

    name: str
    distribution: str
    operators: Mapping[str, str]
    requirements: tuple[str, ...] = ()
    check: Callable[[], tuple[bool, str]] | None = None
    devices: tuple[str, ...] = ("cuda",)
    priority: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"BackendSpec.name must be a non-empty string, got {self.name!r}")
        for key, target in self.operators.items():
            if not isinstance(target, str) or target.count(":") != 1:
                raise ValueError(
                    f"BackendSpec {self.name!r}: operator {key!r} must map to a "
                    f"'module:function' string, got {target!r}"
                )

    def available(self) -> tuple[bool, str]:
        """Whether the backend can run here: ``(True, "")`` or ``(False, reason)``."""
        ok, reason = check_requirements(self.requirements)
        if not ok:
            return ok, reason
        if self.check is not None:
            ok, reason = self.check()
            return bool(ok), str(reason)
        return True, ""
