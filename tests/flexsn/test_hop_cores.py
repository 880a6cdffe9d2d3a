"""Single-step cores and an independent, hand-written time loop for the hop tests.

``reference_scan`` is written separately from ``sj_flexsn.hop_eager`` (indexing ``x[t]``,
appending to lists) so the tests compare two implementations, not one with itself. The
tests at the bottom check the reference itself against numbers worked out by hand.
"""

from __future__ import annotations

import importlib.util
import math

import torch

#: Test modules skip when this is False. Only absence skips: an installed but broken
#: sj_flexsn must fail loudly, which importorskip would hide.
SJ_FLEXSN_INSTALLED = importlib.util.find_spec("sj_flexsn") is not None
SKIP_REASON = "sj-flexsn is not installed (pip install -e packages/sj-flexsn)"


def reference_scan(core, num_inputs, num_states, num_outputs, *flat_args):
    """``(*output_seqs, *state_seqs, *final_states)`` by a plain loop; needs ``T >= 1``."""
    inputs = flat_args[:num_inputs]
    states = list(flat_args[num_inputs : num_inputs + num_states])
    lifted = flat_args[num_inputs + num_states :]
    outputs = [[] for _ in range(num_outputs)]
    state_seqs = [[] for _ in range(num_states)]
    for t in range(inputs[0].shape[0]):
        returns = core(*[x[t] for x in inputs], *states, *lifted)
        for i in range(num_outputs):
            outputs[i].append(returns[i])
        states = list(returns[num_outputs:])
        for i in range(num_states):
            state_seqs[i].append(states[i])
    return (
        [torch.stack(o) for o in outputs],
        [torch.stack(s) for s in state_seqs],
        states,
    )


def lif_core(x, v):
    """LIF, tau = 2, hard reset to 0, Heaviside spike (non-differentiable forward)."""
    h = v + (x - v) / 2.0
    s = (h >= 1.0).to(h.dtype)
    return s, h * (1.0 - s)


def smooth_lif_core(x, v):
    """LIF with a sigmoid spike, so the whole scan is smooth (for gradcheck)."""
    h = v + (x - v) / 2.0
    s = torch.sigmoid(4.0 * (h - 1.0))
    return s, h * (1.0 - s)


def adaptive_core(x, v, a):
    """Two states: membrane ``v`` and adaptation ``a`` (smooth)."""
    h = v + (x - v - a) / 2.0
    s = torch.sigmoid(4.0 * (h - 1.0))
    return s, h * (1.0 - s), 0.9 * a + 0.2 * s


def two_in_two_out_core(x, y, v):
    """Two inputs, two outputs, one state."""
    h = 0.5 * v + x * torch.tanh(y)
    return torch.sigmoid(h), h * h, h - 0.1 * x


def stateless_core(x, y):
    """No state at all: a per-step map."""
    return (x * y + 1.0,)


def lifted_core(x, v, w, b):
    """Uses two extra tensors passed through ``flat_args`` (lifted freevars)."""
    h = v * torch.sigmoid(w) + x + b
    s = torch.sigmoid(3.0 * (h - 1.0))
    return s, h * (1.0 - s)


# -- the reference checked by hand -----------------------------------------------------


def test_reference_scan_two_state_core_by_hand():
    # Step 1 from v = a = 0, x = 2: H = 2/2 = 1, S = sigmoid(0) = 0.5, V = 0.5,
    # A = 0.2 * 0.5 = 0.1. Step 2, x = 2: H = 0.5 + (2 - 0.5 - 0.1)/2 = 1.2,
    # S = sigmoid(0.8), V = 1.2 (1 - S), A = 0.9 * 0.1 + 0.2 S.
    s2 = 1.0 / (1.0 + math.exp(-0.8))
    x_seq = torch.full((2, 1), 2.0, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    (spikes,), (v_seq, a_seq), (v_last, a_last) = reference_scan(
        adaptive_core, 1, 2, 1, x_seq, zero, zero
    )
    expected_v = [[0.5], [1.2 * (1.0 - s2)]]
    expected_a = [[0.1], [0.09 + 0.2 * s2]]
    torch.testing.assert_close(spikes, torch.tensor([[0.5], [s2]], dtype=torch.float64))
    torch.testing.assert_close(v_seq, torch.tensor(expected_v, dtype=torch.float64))
    torch.testing.assert_close(a_seq, torch.tensor(expected_a, dtype=torch.float64))
    torch.testing.assert_close(v_last, v_seq[-1])
    torch.testing.assert_close(a_last, a_seq[-1])


def test_reference_scan_two_inputs_two_outputs_by_hand():
    # x = 1, y = 0 (tanh 0 = 0), v = 2: H = 0.5 * 2 = 1 -> (sigmoid(1), 1), V = 1 - 0.1.
    (out1, out2), (v_seq,), _ = reference_scan(
        two_in_two_out_core, 2, 1, 2, torch.ones(1, 1), torch.zeros(1, 1), torch.full((1,), 2.0)
    )
    torch.testing.assert_close(out1, torch.tensor([[1.0 / (1.0 + math.exp(-1.0))]]))
    torch.testing.assert_close(out2, torch.tensor([[1.0]]))
    torch.testing.assert_close(v_seq, torch.tensor([[0.9]]))
