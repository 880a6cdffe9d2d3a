"""The reference system's functions ``sj_triton.neuron_kernel.multistep_if`` /
``multistep_lif`` / ``multistep_plif``: positional arguments in the reference system's
order, ``(spike_seq, v_seq)`` returned (``(spike_seq, v_last)`` for IF and LIF with
``store_v_seq=False``, as the reference system's have it).

Each is compared with the operator it wraps (bit for bit) and, through an adapter to the
operator signature, with the torch reference (values and gradients, by the conformance
rules of :mod:`reference_compare`): an argument passed in the wrong position fails.
"""

from __future__ import annotations

import pytest
import torch
from neuron_cases import NeuronCase, make_inputs, make_surrogate
from reference_compare import compare_with_reference

pytest.importorskip("triton", reason="needs triton (pip install sj-triton)")
operators = pytest.importorskip("sj_triton.operators", reason="needs sj-triton")
from sj_triton import neuron_kernel  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SG = make_surrogate("Sigmoid")


def _call_reference_signature(name, x_seq, states, tensors, *, v_threshold, v_reset,
                              detach_reset, surrogate_function, store=(), **params):  # fmt: skip
    """``store``: ``()`` (the default), or ``(store_v_seq,)`` passed positionally."""
    common = (v_threshold, v_reset, detach_reset, surrogate_function)
    if name == "if":
        return neuron_kernel.multistep_if(x_seq, states[0], *common, *store)
    if name == "lif":
        return neuron_kernel.multistep_lif(
            x_seq, states[0], params["decay_input"], params["tau"], *common, *store
        )
    return neuron_kernel.multistep_plif(
        x_seq, states[0], tensors[0], params["decay_input"], *common
    )


def _adapter(name):
    """``multistep_<name>`` with the ``<name>.multi_step`` operator's signature."""

    def operator(x_seq, v_init, *tensors, store_v_seq, **kwargs):
        spike_seq, v_seq = _call_reference_signature(name, x_seq, (v_init,), tensors, **kwargs)
        return spike_seq, v_seq[-1], v_seq if store_v_seq else None

    return operator


CASES = [
    NeuronCase("if", v_reset=None, v_threshold=1.25, detach_reset=True),
    NeuronCase("lif", v_reset=-0.3, v_threshold=0.9, flags={"decay_input": False}),
    NeuronCase("plif", v_reset=0.0, v_threshold=1.0, flags={"decay_input": True}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_system_signature(case):
    x_seq, states, tensors = make_inputs(case, 7, (2, 33), device=DEVICE, seed=4)
    kwargs = case.kwargs(SG, store_v_seq=True)
    kwargs.pop("store_v_seq")
    spike_seq, v_seq = _call_reference_signature(case.name, x_seq, states, tensors, **kwargs)
    expected = getattr(operators, f"{case.name}_multi_step")(
        x_seq, *states, *tensors, **case.kwargs(SG, store_v_seq=True)
    )
    assert torch.equal(spike_seq, expected[0])
    assert torch.equal(v_seq, expected[-1])

    comparison = compare_with_reference(
        _adapter(case.name), case, x_seq, states, tensors, SG, store_v_seq=True
    )
    assert 0.05 < comparison.spike_rate < 0.9


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: c.id)
@pytest.mark.parametrize("store_v_seq", [True, False])
def test_store_v_seq_selects_the_sequence_or_the_last_potential(case, store_v_seq):
    x_seq, states, tensors = make_inputs(case, 5, (3, 8), device=DEVICE, seed=6)
    kwargs = case.kwargs(SG, store_v_seq=True)
    kwargs.pop("store_v_seq")
    spike_seq, v = _call_reference_signature(
        case.name, x_seq, states, tensors, store=(store_v_seq,), **kwargs
    )
    expected = getattr(operators, f"{case.name}_multi_step")(
        x_seq, *states, *tensors, **case.kwargs(SG, store_v_seq=True)
    )
    assert torch.equal(spike_seq, expected[0])
    assert 0.05 < spike_seq.mean().item() < 0.95
    if store_v_seq:
        assert torch.equal(v, expected[-1])
    else:
        assert v.shape == states[0].shape
        assert torch.equal(v, expected[-1][-1])  # the last step of the sequence
