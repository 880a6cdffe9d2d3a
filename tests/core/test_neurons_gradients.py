"""Gradients of IF, LIF and PLIF on the torch backend, in fp64 (SPEC sections 2, 3 and 5).

Independent references:

* ``torch.autograd.gradcheck`` (finite differences, ``fast_mode`` to keep CI fast) with
  every surrogate that has a primitive, in ``spiking=False`` mode, where the node is a
  smooth function of ``x_seq``, the initial ``v`` and PLIF's ``w`` (the Heaviside forward
  would make finite differences meaningless). Not for ``detach_reset=True``, whose
  gradient is deliberately not the derivative of the forward;
* the explicit reverse-time recurrences of SPEC section 5, written out in
  ``helpers.explicit_forward_backward``: in spiking mode with each surrogate's closed-form
  gradient (itself checked against its primitive in ``test_surrogate.py``), and in
  ``spiking=False`` mode with ``S`` the primitive (this covers ``detach_reset=True``; the
  configurations gradcheck also sees tie the two references together);
* the node's other step mode, and the functional loops of :mod:`sj_core.reference`.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    ALL_SURROGATES,
    PRIMITIVE_SURROGATES,
    SURROGATE_FACTORIES,
    NeuronConfig,
    explicit_forward_backward,
    neuron_configs,
    run_node,
)

from sj_core import reference

F64 = torch.float64
# IF/LIF/PLIF x hard (v_reset -0.25) / soft x detach_reset x decay_input; V_th 0.8, tau 3.
CONFIGS = neuron_configs()
CONFIG_IDS = [config.id for config in CONFIGS]


def _inputs(
    config: NeuronConfig, seed: int, steps: int, neurons: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp64 ``x_seq`` ``[T, N]`` and ``v_init`` ``[N]`` that make some neurons fire.

    With decay_input the input is divided by tau, so it is scaled up by tau.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = config.tau if config.kind != "if" and config.decay_input else 1.0
    x_seq = (torch.rand(steps, neurons, generator=generator, dtype=F64) * 2.0 - 0.4) * scale
    v_init = torch.rand(neurons, generator=generator, dtype=F64) * 1.2 - 0.4
    return x_seq, v_init


def _w(config: NeuronConfig, node) -> torch.Tensor | None:
    """PLIF's ``w`` as an fp64 leaf (a gradcheck input), nudged off its initial value."""
    if config.kind != "plif":
        return None
    return (node.w.detach().to(F64) + 0.1).requires_grad_(True)


# -- spiking=False: gradcheck, and the recurrence with S = primitive ------------------------

NO_DETACH_CONFIGS = [config for config in CONFIGS if not config.detach_reset]


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("surrogate_name", PRIMITIVE_SURROGATES)
@pytest.mark.parametrize("config", NO_DETACH_CONFIGS, ids=[c.id for c in NO_DETACH_CONFIGS])
def test_gradcheck_with_primitive_surrogate(
    config: NeuronConfig, surrogate_name: str, step_mode: str
) -> None:
    # detach_reset=True is left out on purpose: its gradient is by design not the
    # derivative of the forward, so finite differences cannot check it. Those
    # configurations are checked against the recurrence below, which this test validates.
    sg = SURROGATE_FACTORIES[surrogate_name](False)
    node = config.make(sg, step_mode, store_v_seq=True).double()
    x_seq, v_init = _inputs(config, seed=0, steps=3, neurons=2)
    inputs = [x_seq.requires_grad_(True), v_init.requires_grad_(True)]
    w = _w(config, node)
    if w is not None:
        inputs.append(w)

    def function(x_seq, v_init, w=None):
        return run_node(node, x_seq, v_init, w)  # (outputs, v_last, v_seq): all checked

    assert torch.autograd.gradcheck(
        function, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True
    )


