"""``functional.compact_spikes()``: spikes saved for backward at 1 bit, gradients unchanged.

* Every backend available on the CPU (torch, inductor, triton under the interpreter,
  FlexSN on torch and on sj-flexsn's triton), both step modes: gradients bitwise equal
  with and without the switch, and the spikes that layers save really are packed (the
  packed count is checked, so the equality is not vacuous).
* The never-compact cases: a tensor that reuses the memory of a freed spike tensor,
  spikes modified in place (before being saved: kept as they are; after: refused at the
  backward pass, as autograd does without the switch), non-spiking outputs, copies,
  other views of the same storage, FlexSN outputs that are not binary.
* Views (attention's transposes and head splits) packed once however often they are
  saved, 1 bit per element; reset_net between sequences; nesting; torch.compile.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings

import pytest
import torch
from torch import nn

from sj_core import functional, layer, neuron, surrogate
from sj_core.functional import compact, compact_registry
from sj_core.functional.compact_bits import pack_bits, packed_nbytes, unpack_bits

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_SJ_TRITON = HAS_TRITON and importlib.util.find_spec("sj_triton") is not None
HAS_SJ_FLEXSN = HAS_TRITON and importlib.util.find_spec("sj_flexsn") is not None


@pytest.fixture
def packed(monkeypatch):
    """The spike tensors packed under the switch: a list of ``(shape, bytes of bits)``."""
    found: list[tuple[tuple[int, ...], int]] = []
    original = compact._pack

    def counting(tensor):
        result = original(tensor)
        if isinstance(result, compact._PackedSpikes):
            found.append((tuple(tensor.shape), result.bits.numel()))
        return result

    monkeypatch.setattr(compact, "_pack", counting)
    return found


def _lif_core(x, v):
    h = v + (x - v) / 2.0
    spike = _CORE_SURROGATE(h - 1.0)
    return spike, h * (1.0 - spike)


_CORE_SURROGATE = surrogate.Sigmoid()


def _neuron(kind: str, step_mode: str) -> nn.Module:
    if kind == "flexsn-torch":
        return neuron.FlexSN(_lif_core, 1, 1, 1, step_mode=step_mode, backend="torch")
    if kind == "flexsn-triton":
        return neuron.FlexSN(_lif_core, 1, 1, 1, step_mode="m", backend="triton")
    return neuron.LIFNode(tau=2.0, step_mode=step_mode, backend=kind)


def _network(kind: str, step_mode: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1),
        layer.BatchNorm2d(4),
        _neuron(kind, step_mode),
        layer.Conv2d(4, 4, 3, padding=1),
        _neuron(kind, step_mode),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(4 * 3 * 3, 5),
        _neuron(kind, step_mode),
    )
    functional.set_step_mode(net, step_mode)
    return net


def _gradients(net: nn.Module, x_seq: torch.Tensor, step_mode: str, on: bool):
    """Two sequences (reset_net between), the forward passes under the switch when ``on``
    and the backward passes outside it; the parameters' and the input's gradients."""
    x_seq = x_seq.clone().requires_grad_()
    weights = torch.linspace(-1.0, 1.0, 3 * 2 * 5).reshape(3, 2, 5)
    for _ in range(2):
        functional.reset_net(net)
        with functional.compact_spikes() if on else contextlib.nullcontext():
            if step_mode == "m":
                out = net(x_seq)
            else:
                out = torch.stack([net(x) for x in x_seq])
        (out * weights).sum().backward()
    return [p.grad.clone() for p in net.parameters()] + [x_seq.grad.clone()]


BACKENDS = [
    pytest.param("torch", "m", id="torch-m"),
    pytest.param("torch", "s", id="torch-s"),
    pytest.param("inductor", "m", id="inductor-m"),
    pytest.param(
        "triton", "m", id="triton-m",
        marks=pytest.mark.skipif(not HAS_SJ_TRITON, reason="sj-triton is not installed"),
    ),
    pytest.param(
        "triton", "s", id="triton-s",
        marks=pytest.mark.skipif(not HAS_SJ_TRITON, reason="sj-triton is not installed"),
    ),
    pytest.param("flexsn-torch", "m", id="flexsn-torch-m"),
    pytest.param("flexsn-torch", "s", id="flexsn-torch-s"),
    pytest.param(
        "flexsn-triton", "m", id="flexsn-triton-m",
        marks=pytest.mark.skipif(not HAS_SJ_FLEXSN, reason="sj-flexsn is not installed"),
    ),
]  # fmt: skip


# The inductor backend's compiled neurons register their spikes: no compile warning.
@pytest.mark.filterwarnings("error:a torch.compile region")
@pytest.mark.parametrize(("kind", "step_mode"), BACKENDS)
def test_gradients_are_bitwise_equal_with_and_without_the_switch(kind, step_mode, packed):
    x_seq = torch.rand(3, 2, 2, 6, 6) * 2.0
    off = _gradients(_network(kind, step_mode), x_seq, step_mode, on=False)
    assert not packed
    on = _gradients(_network(kind, step_mode), x_seq, step_mode, on=True)
    for a, b in zip(off, on, strict=True):
        assert torch.equal(a, b)
    assert any(g.abs().sum() > 0 for g in on[:-1]), "degenerate: no gradient at all"
    # Spikes saved per forward pass: the second conv's input and the max-pool's input (views
    # of neuron outputs, their bits), and the linear layer's input (the pooled spikes, a
    # copy found through its history, its own bits); per step in 's'.
    steps = 1 if step_mode == "m" else 3
    per_step = 3 // steps  # elements of a neuron output: [T, 2, 4, 6, 6] or one step
    expected = [packed_nbytes(per_step * 2 * 4 * 6 * 6)] * 2 + [packed_nbytes(per_step * 2 * 36)]
    assert sorted(nbytes for _, nbytes in packed) == sorted(expected * 2 * steps)


# -- the bits -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("numel", [1, 7, 8, 9, 64, 1001])
def test_bits_round_trip_exactly(numel, dtype):
    generator = torch.Generator().manual_seed(numel)
    spikes = (torch.rand(numel, generator=generator) > 0.5).to(dtype)
    bits = pack_bits(spikes)
    assert bits.dtype == torch.uint8 and bits.numel() == (numel + 7) // 8
    # An independent packing: bit i of byte k is element 8k + i.
    padded = torch.cat([spikes.bool(), torch.zeros((-numel) % 8, dtype=torch.bool)])
    weights = torch.tensor([1 << i for i in range(8)])
    expected = (padded.view(-1, 8).long() * weights).sum(1).to(torch.uint8)
    assert torch.equal(bits, expected)
    restored = unpack_bits(bits, numel, dtype)
    assert restored.dtype == dtype and torch.equal(restored, spikes)
    assert not torch.signbit(restored).any()


# -- what is packed, and what never is --------------------------------------------------------


def _saved_kind(make_saved, **mark):
    """Run ``make_saved()`` under the switch and report how ``x * w`` saved its result:
    ``"packed"`` or ``"kept"``."""
    w = torch.rand(4, 6, requires_grad=True)
    with functional.compact_spikes():
        x = make_saved()
        packed_object = compact._pack(x)
        y = (x * w).sum()
    del y
    return "packed" if isinstance(packed_object, compact._PackedSpikes) else "kept"


def _spikes(shape=(4, 6), history: bool = True) -> torch.Tensor:
    """An IF neuron's spikes; with an autograd history unless ``history`` is false."""
    node = neuron.IFNode(step_mode="m")
    return node((torch.rand(*shape) * 2.0).requires_grad_(history))


