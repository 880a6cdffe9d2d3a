"""What the Triton backend refuses, and how it says so (DESIGN "The plugin contract").

A configuration the backend cannot run raises ``NotImplementedError`` naming what it does
support, before any work; malformed arguments raise ``ValueError``; asking a node for
``backend='triton'`` in single-step mode raises ``UnsupportedOperatorError``. A backend
named explicitly never falls back to torch.
"""

from __future__ import annotations

import pytest
import torch
from _triton_helpers import DEVICE, Neuron, make_inputs

from sj_core import backends, neuron, reference, surrogate

pytest.importorskip("triton", reason="triton is not installed (pip install sj-triton)")
neuron_kernel = pytest.importorskip(
    "sj_triton.neuron_kernel", reason="sj-triton is not installed (pip install sj-triton)"
)
from sj_triton.neuron_kernel import common  # noqa: E402

KERNELS = {
    "if": neuron_kernel.if_multi_step,
    "lif": neuron_kernel.lif_multi_step,
    "plif": neuron_kernel.plif_multi_step,
}
NEURONS = [Neuron("if"), Neuron("lif", v_reset=None), Neuron("plif", decay_input=False)]


def _call(n: Neuron, x_seq, v_init, r_tau, sg=None, **overrides):
    extra = (r_tau,) if n.has_r_tau else ()
    kwargs = n.kwargs(sg or surrogate.Sigmoid(), store_v_seq=False) | overrides
    return KERNELS[n.kind](x_seq, v_init, *extra, **kwargs)


class NotASurrogate:
    """Callable like a surrogate, but not a ``SurrogateFunctionBase``."""

    def __call__(self, x):
        return (x >= 0).to(x.dtype)


class CustomSurrogate(surrogate.SurrogateFunctionBase):
    """A user-defined surrogate: a SurrogateFunctionBase without a kernel formula."""

    def __init__(self):
        super().__init__(alpha=1.0)

    @staticmethod
    def primitive_function(x, alpha):
        return torch.tanh(alpha * x) / 2 + 0.5

    @staticmethod
    def surrogate_gradient(x, alpha):
        return alpha / 2 / torch.cosh(alpha * x) ** 2


@pytest.mark.parametrize("n", NEURONS, ids=lambda n: n.kind)
def test_non_spiking_surrogate(n):
    x_seq, v_init, r_tau = make_inputs(n, 3, (4,))
    with pytest.raises(NotImplementedError, match=r"spiking=False.*torch backend"):
        _call(n, x_seq, v_init, r_tau, surrogate.Sigmoid(spiking=False))


@pytest.mark.parametrize(
    "sg",
    [NotASurrogate(), torch.sigmoid, CustomSurrogate()],
    ids=["callable-object", "torch-function", "custom-subclass"],
)
def test_surrogate_without_kernel_formula(sg):
    n = NEURONS[1]
    x_seq, v_init, r_tau = make_inputs(n, 3, (4,))
    with pytest.raises(NotImplementedError) as info:
        _call(n, x_seq, v_init, r_tau, sg)
    message = str(info.value)
    # The message lists the supported surrogates.
    for name in ("Sigmoid", "ATan", "SquarewaveFourierSeries", "FakeNumericalGradient"):
        assert name in message


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32], ids=["float64", "int32"])
@pytest.mark.parametrize("n", NEURONS, ids=lambda n: n.kind)
def test_unsupported_dtype(n, dtype):
    x_seq, v_init, r_tau = make_inputs(n, 3, (4,))
    with pytest.raises(NotImplementedError, match=r"float32, float16 and bfloat16"):
        _call(n, x_seq.to(dtype), v_init.to(dtype), r_tau)


@pytest.mark.parametrize("n", NEURONS, ids=lambda n: n.kind)
def test_cpu_tensors_without_the_interpreter(n, monkeypatch):
    """CPU tensors run only under TRITON_INTERPRET=1; otherwise the error names CUDA."""
    monkeypatch.setattr(common, "_INTERPRETER", False)
    x_seq, v_init, r_tau = make_inputs(n, 3, (4,), device=torch.device("cpu"))
    with pytest.raises(NotImplementedError, match=r"CUDA") as info:
        _call(n, x_seq, v_init, r_tau)
    assert "TRITON_INTERPRET" in str(info.value)