def _derivative_of(function):
    """``x -> d function(x) / dx`` for an element-wise ``function``, by autograd."""

    def derivative(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(function(x).sum(), x)
        return grad

    return derivative


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("surrogate_name", PRIMITIVE_SURROGATES)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_primitive_mode_gradients_match_explicit_recurrence(
    config: NeuronConfig, surrogate_name: str, step_mode: str
) -> None:
    sg = SURROGATE_FACTORIES[surrogate_name](False)

    def primitive(x: torch.Tensor) -> torch.Tensor:
        return sg.primitive_function(x, *sg.params)

    _check_against_recurrence(config, sg, step_mode, primitive, _derivative_of(primitive))


# -- spiking mode against SPEC section 5 -------------------------------------------------------


def _check_against_recurrence(config, sg, step_mode, primitive, surrogate_gradient) -> None:
    """Autograd of the node (x_seq, v_init, PLIF w) == SPEC 5's recurrence, fp64."""
    node = config.make(sg, step_mode, store_v_seq=True).double()
    steps, neurons = 5, 4
    x_seq, v_init = _inputs(config, seed=1, steps=steps, neurons=neurons)
    x_seq.requires_grad_(True)
    v_init.requires_grad_(True)
    w = _w(config, node)

    spike_seq, v_last, v_seq = run_node(node, x_seq, v_init, w)
    generator = torch.Generator().manual_seed(2)
    grad_spike = torch.randn(steps, neurons, generator=generator, dtype=F64)
    grad_v_last = torch.randn(neurons, generator=generator, dtype=F64)
    grad_v_seq = torch.randn(steps, neurons, generator=generator, dtype=F64)
    loss = (spike_seq * grad_spike).sum() + (v_last * grad_v_last).sum()
    loss = loss + (v_seq * grad_v_seq).sum()
    leaves = [x_seq, v_init] + ([w] if w is not None else [])
    grads = torch.autograd.grad(loss, leaves)

    r_tau = torch.sigmoid(w.detach()).item() if config.kind == "plif" else 1.0 / config.tau
    expected = explicit_forward_backward(
        config,
        x_seq.detach(),
        v_init.detach(),
        r_tau,
        surrogate_gradient,
        grad_spike,
        grad_v_last,
        grad_v_seq,
        primitive=primitive,
    )
    if primitive is None:  # the case fires some neurons, not all
        assert 0 < expected.spike_seq.sum() < expected.spike_seq.numel()
        assert torch.equal(spike_seq.detach(), expected.spike_seq)
    else:
        torch.testing.assert_close(spike_seq.detach(), expected.spike_seq, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v_seq.detach(), expected.v_seq, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], expected.grad_x_seq, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1], expected.grad_v_init, rtol=1e-10, atol=1e-12)
    if config.kind == "plif":
        # d/dw = d/d(1/tau) * sigmoid'(w); one scalar summed over all neurons and steps.
        expected_grad_w = expected.grad_r_tau * r_tau * (1 - r_tau)
        torch.testing.assert_close(grads[2], expected_grad_w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("surrogate_name", ALL_SURROGATES)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_spiking_gradients_match_explicit_recurrence(
    config: NeuronConfig, surrogate_name: str, step_mode: str
) -> None:
    # Random incoming gradients on the spikes, on the final V and on every V[t] (in mode
    # 'm' through v_seq, store_v_seq=True; in mode 's' through the per-step v).
    sg = SURROGATE_FACTORIES[surrogate_name](True)
    _check_against_recurrence(config, sg, step_mode, None, sg.gradient)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_spiking_gradients_without_v_seq_output(config: NeuronConfig) -> None:
    # store_v_seq=False: only spikes and the final V carry gradient (g starts at grad_v_last).
    sg = SURROGATE_FACTORIES["ATan"](True)
    node = config.make(sg, "m").double()
    x_seq, v_init = _inputs(config, seed=3, steps=4, neurons=3)
    x_seq.requires_grad_(True)
    v_init.requires_grad_(True)
    w = _w(config, node)
    spike_seq, v_last, v_seq = run_node(node, x_seq, v_init, w)
    assert v_seq is None
    generator = torch.Generator().manual_seed(4)
    grad_spike = torch.randn(4, 3, generator=generator, dtype=F64)
    grad_v_last = torch.randn(3, generator=generator, dtype=F64)
    leaves = [x_seq, v_init] + ([w] if w is not None else [])
    grads = torch.autograd.grad(
        (spike_seq * grad_spike).sum() + (v_last * grad_v_last).sum(), leaves
    )
    r_tau = torch.sigmoid(w.detach()).item() if w is not None else 1.0 / config.tau
    expected = explicit_forward_backward(
        config, x_seq.detach(), v_init.detach(), r_tau, sg.gradient, grad_spike, grad_v_last, None
    )
    torch.testing.assert_close(grads[0], expected.grad_x_seq, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1], expected.grad_v_init, rtol=1e-10, atol=1e-12)
    if w is not None:
        torch.testing.assert_close(
            grads[2], expected.grad_r_tau * r_tau * (1 - r_tau), rtol=1e-10, atol=1e-12
        )


def test_detach_reset_changes_gradients() -> None:
    # Guard against a recurrence (or node) that ignores detach_reset: the two differ.
    results = []
    for detach_reset in (False, True):
        config = NeuronConfig("lif", -0.25, detach_reset, True, 3.0)
        node = config.make(SURROGATE_FACTORIES["Sigmoid"](True), "m").double()
        x_seq, v_init = _inputs(config, seed=5, steps=5, neurons=4)
        x_seq.requires_grad_(True)
        spike_seq, v_last, _ = run_node(node, x_seq, v_init)
        (grad,) = torch.autograd.grad(spike_seq.sum() + v_last.sum(), x_seq)
        results.append(grad)
    assert not torch.allclose(results[0], results[1])


