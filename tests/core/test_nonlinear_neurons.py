"""QIF, EIF and Izhikevich neurons and their reference loops (SPEC sections 2, 3 and 5).

Independent references used here:

* plain-Python-float loops (one neuron at a time, ``math.exp``) and a few numbers worked
  out by hand, for the forward values;
* ``torch.autograd.gradcheck`` in fp64 with a non-spiking surrogate, for the autograd
  graph of the nodes and the reference loops;
* an explicit reverse-time gradient recurrence (``_recurrence_grads``, derived below),
  compared with autograd of the reference loops, in spiking and non-spiking mode and
  with ``detach_reset``. Kernel backends (CuPy) implement the same recurrence.
"""

from __future__ import annotations

import math

import pytest
import torch

from sj_core import backends, reference
from sj_core.backends import registry
from sj_core.neuron.eif import EIFNode
from sj_core.neuron.izhikevich import IzhikevichNode
from sj_core.neuron.qif import QIFNode
from sj_core.surrogate import Sigmoid

NEURONS = ("qif", "eif", "izhikevich")
RESETS = {"hard": "hard", "soft": None}

# Non-default parameters (no 1s or 2s to hide a swapped factor) so that every term of
# every equation matters.
PARAMS = {
    "qif": dict(tau=2.5, v_c=0.7, a0=1.2, v_rest=0.05),
    "eif": dict(tau=2.5, delta_T=0.8, theta_rh=0.7, v_rest=0.05),
    "izhikevich": dict(tau=2.5, v_c=0.7, a0=1.2, v_rest=-0.1, a=0.5, b=0.3, tau_w=3.0),
}
# The reference system's defaults (Izhikevich with a, b switched on), for the hand-worked
# case.
DEFAULT_PARAMS = {
    "qif": dict(tau=2.0, v_c=0.8, a0=1.0, v_rest=0.0),
    "eif": dict(tau=2.0, delta_T=1.0, theta_rh=0.8, v_rest=0.0),
    "izhikevich": dict(tau=2.0, v_c=0.8, a0=1.0, v_rest=-0.1, a=0.5, b=0.2, tau_w=2.0),
}
# Default hard-reset potentials of each neuron.
HARD_V_RESET = {"qif": -0.1, "eif": -0.1, "izhikevich": 0.0}
NODES = {"qif": QIFNode, "eif": EIFNode, "izhikevich": IzhikevichNode}
LOOPS = {
    "qif": reference.multistep_qif,
    "eif": reference.multistep_eif,
    "izhikevich": reference.multistep_izhikevich,
}

