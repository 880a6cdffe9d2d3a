"""The generated equations module and the tables the Triton kernels are launched with.

* ``equations.py`` is the text :func:`sj_triton.neuron_kernel.codegen.generate` prints
  from sj-core's neuron statements, byte for byte.
* ``NEURON_IDS`` and ``BACKWARD_READS`` cover every statement and flag setting, and the
  reads are exactly what the derivatives of the statement's equations depend on
  (measured with torch autograd on the statement's own functions, not on the printer).
* :func:`~sj_triton.neuron_kernel.launch_config.scalar_slots` holds each float parameter
  and, for ``1/p`` slots, the fp32 reciprocal of the fp32 ``p`` (checked with numpy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from neuron_cases import PARAMS, flag_settings

from sj_core.kernels import NeuronKernelConfig
from sj_core.neuron.statements import FLOAT, STATEMENTS, TENSOR

pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
codegen = pytest.importorskip("sj_triton.neuron_kernel.codegen", reason="needs sj-triton")
from sj_triton.neuron_kernel import equations  # noqa: E402
from sj_triton.neuron_kernel.launch_config import scalar_slots  # noqa: E402


def _flags_id(name: str, flags: dict[str, bool]) -> str:
    return "-".join([name, *(key if value else f"no_{key}" for key, value in flags.items())])


FLAG_CASES = [
    pytest.param(name, flags, id=_flags_id(name, flags))
    for name in STATEMENTS
    for flags in flag_settings(name)
]


def _flags_value(flags: dict[str, bool]) -> int:
    """The kernels' ``FLAGS`` constant: bit ``i`` is the statement's ``i``-th flag."""
    return sum(int(value) << i for i, value in enumerate(flags.values()))


# -- the generated module ---------------------------------------------------------------------


def test_equations_module_is_the_generated_text():
    path = codegen.output_path()
    assert path == Path(equations.__file__)
    assert codegen.generate() == path.read_text(), (
        f"{path.name} is out of date with sj_core.neuron.statements: "
        "run python -m sj_triton.neuron_kernel.codegen"
    )


def test_neuron_ids_cover_every_statement_in_kernel_order():
    neuron_ids = equations.NEURON_IDS
    assert neuron_ids == {name: i for i, name in enumerate(STATEMENTS)}
    # The id selects the branch of every generated function that is commented with the
    # statement's title.
    text = codegen.output_path().read_text()
    for name, statement in STATEMENTS.items():
        branch = f"NEURON == {equations.NEURON_IDS[name]}:  # {statement.title}\n"
        assert text.count(branch) >= 2, f"{name}: no branch {branch!r}"


def test_backward_reads_cover_every_statement_and_flag_setting():
    expected = {(name, _flags_value(flags)) for name in STATEMENTS for flags in flag_settings(name)}
    assert set(equations.BACKWARD_READS) == expected
    for key, reads in equations.BACKWARD_READS.items():
        assert set(reads) <= {"x", "v"} and tuple(sorted(reads)) == reads, key


def _depends_on(partial: torch.Tensor, leaf: torch.Tensor) -> bool:
    """Whether an element-wise ``partial`` changes with ``leaf`` (second derivative)."""
    if not partial.requires_grad:
        return False
    (second,) = torch.autograd.grad(partial.sum(), leaf, retain_graph=True, allow_unused=True)
    return second is not None and bool(second.abs().max() > 0)


def _charge_partials(name: str, flags: dict[str, bool], v_r: float):
    """``{leaf name: (leaf, dH/dleaf)}`` of the statement's charge at random points."""
    statement = STATEMENTS[name]
    generator = torch.Generator().manual_seed(0)
    leaves = {
        key: (torch.rand(16, generator=generator, dtype=torch.float64) - 0.3).requires_grad_()
        for key in ("x", "v", "w", "r")
    }
    states = [leaves["v"], leaves["w"]][: len(statement.states)]
    tensors = [leaves["r"]] if statement.names(TENSOR) else []
    params = {**PARAMS[name], **flags}
    h = statement.charge(leaves["x"], *states, *tensors, **params, v_r=v_r)
    partials = {}
    for key, leaf in leaves.items():
        (partial,) = torch.autograd.grad(h.sum(), leaf, create_graph=True, allow_unused=True)
        partials[key] = partial if partial is not None else torch.zeros_like(leaf)
    return leaves, partials


