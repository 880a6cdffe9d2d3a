"""IF, LIF and PLIF neurons on the torch backend: forward values (SPEC sections 2 and 3).

Independent references: sequences worked out by hand from SPEC's equations (the
arithmetic is in the comments; every number is a binary fraction, so fp64 results are
exact except where PLIF's ``sigmoid(-ln 3)`` is involved), and the node's own other step
mode. Gradients are in ``test_neurons_gradients.py``, backends in
``test_neurons_backends.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from sj_core.neuron import BaseNode, IFNode, LIFNode, ParametricLIFNode
from sj_core.surrogate import ATan, Rect, Sigmoid

F64 = torch.float64


@dataclass(frozen=True)
class HandCase:
    """A node and a ``[T][N]`` input with its hand-computed spikes and post-reset ``V``."""

    id: str
    make: Callable[..., BaseNode]  # (**kwargs: detach_reset, step_mode, store_v_seq)
    x_seq: list[list[float]]
    spikes: list[list[float]]
    v_seq: list[list[float]]
    # False for PLIF: w = -ln 3 is created in the default dtype (fp32), so after .double()
    # 1/tau = sigmoid(w) is 0.25 only to about 1e-8.
    exact: bool = True


HAND_CASES = [
    # IF, hard reset to 0, V_th = 1: H = V + X.
    # n0: H .5 -> .5; H 1.0 (= V_th: spike) -> 0; H .25 -> .25
    # n1: H 1.0 (spike) -> 0; H .25 -> .25; H .75 -> .75
    # n2: H .25 -> .25; H 1.75 (spike) -> 0; H -.5 -> -.5
    HandCase(
        "IF-hard0",
        lambda **kw: IFNode(**kw),
        x_seq=[[0.5, 1.0, 0.25], [0.5, 0.25, 1.5], [0.25, 0.5, -0.5]],
        spikes=[[0, 1, 0], [1, 0, 1], [0, 0, 0]],
        v_seq=[[0.5, 0.0, 0.25], [0.0, 0.25, 0.0], [0.25, 0.75, -0.5]],
    ),
    # IF, hard reset to -0.5, V_th = 0.5; V starts at v_reset = -0.5.
    # n0: H .5 (= V_th: spike) -> -.5; H 0 -> 0; H .75 (spike) -> -.5
    # n1: H 0 -> 0; H 1.25 (spike) -> -.5; H -.25 -> -.25
    HandCase(
        "IF-hard-0.5-vth0.5",
        lambda **kw: IFNode(v_threshold=0.5, v_reset=-0.5, **kw),
        x_seq=[[1.0, 0.5], [0.5, 1.25], [0.75, 0.25]],
        spikes=[[1, 0], [0, 1], [1, 0]],
        v_seq=[[-0.5, 0.0], [0.0, -0.5], [-0.5, -0.25]],
    ),
    # IF, soft reset, V_th = 1: V = H - S.
    # n0: H .5 -> .5; H 1.0 (spike) -> 0; H .25 -> .25
    # n1: H 1.0 (spike) -> 0; H .25 -> .25; H .75 -> .75
    # n2: H .25 -> .25; H 1.75 (spike) -> .75; H 1.25 (spike) -> .25
    HandCase(
        "IF-soft",
        lambda **kw: IFNode(v_reset=None, **kw),
        x_seq=[[0.5, 1.0, 0.25], [0.5, 0.25, 1.5], [0.25, 0.5, 0.5]],
        spikes=[[0, 1, 0], [1, 0, 1], [0, 0, 1]],
        v_seq=[[0.5, 0.0, 0.25], [0.0, 0.25, 0.75], [0.25, 0.75, 0.25]],
    ),
    # IF, soft reset, V_th = 0.75: V = H - 0.75 S (subtracts V_th, not 1).
    # n0: H 1.0 (spike) -> .25; H .75 (= V_th: spike) -> 0; H .25 -> .25
    # n1: H .5 -> .5; H .75 (spike) -> 0; H .5 -> .5
    HandCase(
        "IF-soft-vth0.75",
        lambda **kw: IFNode(v_threshold=0.75, v_reset=None, **kw),
        x_seq=[[1.0, 0.5], [0.5, 0.25], [0.25, 0.5]],
        spikes=[[1, 0], [1, 1], [0, 0]],
        v_seq=[[0.25, 0.5], [0.0, 0.0], [0.25, 0.5]],
    ),
    # LIF tau=2, decay_input, hard reset to 0: H = V + (X - V)/2 = (V + X)/2.
    # n0: .5; (.5+1.5)/2 = 1.0 (spike) -> 0; (0+.5)/2 = .25
    # n1: 1.0 (spike) -> 0; .25; (.25+1)/2 = .625
    # n2: .25; (.25+1.5)/2 = .875; (.875+3)/2 = 1.9375 (spike) -> 0
    HandCase(
        "LIF-tau2-decay-hard0",
        lambda **kw: LIFNode(tau=2.0, decay_input=True, **kw),
        x_seq=[[1.0, 2.0, 0.5], [1.5, 0.5, 1.5], [0.5, 1.0, 3.0]],
        spikes=[[0, 1, 0], [1, 0, 0], [0, 0, 1]],
        v_seq=[[0.5, 0.0, 0.25], [0.0, 0.25, 0.875], [0.25, 0.625, 0.0]],
    ),
    # LIF tau=2, no decay_input, hard reset to 0: H = V - V/2 + X = V/2 + X.
    # n0: .5; .25+.75 = 1.0 (spike) -> 0; .5
    # n1: 1.0 (spike) -> 0; .25; .125+.5 = .625
    # n2: .25; .125+.5 = .625; .3125+1 = 1.3125 (spike) -> 0
    HandCase(
        "LIF-tau2-nodecay-hard0",
        lambda **kw: LIFNode(tau=2.0, decay_input=False, **kw),
        x_seq=[[0.5, 1.0, 0.25], [0.75, 0.25, 0.5], [0.5, 0.5, 1.0]],
        spikes=[[0, 1, 0], [1, 0, 0], [0, 0, 1]],
        v_seq=[[0.5, 0.0, 0.25], [0.0, 0.25, 0.625], [0.5, 0.625, 0.0]],
    ),
    # LIF tau=4, decay_input, hard reset to -0.5 (V starts at -0.5):
    # H = V + (X - (V + .5))/4.
    # n0: -.5 + 2.5/4 = .125; .125 + (4.5 - .625)/4 = 1.09375 (spike) -> -.5; -.5 + .5/4 = -.375
    # n1: -.5 + 4.5/4 = .625; .625 + (.5 - 1.125)/4 = .46875;
    #     .46875 + (6.5 - .96875)/4 = 1.8515625 (spike) -> -.5
    HandCase(
        "LIF-tau4-decay-hard-0.5",
        lambda **kw: LIFNode(tau=4.0, decay_input=True, v_reset=-0.5, **kw),
        x_seq=[[2.5, 4.5], [4.5, 0.5], [0.5, 6.5]],
        spikes=[[0, 0], [1, 0], [0, 1]],
        v_seq=[[0.125, 0.625], [-0.5, 0.46875], [-0.375, -0.5]],
    ),
    # LIF tau=4, no decay_input, hard reset to -0.5: H = V - (V + .5)/4 + X.
    # n0: -.5 + 1 = .5; .5 - 1/4 + .75 = 1.0 (spike) -> -.5; -.5 + .25 = -.25
    # n1: -.5 + .25 = -.25; -.25 - .25/4 + .25 = -.0625;
    #     -.0625 - .4375/4 + 1.5 = 1.328125 (spike) -> -.5
    HandCase(
        "LIF-tau4-nodecay-hard-0.5",
        lambda **kw: LIFNode(tau=4.0, decay_input=False, v_reset=-0.5, **kw),
        x_seq=[[1.0, 0.25], [0.75, 0.25], [0.25, 1.5]],
        spikes=[[0, 0], [1, 0], [0, 1]],
        v_seq=[[0.5, -0.25], [-0.5, -0.0625], [-0.25, -0.5]],
    ),
    # LIF tau=2, decay_input, soft reset (V_r = 0): H = (V + X)/2, V = H - S.
    # n0: 1.5 (spike) -> .5; (.5+1)/2 = .75; (.75+0)/2 = .375
    # n1: .5; (.5+2.5)/2 = 1.5 (spike) -> .5; (.5+1)/2 = .75
    HandCase(
        "LIF-tau2-decay-soft",
        lambda **kw: LIFNode(tau=2.0, decay_input=True, v_reset=None, **kw),
        x_seq=[[3.0, 1.0], [1.0, 2.5], [0.0, 1.0]],
        spikes=[[1, 0], [0, 1], [0, 0]],
        v_seq=[[0.5, 0.5], [0.75, 0.5], [0.375, 0.75]],
    ),
    # LIF tau=2, no decay_input, soft reset: H = V/2 + X, V = H - S.
    # n0: 1.5 (spike) -> .5; .25+.5 = .75; .375+.25 = .625
    # n1: .5; .25+.75 = 1.0 (spike) -> 0; 0+.25 = .25
    HandCase(
        "LIF-tau2-nodecay-soft",
        lambda **kw: LIFNode(tau=2.0, decay_input=False, v_reset=None, **kw),
        x_seq=[[1.5, 0.5], [0.5, 0.75], [0.25, 0.25]],
        spikes=[[1, 0], [0, 1], [0, 0]],
        v_seq=[[0.5, 0.5], [0.75, 0.0], [0.625, 0.25]],
    ),
    # PLIF init_tau=4: w = -ln 3, 1/tau = sigmoid(w) = 1/4 (1 - sigmoid(w) would give 3/4).
    # decay_input, hard reset to 0: H = V + (X - V)/4.
    # n0: .5; .5 + (3 - .5)/4 = 1.125 (spike) -> 0; .5/4 = .125
    # n1: 4.5/4 = 1.125 (spike) -> 0; .25; .25 + .75/4 = .4375
    HandCase(
        "PLIF-tau4-decay-hard0",
        lambda **kw: ParametricLIFNode(init_tau=4.0, decay_input=True, **kw),
        x_seq=[[2.0, 4.5], [3.0, 1.0], [0.5, 1.0]],
        spikes=[[0, 1], [1, 0], [0, 0]],
        v_seq=[[0.5, 0.0], [0.0, 0.25], [0.125, 0.4375]],
        exact=False,
    ),
    # PLIF init_tau=4, no decay_input, hard reset to 0: H = .75 V + X.
    # n0: .5; .375 + .75 = 1.125 (spike) -> 0; .5
    # n1: 1.25 (spike) -> 0; .5; .375 + .25 = .625
    HandCase(
        "PLIF-tau4-nodecay-hard0",
        lambda **kw: ParametricLIFNode(init_tau=4.0, decay_input=False, **kw),
        x_seq=[[0.5, 1.25], [0.75, 0.5], [0.5, 0.25]],
        spikes=[[0, 1], [1, 0], [0, 0]],
        v_seq=[[0.5, 0.0], [0.0, 0.5], [0.5, 0.625]],
        exact=False,
    ),
    # PLIF init_tau=4, no decay_input, hard reset to -1 (V starts at -1): H = V - (V+1)/4 + X.
    # n0: -1 + 1.5 = .5; .5 - 1.5/4 + 1 = 1.125 (spike) -> -1; -1 + .5 = -.5
    # n1: -1 + .5 = -.5; -.5 - .5/4 + .5 = -.125; -.125 - .875/4 + 2 = 1.65625 (spike) -> -1
    HandCase(
        "PLIF-tau4-nodecay-hard-1",
        lambda **kw: ParametricLIFNode(init_tau=4.0, decay_input=False, v_reset=-1.0, **kw),
        x_seq=[[1.5, 0.5], [1.0, 0.5], [0.5, 2.0]],
        spikes=[[0, 0], [1, 0], [0, 1]],
        v_seq=[[0.5, -0.5], [-1.0, -0.125], [-0.5, -1.0]],
        exact=False,
    ),
    # PLIF init_tau=4, decay_input, soft reset: H = V + (X - V)/4, V = H - S.
    # n0: 1.5 (spike) -> .5; .5 + (1 - .5)/4 = .625; .625 + (.5 - .625)/4 = .59375
    # n1: .5; .5 + (3 - .5)/4 = 1.125 (spike) -> .125; .125 - .125/4 = .09375
    HandCase(
        "PLIF-tau4-decay-soft",
        lambda **kw: ParametricLIFNode(init_tau=4.0, decay_input=True, v_reset=None, **kw),
        x_seq=[[6.0, 2.0], [1.0, 3.0], [0.5, 0.0]],
        spikes=[[1, 0], [0, 1], [0, 0]],
        v_seq=[[0.5, 0.5], [0.625, 0.125], [0.59375, 0.09375]],
        exact=False,
    ),
]


def _run(node: BaseNode, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, N]`` and post-reset ``V`` ``[T, N]`` in the node's step mode."""
    if node.step_mode == "m":
        spikes = node(x_seq)
        assert torch.equal(node.v, node.v_seq[-1])
        return spikes, node.v_seq
    spikes, v_seq = [], []
    for x in x_seq:
        spikes.append(node(x))
        v_seq.append(node.v)
    return torch.stack(spikes), torch.stack(v_seq)


