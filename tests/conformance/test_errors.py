"""One error policy on every backend.

* A user mistake (a wrong shape, type, value) is a ``ValueError``/``TypeError``, the same
  on every backend, the ``torch`` reference included.
* What a backend cannot run (a dtype, a device, a surrogate, ``spiking=False``, mixed
  dtypes) is an :class:`~sj_core.backends.UnsupportedByBackendError`, the only error
  ``backend='auto'`` falls back on; an explicitly named backend never falls back.
* A backward pass with ``create_graph=True`` through a kernel is refused clearly.
"""

from __future__ import annotations

import pytest
import torch
from kernel_backends import INDUCTOR, TORCH, backend_params
from neuron_cases import NeuronCase, flag_settings, make_inputs, make_surrogate

from sj_core import backends, neuron
from sj_core.backends import UnsupportedByBackendError
from sj_core.neuron.statements import STATEMENTS

KERNELS = backend_params()
EVERY_BACKEND = backend_params((TORCH, INDUCTOR)) + KERNELS

LIF = NeuronCase("lif", 0.0, 1.0, False, {"decay_input": True})


def _lif_call(backend, x_seq, v_init, **overrides):
    kwargs = LIF.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    kwargs.update(overrides)
    return backend.operator("lif")(x_seq, v_init, **kwargs)


def _inputs(backend, T=3, shape=(4,)):
    x_seq, states, _ = make_inputs(LIF, T, shape, device=backend.device)
    return x_seq, states[0]


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_state_of_the_wrong_shape_is_a_value_error(backend):
    x_seq, v_init = _inputs(backend)
    with pytest.raises(ValueError, match="does not match one step of x_seq"):
        _lif_call(backend, x_seq, v_init[:3])


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"tau": 0.5}, ValueError, "tau must be > 1"),
        ({"tau": "2"}, TypeError, "tau must be a float"),
        ({"decay_input": 1}, TypeError, "decay_input must be a bool"),
        ({"v_threshold": float("nan")}, ValueError, "v_threshold must be a number"),
        ({"bogus": 1.0}, TypeError, "unexpected"),
    ],
    ids=["tau-range", "tau-type", "flag-type", "nan-threshold", "unknown-parameter"],
)
def test_bad_parameters_are_user_errors(backend, overrides, error, match):
    x_seq, v_init = _inputs(backend)
    with pytest.raises(error, match=match):
        _lif_call(backend, x_seq, v_init, **overrides)


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_missing_parameter_is_a_type_error(backend):
    x_seq, v_init = _inputs(backend)
    kwargs = LIF.kwargs(make_surrogate("Sigmoid"), store_v_seq=False)
    del kwargs["tau"]
    with pytest.raises(TypeError, match="missing"):
        backend.operator("lif")(x_seq, v_init, **kwargs)


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_tensor_parameter_with_several_elements_is_a_value_error(backend):
    case = NeuronCase("plif", 0.0, 1.0, False, {"decay_input": True})
    x_seq, states, _ = make_inputs(case, 3, (4,), device=backend.device)
    r_tau = torch.full((2,), 0.4, device=backend.device)
    with pytest.raises(ValueError, match="must have one element"):
        backend.operator("plif")(
            x_seq, *states, r_tau, **case.kwargs(make_surrogate("ATan"), False)
        )


@pytest.mark.parametrize("backend", EVERY_BACKEND, indirect=True)
def test_missing_state_is_a_type_error(backend):
    case = NeuronCase("izhikevich", 0.0, 1.0, False, {})
    x_seq, states, _ = make_inputs(case, 3, (4,), device=backend.device)
    with pytest.raises(TypeError, match="w_init"):
        backend.operator("izhikevich")(
            x_seq, states[0], **case.kwargs(make_surrogate("ATan"), False)
        )


@pytest.mark.parametrize("backend", KERNELS, indirect=True)
def test_float64_is_unsupported_by_kernel_backends(backend):
    x_seq, v_init = _inputs(backend)
    with pytest.raises(UnsupportedByBackendError, match="float32, float16 and bfloat16"):
        _lif_call(backend, x_seq.double(), v_init.double())


@pytest.mark.parametrize("backend", KERNELS, indirect=True)
def test_state_dtype_mismatch_is_the_same_error_everywhere(backend):
    # sj-triton raised ValueError and sj-cupy NotImplementedError for this.
    x_seq, v_init = _inputs(backend)
    with pytest.raises(UnsupportedByBackendError, match="initial states in x_seq's dtype"):
        _lif_call(backend, x_seq, v_init.half())