# -- step modes agree, and the reference loops equal the nodes ---------------------------------


def _grads_of_node(config, step_mode, x_seq, v_init, grad_spike, grad_v_last):
    node = config.make(SURROGATE_FACTORIES["ATan"](True), step_mode).double()
    x_seq = x_seq.clone().requires_grad_(True)
    v_init = v_init.clone().requires_grad_(True)
    spike_seq, v_last, _ = run_node(node, x_seq, v_init)
    loss = (spike_seq * grad_spike).sum() + (v_last * grad_v_last).sum()
    leaves = [x_seq, v_init] + ([node.w] if config.kind == "plif" else [])
    return spike_seq.detach(), v_last.detach(), torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_step_modes_agree_on_gradients(config: NeuronConfig) -> None:
    x_seq, v_init = _inputs(config, seed=6, steps=5, neurons=3)
    generator = torch.Generator().manual_seed(7)
    grad_spike = torch.randn(5, 3, generator=generator, dtype=F64)
    grad_v_last = torch.randn(3, generator=generator, dtype=F64)
    single = _grads_of_node(config, "s", x_seq, v_init, grad_spike, grad_v_last)
    multi = _grads_of_node(config, "m", x_seq, v_init, grad_spike, grad_v_last)
    assert torch.equal(single[0], multi[0])
    torch.testing.assert_close(single[1], multi[1], rtol=1e-14, atol=1e-14)
    for grad_s, grad_m in zip(single[2], multi[2], strict=True):
        torch.testing.assert_close(grad_s, grad_m, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("store_v_seq", [False, True], ids=["no-v_seq", "v_seq"])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_reference_loops_equal_the_nodes(config: NeuronConfig, store_v_seq: bool) -> None:
    sg = SURROGATE_FACTORIES["Erf"](True)
    node = config.make(sg, "m", store_v_seq=store_v_seq).double()
    x_seq, v_init = _inputs(config, seed=8, steps=4, neurons=3)
    generator = torch.Generator().manual_seed(9)
    grad_spike = torch.randn(4, 3, generator=generator, dtype=F64)
    grad_v = torch.randn(4, 3, generator=generator, dtype=F64)

    def loss_of(spike_seq, v_last, v_seq):
        loss = (spike_seq * grad_spike).sum() + (v_last * grad_v[-1]).sum()
        return loss + ((v_seq * grad_v).sum() if v_seq is not None else 0.0)

    # The node.
    x_node = x_seq.clone().requires_grad_(True)
    v_node = v_init.clone().requires_grad_(True)
    node_out = run_node(node, x_node, v_node)
    node_leaves = [x_node, v_node] + ([node.w] if config.kind == "plif" else [])
    node_grads = torch.autograd.grad(loss_of(*node_out), node_leaves)

    # The functional loop with the same configuration.
    x_ref = x_seq.clone().requires_grad_(True)
    v_ref = v_init.clone().requires_grad_(True)
    common = dict(
        v_threshold=config.v_threshold,
        v_reset=config.v_reset,
        detach_reset=config.detach_reset,
        surrogate_function=sg,
        store_v_seq=store_v_seq,
    )
    ref_leaves = [x_ref, v_ref]
    if config.kind == "if":
        ref_out = reference.multistep_if(x_ref, v_ref, **common)
    elif config.kind == "lif":
        ref_out = reference.multistep_lif(
            x_ref, v_ref, tau=config.tau, decay_input=config.decay_input, **common
        )
    else:
        w = node.w.detach().clone().requires_grad_(True)
        ref_leaves.append(w)
        ref_out = reference.multistep_plif(
            x_ref, v_ref, torch.sigmoid(w).reshape(1), decay_input=config.decay_input, **common
        )
    ref_grads = torch.autograd.grad(loss_of(*ref_out), ref_leaves)

    assert torch.equal(node_out[0].detach(), ref_out[0].detach())
    torch.testing.assert_close(node_out[1], ref_out[1], rtol=1e-14, atol=1e-14)
    if store_v_seq:
        torch.testing.assert_close(node_out[2], ref_out[2], rtol=1e-14, atol=1e-14)
    else:
        assert ref_out[2] is None and node_out[2] is None
    for grad_node, grad_ref in zip(node_grads, ref_grads, strict=True):
        torch.testing.assert_close(grad_node, grad_ref, rtol=1e-12, atol=1e-14)
