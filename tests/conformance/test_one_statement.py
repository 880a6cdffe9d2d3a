"""Every backend derives from the one statement of each neuron, and shares one plumbing.

* every statement is a neuron of every kernel backend (Triton used to lack QIF, EIF and
  Izhikevich): in its backend table, in sj-triton's generated equations, in sj-cupy's
  generator;
* one parser of ``TRITON_INTERPRET`` for every plugin (``"false"`` meant on in sj-triton
  and off in sj-flexsn);
* PLIF's ``1/tau`` gradient is taken from ``X`` everywhere (sj-cupy's ``(H - V) / r_tau``
  form was 26% off in bf16).
"""

from __future__ import annotations

import importlib
import importlib.util

import pytest
import torch
from kernel_backends import backend_params
from neuron_cases import NeuronCase, make_surrogate

from sj_core import backends, reference
from sj_core.kernels import interpreter_enabled, triton_interpreter
from sj_core.neuron.statements import STATEMENTS


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("plugin", ["sj_triton", "sj_cupy"])
def test_every_statement_is_an_operator_of_every_kernel_plugin(plugin):
    if not _installed(plugin):
        pytest.skip(f"{plugin.replace('_', '-')} is not installed")
    spec = importlib.import_module(f"{plugin}._backend").BACKEND
    for name in STATEMENTS:
        for mode in ("multi_step", "single_step"):
            assert f"{name}.{mode}" in spec.operators, (plugin, name, mode)


def test_every_statement_is_in_the_builtin_backends():
    for backend in ("torch", "inductor"):
        operators = backends.get_backend(backend).operators
        assert all(f"{name}.multi_step" in operators for name in STATEMENTS), backend


def test_the_generated_triton_equations_cover_every_statement():
    pytest.importorskip("sj_triton", reason="sj-triton is not installed")
    from sj_triton.neuron_kernel import codegen

    text = codegen.output_path().read_text()
    assert text == codegen.generate(), (
        "equations.py is out of date: run python -m sj_triton.neuron_kernel.codegen"
    )
    for index, statement in enumerate(STATEMENTS.values()):
        assert f"NEURON == {index}:  # {statement.title}" in text


def test_the_cuda_generator_covers_every_statement():
    pytest.importorskip("sj_cupy", reason="sj-cupy is not installed")
    from sj_cupy.codegen import NEURONS

    assert set(NEURONS) == set(STATEMENTS)


# -- the interpreter flag -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "new_triton", "old_triton"),
    [("1", True, True), ("true", True, False), ("YES", True, False), ("on", True, False),
     ("y", True, False), ("0", False, False), ("false", False, False), ("off", False, False),
     ("", False, False), ("2", False, False)],
)  # fmt: skip
def test_one_parser_reads_the_interpreter_flag_as_triton_does(
    monkeypatch, value, new_triton, old_triton
):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    for reads_words, expected in ((True, new_triton), (False, old_triton)):
        monkeypatch.setattr(triton_interpreter, "_triton_reads_words", lambda r=reads_words: r)
        assert interpreter_enabled() is expected, (value, reads_words)


@pytest.mark.parametrize("module", ["sj_triton._backend", "sj_flexsn._backend"])
def test_plugins_use_the_one_parser(monkeypatch, module):
    if not _installed(module.split(".")[0]):
        pytest.skip(f"{module.split('.')[0]} is not installed")
    if torch.cuda.is_available():
        pytest.skip("with a CUDA GPU the backends are available whatever the flag says")
    backend_module = importlib.import_module(module)
    monkeypatch.setattr(triton_interpreter, "_triton_reads_words", lambda: True)
    specs = [v for v in vars(backend_module).values() if isinstance(v, backends.BackendSpec)]
    checked = [spec for spec in specs if spec.check is not None]
    assert checked
    for value, expected in (("false", False), ("true", True), ("1", True)):
        monkeypatch.setenv("TRITON_INTERPRET", value)
        for spec in checked:
            assert spec.check()[0] is expected, (module, spec.name, value)


# -- PLIF's 1/tau gradient in low precision --------------------------------------------------


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_plif_tau_gradient_is_accurate_in_bfloat16(backend):
    # The gradient of 1/tau sums g_h * dH/d(1/tau) over every neuron and step. From X it
    # is within the bf16 rounding of the inputs; from (H - V) / r_tau (H stored in bf16)
    # it was 26% off.
    case = NeuronCase("plif", 0.0, 1.0, False, {"decay_input": True})
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(16, 2048, generator=generator) * 0.9 + 0.9).to(torch.bfloat16)
    weights = torch.randn(16, 2048, generator=generator)
    v_init = torch.zeros(2048, dtype=torch.bfloat16)

    def grad(operator, x, v_init, weights):
        r_tau = torch.tensor([0.4], dtype=torch.float64 if x.dtype == torch.float64 else None)
        r_tau = r_tau.to(x.device).requires_grad_()
        spikes = operator(x, v_init, r_tau, **case.kwargs(make_surrogate("ATan"), False))[0]
        (spikes.to(weights.dtype) * weights).sum().backward()
        return r_tau.grad.double().item()

    device = backend.device
    got = grad(backend.operator("plif"), x.to(device), v_init.to(device), weights.to(device))
    exact = grad(reference.multistep_plif, x.double(), v_init.double(), weights.double())
    assert abs(got - exact) <= 0.05 * abs(exact), (got, exact)
