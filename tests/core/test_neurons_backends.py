"""Neurons and backends: dispatch, ``backend='auto'``, errors, and the kernel calling
convention (DESIGN.md "The plugin contract", SPEC sections 2 and 9, operators.py).

Fake backends come from fake entry points (``helpers.FakePlugins``); their operators are
:class:`helpers.Recorder` objects wrapping the reference loops of :mod:`sj_core.reference`
(or raising ``NotImplementedError``), so every test knows which backend ran and with what.
"""

from __future__ import annotations

import pytest
import torch
from helpers import FakePlugins, Recorder, make_spec, operator_keywords, raising

from sj_core import backends, reference
from sj_core.backends import OPERATORS, UnsupportedOperatorError
from sj_core.neuron import BaseNode, IFNode, LIFNode, ParametricLIFNode
from sj_core.neuron.statements import IF, LIF
from sj_core.surrogate import ATan


@pytest.fixture
def plugins(monkeypatch):
    with FakePlugins(monkeypatch) as fake:
        yield fake


def _lif_single_step(
    x, v, *, tau, decay_input, v_threshold, v_reset, detach_reset, surrogate_function
):
    """A correct ``lif.single_step`` for fake backends, from the LIF statement."""
    spike, (v,) = reference.neuron_step(
        LIF,
        x,
        (v,),
        (),
        {"tau": tau, "decay_input": decay_input},
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
    )
    return spike, v


def _add_backend(plugins, name, operators, **spec_kwargs) -> dict[str, Recorder]:
    """Register backend ``name`` whose operators (key -> function) are wrapped in Recorders."""
    recorders = {key: Recorder(function) for key, function in operators.items()}
    targets = {
        key: plugins.operator(f"{name}_{key.replace('.', '_')}", recorder)
        for key, recorder in recorders.items()
    }
    plugins.add(make_spec(name, targets, **spec_kwargs))
    return recorders


X_SEQ = torch.tensor([[1.0, 2.0, 0.5], [1.5, 0.5, 1.5], [0.5, 1.0, 3.0]])
# LIF tau=2, decay_input, hard reset to 0, by hand: H = (V + X)/2 (see test_neurons.py).
X_SEQ_SPIKES = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
X_SEQ_V_LAST = [0.25, 0.625, 0.0]


# -- explicit backends ----------------------------------------------------------------------------


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_explicit_backend_never_falls_back(plugins, step_mode: str) -> None:
    cannot = raising("fake runs ATan only")
    _add_backend(plugins, "fake", {"lif.multi_step": cannot, "lif.single_step": cannot})
    node = LIFNode(step_mode=step_mode, backend="fake")
    x = X_SEQ if step_mode == "m" else X_SEQ[0]
    with pytest.raises(NotImplementedError, match="fake runs ATan only"):
        node(x)


def test_explicit_backend_runs_its_operator(plugins) -> None:
    recorders = _add_backend(plugins, "fake", {"lif.multi_step": reference.multistep_lif})
    node = LIFNode(step_mode="m", backend="fake")
    assert node.backend == "fake"
    spikes = node(X_SEQ)
    assert len(recorders["lif.multi_step"].calls) == 1
    assert node.last_backend == "fake"
    assert spikes.tolist() == X_SEQ_SPIKES
    assert node.v.tolist() == X_SEQ_V_LAST


def test_explicit_backend_without_the_step_modes_operator(plugins) -> None:
    _add_backend(plugins, "fake", {"lif.multi_step": reference.multistep_lif})
    with pytest.raises(UnsupportedOperatorError) as info:
        LIFNode(step_mode="s", backend="fake")
    message = str(info.value)
    assert "LIFNode in step_mode 's' supports backends ('torch',) (or 'auto')" in message
    assert "backend 'fake' provides no 'lif.single_step' operator" in message
    # Built-in inductor is multi-step only, too.
    with pytest.raises(UnsupportedOperatorError, match=r"supports backends \('torch',\)"):
        LIFNode(step_mode="s", backend="inductor")
    # PLIF has no single-step operator key anywhere.
    with pytest.raises(UnsupportedOperatorError, match="'plif.single_step'"):
        ParametricLIFNode(step_mode="s", backend="fake")


