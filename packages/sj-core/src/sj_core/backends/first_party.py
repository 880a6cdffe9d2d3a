"""sj's own plugin packages: what each adds and the command that installs it.

The registry names these commands when a first-party backend or operator is asked for
but its package is missing, and ``python -m sj_core info`` lists the packages that are
not installed, so a user sees what exists without reading the documentation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..neuron.statements import STATEMENTS

__all__ = [
    "FIRST_PARTY_BACKENDS",
    "FIRST_PARTY_OPERATORS",
    "FIRST_PARTY_PACKAGES",
    "FirstPartyPackage",
]


@dataclass(frozen=True)
class FirstPartyPackage:
    """One of sj's plugin distributions.

    Attributes:
        distribution: the name pip knows it by (``"sj-triton"``).
        provides: one line on what it adds.
        install: the command that installs it.
    """

    distribution: str
    provides: str
    install: str


_TRITON_INSTALL = "pip install sj-triton"
# CuPy ships one wheel per CUDA major version, so the user picks the extra.
_CUPY_INSTALL = "pip install 'sj-cupy[cuda12]'  (or 'sj-cupy[cuda13]' for CUDA 13)"
_FLEXSN_INSTALL = "pip install sj-flexsn"

FIRST_PARTY_PACKAGES: tuple[FirstPartyPackage, ...] = (
    FirstPartyPackage(
        "sj-triton",
        "backend 'triton': Triton kernels for every neuron (CUDA; CPU under TRITON_INTERPRET=1)",
        _TRITON_INSTALL,
    ),
    FirstPartyPackage(
        "sj-cupy", "backend 'cupy': CuPy CUDA kernels for every neuron", _CUPY_INSTALL
    ),
    FirstPartyPackage(
        "sj-flexsn",
        "FlexSN kernels generated from your own neuron (backends 'triton', 'inductor', 'hop')",
        _FLEXSN_INSTALL,
    ),
)

#: Backend name -> what to install when it is missing.
FIRST_PARTY_BACKENDS: dict[str, str] = {
    "triton": _TRITON_INSTALL,
    "cupy": _CUPY_INSTALL,
    "hop": _FLEXSN_INSTALL,
}

_NEURON_INSTALL = f"{_TRITON_INSTALL}  (or sj-cupy)"

#: Operator key -> what to install to get a backend that provides it.
FIRST_PARTY_OPERATORS: dict[str, str] = {
    "flexsn": _FLEXSN_INSTALL,
    **{
        f"{neuron}.{mode}": _NEURON_INSTALL
        for neuron in STATEMENTS
        for mode in ("multi_step", "single_step")
    },
}
