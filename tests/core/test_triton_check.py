"""The availability check of the Triton-based backends (``sj_core.kernels.triton_check``):
a CUDA device, or Triton's CPU interpreter switched on and able to run with the installed
numpy. The versions are faked; nothing imports Triton."""

from __future__ import annotations

import pytest
import torch

from sj_core.kernels import interpreter_problem, triton_check
from sj_core.kernels import triton_interpreter as ti

NO_CUDA = "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on the CPU"
OLD_TRITON_NEW_NUMPY = (
    "the CPU interpreter of Triton 3.4 fails with numpy 2.4 (Triton < 3.7 needs numpy < 2.4): "
    "pip install 'numpy<2.4'"
)


@pytest.fixture
def installed(monkeypatch):
    """Set the (major, minor) versions the check reads: ``installed(triton=..., numpy=...)``."""

    def set_versions(**versions: tuple[int, int] | None) -> None:
        monkeypatch.setattr(ti, "_installed", lambda name: versions.get(name))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return set_versions


@pytest.mark.parametrize(
    ("triton", "numpy", "problem"),
    [
        ((3, 9), (2, 5), None),
        ((3, 7), (2, 4), None),
        ((3, 4), (2, 3), None),
        ((3, 2), (1, 26), None),
        ((3, 4), (2, 4), OLD_TRITON_NEW_NUMPY),
        ((3, 6), (2, 5), OLD_TRITON_NEW_NUMPY.replace("3.4", "3.6").replace("2.4 (", "2.5 (")),
        ((3, 9), None, "Triton's CPU interpreter needs numpy: pip install numpy"),
    ],
    ids=["new-both", "3.7-2.4", "3.4-2.3", "floor", "3.4-2.4", "3.6-2.5", "no-numpy"],
)
def test_interpreter_problem(installed, triton, numpy, problem) -> None:
    installed(triton=triton, numpy=numpy)
    assert interpreter_problem() == problem


def test_interpreter_on_and_able(installed, monkeypatch) -> None:
    installed(triton=(3, 9), numpy=(2, 5))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_check() == (True, "")


def test_interpreter_on_but_unable_gives_the_fix(installed, monkeypatch) -> None:
    installed(triton=(3, 4), numpy=(2, 4))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_check() == (False, OLD_TRITON_NEW_NUMPY)


def test_interpreter_off_says_how_to_switch_it_on(installed, monkeypatch) -> None:
    installed(triton=(3, 9), numpy=(2, 5))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert triton_check() == (False, NO_CUDA + ")")
    installed(triton=(3, 4), numpy=(2, 4))
    assert triton_check() == (False, f"{NO_CUDA}; for that, first {OLD_TRITON_NEW_NUMPY})")


def test_a_cuda_device_is_enough(installed, monkeypatch) -> None:
    installed(triton=(3, 4), numpy=(2, 4))  # the interpreter's trouble does not matter
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert triton_check() == (True, "")


def test_the_installed_versions_are_read_as_major_minor() -> None:
    assert ti._installed("torch") == tuple(int(n) for n in torch.__version__.split(".")[:2])
    assert ti._installed("no-such-distribution-here") is None