def test_changing_step_mode_to_one_the_backend_cannot_run_leaves_the_node_unchanged(
    plugins,
) -> None:
    recorders = _add_backend(plugins, "fake", {"lif.multi_step": reference.multistep_lif})
    node = LIFNode(step_mode="m", backend="fake")
    with pytest.raises(UnsupportedOperatorError, match="'lif.single_step'"):
        node.step_mode = "s"
    assert node.step_mode == "m"
    assert node.backend == "fake"
    assert node.supported_backends == ("torch", "inductor", "fake")
    node(X_SEQ)  # still runs, on the same backend
    assert len(recorders["lif.multi_step"].calls) == 1
    # Through torch, the change is allowed; then 'fake' is refused for 's' ...
    node.backend = "torch"
    node.step_mode = "s"
    with pytest.raises(UnsupportedOperatorError):
        node.backend = "fake"
    assert node.backend == "torch" and node.step_mode == "s"


def test_unknown_backend_on_an_existing_node_changes_nothing(plugins) -> None:
    node = LIFNode(step_mode="m")
    with pytest.raises(backends.UnknownBackendError, match="installed backends: torch, inductor"):
        node.backend = "nope"
    assert node.backend == "torch"
    node(X_SEQ)
    assert node.last_backend == "torch"


# -- backend='auto' -------------------------------------------------------------------------------


def test_auto_picks_the_best_available_backend_for_the_device(plugins) -> None:
    gpu = _add_backend(
        plugins,
        "fakecuda",
        {"lif.multi_step": raising("must not run on a CPU tensor")},
        devices=("cuda",),
        priority=50,
    )
    best = _add_backend(
        plugins, "fakecpu", {"lif.multi_step": reference.multistep_lif}, priority=20
    )
    worse = _add_backend(
        plugins, "slowcpu", {"lif.multi_step": reference.multistep_lif}, priority=10
    )
    node = LIFNode(step_mode="m", backend="auto")
    assert node.backend == "auto"
    spikes = node(X_SEQ)
    assert node.last_backend == "fakecpu"
    assert len(best["lif.multi_step"].calls) == 1
    assert worse["lif.multi_step"].calls == [] and gpu["lif.multi_step"].calls == []
    assert spikes.tolist() == X_SEQ_SPIKES
    assert node.v.tolist() == X_SEQ_V_LAST


def test_auto_falls_back_when_a_backend_cannot_run_the_configuration(plugins) -> None:
    best = _add_backend(
        plugins, "picky", {"lif.multi_step": raising("picky runs ATan only")}, priority=20
    )
    second = _add_backend(
        plugins, "plain", {"lif.multi_step": reference.multistep_lif}, priority=10
    )
    node = LIFNode(step_mode="m", backend="auto")
    assert node(X_SEQ).tolist() == X_SEQ_SPIKES
    assert node.last_backend == "plain"
    assert len(best["lif.multi_step"].calls) == 1
    assert len(second["lif.multi_step"].calls) == 1


def test_auto_falls_back_to_torch_last(plugins) -> None:
    _add_backend(plugins, "picky", {"lif.multi_step": raising("no")}, priority=20)
    _add_backend(plugins, "down", {"lif.multi_step": raising("x")}, check=lambda: (False, "off"))
    node = LIFNode(step_mode="m", backend="auto", store_v_seq=True)
    assert node(X_SEQ).tolist() == X_SEQ_SPIKES
    assert node.last_backend == "torch"
    assert node.v.tolist() == X_SEQ_V_LAST
    assert node.v_seq.shape == (3, 3)


def test_auto_without_plugins_runs_torch_not_inductor(plugins) -> None:
    node = LIFNode(step_mode="m", backend="auto")
    node(X_SEQ)
    assert node.last_backend == "torch"


def test_auto_in_single_step_mode(plugins) -> None:
    recorders = _add_backend(plugins, "fake", {"lif.single_step": _lif_single_step})
    node = LIFNode(step_mode="s", backend="auto")
    spikes = [node(x).tolist() for x in X_SEQ]
    assert spikes == X_SEQ_SPIKES
    assert node.last_backend == "fake"
    assert len(recorders["lif.single_step"].calls) == 3