def _modified_copy(with_grad: bool) -> torch.Tensor:
    copy = _spikes((6, 4)).t().contiguous()
    with contextlib.nullcontext() if with_grad else torch.no_grad():
        copy.mul_(0.5)
    return copy


def test_a_neuron_output_and_its_views_are_packed():
    with functional.compact_spikes():
        spikes = _spikes((3, 4, 6))
        views = [spikes, spikes.flatten(0, 1), spikes.transpose(1, 2), spikes[1:], spikes[:, 2]]
        results = [compact._pack(v) for v in views]
    assert all(isinstance(r, compact._PackedSpikes) for r in results)
    # Packed once, shared by every view; each view restored with its own geometry.
    assert len({id(r.bits) for r in results}) == 1
    assert results[0].bits.numel() == packed_nbytes(spikes.numel())
    for view, result in zip(views, results, strict=True):
        restored = compact._unpack(result)
        assert restored.shape == view.shape and restored.stride() == view.stride()
        assert torch.equal(restored, view)


def test_zero_dimensional_spikes_and_saved_scalars(packed):
    """A 0-d input gives 0-d spikes, and ``x * scalar`` saves a 0-d tensor: both pass
    through the switch (0-d tensors have no strides), with the gradients of the switch off."""

    def gradients(on: bool) -> tuple[torch.Tensor, ...]:
        node = neuron.LIFNode()
        x = torch.tensor(3.0, requires_grad=True)
        w = torch.tensor(0.7, requires_grad=True)
        scale = torch.tensor(2.0, requires_grad=True)
        with functional.compact_spikes() if on else contextlib.nullcontext():
            spike = node(x)
            out = (spike * w) * scale
        assert spike.dim() == 0 and spike.item() == 1.0
        return torch.autograd.grad(out, (x, w, scale))

    off = gradients(False)
    on = gradients(True)
    assert packed == [((), 1)]  # the 0-d spike, at one byte
    assert all(g.abs() > 0 for g in off)
    for a, b in zip(off, on, strict=True):
        assert torch.equal(a, b)


