"""Comparing any backend's neuron operator with the sj-core torch reference.

One set of rules for every backend and neuron (DESIGN.md "Testing strategy"):

* fp32: every value and gradient within ``1e-5`` relative, measured against the scale of
  the tensor: ``|a - e| <= 1e-5 |e| + 1e-5 max|e|`` (a recurrence over ``T`` steps
  cancels terms, so a pure element-wise test would be meaningless where the exact
  gradient is ~0). A tensor parameter's gradient (PLIF's ``r_tau``) is one sum over every
  neuron and step; its scale is the sum of the per-neuron magnitudes.
* Spikes must be identical, except in *neurons* whose reference ``H - V_th`` comes within
  :data:`NEAR_THRESHOLD` of 0 (or of a jump of the surrogate gradient) at some step:
  rounding may put the kernel on the other side there and the neuron's later trajectory
  then legitimately differs. Such neurons are found from the reference, left out of every
  comparison, and reported with a warning when a spike really differed. A spike that
  differs anywhere else fails the test. With neurons left out, the tensor parameter's
  gradient is compared by running both sides again on the remaining neurons.
* fp16/bf16: compared with the fp32 reference on the upcast inputs, see
  :data:`LOW_PRECISION_TOLERANCES`.

The kernel function under test is always passed in; this module imports no backend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from neuron_cases import NeuronCase, random_like

from sj_core import reference, surrogate

FP32_RTOL = 1e-5
NEAR_THRESHOLD = 1e-5

#: dtype -> (spike-flip fraction, relative-norm error of values, of gradients).
#: Kernels keep their state in fp32 and compute from the same (upcast) inputs as the
#: reference, so spikes flip only where rounding decides (a tiny fraction), and values
#: differ by one rounding on store: at most ``2u`` (``u`` the unit roundoff, fp16
#: ``2**-11``, bf16 ``2**-8``). Gradients also see the rounded incoming gradients and the
#: surrogate evaluated at the stored (rounded) ``H``: at most ``8u`` here, where the
#: nonlinear neurons (QIF, EIF, Izhikevich) amplify a rounding over ``T`` steps.
LOW_PRECISION_TOLERANCES: dict[torch.dtype, tuple[float, float, float]] = {
    torch.float16: (2e-3, 2 * 2.0**-11, 8 * 2.0**-11),
    torch.bfloat16: (2e-3, 2 * 2.0**-8, 8 * 2.0**-8),
}


@dataclass
class Run:
    """Outputs of one run (detached) and the gradients of ``sum(output * weight)``."""

    outputs: dict[str, torch.Tensor | None]  # spike, v_last, [w_last], v_seq
    grads: dict[str, torch.Tensor | None]  # x, v, [w], [r]


def output_names(case: NeuronCase) -> tuple[str, ...]:
    return ("spike", "v_last", "w_last", "v_seq") if case.has_w else ("spike", "v_last", "v_seq")


def input_names(case: NeuronCase) -> tuple[str, ...]:
    names = ["x", "v"] + (["w"] if case.has_w else []) + (["r"] if case.has_tensor else [])
    return tuple(names)


def run_with_grads(
    operator: Callable,
    case: NeuronCase,
    x_seq: torch.Tensor,
    states: Sequence[torch.Tensor],
    tensors: Sequence[torch.Tensor],
    surrogate_function: object,
    *,
    store_v_seq: bool,
    weights: dict[str, torch.Tensor | None],
    wrt: Sequence[str] = ("x", "v", "w", "r"),
) -> Run:
    """Run ``operator`` and backpropagate ``weights`` (per output name; ``None``: that
    output is not used) into the inputs named in ``wrt``.

    The inputs keep their strides (``detach`` is a view), so non-contiguous inputs reach
    ``operator`` as they are.
    """
    leaves = dict(zip(input_names(case), [x_seq, *states, *tensors], strict=True))
    leaves = {name: t.detach() for name, t in leaves.items()}
    wanted = [name for name in wrt if name in leaves]
    for name in wanted:
        leaves[name].requires_grad_(True)
    args = list(leaves.values())
    results = operator(*args, **case.kwargs(surrogate_function, store_v_seq))
    outputs = dict(zip(output_names(case), results, strict=True))
    run = Run({k: None if v is None else v.detach() for k, v in outputs.items()}, {})
    pairs = [(outputs[k], w) for k, w in weights.items() if w is not None]
    # T == 0 gives empty spikes: only outputs with a history take part.
    pairs = [(out, w) for out, w in pairs if out is not None and out.requires_grad]
    if wanted and pairs:
        grads = torch.autograd.grad(
            [out for out, _ in pairs],
            [leaves[name] for name in wanted],
            [w for _, w in pairs],
            allow_unused=True,
        )
        run.grads = dict(zip(wanted, grads, strict=True))
    return run


class _MarginRecorder(torch.nn.Module):
    """Calls ``surrogate`` unchanged and records its input ``H - V_th`` at every step."""

    def __init__(self, surrogate_function) -> None:
        super().__init__()
        self.surrogate_function = surrogate_function
        self.margins: list[torch.Tensor] = []

    def forward(self, x):
        self.margins.append(x.detach())
        return self.surrogate_function(x)


def reference_margins(case: NeuronCase, x_seq, states, tensors, surrogate_function) -> torch.Tensor:
    """``H - V_th`` of the fp32 reference at every step, ``[T, NCL]``."""
    recorder = _MarginRecorder(surrogate_function)
    with torch.no_grad():
        reference.multistep(
            case.statement,
            x_seq.float(),
            *(s.float() for s in states),
            *(t.float() for t in tensors),
            **case.kwargs(recorder, store_v_seq=False),
        )
    T = x_seq.shape[0]
    if not recorder.margins:
        return x_seq.new_empty((0, x_seq[0].numel())).float()
    return torch.stack(recorder.margins).reshape(T, -1).double()


def surrogate_jumps(surrogate_function: object) -> tuple[float, ...]:
    """Points ``x`` (other than 0) where the surrogate's gradient jumps."""
    if isinstance(surrogate_function, surrogate.Rect):
        half = 0.5 / surrogate_function.alpha
        return (-half, half)
    if isinstance(surrogate_function, surrogate.PiecewiseLeakyReLU):
        return (-surrogate_function.w, surrogate_function.w)
    return ()