def test_auto_skips_a_backend_whose_operator_fails_to_load_with_a_warning(plugins) -> None:
    plugins.add(make_spec("broken", {"lif.multi_step": "sj_core_tests_missing:op"}, priority=9))
    with pytest.warns(RuntimeWarning, match="backend='auto' skips 'broken'"):
        node = LIFNode(step_mode="m", backend="auto")
    node(X_SEQ)
    assert node.last_backend == "torch"


def test_auto_follows_step_mode_changes(plugins) -> None:
    multi = _add_backend(plugins, "fake", {"lif.multi_step": reference.multistep_lif})
    node = LIFNode(step_mode="m", backend="auto")
    node(X_SEQ)
    assert node.last_backend == "fake"
    node.step_mode = "s"  # 'fake' has no single-step operator: torch
    node.reset()
    node(X_SEQ[0])
    assert node.last_backend == "torch"
    assert len(multi["lif.multi_step"].calls) == 1


# -- neurons that override the math ---------------------------------------------------------------


class HalfInputLIF(LIFNode):
    """A user neuron: LIF's machinery with its own charge, ``H = V + X/2`` (no leak)."""

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + 0.5 * x


class OnlyCharge(BaseNode):
    """The minimal user neuron: only ``neuronal_charge`` (IF)."""

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x


class RenamedLIF(LIFNode):
    """Overrides nothing of the math: keeps LIF's kernels."""


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_overriding_neuronal_charge_runs_on_torch_and_loses_kernels(
    plugins, step_mode: str
) -> None:
    recorders = _add_backend(
        plugins,
        "fake",
        {"lif.multi_step": reference.multistep_lif, "lif.single_step": _lif_single_step},
    )
    assert HalfInputLIF(step_mode=step_mode).supported_backends == ("torch",)
    assert OnlyCharge(step_mode=step_mode).supported_backends == ("torch",)
    assert "fake" in RenamedLIF(step_mode=step_mode).supported_backends
    with pytest.raises(UnsupportedOperatorError, match="no operator for custom neurons"):
        HalfInputLIF(step_mode=step_mode, backend="fake")
    # H = V + X/2, hard reset to 0: X = 1, 1, .5 -> H .5; 1.0 (spike) -> 0; .25
    x_seq = torch.tensor([[1.0], [1.0], [0.5]])
    for node in (
        HalfInputLIF(step_mode=step_mode, backend="auto"),
        OnlyCharge(step_mode=step_mode),
    ):
        if step_mode == "m":
            spikes = node(x_seq if isinstance(node, HalfInputLIF) else x_seq * 0.5)
        else:
            scale = 1.0 if isinstance(node, HalfInputLIF) else 0.5
            spikes = torch.stack([node(x * scale) for x in x_seq])
        assert spikes.flatten().tolist() == [0.0, 1.0, 0.0]
        assert node.v.tolist() == [0.25]
        assert node.last_backend == "torch"
    assert all(recorder.calls == [] for recorder in recorders.values())


# -- the kernel calling convention ----------------------------------------------------------------


def _signature_names(key: str) -> tuple[list[str], list[str]]:
    return operator_keywords(OPERATORS[key])


KERNEL_CASES = {
    "if.multi_step": lambda **kw: IFNode(v_threshold=0.75, v_reset=None, **kw),
    "lif.multi_step": lambda **kw: LIFNode(
        tau=3.0, decay_input=False, v_reset=-0.25, detach_reset=True, **kw
    ),
    "plif.multi_step": lambda **kw: ParametricLIFNode(init_tau=4.0, v_reset=-0.5, **kw),
    "if.single_step": lambda **kw: IFNode(v_threshold=0.5, **kw),
    "lif.single_step": lambda **kw: LIFNode(tau=1.5, v_reset=None, **kw),
}