def test_memory_of_a_freed_spike_tensor_reused_by_another_tensor_is_not_compacted():
    with functional.compact_spikes():
        for _ in range(50):  # until the allocator hands the same address out again
            spikes = _spikes((256, 1024), history=False)
            address = spikes.data_ptr()
            assert compact_registry.registered_count() == 1
            del spikes
            other = torch.empty(256, 1024).fill_(0.5)  # not binary
            if other.data_ptr() == address:
                break
        else:
            pytest.skip("the allocator never reused the address")
        result = compact._pack(other)
    assert isinstance(result, compact._Kept) and result.tensor is other
    assert compact_registry.registered_count() == 0


def test_spikes_modified_in_place_before_being_saved_are_kept_as_they_are():
    x_seq = torch.rand(3, 4, 6) * 2
    w = torch.rand(6, 5, requires_grad=True)
    grads = []
    for on in (False, True):
        w.grad = None
        with functional.compact_spikes() if on else contextlib.nullcontext():
            spikes = neuron.IFNode(step_mode="m")(x_seq)
            spikes.mul_(0.5)  # no longer 0/1: must not be packed
            if on:
                assert isinstance(compact._pack(spikes), compact._Kept)
            (spikes @ w).sum().backward()
        grads.append(w.grad.clone())
    assert torch.equal(grads[0], grads[1])


def test_spikes_modified_in_place_after_being_saved_are_refused_as_autograd_does():
    x_seq = torch.rand(3, 4, 6) * 2
    w = torch.rand(6, 5, requires_grad=True)
    for on in (False, True):
        with functional.compact_spikes() if on else contextlib.nullcontext():
            spikes = neuron.IFNode(step_mode="m")(x_seq)
            y = (spikes @ w).sum()  # saves the spikes
        spikes.zero_()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_a_saved_tensor_that_is_not_spikes_keeps_the_in_place_check():
    a = torch.rand(5, requires_grad=True)
    with functional.compact_spikes():
        b = a * 2
        y = (b * b).sum()
    b.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


@pytest.mark.parametrize(
    "make",
    [
        lambda: neuron.LIFNode(step_mode="m", surrogate_function=surrogate.Sigmoid(
            spiking=False))(torch.rand(4, 6, requires_grad=True)),
        lambda: neuron.NonSpikingLIFNode()(torch.rand(4, 6, requires_grad=True)),
        lambda: _spikes((4, 6)) * 1.0,  # arithmetic on spikes
        lambda: _spikes((6, 4), history=False).t().contiguous(),  # a copy, no history
        lambda: _modified_copy(with_grad=True),
        lambda: _modified_copy(with_grad=False),
        lambda: _spikes((4, 12)).detach().view(torch.int32).float()[:, :6],  # reinterpreted
        lambda: torch.cat([_spikes((2, 6)), torch.rand(2, 6)]),  # mixed with other values
    ],
    ids=["spiking_false", "nonspiking_node", "arithmetic", "copy_without_history",
         "copy_modified", "copy_modified_no_grad", "reinterpreted", "concatenated"],
)  # fmt: skip
def test_tensors_that_are_not_our_spike_outputs_are_kept(make):
    assert _saved_kind(make) == "kept"


@pytest.mark.parametrize(
    "make",
    [
        lambda: _spikes((6, 4)).t().contiguous(),
        lambda: _spikes((6, 4)).t().to(torch.float16),
        lambda: _spikes((3, 4, 2)).permute(2, 0, 1).reshape(2, 12)[:, :6].contiguous().view(
            1, 2, 6).expand(4, 2, 6),
    ],
    ids=["contiguous_copy", "cast_to_fp16", "permuted_reshaped_sliced_expanded"],
)  # fmt: skip
def test_rearranged_copies_of_spikes_are_packed_exactly(make):
    with functional.compact_spikes():
        copy = make()
        packed_object = compact._pack(copy)
    assert isinstance(packed_object, compact._PackedSpikes)
    restored = compact._unpack(packed_object)
    assert restored.dtype == copy.dtype and restored.stride() == copy.stride()
    assert torch.equal(restored, copy)