@pytest.mark.parametrize("detach_reset", [False, True], ids=["nodetach", "detach"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("case", HAND_CASES, ids=[c.id for c in HAND_CASES])
def test_hand_computed_sequences(case: HandCase, step_mode: str, detach_reset: bool) -> None:
    # detach_reset changes gradients only: the same numbers are expected both ways.
    node = case.make(detach_reset=detach_reset, step_mode=step_mode, store_v_seq=True)
    node.double()
    x_seq = torch.tensor(case.x_seq, dtype=F64)
    spikes, v_seq = _run(node, x_seq)
    assert spikes.dtype == F64
    assert torch.equal(spikes, torch.tensor(case.spikes, dtype=F64))
    expected_v = torch.tensor(case.v_seq, dtype=F64)
    if case.exact:
        assert torch.equal(v_seq, expected_v)
    else:
        torch.testing.assert_close(v_seq, expected_v, rtol=0, atol=1e-7)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_hand_computed_with_input_requiring_grad(step_mode: str) -> None:
    # With autograd on, the spike goes through the surrogate's autograd Function: same values.
    case = HAND_CASES[4]  # LIF-tau2-decay-hard0, with an exact-equality spike
    node = case.make(step_mode=step_mode, store_v_seq=True, detach_reset=False)
    x_seq = torch.tensor(case.x_seq, dtype=F64, requires_grad=True)
    spikes, v_seq = _run(node, x_seq)
    assert spikes.requires_grad
    assert torch.equal(spikes.detach(), torch.tensor(case.spikes, dtype=F64))
    assert torch.equal(v_seq.detach(), torch.tensor(case.v_seq, dtype=F64))


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: IFNode(v_threshold=0.75, **kw),
        lambda **kw: LIFNode(tau=2.0, v_threshold=0.75, **kw),
        lambda **kw: ParametricLIFNode(init_tau=2.0, v_threshold=0.75, **kw),
    ],
    ids=["IF", "LIF", "PLIF"],
)
def test_spike_at_exact_equality_not_just_below(make, step_mode: str) -> None:
    # One step from V = 0. IF: H = X; LIF/PLIF (tau 2, sigmoid(0) = 1/2 exactly): H = X/2.
    # Neuron 0 reaches V_th = 0.75 exactly; neuron 1 falls short by 2^-40.
    node = make(step_mode=step_mode)
    node.double()
    scale = 1.0 if isinstance(node, IFNode) else 2.0
    x = torch.tensor([0.75, 0.75 - 2.0**-40], dtype=F64) * scale
    spike = node(x.unsqueeze(0) if step_mode == "m" else x)
    assert spike.flatten().tolist() == [1.0, 0.0]
    # Hard reset to 0 where it fired; H kept where it did not.
    assert node.v.tolist() == [0.0, 0.75 - 2.0**-40]


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_non_spiking_surrogate_outputs_the_primitive_and_resets_with_it(step_mode: str) -> None:
    # IF, hard reset to 0, Rect(alpha=0.5, spiking=False): S = clamp(0.5 (H - 1) + 0.5, 0, 1).
    # t0: H = .5, S = clamp(-.25 + .5) = .25, V = .75 * .5 = .375
    # t1: H = .375 + 1 = 1.375, S = clamp(.1875 + .5) = .6875, V = .3125 * 1.375 = .4296875
    node = IFNode(surrogate_function=Rect(alpha=0.5, spiking=False), step_mode=step_mode)
    node.store_v_seq = True
    x_seq = torch.tensor([[0.5], [1.0]], dtype=F64)
    spikes, v_seq = _run(node, x_seq)
    assert spikes.flatten().tolist() == [0.25, 0.6875]
    assert v_seq.flatten().tolist() == [0.375, 0.4296875]