@pytest.mark.parametrize("store_v_seq", [False, True], ids=["no-v_seq", "v_seq"])
@pytest.mark.parametrize("key", list(KERNEL_CASES))
def test_kernel_receives_exactly_the_documented_arguments(plugins, key, store_v_seq) -> None:
    neuron, _, mode = key.partition(".")
    torch_impl = {
        "if.multi_step": reference.multistep_if,
        "lif.multi_step": reference.multistep_lif,
        "plif.multi_step": reference.multistep_plif,
    }
    if mode == "multi_step":
        impl = torch_impl[key]
    else:
        impl = _lif_single_step if neuron == "lif" else _if_single_step
    recorders = _add_backend(plugins, "fake", {key: impl})
    step_mode = "m" if mode == "multi_step" else "s"
    surrogate = ATan(alpha=3.0)
    node = KERNEL_CASES[key](
        step_mode=step_mode, backend="fake", surrogate_function=surrogate, store_v_seq=store_v_seq
    )
    x = torch.rand(4, 2, 3) if step_mode == "m" else torch.rand(2, 3)
    node(x)
    v_after_first = node.v
    node(x)
    first, second = recorders[key].calls
    positional, keywords = _signature_names(key)

    args, kwargs = first
    assert len(args) == len(positional)
    assert args[0] is x
    expected_v_init = 0.0 if node.v_reset is None else node.v_reset
    assert torch.equal(args[1], torch.full((2, 3), expected_v_init))
    assert set(kwargs) == set(keywords)
    assert kwargs["v_threshold"] == node.v_threshold
    assert kwargs["v_reset"] == node.v_reset
    assert kwargs["detach_reset"] is node.detach_reset
    assert kwargs["surrogate_function"] is surrogate
    if "store_v_seq" in keywords:
        assert kwargs["store_v_seq"] is store_v_seq
    if "tau" in keywords:
        assert kwargs["tau"] == node.tau
    if "decay_input" in keywords:
        assert kwargs["decay_input"] is node.decay_input
    if neuron == "plif":
        r_tau = args[2]
        assert r_tau.shape == (1,)
        assert r_tau.item() == pytest.approx(0.25)  # sigmoid(w) = 1/init_tau
    # The state flows back: the second call's v_init is the v the first call left.
    assert second[0][1] is v_after_first
    if step_mode == "m" and store_v_seq:
        assert node.v_seq.shape == (4, 2, 3)
        assert torch.equal(node.v_seq[-1], node.v)
    elif step_mode == "m":
        assert not hasattr(node, "v_seq") or node.v_seq is None


def _if_single_step(x, v, *, v_threshold, v_reset, detach_reset, surrogate_function):
    spike, (v,) = reference.neuron_step(
        IF,
        x,
        (v,),
        (),
        {},
        v_threshold=v_threshold,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate_function,
    )
    return spike, v


def test_kernel_state_is_what_the_operator_returned(plugins) -> None:
    marker_v = torch.full((3,), 0.125)
    marker_v_seq = torch.full((3, 3), -2.0)

    def fake_lif(x_seq, v_init, **kwargs):
        return torch.zeros_like(x_seq), marker_v, marker_v_seq

    _add_backend(plugins, "fake", {"lif.multi_step": fake_lif})
    node = LIFNode(step_mode="m", backend="fake", store_v_seq=True)
    node(X_SEQ)
    assert node.v is marker_v
    assert node.v_seq is marker_v_seq


def test_plif_kernel_gradient_reaches_w_through_r_tau(plugins) -> None:
    recorders = _add_backend(plugins, "fake", {"plif.multi_step": reference.multistep_plif})
    x_seq = torch.rand(5, 4, dtype=torch.float64) * 3.0
    grads = {}
    for backend in ("fake", "torch"):
        node = ParametricLIFNode(init_tau=3.0, step_mode="m", backend=backend).double()
        x = x_seq.clone().requires_grad_(True)
        (node(x).sum() + node.v.sum()).backward()
        grads[backend] = (x.grad, node.w.grad)
    assert len(recorders["plif.multi_step"].calls) == 1
    assert grads["fake"][1] is not None and grads["fake"][1].shape == ()
    torch.testing.assert_close(grads["fake"][0], grads["torch"][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads["fake"][1], grads["torch"][1], rtol=1e-12, atol=1e-14)