def near_threshold_neurons(margins: torch.Tensor, surrogate_function) -> torch.Tensor:
    """Bool ``[NCL]``: neurons whose ``H - V_th`` comes within :data:`NEAR_THRESHOLD` of 0
    (or of a jump of the surrogate gradient) at some step."""
    near = (margins.abs() < NEAR_THRESHOLD).any(0)
    for jump in surrogate_jumps(surrogate_function):
        near |= ((margins - jump).abs() < NEAR_THRESHOLD).any(0)
    return near


def assert_close_fp32(actual, expected, name: str, atol_scale: float | None = None) -> None:
    """``|a - e| <= 1e-5 |e| + 1e-5 scale`` with ``scale = max|e|`` unless given."""
    assert actual is not None and expected is not None, f"{name}: a gradient is missing"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item() if atol_scale is None else atol_scale
    torch.testing.assert_close(
        actual.double(),
        expected.double(),
        rtol=FP32_RTOL,
        atol=FP32_RTOL * max(scale, 1e-30),
        msg=lambda m: f"{name}: {m}",
    )


def relative_norm_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||a - e|| / ||e||`` in float64 (0 when both are zero)."""
    a, e = actual.double(), expected.double()
    denom, diff = e.norm().item(), (a - e).norm().item()
    if denom == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / denom


def tensor_gradient_scale(case, x_seq, states, tensors, surrogate_function, weights) -> float:
    """Sum over neurons of ``|dL/dr|`` per neuron: the scale of a tensor parameter's
    gradient (the reference with one ``r`` per neuron, all equal)."""
    x = x_seq.detach().float()
    r_full = tensors[0].detach().float().reshape(()).expand(x.shape[1:]).clone().requires_grad_()
    kwargs = case.kwargs(surrogate_function, store_v_seq=True)
    params = {k: kwargs.pop(k) for k in list(kwargs) if k in case.params}
    store_v_seq = kwargs.pop("store_v_seq")
    current = tuple(s.detach().float() for s in states)
    spikes, v_seq = [], []
    for t in range(x.shape[0]):
        spike, current = reference.neuron_step(
            case.statement, x[t], current, (r_full,), params, **kwargs
        )
        spikes.append(spike)
        v_seq.append(current[0])
    if not spikes:
        return 0.0
    outputs = {"spike": torch.stack(spikes), "v_last": current[0]}
    outputs["v_seq"] = torch.stack(v_seq) if store_v_seq else None
    pairs = [(outputs[k], w.float()) for k, w in weights.items() if w is not None and k in outputs]
    pairs = [(o, w) for o, w in pairs if o is not None and o.requires_grad]
    if not pairs:
        return 0.0
    (grad,) = torch.autograd.grad([o for o, _ in pairs], [r_full], [w for _, w in pairs])
    return grad.abs().sum().item()


@dataclass
class Comparison:
    """What :func:`compare_with_reference` found (for extra assertions in tests)."""

    kernel: Run
    reference: Run
    excluded: torch.Tensor  # bool [NCL]
    spike_rate: float


def random_weights(case: NeuronCase, x_seq, states, *, use=None, seed: int = 100) -> dict:
    """Random weights (incoming gradients) for the outputs named in ``use`` (default: all)."""
    names = output_names(case)
    use = names if use is None else use
    weights = {}
    for i, name in enumerate(names):
        like = x_seq if name in ("spike", "v_seq") else states[0]
        weights[name] = random_like(like, seed + i) if name in use else None
    return weights


def compare_with_reference(
    operator: Callable,
    case: NeuronCase,
    x_seq: torch.Tensor,
    states: Sequence[torch.Tensor],
    tensors: Sequence[torch.Tensor],
    surrogate_function: object,
    *,
    store_v_seq: bool,
    weights: dict[str, torch.Tensor | None] | None = None,
    wrt: Sequence[str] = ("x", "v", "w", "r"),
) -> Comparison:
    """Run ``operator`` and the fp32 torch reference on the same inputs and assert that
    every output and gradient agrees (the rules in the module docstring).

    ``x_seq`` and the states may be fp16/bf16: the reference then runs in fp32 on the
    upcast inputs and weights, and :data:`LOW_PRECISION_TOLERANCES` apply.
    """
    if weights is None:
        weights = random_weights(case, x_seq, states)
        if not store_v_seq:
            weights["v_seq"] = None
    assert store_v_seq or weights.get("v_seq") is None, "v_seq weights without v_seq"
    dtype = x_seq.dtype
    low_precision = dtype in LOW_PRECISION_TOLERANCES
    T = x_seq.shape[0]
    kern = run_with_grads(
        operator, case, x_seq, states, tensors, surrogate_function,
        store_v_seq=store_v_seq, weights=weights, wrt=wrt,
    )  # fmt: skip
    ref_weights = {k: None if w is None else w.float() for k, w in weights.items()}
    ref = run_with_grads(
        _reference(case),
        case, x_seq.float(), [s.float() for s in states], [t.float() for t in tensors],
        surrogate_function, store_v_seq=store_v_seq, weights=ref_weights, wrt=wrt,
    )  # fmt: skip

    # Output dtypes and shapes follow the input; v_seq exists exactly when asked for.
    spikes = kern.outputs["spike"]
    assert spikes.dtype == dtype and spikes.shape == x_seq.shape, "spike_seq dtype/shape"
    for i, name in enumerate(("v_last", "w_last")[: len(states)]):
        assert kern.outputs[name].dtype == dtype, f"{name} dtype"
        assert kern.outputs[name].shape == states[i].shape, f"{name} shape"
    if store_v_seq:
        assert kern.outputs["v_seq"] is not None, "store_v_seq=True must return v_seq"
        assert kern.outputs["v_seq"].shape == x_seq.shape and kern.outputs["v_seq"].dtype == dtype
    else:
        assert kern.outputs["v_seq"] is None, "store_v_seq=False must return v_seq=None"
    for name, like in zip(input_names(case), [x_seq, *states, *tensors], strict=True):
        grad = kern.grads.get(name)
        if grad is not None:
            assert grad.shape == like.shape and grad.dtype == like.dtype, f"grad_{name} dtype/shape"
    if T == 0:  # the operator contract: empty spikes, final states = initial states
        assert spikes.numel() == 0
        for i, name in enumerate(("v_last", "w_last")[: len(states)]):
            torch.testing.assert_close(kern.outputs[name], states[i], rtol=0, atol=0)
        return Comparison(kern, ref, torch.zeros(0, dtype=torch.bool), 0.0)

    margins = reference_margins(case, x_seq, states, tensors, surrogate_function)
    near = near_threshold_neurons(margins, surrogate_function).to(x_seq.device)
    k_spikes = spikes.reshape(T, -1).float()
    r_spikes = ref.outputs["spike"].reshape(T, -1)
    assert set(k_spikes.unique().tolist()) <= {0.0, 1.0}, "spikes must be 0 or 1"
    flipped = (k_spikes != r_spikes).any(0)
    if low_precision:
        max_flips = LOW_PRECISION_TOLERANCES[dtype][0]
        fraction = (k_spikes != r_spikes).float().mean().item()
        assert fraction <= max_flips, f"{fraction:.2e} of the spikes flipped (> {max_flips})"
        excluded = flipped | near
    else:
        unexplained = flipped & ~near
        assert not unexplained.any(), (
            f"spikes differ at {int(unexplained.sum())} neuron(s) whose reference H never "
            f"comes within {NEAR_THRESHOLD} of V_th"
        )
        excluded = near
    if flipped.any():
        warnings.warn(
            f"{int(flipped.sum())} neuron(s) spiked differently from the reference at a step "
            "where the reference H is within rounding of V_th; left out of the comparison",
            stacklevel=2,
        )
    keep = ~excluded
    assert keep.any(), "every neuron was left out: degenerate inputs"

    def pick(t: torch.Tensor, per_step: bool) -> torch.Tensor:
        return t.reshape(T, -1)[:, keep] if per_step else t.reshape(-1)[keep]

    pairs = [("spike", True), ("v_last", False), ("w_last", False), ("v_seq", True)]
    pairs = [(name, kern.outputs.get(name), ref.outputs.get(name), step) for name, step in pairs]
    pairs += [(f"grad_{n}", kern.grads.get(n), ref.grads.get(n), n == "x") for n in ("x", "v", "w")]
    for name, actual, expected, per_step in pairs:
        if expected is None and actual is None:
            continue
        if name.startswith("grad_") and expected is None:
            # No path from the used outputs: the kernel must give zeros (or nothing).
            assert actual is None or not actual.any(), f"{name}: expected no gradient"
            continue
        assert actual is not None and expected is not None, f"{name}: missing"
        a, e = pick(actual, per_step), pick(expected, per_step)
        if name == "spike":
            assert torch.equal(a.float(), e), "spike_seq differs"
        elif low_precision:
            tol = LOW_PRECISION_TOLERANCES[dtype][2 if name.startswith("grad") else 1]
            err = relative_norm_error(a, e)
            assert err <= tol, f"{name}: relative-norm error {err:.2e} > {tol:.1e} ({dtype})"
        else:
            assert_close_fp32(a, e, name)

    if case.has_tensor and "r" in wrt and ref.grads.get("r") is not None:
        grad_r = kern.grads.get("r")
        assert grad_r is not None and grad_r.shape == tensors[0].shape, "grad_r"
        if excluded.any():
            sub_x, sub_states, sub_weights = _restrict(case, x_seq, states, weights, keep, T)
            compare_with_reference(
                operator, case, sub_x, sub_states, tensors, surrogate_function,
                store_v_seq=store_v_seq, weights=sub_weights, wrt=wrt,
            )  # fmt: skip
        else:
            scale = tensor_gradient_scale(case, x_seq, states, tensors, surrogate_function, weights)
            if low_precision:
                tol = LOW_PRECISION_TOLERANCES[dtype][2]
                err = (grad_r.double() - ref.grads["r"].double()).abs().item()
                assert err <= tol * scale, f"grad_r: error {err:.3e} > {tol} x {scale:.3e}"
            else:
                assert_close_fp32(grad_r, ref.grads["r"], "grad_r", atol_scale=scale)
    return Comparison(kern, ref, excluded, ref.outputs["spike"].float().mean().item())


def _reference(case: NeuronCase) -> Callable:
    return getattr(reference, f"multistep_{case.name}")


def _restrict(case, x_seq, states, weights, keep, T):
    """Inputs and weights of only the neurons in ``keep`` (as ``[T, n]`` / ``[n]``)."""
    x = x_seq.reshape(T, -1)[:, keep].contiguous()
    sub_states = [s.reshape(-1)[keep].contiguous() for s in states]
    sub = {}
    for k, w in weights.items():
        if w is None:
            sub[k] = None
        elif k in ("v_last", "w_last"):
            sub[k] = w.reshape(-1)[keep].contiguous()
        else:
            sub[k] = w.reshape(T, -1)[:, keep].contiguous()
    return x, sub_states, sub