# -- PLIF's parameter -------------------------------------------------------------------------


@pytest.mark.parametrize("init_tau", [1.5, 2.0, 4.0, 10.0])
def test_plif_w_initialisation_and_tau(init_tau: float) -> None:
    node = ParametricLIFNode(init_tau=init_tau)
    assert isinstance(node.w, torch.nn.Parameter)
    assert node.w.shape == ()
    assert node.w.item() == pytest.approx(-math.log(init_tau - 1.0), rel=1e-6, abs=1e-7)
    assert torch.sigmoid(node.w).item() == pytest.approx(1.0 / init_tau, rel=1e-6)
    assert node.tau == pytest.approx(init_tau, rel=1e-6)
    assert list(node.state_dict()) == ["w"]


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_plif_uses_the_current_w(step_mode: str) -> None:
    # Set w = ln 3: 1/tau = sigmoid(ln 3) = 3/4. decay_input, hard reset to 0:
    # H = V + (X - V) * 3/4. n0: X = 1 -> .75; X = 1 -> .75 + .25*.75 = .9375
    # n1: X = 4/3 -> 1.0 (spike) -> 0 (up to rounding of 4/3 and sigmoid); X = 0 -> 0
    node = ParametricLIFNode(init_tau=2.0, step_mode=step_mode, store_v_seq=True).double()
    with torch.no_grad():
        node.w.fill_(math.log(3.0))
    assert node.tau == pytest.approx(4.0 / 3.0)
    x_seq = torch.tensor([[1.0, 4.0 / 3.0 + 1e-9], [1.0, 0.0]], dtype=F64)
    spikes, v_seq = _run(node, x_seq)
    assert spikes.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    torch.testing.assert_close(
        v_seq, torch.tensor([[0.75, 0.0], [0.9375, 0.0]], dtype=F64), rtol=0, atol=1e-12
    )