# T = 3 steps, N = 2 neurons: with DEFAULT_PARAMS, neuron 0 fires at steps 0 and 2 (so
# step 1 starts from a reset), neuron 1 only at step 2 (every neuron type, both resets).
X_HAND = [[2.5, 0.3], [0.5, 0.3], [2.5, 3.0]]
SPIKES_HAND = [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
# The same story with PARAMS needs stronger inputs.
X_CUSTOM = [[3.5, 0.3], [0.5, 0.3], [3.0, 3.5]]


def v_reset_of(neuron: str, reset: str) -> float | None:
    return HARD_V_RESET[neuron] if reset == "hard" else None


def make_node(neuron: str, reset: str, params=None, **kwargs) -> torch.nn.Module:
    params = PARAMS[neuron] if params is None else params
    return NODES[neuron](v_reset=v_reset_of(neuron, reset), **params, **kwargs)


def run_loop(neuron, x_seq, v_init, w_init, v_reset, surrogate, detach_reset, store_v_seq):
    """The reference loop; returns ``(spike_seq, v_last, w_last | None, v_seq | None)``."""
    common = dict(
        v_threshold=1.0,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate,
        store_v_seq=store_v_seq,
        **PARAMS[neuron],
    )
    if neuron == "izhikevich":
        return LOOPS[neuron](x_seq, v_init, w_init, **common)
    spike_seq, v_last, v_seq = LOOPS[neuron](x_seq, v_init, **common)
    return spike_seq, v_last, None, v_seq


# -- plain-Python forward ---------------------------------------------------------------


def scalar_loop(neuron, p, xs: list[float], v_reset: float | None, v0: float, w0: float):
    """One neuron with parameters ``p``, Python floats: ``[(h, s, v, w), ...]`` per step."""
    v, w, out = v0, w0, []
    for x in xs:
        if neuron == "qif":
            h = v + (x + p["a0"] * (v - p["v_rest"]) * (v - p["v_c"])) / p["tau"]
        elif neuron == "eif":
            expo = p["delta_T"] * math.exp((v - p["theta_rh"]) / p["delta_T"])
            h = v + (x + p["v_rest"] - v + expo) / p["tau"]
        else:
            h = v + (x + p["a0"] * (v - p["v_rest"]) * (v - p["v_c"]) - w) / p["tau"]
            w = w + (p["a"] * (h - p["v_rest"]) - w) / p["tau_w"]
        s = 1.0 if h >= 1.0 else 0.0
        v = (v_reset if s else h) if v_reset is not None else h - s * 1.0
        if neuron == "izhikevich":
            w = w + p["b"] * s
        out.append((h, s, v, w))
    return out


@pytest.mark.parametrize("params", ["default", "custom"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_hand_computed_small_case(neuron, reset, params):
    p = DEFAULT_PARAMS[neuron] if params == "default" else PARAMS[neuron]
    xs = X_HAND if params == "default" else X_CUSTOM
    v_reset = v_reset_of(neuron, reset)
    v0 = 0.0 if v_reset is None else v_reset
    x_seq = torch.tensor(xs, dtype=torch.float64)
    node = make_node(neuron, reset, p, step_mode="m", store_v_seq=True)
    spikes = node(x_seq)

    if params == "default":
        assert spikes.tolist() == SPIKES_HAND
    assert spikes[0, 0] == 1.0  # a reset happens, and later steps start from it
    for n in range(2):
        steps = scalar_loop(neuron, p, [row[n] for row in xs], v_reset, v0, 0.0)
        assert [s for _, s, _, _ in steps] == spikes[:, n].tolist()
        assert node.v_seq[:, n].tolist() == pytest.approx([v for _, _, v, _ in steps], abs=1e-12)
        if neuron == "izhikevich":
            assert node.w[n].item() == pytest.approx(steps[-1][3], abs=1e-12)


def test_hand_computed_numbers():
    # Worked by hand from the charge equations (neuron 0 of X_HAND, after its first spike).
    x_seq = torch.tensor(X_HAND)
    qif = QIFNode(step_mode="m", store_v_seq=True)
    qif(x_seq)
    # hard reset to -0.1, then H = -0.1 + (0.5 + (-0.1)(-0.9)) / 2 = 0.195
    assert qif.v_seq[1, 0].item() == pytest.approx(0.195)
    qif_soft = QIFNode(v_reset=None, step_mode="m", store_v_seq=True)
    qif_soft(x_seq)
    # H = 2.5 / 2 = 1.25 -> 0.25; then 0.25 + (0.5 + 0.25 (0.25 - 0.8)) / 2 = 0.43125
    assert qif_soft.v_seq[:2, 0].tolist() == pytest.approx([0.25, 0.43125])
    eif = EIFNode(step_mode="m", store_v_seq=True)
    eif(x_seq)
    # -0.1 + (0.5 + 0 + 0.1 + exp(-0.9)) / 2
    assert eif.v_seq[1, 0].item() == pytest.approx(-0.1 + (0.6 + math.exp(-0.9)) / 2)
    izh = IzhikevichNode(a=0.5, b=0.2, step_mode="s")
    izh(x_seq[0])
    # H = (2.5 + (0 + 0.1)(0 - 0.8) - 0) / 2 = 1.21 fires; W' = 0.5 (1.21 + 0.1) / 2 = 0.3275;
    # W = 0.3275 + 0.2
    assert izh.v[0].item() == 0.0
    assert izh.w[0].item() == pytest.approx(0.5275)


# -- explicit gradient recurrence ----------------------------------------------------------
#
# Forward, per step t (S the spike, or the primitive when spiking=False):
#   H[t] = f(X[t], V[t-1], W[t-1])
#   W'[t] = W[t-1] + (a (H[t] - v_rest) - W[t-1]) / tau_w            (Izhikevich only)
#   S[t] = surrogate(H[t] - V_th)
#   V[t] = S_d V_r + (1 - S_d) H[t]   (hard)   |   H[t] - S_d V_th   (soft)
#   W[t] = W'[t] + b S[t]                                              (Izhikevich only)
#
# Reverse time with accumulators gv = dL/dV[t] and gw = dL/dW[t] (gv starts at
# grad_v_last, plus grad_v_seq[t] for each step when v_seq is an output; gw at grad_w_last).
# With sg = surrogate'(H[t] - V_th):
#   dL/dS[t] = grad_S[t] + gv dV/dS (not when detach_reset) + b gw
#       dV/dS = V_r - H[t] (hard) | -V_th (soft)
#   grad_H = dL/dS[t] sg + gv dV/dH|_S + gw a / tau_w
#       dV/dH|_S = 1 - S[t] (hard) | 1 (soft)
#   grad_X[t] = grad_H / tau                          (all three neurons)
#   gv <- grad_H dH/dV(V[t-1])  (+ grad_v_seq[t-1])
#       QIF, Izhikevich: dH/dV = 1 + a0 (2 V - v_rest - v_c) / tau
#       EIF:             dH/dV = 1 + (exp((V - theta_rh) / delta_T) - 1) / tau
#   gw <- -grad_H / tau + gw (1 - 1 / tau_w)            (dH/dW = -1/tau, dW'/dW = 1 - 1/tau_w)
# and grad_v_init = gv, grad_w_init = gw at the end. For hard/soft reset this is SPEC 5's
# recurrence with the neuron's own dH/dV. The backward needs V[t-1], which a kernel gets
# from the saved H[t-1] and S[t-1] by re-applying the reset (V[-1] = v_init); W values
# are not needed because W enters H and W' linearly.


def _recurrence_grads(neuron, x_seq, v_init, w_init, v_reset, surrogate, detach_reset, grads):
    grad_spike, grad_v_last, grad_w_last, grad_v_seq = grads
    p = PARAMS[neuron]
    tau, v_th = p["tau"], 1.0
    v_r = 0.0 if v_reset is None else v_reset
    # forward, no autograd: record H and S
    hs, ss = [], []
    v, w = v_init.clone(), None if w_init is None else w_init.clone()
    for t in range(x_seq.shape[0]):
        x = x_seq[t]
        if neuron == "qif":
            h = v + (x + p["a0"] * (v - p["v_rest"]) * (v - p["v_c"])) / tau
        elif neuron == "eif":
            expo = p["delta_T"] * torch.exp((v - p["theta_rh"]) / p["delta_T"])
            h = v + (x + p["v_rest"] - v + expo) / tau
        else:
            h = v + (x + p["a0"] * (v - p["v_rest"]) * (v - p["v_c"]) - w) / tau
            w = w + (p["a"] * (h - p["v_rest"]) - w) / p["tau_w"]
        if surrogate.spiking:
            s = (h >= v_th).to(h)
        else:
            s = surrogate.primitive_function(h - v_th, surrogate.alpha)
        v = s * v_r + (1 - s) * h if v_reset is not None else h - s * v_th
        if neuron == "izhikevich":
            w = w + p["b"] * s
        hs.append(h)
        ss.append(s)

    def v_before(t):  # V[t-1], recovered from H[t-1] and S[t-1]
        if t == 0:
            return v_init
        h, s = hs[t - 1], ss[t - 1]
        return s * v_r + (1 - s) * h if v_reset is not None else h - s * v_th

    grad_x = torch.zeros_like(x_seq)
    gv = grad_v_last.clone()
    if grad_v_seq is not None:
        gv = gv + grad_v_seq[-1]
    gw = grad_w_last.clone() if grad_w_last is not None else None
    for t in reversed(range(x_seq.shape[0])):
        h, s = hs[t], ss[t]
        sg = surrogate.surrogate_gradient(h - v_th, surrogate.alpha)
        if v_reset is not None:
            dv_ds, dv_dh = v_r - h, 1 - s
        else:
            dv_ds, dv_dh = torch.full_like(h, -v_th), torch.ones_like(h)
        grad_s = grad_spike[t] + (0 if detach_reset else gv * dv_ds)
        if gw is not None:
            grad_s = grad_s + p["b"] * gw
        grad_h = grad_s * sg + gv * dv_dh
        if gw is not None:
            grad_h = grad_h + gw * p["a"] / p["tau_w"]
        grad_x[t] = grad_h / tau
        vp = v_before(t)
        if neuron == "eif":
            dh_dv = 1 + (torch.exp((vp - p["theta_rh"]) / p["delta_T"]) - 1) / tau
        else:
            dh_dv = 1 + p["a0"] * (2 * vp - p["v_rest"] - p["v_c"]) / tau
        gv = grad_h * dh_dv
        if grad_v_seq is not None and t >= 1:
            gv = gv + grad_v_seq[t - 1]
        if gw is not None:
            gw = -grad_h / tau + gw * (1 - 1 / p["tau_w"])
    return grad_x, gv, gw


@pytest.mark.parametrize("store_v_seq", [False, True], ids=["no_v_seq", "v_seq"])
@pytest.mark.parametrize("spiking", [True, False], ids=["spiking", "primitive"])
@pytest.mark.parametrize("detach_reset", [False, True], ids=["attached", "detach_reset"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_reference_gradient_matches_recurrence(neuron, reset, detach_reset, spiking, store_v_seq):
    torch.manual_seed(0)
    T, N = 6, 16
    v_reset = v_reset_of(neuron, reset)
    x_seq = (torch.randn(T, N, dtype=torch.float64) * 0.8 + 0.6).requires_grad_()
    v_init = (torch.rand(N, dtype=torch.float64) * 0.5).requires_grad_()
    w_init = (torch.rand(N, dtype=torch.float64) * 0.2).requires_grad_()
    surrogate = Sigmoid(alpha=4.0, spiking=spiking)
    is_izh = neuron == "izhikevich"
    spike_seq, v_last, w_last, v_seq = run_loop(
        neuron, x_seq, v_init, w_init if is_izh else None, v_reset, surrogate, detach_reset,
        store_v_seq,
    )  # fmt: skip
    if spiking:
        assert 0 < spike_seq.sum() < spike_seq.numel()  # both branches of the reset occur
    grads = (
        torch.randn_like(spike_seq),
        torch.randn_like(v_last),
        torch.randn_like(v_last) if is_izh else None,
        torch.randn_like(spike_seq) if store_v_seq else None,
    )
    outputs = [o for o in (spike_seq, v_last, w_last, v_seq) if o is not None]
    upstream = [g for g in grads if g is not None]
    inputs = (x_seq, v_init, w_init) if is_izh else (x_seq, v_init)
    autograd = torch.autograd.grad(outputs, inputs, upstream)

    expected = _recurrence_grads(
        neuron, x_seq.detach(), v_init.detach(), w_init.detach() if is_izh else None,
        v_reset, surrogate, detach_reset, grads,
    )  # fmt: skip
    for got, want in zip(autograd, expected, strict=False):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# -- gradcheck ----------------------------------------------------------------------------
# Without detach_reset: a non-spiking surrogate makes the whole forward smooth, and every
# output is checked. With detach_reset, autograd's gradient differs on purpose from the
# derivative of a smooth forward; but with Heaviside spikes the detached S is piecewise
# constant, so the potentials (and w, with b = 0 so that no spike feeds into it) have
# exactly autograd's derivative away from the threshold: gradcheck those outputs.


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_node_gradcheck(neuron, reset, step_mode):
    torch.manual_seed(1)
    node = make_node(
        neuron, reset, surrogate_function=Sigmoid(alpha=4.0, spiking=False), step_mode=step_mode
    )
    x_seq = (torch.randn(4, 3, dtype=torch.float64) * 0.8 + 0.5).requires_grad_()

    def run(x_seq):
        node.reset()
        if step_mode == "m":
            out = node(x_seq)
        else:
            out = torch.stack([node(x) for x in x_seq])
        states = (node.v, node.w) if neuron == "izhikevich" else (node.v,)
        return (out, *states)

    assert torch.autograd.gradcheck(run, (x_seq,))


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_node_gradcheck_detach_reset(neuron, reset, step_mode):
    torch.manual_seed(5)
    params = dict(PARAMS[neuron], b=0.0) if neuron == "izhikevich" else PARAMS[neuron]
    node = make_node(neuron, reset, params, detach_reset=True, step_mode=step_mode)
    x_seq = (torch.randn(5, 4, dtype=torch.float64) * 0.8 + 0.6).requires_grad_()

    def run(x_seq):
        node.reset()
        if step_mode == "m":
            spikes = node(x_seq)
        else:
            spikes = torch.stack([node(x) for x in x_seq])
        run.spikes = spikes
        return (node.v, node.w) if neuron == "izhikevich" else node.v

    assert torch.autograd.gradcheck(run, (x_seq,))
    assert 0 < run.spikes.sum() < run.spikes.numel()  # resets happened


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_reference_loop_gradcheck(neuron, reset):
    torch.manual_seed(2)
    x_seq = (torch.randn(4, 3, dtype=torch.float64) * 0.8 + 0.5).requires_grad_()
    v_init = (torch.rand(3, dtype=torch.float64) * 0.5).requires_grad_()
    w_init = (torch.rand(3, dtype=torch.float64) * 0.2).requires_grad_()
    surrogate = Sigmoid(alpha=4.0, spiking=False)
    v_reset = v_reset_of(neuron, reset)

    def run(x_seq, v_init, w_init):
        out = run_loop(neuron, x_seq, v_init, w_init, v_reset, surrogate, False, True)
        return tuple(o for o in out if o is not None)

    if neuron == "izhikevich":
        assert torch.autograd.gradcheck(run, (x_seq, v_init, w_init))
    else:
        assert torch.autograd.gradcheck(lambda x, v: run(x, v, None), (x_seq, v_init))


# -- node == reference loop ---------------------------------------------------------------


@pytest.mark.parametrize("store_v_seq", [False, True], ids=["no_v_seq", "v_seq"])
@pytest.mark.parametrize("detach_reset", [False, True], ids=["attached", "detach_reset"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_node_matches_reference_loop(neuron, reset, step_mode, detach_reset, store_v_seq):
    torch.manual_seed(3)
    T, shape = 5, (2, 3)
    x_seq = torch.randn(T, *shape) * 0.8 + 0.6
    surrogate = Sigmoid()
    node = make_node(
        neuron, reset, surrogate_function=surrogate, detach_reset=detach_reset,
        step_mode=step_mode, store_v_seq=store_v_seq,
    )  # fmt: skip
    x_node = x_seq.clone().requires_grad_()
    if step_mode == "m":
        spikes = node(x_node)
    else:
        spikes = torch.stack([node(x) for x in x_node])
    is_izh = neuron == "izhikevich"

    v_reset = v_reset_of(neuron, reset)
    v0 = torch.full(shape, 0.0 if v_reset is None else v_reset)
    x_ref = x_seq.clone().requires_grad_()
    ref = run_loop(
        neuron, x_ref, v0, torch.zeros(shape) if is_izh else None, v_reset, surrogate,
        detach_reset, store_v_seq,
    )  # fmt: skip
    exact = dict(rtol=0.0, atol=0.0)  # the same equations in the same order
    torch.testing.assert_close(spikes, ref[0], **exact)
    torch.testing.assert_close(node.v, ref[1], **exact)
    if is_izh:
        torch.testing.assert_close(node.w, ref[2], **exact)
    if store_v_seq and step_mode == "m":
        torch.testing.assert_close(node.v_seq, ref[3], **exact)
    assert 0 < spikes.sum() < spikes.numel()

    weights = torch.randn(T, *shape)
    outputs_node = (spikes * weights).sum() + node.v.sum() + (node.w.sum() if is_izh else 0)
    outputs_ref = (ref[0] * weights).sum() + ref[1].sum() + (ref[2].sum() if is_izh else 0)
    (grad_node,) = torch.autograd.grad(outputs_node, x_node)
    (grad_ref,) = torch.autograd.grad(outputs_ref, x_ref)
    if step_mode == "s":
        torch.testing.assert_close(grad_node, grad_ref, **exact)
    else:
        # Multi-step on the torch backend is the fused loop (sj_core.fused): the same
        # derivatives, multiplied in another order, so equal up to fp32 rounding.
        scale = grad_ref.abs().max().item()
        torch.testing.assert_close(grad_node, grad_ref, rtol=1e-6, atol=1e-6 * scale)


@pytest.fixture
def loops_backend(monkeypatch):
    """A fake plugin backend ``'loops'`` whose operators are the reference loops.

    It sends a node through BaseNode's kernel path (operator keys, ``kernel_kwargs()``,
    ``kernel_states``) exactly as a CuPy backend would, without CUDA.
    """
    spec = backends.BackendSpec(
        name="loops",
        distribution="sj-core-tests",
        operators={f"{n}.multi_step": f"sj_core.reference:multistep_{n}" for n in NEURONS},
        devices=("cpu",),
    )

    class EntryPoint:
        name = "loops"
        value = "tests.core:loops"

        def load(self):
            return spec

    monkeypatch.setattr(registry, "_entry_points", lambda: [EntryPoint()])
    backends.refresh()
    yield "loops"
    monkeypatch.undo()
    backends.refresh()


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_kernel_operator_path_matches_hooks(neuron, reset, loops_backend):
    torch.manual_seed(4)
    x_seq = torch.randn(5, 4) * 0.8 + 0.6
    hooks = make_node(neuron, reset, step_mode="m", store_v_seq=True)
    kernel = make_node(neuron, reset, step_mode="m", store_v_seq=True, backend=loops_backend)
    assert loops_backend in kernel.supported_backends
    spikes_hooks = hooks(x_seq)
    spikes_kernel = kernel(x_seq)
    assert kernel.last_backend == loops_backend
    torch.testing.assert_close(spikes_kernel, spikes_hooks, rtol=0, atol=0)
    for name in ("v", "v_seq", *(("w",) if neuron == "izhikevich" else ())):
        torch.testing.assert_close(getattr(kernel, name), getattr(hooks, name), rtol=0, atol=0)


# -- state handling -------------------------------------------------------------------------


@pytest.mark.parametrize("neuron", NEURONS)
def test_batch_size_change_reinitialises_state(neuron):
    node = make_node(neuron, "hard", step_mode="s")
    node(torch.rand(3, 2))
    x = torch.rand(5, 2) + 0.5
    out = node(x)
    fresh = make_node(neuron, "hard", step_mode="s")
    torch.testing.assert_close(out, fresh(x))
    torch.testing.assert_close(node.v, fresh.v)
    if neuron == "izhikevich":
        assert node.w.shape == (5, 2)
        torch.testing.assert_close(node.w, fresh.w)


def test_izhikevich_memories_and_reset():
    node = IzhikevichNode(w_rest=0.3, a=0.5, b=0.2, step_mode="m")
    assert (node.v, node.w) == (0.0, 0.3)
    assert IzhikevichNode(v_reset=None).v == 0.0
    names = dict(node.named_memories())
    assert set(names) >= {"v", "w"}
    node(torch.rand(3, 4))
    assert node.w.shape == (4,)
    node.reset()
    assert (node.v, node.w) == (0.0, 0.3)
    node(torch.empty(0, 4))  # T == 0 still materialises both states
    assert node.w.shape == (4,) and torch.all(node.w == 0.3)


@pytest.mark.parametrize("neuron", NEURONS)
def test_reference_loop_empty_sequence(neuron):
    x_seq = torch.empty(0, 3)
    v_init, w_init = torch.rand(3), torch.rand(3)
    out = run_loop(
        neuron, x_seq, v_init, w_init if neuron == "izhikevich" else None, 0.0, Sigmoid(),
        False, True,
    )  # fmt: skip
    assert out[0].shape == (0, 3) and out[3].shape == (0, 3)
    assert out[1] is v_init
    if neuron == "izhikevich":
        assert out[2] is w_init


def test_reference_loop_rejects_mismatched_state():
    with pytest.raises(ValueError, match="does not match"):
        reference.multistep_izhikevich(
            torch.rand(2, 3), torch.rand(3), torch.rand(4), tau=2.0, v_c=0.8, a0=1.0,
            v_rest=0.0, a=0.0, b=0.0, tau_w=2.0, v_threshold=1.0, v_reset=0.0,
            detach_reset=False, surrogate_function=Sigmoid(),
        )  # fmt: skip


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (QIFNode, dict(tau=1.0), ValueError, "tau must be > 1"),
        (QIFNode, dict(tau="2"), TypeError, "tau must be a float"),
        (QIFNode, dict(a0=0.0), ValueError, "a0 must be > 0"),
        (QIFNode, dict(v_threshold=-0.2), ValueError, "v_threshold must be > v_reset"),
        (QIFNode, dict(v_rest=-0.2), ValueError, "v_rest must be >= v_reset"),
        (QIFNode, dict(v_c=None), TypeError, "v_c must be a float"),
        (EIFNode, dict(tau=0.5), ValueError, "tau must be > 1"),
        (EIFNode, dict(delta_T=0.0), ValueError, "delta_T must be > 0"),
        (EIFNode, dict(v_rest=-0.2), ValueError, "v_rest must be >= v_reset"),
        (EIFNode, dict(theta_rh="x"), TypeError, "theta_rh must be a float"),
        (IzhikevichNode, dict(tau=1.0), ValueError, "tau must be > 1"),
        (IzhikevichNode, dict(a0=-1.0), ValueError, "a0 must be > 0"),
        (IzhikevichNode, dict(tau_w=0.0), ValueError, "tau_w must be > 0"),
        (IzhikevichNode, dict(a="0"), TypeError, "a must be a float"),
        (IzhikevichNode, dict(w_rest=None), TypeError, "w_rest must be a float"),
        (IzhikevichNode, dict(detach_reset=1), TypeError, "detach_reset must be a bool"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_validation(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_soft_reset_skips_reset_order_checks():
    QIFNode(v_reset=None, v_rest=-5.0)
    EIFNode(v_reset=None, v_rest=-5.0)
    IzhikevichNode()  # v_rest (-0.1) < v_reset (0) is the reference system's default


def test_extra_repr_and_kernel_kwargs():
    node = IzhikevichNode(a=0.5, b=0.2, tau_w=3.0)
    text = repr(node)
    for part in ("tau=2.0", "v_c=0.8", "a0=1.0", "v_rest=-0.1", "w_rest=0.0", "tau_w=3.0"):
        assert part in text
    assert node.kernel_kwargs().keys() == {
        "v_threshold", "v_reset", "detach_reset", "surrogate_function",
        "tau", "v_c", "a0", "v_rest", "a", "b", "tau_w",
    }  # fmt: skip
    assert "delta_T=1.0" in repr(EIFNode()) and "theta_rh=0.8" in repr(EIFNode())
    assert "v_c=0.8" in repr(QIFNode())
    assert QIFNode().operator_key("m") == "qif.multi_step"
    assert EIFNode().operator_key("m") == "eif.multi_step"
    assert node.operator_key("m") == "izhikevich.multi_step"
    assert IzhikevichNode().kernel_states == ("v", "w")
