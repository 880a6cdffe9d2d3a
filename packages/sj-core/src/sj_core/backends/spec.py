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
        check=triton_check,                  # () -> (ok, reason)
        operators={"lif.multi_step": "sj_triton.neuron_kernel.lif:lif_multi_step"},
        devices=("cuda",),
        priority=20,
        api_version=1,                       # the plugin API it was written against
    )

The registry refuses a spec whose ``api_version`` this sj-core does not speak
(:data:`PLUGIN_API_VERSION`), with an error saying which package to upgrade, instead of
failing later inside an operator call. The version changes only when the contract does
(operator signatures, :mod:`sj_core.kernels`, this class), not with every release.

Several distributions may contribute operators to one backend name (sj-flexsn adds the
``flexsn`` operator to ``triton`` and ``inductor``); the registry merges them.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..__about__ import __version__

__all__ = ["PLUGIN_API_VERSION", "BackendSpec", "api_version_problem", "check_requirements"]

#: The version of the plugin contract this sj-core implements.
PLUGIN_API_VERSION = 1

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
        api_version: the plugin API (:data:`PLUGIN_API_VERSION`) the plugin was written
            against; 1, the first, when not given.
    """

    name: str
    distribution: str
    operators: Mapping[str, str]
    requirements: tuple[str, ...] = ()
    check: Callable[[], tuple[bool, str]] | None = None
    devices: tuple[str, ...] = ("cuda",)
    priority: int = 0
    description: str = ""
    api_version: int = 1

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


def api_version_problem(spec: BackendSpec) -> str | None:
    """Why this sj-core cannot use ``spec`` (a plugin API mismatch), or ``None``.

    The message names the package to upgrade: the plugin when it is older than this
    sj-core's API, sj-core when the plugin is newer.
    """
    if spec.api_version == PLUGIN_API_VERSION:
        return None
    if spec.api_version < PLUGIN_API_VERSION:
        remedy = f"upgrade it: pip install -U {spec.distribution}"
    else:
        remedy = "upgrade sj-core: pip install -U sj-core"
    return (
        f"{spec.distribution} was written for sj-core's plugin API {spec.api_version}, but "
        f"sj-core {__version__} implements plugin API {PLUGIN_API_VERSION}; {remedy}"
    )