@pytest.mark.parametrize(
    "v_shape", [(5,), (4, 1), (), (3, 4)], ids=["wrong-size", "extra-dim", "scalar", "2d"]
)
@pytest.mark.parametrize("n", NEURONS, ids=lambda n: n.kind)
def test_v_init_shape_mismatch(n, v_shape):
    x_seq, _, r_tau = make_inputs(n, 3, (4,))
    v_init = torch.zeros(v_shape, device=DEVICE)
    with pytest.raises(ValueError, match=r"does not match one step of x_seq"):
        _call(n, x_seq, v_init, r_tau)


def test_v_init_dtype_mismatch():
    n = NEURONS[0]
    x_seq, v_init, r_tau = make_inputs(n, 3, (4,))
    with pytest.raises(ValueError, match=r"must match x_seq"):
        _call(n, x_seq, v_init.half(), r_tau)


@pytest.mark.parametrize("shape", [(2,), (1, 2), (0,)], ids=["2", "1x2", "empty"])
def test_plif_r_tau_must_have_one_element(shape):
    n = NEURONS[2]
    x_seq, v_init, _ = make_inputs(n, 3, (4,))
    r_tau = torch.full(shape, 0.5, device=DEVICE)
    with pytest.raises(ValueError, match=r"r_tau must have one element"):
        _call(n, x_seq, v_init, r_tau)


def test_x_seq_without_time_axis():
    n = NEURONS[0]
    with pytest.raises(ValueError, match=r"\[T, \*S\]"):
        _call(n, torch.tensor(1.0, device=DEVICE), torch.tensor(0.0, device=DEVICE), None)


# -- through the nodes ----------------------------------------------------------------------

NODE_CLASSES = [neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode]


@pytest.mark.parametrize("cls", NODE_CLASSES, ids=lambda c: c.__name__)
def test_single_step_mode_is_unsupported(cls):
    with pytest.raises(backends.UnsupportedOperatorError, match=r"single_step") as info:
        cls(step_mode="s", backend="triton")
    assert "'torch'" in str(info.value)  # names what is supported
    node = cls(step_mode="m", backend="triton")
    with pytest.raises(backends.UnsupportedOperatorError):
        node.step_mode = "s"


@pytest.mark.parametrize("cls", NODE_CLASSES, ids=lambda c: c.__name__)
def test_node_never_falls_back_to_torch(cls):
    """An explicit backend='triton' raises for float64 and spiking=False surrogates
    instead of silently running the torch loop."""
    node = cls(step_mode="m", backend="triton")
    x_seq = torch.rand(3, 2, 4, device=DEVICE, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match=r"float64"):
        node(x_seq)
    node = cls(step_mode="m", backend="triton", surrogate_function=surrogate.ATan(spiking=False))
    with pytest.raises(NotImplementedError, match=r"spiking=False"):
        node(x_seq.float())


# -- second-order gradients ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "eager",
        "registered-ops",
    ],
)
def test_double_backward_is_refused_or_right(path, monkeypatch):
    """With ``create_graph=True`` the kernels must either raise (they implement no second
    derivative) or give the reference's result; a silently missing term is a bug.
    The reference (autograd through the torch loop) differentiates the surrogate twice."""
    if path == "registered-ops":
        monkeypatch.setattr(common, "_EAGER_OPS", True, raising=False)
    n = Neuron("lif", v_reset=0.0, tau=2.0)
    x_seq, v_init, _ = make_inputs(n, 4, (10,), seed=3)

    def second_order(fn):
        x = x_seq.clone().requires_grad_()
        extra = {"surrogate_function": surrogate.Sigmoid(), "store_v_seq": False}
        spike_seq, _, _ = fn(x, v_init, **(n.kwargs(**extra)))
        (g,) = torch.autograd.grad(spike_seq.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(spike_seq.sum() + (g**2).sum(), x)
        return gg

    expected = second_order(reference.multistep_lif)
    try:
        actual = second_order(KERNELS["lif"])
    except RuntimeError:
        return  # refused with an error: acceptable
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
