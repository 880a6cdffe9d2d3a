"""Our neurons against the reference system's (SpikingJelly 2.0.0, its torch path): the
same spikes, potentials and gradients for every node, Simple nodes included, in both
step modes, over reset modes, ``detach_reset`` and infinite inputs.

Skipped when SpikingJelly is not installed (the ``tests`` nox session installs it).
Differences chosen on purpose are documented and handled here: Izhikevich with hard
reset *and* ``detach_reset`` is left out (our reset detaches the spike in both terms of
the blend); ``SimpleLIFNode`` with soft reset is compared with the reference's
``LIFNode`` (the reference's ``SimpleLIFNode`` raises a ``TypeError`` on
``v_reset=None``: its charge subtracts ``v_reset``); ``NonSpiking*Node(decode=None)``
returns the stacked ``[T, ...]`` tensor where the reference returns a list of steps.
"""

from __future__ import annotations

import math

import pytest
import torch

from sj_core import neuron, surrogate

sj = pytest.importorskip(
    "spikingjelly.activation_based.neuron",
    reason="SpikingJelly is not installed: pip install --no-deps spikingjelly==2.0.0 loguru",
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
sj_functional = pytest.importorskip("spikingjelly.activation_based.functional")

SURROGATES = {
    "Sigmoid": (lambda: surrogate.Sigmoid(alpha=4.0), lambda: sj_surrogate.Sigmoid(alpha=4.0)),
    "ATan": (lambda: surrogate.ATan(alpha=2.0), lambda: sj_surrogate.ATan(alpha=2.0)),
}


def _pair(name: str, kwargs: dict, sg: str):
    ours_sg, theirs_sg = SURROGATES[sg]
    ours = getattr(neuron, name)(surrogate_function=ours_sg(), **kwargs)
    if name == "SimpleLIFNode" and kwargs.get("v_reset", 0.0) is None:
        # The reference's SimpleLIFNode cannot run a soft reset (see the module docstring).
        theirs_name = "LIFNode"
    else:
        theirs_name = name
    theirs = getattr(sj, theirs_name)(surrogate_function=theirs_sg(), **kwargs)
    if name == "ParametricLIFNode":
        with torch.no_grad():
            theirs.w.copy_(ours.w)
    return ours, theirs


NODES = [
    ("IFNode", {}),
    ("LIFNode", {"tau": 2.5}),
    ("LIFNode", {"tau": 2.5, "decay_input": False}),
    ("ParametricLIFNode", {"init_tau": 2.5}),
    ("ParametricLIFNode", {"init_tau": 2.5, "decay_input": False}),
    ("QIFNode", {}),
    ("EIFNode", {}),
    ("IzhikevichNode", {"a": 0.5, "b": 0.2}),
    ("SimpleIFNode", {}),
    ("SimpleLIFNode", {"tau": 2.5, "decay_input": True}),
    ("SimpleLIFNode", {"tau": 2.5, "decay_input": False}),
]
RESETS = [
    pytest.param({}, id="default-reset"),
    pytest.param({"v_reset": None}, id="soft"),
    pytest.param({"v_reset": -0.05}, id="hard-nonzero"),
]


def _x(T: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(T, 3, 7, generator=generator) * 0.8 + 0.7


def _run(node, x: torch.Tensor, step_mode: str):
    """Spikes, potentials and gradients (input, parameters) of one module."""
    node.step_mode = step_mode
    x = x.clone().requires_grad_()
    if step_mode == "m":
        spikes = node(x)
    else:
        spikes = torch.stack([node(x[t]) for t in range(x.shape[0])])
    weights = torch.linspace(-1.0, 1.0, spikes.numel()).reshape(spikes.shape)
    loss = (spikes * weights).sum() + (node.v * 0.5).sum()
    wrt = [x, *node.parameters()]
    # retain_graph: the next call starts from this call's (attached) potential.
    return spikes.detach(), node.v.detach(), torch.autograd.grad(loss, wrt, retain_graph=True)


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("detach_reset", [False, True], ids=["attached", "detach"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("sg", list(SURROGATES))
@pytest.mark.parametrize(
    ("name", "kwargs"), NODES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(NODES)]
)
def test_every_node_matches_the_reference_system(name, kwargs, sg, reset, detach_reset, step_mode):
    kwargs = {**kwargs, **reset, "detach_reset": detach_reset}
    if name in ("QIFNode", "EIFNode") and kwargs.get("v_reset", -0.1) is not None:
        kwargs["v_reset"] = min(kwargs.get("v_reset", -0.1), -0.05)  # hard reset below rest
    if name == "IzhikevichNode" and detach_reset and kwargs.get("v_reset", 0.0) not in (None, 0.0):
        pytest.skip("a documented difference: the detached spike in both terms of the reset")
    ours, theirs = _pair(name, kwargs, sg)
    x = _x(6, seed=len(name) + 7 * detach_reset)
    for _ in range(2):  # two calls: the state carries over
        got, want = _run(ours, x, step_mode), _run(theirs, x, step_mode)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0, msg="spikes")
        torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6, msg="v")
        for g_ours, g_theirs in zip(got[2], want[2], strict=True):
            torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6, msg="gradient")
    sj_functional.reset_net(theirs)
    ours.reset()


@pytest.mark.parametrize("name", ["IFNode", "LIFNode", "SimpleLIFNode", "IzhikevichNode"])
def test_infinite_inputs_match_the_reference_system(name):
    kwargs = dict(NODES[[n for n, _ in NODES].index(name)][1])
    ours, theirs = _pair(name, kwargs, "Sigmoid")
    x = _x(5, seed=3)
    x[1, 0, 0] = math.inf
    x[2, 1, 1] = -math.inf
    got = _run(ours, x, "m")
    want = _run(theirs, x, "m")
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("decode", [None, "max-mem", "max-abs-mem", "mean-mem", "last-mem"])
@pytest.mark.parametrize("name", ["NonSpikingIFNode", "NonSpikingLIFNode"])
def test_non_spiking_nodes_match_the_reference_system(name, decode):
    theirs_decode = "last_mem" if decode == "last-mem" else decode
    ours = getattr(neuron, name)(decode=decode)
    theirs = getattr(sj, name)(decode=theirs_decode)
    x = _x(6, seed=5)
    want = theirs(x)
    if decode is None:  # the reference returns a list of the steps' potentials
        assert isinstance(want, list) and len(want) == x.shape[0]
        want = torch.stack(want)
    torch.testing.assert_close(ours(x), want, rtol=1e-6, atol=1e-6)