@pytest.mark.parametrize("backend", KERNELS, indirect=True)
@pytest.mark.parametrize(
    ("surrogate_function", "match"),
    [
        (make_surrogate("Sigmoid", spiking=False), "only spiking surrogates? .*spiking=False"),
        (lambda x: (x >= 0).float(), "SurrogateFunctionBase"),
    ],
    ids=["primitive", "plain-callable"],
)
def test_surrogates_a_kernel_cannot_run(backend, surrogate_function, match):
    x_seq, v_init = _inputs(backend)
    with pytest.raises(UnsupportedByBackendError, match=match):
        _lif_call(backend, x_seq, v_init, surrogate_function=surrogate_function)


def test_cpu_tensors_without_the_interpreter_are_unsupported_by_triton(monkeypatch):
    pytest.importorskip("sj_triton", reason="sj-triton is not installed")
    from sj_triton import operators

    monkeypatch.setattr(operators, "_INTERPRETER", False)
    x_seq, v_init = torch.rand(3, 4), torch.zeros(4)
    with pytest.raises(UnsupportedByBackendError, match="CUDA tensors"):
        operators.lif_multi_step(x_seq, v_init, **LIF.kwargs(make_surrogate("ATan"), False))


def test_cpu_tensors_are_unsupported_by_cupy():
    pytest.importorskip("sj_cupy", reason="sj-cupy is not installed")
    from sj_cupy import launch, operators

    previous = launch.set_launcher(None)  # the real launcher: CUDA tensors only
    try:
        with pytest.raises(UnsupportedByBackendError, match="runs on cuda tensors"):
            operators.lif_multi_step(
                torch.rand(3, 4), torch.zeros(4), **LIF.kwargs(make_surrogate("ATan"), False)
            )
    finally:
        launch.set_launcher(previous)


@pytest.mark.parametrize("backend", KERNELS, indirect=True)
@pytest.mark.parametrize("name", list(STATEMENTS))
def test_double_backward_is_refused(backend, name):
    case = NeuronCase(name, 0.0, 1.0, False, flag_settings(name)[0])
    x_seq, states, tensors = make_inputs(case, 4, (5,), device=backend.device)
    x_seq.requires_grad_()
    outputs = backend.operator(name)(
        x_seq, *states, *tensors, **case.kwargs(make_surrogate("ATan"), False)
    )
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(outputs[0].sum() + outputs[1].sum(), x_seq, create_graph=True)


# -- modules: what 'auto' may do, and what an explicit backend must not ---------------------


def _fake_backend(plugins_monkeypatch, error: Exception) -> None:
    """Install a backend 'fake' whose lif.multi_step raises ``error``."""
    import sys
    import types

    from sj_core.backends import BackendSpec, registry

    module = types.ModuleType("sj_conformance_fake_ops")

    def lif_multi_step(*args, **kwargs):
        raise error

    module.lif_multi_step = lif_multi_step
    plugins_monkeypatch.setitem(sys.modules, module.__name__, module)
    spec = BackendSpec(
        name="fake",
        distribution="sj-fake",
        operators={"lif.multi_step": f"{module.__name__}:lif_multi_step"},
        devices=("cpu",),
        priority=100,
    )

    class EntryPoint:
        name, value, group = "fake", "sj_fake._backend:BACKEND", registry.ENTRY_POINT_GROUP

        def load(self):
            return spec

    plugins_monkeypatch.setattr(registry, "_entry_points", lambda: [EntryPoint()])
    backends.refresh()


@pytest.fixture
def fresh_registry(monkeypatch):
    yield monkeypatch
    monkeypatch.undo()
    backends.refresh()


def test_auto_falls_back_on_unsupported_by_backend(fresh_registry):
    _fake_backend(fresh_registry, UnsupportedByBackendError("fake cannot run this"))
    node = neuron.LIFNode(step_mode="m", backend="auto")
    x_seq = torch.rand(4, 3) * 2
    out = node(x_seq)
    assert node.last_backend == "torch"
    expected = neuron.LIFNode(step_mode="m")(x_seq)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_auto_does_not_swallow_other_errors(fresh_registry):
    # A NotImplementedError that is not the backend's refusal (a bug, a missing hook)
    # must surface, not silently run the torch loop.
    _fake_backend(fresh_registry, NotImplementedError("a bug inside the backend"))
    node = neuron.LIFNode(step_mode="m", backend="auto")
    with pytest.raises(NotImplementedError, match="a bug inside the backend"):
        node(torch.rand(4, 3))


def test_explicit_backend_never_falls_back(fresh_registry):
    _fake_backend(fresh_registry, UnsupportedByBackendError("fake cannot run this"))
    node = neuron.LIFNode(step_mode="m", backend="fake")
    with pytest.raises(UnsupportedByBackendError, match="fake cannot run this"):
        node(torch.rand(4, 3))
