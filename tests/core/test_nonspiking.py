"""Non-spiking IF/LIF nodes and their decodings (SPEC section 2), against hand-written loops."""

from __future__ import annotations

import pytest
import torch

from sj_core.neuron.nonspiking import (
    DECODES,
    NonSpikingBaseNode,
    NonSpikingIFNode,
    NonSpikingLIFNode,
)

# T = 4 steps, N = 3 neurons, chosen so that the decodings all differ: neuron 0 climbs,
# neuron 1 dips below zero further than it rises, neuron 2 ties +1.5 / -1.5 under IF.
X = [[1.0, 0.5, 1.5], [2.0, -2.0, -1.0], [-1.0, 0.2, -2.0], [0.5, 0.4, 1.0]]


def manual_if(xs):
    """Per-neuron cumulative sums (IF: V[t] = V[t-1] + X[t], V[-1] = 0)."""
    out, v = [], [0.0] * len(xs[0])
    for row in xs:
        v = [a + b for a, b in zip(v, row, strict=True)]
        out.append(v)
    return out


def manual_lif(xs, tau):
    out, v = [], [0.0] * len(xs[0])
    for row in xs:
        v = [a + (b - a) / tau for a, b in zip(v, row, strict=True)]
        out.append(v)
    return out


def test_if_sequence_by_hand():
    # V: [1, 0.5, 1.5], [3, -1.5, 0.5], [2, -1.3, -1.5], [2.5, -0.9, -0.5]
    out = NonSpikingIFNode()(torch.tensor(X))
    expected = [[1.0, 0.5, 1.5], [3.0, -1.5, 0.5], [2.0, -1.3, -1.5], [2.5, -0.9, -0.5]]
    torch.testing.assert_close(out, torch.tensor(expected))
    assert out.shape == (4, 3)


@pytest.mark.parametrize(
    ("decode", "expected"),
    [
        (None, None),
        ("max-mem", [3.0, 0.5, 1.5]),
        ("max-abs-mem", [3.0, -1.5, -1.5]),  # neuron 2: |+1.5| == |-1.5| -> the negative
        ("mean-mem", [2.125, -0.8, 0.0]),
        ("last-mem", [2.5, -0.9, -0.5]),
        ("last_mem", [2.5, -0.9, -0.5]),
    ],
    ids=str,
)
def test_if_decodings_by_hand(decode, expected):
    out = NonSpikingIFNode(decode=decode)(torch.tensor(X))
    if expected is None:
        expected = manual_if(X)
    torch.testing.assert_close(out, torch.tensor(expected))


@pytest.mark.parametrize("decode", ["max-mem", "max-abs-mem", "mean-mem", "last-mem", None])
def test_lif_decodings_match_manual_loop(decode):
    tau = 3.0
    v_seq = manual_lif(X, tau)
    columns = list(zip(*v_seq, strict=True))
    expected = {
        None: v_seq,
        "max-mem": [max(c) for c in columns],
        "max-abs-mem": [max(c) if abs(max(c)) > abs(min(c)) else min(c) for c in columns],
        "mean-mem": [sum(c) / len(c) for c in columns],
        "last-mem": v_seq[-1],
    }[decode]
    out = NonSpikingLIFNode(tau=tau, decode=decode)(torch.tensor(X, dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_extra_dims_and_gradient():
    x_seq = torch.randn(5, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    node = NonSpikingLIFNode(tau=2.0, decode="mean-mem")
    assert node(x_seq).shape == (2, 3, 4)
    # mean over T of a linear recurrence: gradient checked numerically
    assert torch.autograd.gradcheck(node, (x_seq,))


def test_state_starts_at_zero_on_every_forward():
    node = NonSpikingIFNode(decode="last-mem")
    x_seq = torch.tensor(X)
    first = node(x_seq)
    second = node(x_seq)  # would be 2x if V carried over
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(node.v, torch.tensor(X).sum(0))
    # a new batch size is fine too: nothing is kept between calls
    assert node(torch.ones(2, 5)).tolist() == [2.0] * 5


def test_multi_step_only_and_input_checks():
    node = NonSpikingIFNode()
    assert node.step_mode == "m"
    with pytest.raises(ValueError, match="step_mode"):
        node.step_mode = "s"
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        node(torch.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        node(torch.ones(2, 3, dtype=torch.int64))


def test_unknown_decode_lists_accepted_values():
    with pytest.raises(ValueError, match="max-abs-mem") as info:
        NonSpikingIFNode(decode="sum-mem")
    assert "last_mem" in str(info.value)
    node = NonSpikingLIFNode()
    with pytest.raises(ValueError, match="decode must be one of"):
        node.decode = "last"
    assert DECODES == (None, "max-mem", "max-abs-mem", "mean-mem", "last-mem")


def test_alias_is_normalised_and_repr():
    node = NonSpikingLIFNode(tau=4.0, decode="last_mem")
    assert node.decode == "last-mem"
    assert repr(node) == "NonSpikingLIFNode(tau=4.0, decode='last-mem')"


def test_empty_sequence():
    assert NonSpikingIFNode()(torch.empty(0, 3)).shape == (0, 3)
    with pytest.raises(ValueError, match="at least one time step"):
        NonSpikingIFNode(decode="mean-mem")(torch.empty(0, 3))


def test_lif_validates_tau():
    with pytest.raises(ValueError, match="tau must be > 1"):
        NonSpikingLIFNode(tau=1.0)
    with pytest.raises(TypeError, match="tau must be a float"):
        NonSpikingLIFNode(tau="2")


def test_base_node_needs_a_charge():
    with pytest.raises(NotImplementedError, match="neuronal_charge"):
        NonSpikingBaseNode()(torch.ones(2, 3))