def test_another_tensor_in_the_same_storage_is_kept():
    with functional.compact_spikes():
        buffer = torch.zeros(2, 4, 6)
        buffer[0] = 1.0
        spikes = compact_registry.mark_spikes(buffer[0])
        inside, beside = spikes[1:], buffer[1]
        assert isinstance(compact._pack(inside), compact._PackedSpikes)
        assert isinstance(compact._pack(beside), compact._Kept)


def test_flexsn_outputs_are_packed_only_when_binary():
    def spike_and_potential(x, v):
        h = v + x
        spike = _CORE_SURROGATE(h - 1.0)
        return spike, h, h * (1.0 - spike)

    node = neuron.FlexSN(spike_and_potential, 1, 1, 2, step_mode="m", backend="torch")
    with functional.compact_spikes():
        spikes, potential = node(torch.rand(4, 6) * 2)
        kinds = [type(compact._pack(t)).__name__ for t in (spikes, potential)]
    assert kinds == ["_PackedSpikes", "_Kept"]


def test_switch_off_registers_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(compact_registry, "mark_spikes", lambda t: calls.append(t) or t)
    net = _network("torch", "m")
    net(torch.rand(3, 2, 2, 6, 6))
    assert not calls and compact_registry.registered_count() == 0
    assert not compact_registry.is_compacting()
    with functional.compact_spikes():
        net(torch.rand(3, 2, 2, 6, 6))
    assert len(calls) == 3  # the three neurons


def test_nesting_and_the_registry_is_emptied_at_the_outermost_exit():
    w = torch.rand(4, 6, requires_grad=True)
    with functional.compact_spikes():
        with functional.compact_spikes():
            spikes = _spikes()
            inner = spikes * w
        outer = spikes * w
        assert compact_registry.registered_count() == 1
    after = spikes * w
    assert compact_registry.registered_count() == 0 and not compact_registry.is_compacting()
    # _saved_self unpacks: a fresh tensor from the bits inside, the spikes themselves after.
    assert inner.grad_fn._saved_self.data_ptr() != spikes.data_ptr()
    assert outer.grad_fn._saved_self.data_ptr() != spikes.data_ptr()
    assert after.grad_fn._saved_self.data_ptr() == spikes.data_ptr()
    for y in (inner, outer, after):
        assert torch.equal(y.grad_fn._saved_self, spikes)


def test_attention_saves_each_spike_tensor_once_at_one_bit(packed):
    # Q, K, V spikes split into heads (views), Q K^T and (Q K^T) V: matmul saves views.
    torch.manual_seed(1)
    T, B, N, C, heads = 2, 3, 5, 8, 2
    q_lif, k_lif, v_lif = (neuron.LIFNode(step_mode="m") for _ in range(3))
    proj = nn.Linear(C, C)
    x_seq = torch.rand(T, B, N, C) * 2

    def block(on: bool):
        with functional.compact_spikes() if on else contextlib.nullcontext():
            q, k, v = (lif(proj(x_seq)) for lif in (q_lif, k_lif, v_lif))
            split = [t.reshape(T, B, N, heads, C // heads).transpose(2, 3) for t in (q, k, v)]
            attention = split[0] @ split[1].transpose(-2, -1)
            out = (attention @ split[2]) * 0.125
        out.sum().backward()
        for lif in (q_lif, k_lif, v_lif):
            lif.reset()
        grads = [p.grad.clone() for p in proj.parameters()]
        proj.zero_grad()
        return grads

    off = block(False)
    assert not packed
    on = block(True)
    for a, b in zip(off, on, strict=True):
        assert torch.equal(a, b)
    # matmul folds the heads into its batch: copies of q and k (first product) and of v
    # (second), each recognised through its history and packed; the scores are kept.
    assert len(packed) == 3
    spike_bytes = packed_nbytes(T * B * N * C)
    assert all(nbytes == spike_bytes for _, nbytes in packed)


def test_torch_compile_is_bypassed_with_one_warning(packed, monkeypatch):
    monkeypatch.setattr(compact, "_compile_warned", False)
    x_seq = torch.rand(3, 2, 2, 6, 6) * 2.0
    grads = []
    for on in (False, True):
        net = _network("torch", "m")
        compiled = torch.compile(net)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grads.append(_gradients(compiled, x_seq, "m", on=on))
        messages = [str(w.message) for w in caught if "compact_spikes" in str(w.message)]
        assert len(messages) == (1 if on else 0)
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)
    assert not packed  # nothing inside the compiled graph is packed