@pytest.mark.parametrize("v_r", [-0.3, 0.0], ids=["hard-0.3", "soft"])
@pytest.mark.parametrize(("name", "flags"), FLAG_CASES)
def test_backward_reads_are_what_the_derivatives_depend_on(name, flags, v_r):
    """The backward kernel loads ``X`` / ``V[t-1]`` only when ``BACKWARD_READS`` says so
    and evaluates ``dH/dX``, ``dH/dV``, ``dH/dW``, ``dH/dr`` there (with ``W = 0``): the
    reads must be exactly the inputs those partials vary with, and none may vary with
    ``W``."""
    leaves, partials = _charge_partials(name, flags, v_r)
    varies = {
        key for key in ("x", "v") if any(_depends_on(p, leaves[key]) for p in partials.values())
    }
    assert set(equations.BACKWARD_READS[(name, _flags_value(flags))]) == varies
    assert not any(_depends_on(p, leaves["w"]) for p in partials.values())


@pytest.mark.parametrize("name", [n for n, s in STATEMENTS.items() if s.adaptation is not None])
def test_adaptation_derivatives_do_not_depend_on_w(name):
    """The backward kernel evaluates the adaptation's and the jump's derivatives with
    ``W = 0``: they must not vary with ``W``."""
    adaptation = STATEMENTS[name].adaptation
    generator = torch.Generator().manual_seed(1)
    h, w, s = (
        torch.rand(16, generator=generator, dtype=torch.float64).requires_grad_() for _ in range(3)
    )
    params = PARAMS[name]
    w_next = adaptation.adapt(h, w, **params, v_r=0.0)
    jumped = adaptation.jump(w, s, **params, v_r=0.0)
    partials = [
        *torch.autograd.grad(w_next.sum(), (h, w), create_graph=True, allow_unused=True),
        *torch.autograd.grad(jumped.sum(), (w, s), create_graph=True, allow_unused=True),
    ]
    for partial in partials:
        assert partial is None or not _depends_on(partial, w)


# -- scalar slots -------------------------------------------------------------------------------

#: Parameter values whose fp32 reciprocals are not exact (and, for 1.7 and 2.3, differ
#: from rounding the fp64 reciprocal of the unrounded value).
SLOT_VALUES = {"tau": 1.7, "tau_w": 3.0, "delta_T": 2.3, "theta_rh": 0.85, "v_rest": -0.1,
               "v_c": 0.8, "a0": 1.3, "a": 0.55, "b": 0.2}  # fmt: skip


def _config(name: str, params: dict[str, float]) -> NeuronKernelConfig:
    statement = STATEMENTS[name]
    return NeuronKernelConfig(
        neuron=name,
        surrogate="Sigmoid",
        hard_reset=True,
        detach_reset=False,
        store_v_seq=False,
        flags=0,
        v_threshold=1.0,
        v_reset=0.0,
        params=tuple(params[p] for p in statement.names(FLOAT)),
        surrogate_params=(4.0,),
    )


def _fp32_reciprocal(value: float) -> float:
    """Correctly rounded fp32 ``1 / fp32(value)``, independently of the package."""
    return float(np.float32(1.0) / np.float32(value))


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_scalar_slots(name):
    statement = STATEMENTS[name]
    params = {p: SLOT_VALUES[p] for p in statement.names(FLOAT)}
    slots = equations.SCALAR_SLOTS[name]
    values = scalar_slots(_config(name, params))
    assert len(values) == 8 and values[len(slots) :] == (0.0,) * (8 - len(slots))
    for key, value in zip(slots, values, strict=False):
        if key.startswith("1/"):
            assert value == _fp32_reciprocal(params[key[2:]]), key
            assert torch.tensor(value, dtype=torch.float32).item() == value, f"{key}: not fp32"
        else:
            assert value == params[key], key
    # Every float parameter reaches the kernel, as itself or as its reciprocal.
    used = {key.removeprefix("1/") for key in slots}
    assert used == set(statement.names(FLOAT))


def test_fp32_reciprocal_is_not_the_rounded_fp64_one():
    """The premise of ``SLOT_VALUES``: the fp32 reciprocal of fp32(tau) differs from
    fp32(1 / tau) there, so a slot computed the other way fails the test above."""
    for key in ("tau", "delta_T"):
        value = SLOT_VALUES[key]
        assert _fp32_reciprocal(value) != float(np.float32(1.0 / value)), key