# -- step modes, store_v_seq, state ------------------------------------------------------------


MAKERS = {
    "IF-hard": lambda **kw: IFNode(**kw),
    "IF-soft": lambda **kw: IFNode(v_reset=None, **kw),
    "LIF-decay-hard-0.3": lambda **kw: LIFNode(tau=3.0, v_reset=-0.3, **kw),
    "LIF-nodecay-soft": lambda **kw: LIFNode(tau=1.5, decay_input=False, v_reset=None, **kw),
    "PLIF-decay-hard": lambda **kw: ParametricLIFNode(init_tau=3.0, **kw),
    "PLIF-nodecay-soft": lambda **kw: ParametricLIFNode(
        init_tau=2.5, decay_input=False, v_reset=None, **kw
    ),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_step_modes_agree_on_values_and_state(name: str) -> None:
    generator = torch.Generator().manual_seed(1)
    x_seq = torch.rand(6, 2, 3, generator=generator, dtype=F64) * 3.0 - 0.5
    single = MAKERS[name](step_mode="s").double()
    multi = MAKERS[name](step_mode="m", store_v_seq=True).double()
    spikes_s, v_seq_s = _run(single, x_seq)
    spikes_m = multi(x_seq)
    assert spikes_m.shape == x_seq.shape
    assert 0 < spikes_m.sum() < spikes_m.numel()  # the case exercises both branches
    torch.testing.assert_close(spikes_m, spikes_s, rtol=0, atol=0)
    torch.testing.assert_close(multi.v_seq, v_seq_s, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(multi.v, single.v, rtol=1e-14, atol=1e-14)
    # State carries over between calls the same way: split the sequence in two.
    multi.reset()
    first, second = multi(x_seq[:2]), multi(x_seq[2:])
    torch.testing.assert_close(torch.cat([first, second]), spikes_s, rtol=0, atol=0)
    torch.testing.assert_close(multi.v, single.v, rtol=1e-14, atol=1e-14)


def test_store_v_seq_lifecycle() -> None:
    # v_seq is an observation, not a state: never a memory (as in the reference system).
    node = LIFNode(step_mode="m", store_v_seq=True)
    assert [name for name, _ in node.named_memories()] == ["v"]
    assert node.v_seq is None
    x_seq = torch.rand(4, 3)
    node(x_seq)
    assert node.v_seq.shape == (4, 3)
    assert torch.equal(node.v_seq[-1], node.v)
    node.reset()
    assert node.v_seq is None
    assert node.v == 0.0 and isinstance(node.v, float)
    # T = 0: an empty v_seq, the state unchanged.
    node(torch.empty(0, 3))
    assert node.v_seq.shape == (0, 3)
    assert torch.equal(node.v, torch.zeros(3))


def test_store_v_seq_off_keeps_only_the_last_v() -> None:
    node = IFNode(step_mode="m")
    assert node.v_seq is None
    assert [name for name, _ in node.named_memories()] == ["v"]
    node(torch.full((3, 2), 0.25))
    assert torch.equal(node.v, torch.full((2,), 0.75)) and node.v_seq is None
    node.store_v_seq = True
    node.reset()
    node(torch.full((3, 2), 0.25))
    assert node.v_seq[:, 0].tolist() == [0.25, 0.5, 0.75]
    # Switching it off drops the stored sequence; the state layout never changes.
    node.store_v_seq = False
    assert node.v_seq is None
    assert [name for name, _ in node.named_memories()] == ["v"]


def test_default_surrogate_is_sigmoid_alpha_4() -> None:
    node = LIFNode()
    assert isinstance(node.surrogate_function, Sigmoid)
    assert node.surrogate_function.alpha == 4.0
    assert node.surrogate_function.spiking


def test_multi_dimensional_per_step_shape() -> None:
    # [T, N, C, H, W]: the state is shaped like one step.
    node = LIFNode(step_mode="m", surrogate_function=ATan())
    out = node(torch.rand(3, 2, 1, 4, 5))
    assert out.shape == (3, 2, 1, 4, 5)
    assert node.v.shape == (2, 1, 4, 5)


# -- bad input ----------------------------------------------------------------------------------


BAD_ARGUMENTS = [
    ({"v_threshold": "1"}, TypeError, ["v_threshold", "a float"]),
    ({"v_threshold": True}, TypeError, ["v_threshold", "a float"]),
    ({"v_threshold": None}, TypeError, ["v_threshold", "a float"]),
    ({"v_reset": "0"}, TypeError, ["v_reset", "a float or None"]),
    ({"detach_reset": 1}, TypeError, ["detach_reset", "a bool"]),
    ({"detach_reset": "yes"}, TypeError, ["detach_reset", "a bool"]),
    ({"store_v_seq": 1}, TypeError, ["store_v_seq", "a bool"]),
    ({"decay_input": 0}, TypeError, ["decay_input", "a bool"]),
    ({"tau": 1.0}, ValueError, ["tau", "> 1"]),
    ({"tau": 0.5}, ValueError, ["tau", "> 1"]),
    ({"tau": "2"}, TypeError, ["tau", "a float"]),
    ({"step_mode": "x"}, ValueError, ["step_mode", "('s', 'm')", "'x'"]),
    ({"step_mode": "multi"}, ValueError, ["step_mode", "('s', 'm')"]),
    ({"backend": 3}, TypeError, ["backend", "string"]),
    ({"surrogate_function": 3}, TypeError, ["surrogate_function", "SurrogateFunctionBase"]),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    BAD_ARGUMENTS,
    ids=[" ".join(f"{k}={v!r}" for k, v in case[0].items()) for case in BAD_ARGUMENTS],
)
def test_lif_constructor_rejects_bad_arguments(kwargs, error, fragments) -> None:
    with pytest.raises(error) as info:
        LIFNode(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("init_tau", [1.0, 0.9, -2.0])
def test_plif_rejects_init_tau_not_above_one(init_tau: float) -> None:
    with pytest.raises(ValueError, match=r"init_tau must be > 1"):
        ParametricLIFNode(init_tau=init_tau)


@pytest.mark.parametrize("cls", [IFNode, LIFNode, ParametricLIFNode])
def test_multi_step_rejects_one_dimensional_input(cls) -> None:
    node = cls(step_mode="m")
    with pytest.raises(ValueError, match=r"\[T, N, \*\].*got shape \(5,\)"):
        node(torch.rand(5))


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_non_floating_input_is_rejected(step_mode: str, dtype: torch.dtype) -> None:
    node = LIFNode(step_mode=step_mode)
    with pytest.raises(TypeError, match=r"floating-point.*float32") as info:
        node(torch.ones(2, 3, dtype=dtype))
    assert str(dtype) in str(info.value)


def test_non_tensor_input_is_rejected() -> None:
    with pytest.raises(TypeError, match="expects a tensor"):
        IFNode()([0.5, 0.5])


def test_setting_an_unknown_step_mode_leaves_the_node_unchanged() -> None:
    node = LIFNode(step_mode="m")
    with pytest.raises(ValueError, match=r"supports step_mode in \('s', 'm'\), got 'S'"):
        node.step_mode = "S"
    assert node.step_mode == "m"


@pytest.mark.parametrize("name", ["v_threshold", "v_reset"])
def test_nan_threshold_or_reset_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LIFNode(**{name: float("nan")})


@pytest.mark.parametrize("cls", [IFNode, LIFNode, ParametricLIFNode])
def test_zero_time_steps(cls) -> None:
    node = cls(step_mode="m", v_reset=-0.5, store_v_seq=True)
    out = node(torch.empty(0, 2, 3))
    assert out.shape == (0, 2, 3)
    assert node.v_seq.shape == (0, 2, 3)
    assert torch.equal(node.v, torch.full((2, 3), -0.5))
