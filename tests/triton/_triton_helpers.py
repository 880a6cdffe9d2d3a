"""Shared pieces of the sj-triton tests: neuron configurations, inputs, the comparison
with the sj-core torch reference, and the tolerance rules.

This module never imports Triton or sj_triton (so the test modules can skip cleanly when
they are absent); the kernel function under test is always passed in.

Comparison rules (DESIGN.md "Testing strategy"):

* fp32: every value and gradient within ``1e-5`` relative, measured against the scale of
  the tensor: ``|a - e| <= 1e-5 |e| + 1e-5 max|e|`` (a recurrence over ``T`` steps
  cancels terms, so a pure element-wise relative test would be meaningless where the
  exact gradient is ~0). PLIF's ``r_tau`` gradient is one sum over every neuron and step;
  its scale is the sum of the per-neuron magnitudes, computed by a reference run with one
  ``1/tau`` per neuron.
* Spikes must be identical, except in *neurons* whose reference ``H`` comes within
  ``1e-5`` of ``V_th`` at some step (rounding may put the kernel on the other side; the
  neuron's later trajectory then legitimately differs). Such neurons are detected from
  the reference's ``H``, excluded from every comparison, and reported with a warning
  when a spike really differed. The same exclusion applies to neurons whose ``H - V_th``
  comes within ``1e-5`` of a jump of the surrogate gradient (e.g. ``Rect``'s edges).
  A spike that differs anywhere else fails the test. When neurons are excluded, the
  ``r_tau`` gradient is compared by running both sides again on the remaining neurons
  (neurons are independent, so that is the same computation).
* fp16/bf16: compared with the fp32 reference on the upcast inputs, see
  :data:`LOW_PRECISION_TOLERANCES`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sj_core import reference, surrogate
from sj_core.neuron.dynamics import if_charge, lif_charge, plif_charge

HAS_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")

FP32_RTOL = 1e-5
NEAR_THRESHOLD = 1e-5

#: dtype -> (spike-flip fraction, relative-norm error of values, of gradients).
#: The kernel keeps its state in fp32 and computes from the same (upcast) inputs as the
#: reference, so spikes flip only where rounding decides (a tiny fraction), and values
#: differ by one rounding on store: at most ``2u`` (``u`` the unit roundoff, fp16
#: ``2**-11``, bf16 ``2**-8``; measured ~0.4u-0.8u). Gradients also see the rounded
#: incoming gradients and the surrogate evaluated at the stored (rounded) ``H``: at most
#: ``4u`` (measured ~1u-2u).
LOW_PRECISION_TOLERANCES: dict[torch.dtype, tuple[float, float, float]] = {
    torch.float16: (1e-3, 2 * 2.0**-11, 4 * 2.0**-11),
    torch.bfloat16: (1e-3, 2 * 2.0**-8, 4 * 2.0**-8),
}


# -- neuron configurations ----------------------------------------------------------------


@dataclass(frozen=True)
class Neuron:
    """One kernel configuration: neuron family, reset mode and flags.

    ``v_reset=None`` is soft reset. ``decay_input`` and ``tau`` are ignored for IF;
    PLIF's ``1/tau`` is the tensor :attr:`r_tau_value`.
    """

    kind: str  # "if" | "lif" | "plif"
    v_reset: float | None = 0.0
    detach_reset: bool = False
    decay_input: bool = True
    tau: float = 3.0
    r_tau_value: float = 1.0 / (1.0 + math.exp(-0.3))  # sigmoid(0.3), PLIF's 1/tau
    v_threshold: float = 1.0

    @property
    def id(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard{self.v_reset:g}"
        parts = [self.kind, reset]
        if self.detach_reset:
            parts.append("detach")
        if self.kind != "if":
            parts.append("decay" if self.decay_input else "nodecay")
        if self.v_threshold != 1.0:
            parts.append(f"th{self.v_threshold:g}")
        return "-".join(parts)

    @property
    def has_r_tau(self) -> bool:
        return self.kind == "plif"

    def kwargs(self, surrogate_function: object, store_v_seq: bool) -> dict:
        """Keyword arguments of the ``<kind>.multi_step`` operator."""
        kwargs = {
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "detach_reset": self.detach_reset,
            "surrogate_function": surrogate_function,
            "store_v_seq": store_v_seq,
        }
        if self.kind == "lif":
            kwargs.update(tau=self.tau, decay_input=self.decay_input)
        elif self.kind == "plif":
            kwargs.update(decay_input=self.decay_input)
        return kwargs

    def charge(self, x: torch.Tensor, v: torch.Tensor, r_tau: torch.Tensor | None) -> torch.Tensor:
        """``H`` from ``X`` and ``V[t-1]`` (sj-core's per-step equations)."""
        if self.kind == "if":
            return if_charge(x, v)
        if self.kind == "lif":
            return lif_charge(x, v, self.tau, self.decay_input, self.v_reset)
        return plif_charge(x, v, r_tau, self.decay_input, self.v_reset)

    def input_scale(self) -> tuple[float, float]:
        """``(mean, std)`` of inputs that make about 20-40% of the steps spike."""
        if self.kind == "if":
            return 0.4, 0.6
        if self.decay_input:
            return (1.5, 1.0) if self.kind == "lif" else (1.1, 0.9)
        return (0.5, 0.5) if self.kind == "lif" else (0.55, 0.6)


REFERENCE: dict[str, Callable] = {
    "if": reference.multistep_if,
    "lif": reference.multistep_lif,
    "plif": reference.multistep_plif,
}


def all_neuron_configs() -> list[Neuron]:
    """IF/LIF/PLIF x (hard reset 0, hard reset -0.3, soft) x detach_reset x decay_input.

    The threshold differs per reset mode (1, 0.9, 1.25): with ``V_th = 1`` everywhere a
    kernel that dropped ``V_th`` from the soft-reset gradient would pass.
    """
    configs = []
    for kind in ("if", "lif", "plif"):
        for v_reset, v_threshold in ((0.0, 1.0), (-0.3, 0.9), (None, 1.25)):
            for detach_reset in (False, True):
                for decay_input in (True, False) if kind != "if" else (True,):
                    configs.append(
                        Neuron(
                            kind,
                            v_reset,
                            detach_reset,
                            decay_input,
                            v_threshold=v_threshold,
                        )
                    )
    return configs


def call(
    fn: Callable,
    neuron: Neuron,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor | None,
    surrogate_function: object,
    store_v_seq: bool,
):
    """``fn`` (a kernel or reference ``<kind>.multi_step`` operator) on these arguments."""
    extra = (r_tau,) if neuron.has_r_tau else ()
    return fn(x_seq, v_init, *extra, **neuron.kwargs(surrogate_function, store_v_seq))


# -- inputs -------------------------------------------------------------------------------


def make_inputs(
    neuron: Neuron,
    T: int,
    step_shape: tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    device: torch.device = DEVICE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x_seq [T, *S], v_init [*S], r_tau [1] | None)`` that give plenty of spikes."""
    gen = torch.Generator().manual_seed(seed)
    mean, std = neuron.input_scale()
    x_seq = torch.randn((T, *step_shape), generator=gen) * std + mean
    v_init = torch.rand(step_shape, generator=gen) * 1.2 - 0.4
    r_tau = torch.tensor([neuron.r_tau_value]) if neuron.has_r_tau else None
    x_seq, v_init = x_seq.to(device, dtype), v_init.to(device, dtype)
    if r_tau is not None:
        r_tau = r_tau.to(device)
    return x_seq, v_init, r_tau


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    """Reproducible standard-normal values shaped, typed and placed like ``t``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=gen).to(t.device, t.dtype)


# -- one run with gradients -----------------------------------------------------------------

OUTPUTS = ("spike", "v_last", "v_seq")


@dataclass
class Run:
    """Outputs of one run and the gradients of ``sum(output * incoming gradient)``."""

    spike_seq: torch.Tensor
    v_last: torch.Tensor
    v_seq: torch.Tensor | None
    grad_x: torch.Tensor | None = None
    grad_v: torch.Tensor | None = None
    grad_r: torch.Tensor | None = None


def run_with_grads(
    fn: Callable,
    neuron: Neuron,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor | None,
    surrogate_function: object,
    *,
    store_v_seq: bool,
    out_grads: dict[str, torch.Tensor | None],
    wrt: tuple[str, ...] = ("x", "v", "r"),
) -> Run:
    """Run ``fn`` and backpropagate ``out_grads`` (keys of :data:`OUTPUTS`, ``None`` =
    that output is not used) into the inputs named in ``wrt`` (``x``, ``v``, ``r``).

    The inputs keep their strides (``detach`` is a view), so non-contiguous inputs reach
    ``fn`` as they are.
    """
    leaves = {"x": x_seq.detach(), "v": v_init.detach()}
    if r_tau is not None:
        leaves["r"] = r_tau.detach()
    wanted = [name for name in wrt if name in leaves]
    for name in wanted:
        leaves[name].requires_grad_(True)
    spike_seq, v_last, v_seq = call(
        fn, neuron, leaves["x"], leaves["v"], leaves.get("r"), surrogate_function, store_v_seq
    )
    run = Run(spike_seq.detach(), v_last.detach(), None if v_seq is None else v_seq.detach())
    outputs = {"spike": spike_seq, "v_last": v_last, "v_seq": v_seq}
    # T == 0 gives an empty spike_seq without history: only outputs with one take part.
    pairs = [(outputs[k], g) for k, g in out_grads.items() if g is not None]
    pairs = [(out, g) for out, g in pairs if out.requires_grad]
    if wanted and pairs:
        grads = torch.autograd.grad(
            [out for out, _ in pairs],
            [leaves[name] for name in wanted],
            [g for _, g in pairs],
            allow_unused=True,
        )
        by_name = dict(zip(wanted, grads, strict=True))
        run.grad_x, run.grad_v, run.grad_r = by_name.get("x"), by_name.get("v"), by_name.get("r")
    return run


def reference_h(
    neuron: Neuron,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor | None,
    v_seq: torch.Tensor,
) -> torch.Tensor:
    """The reference's pre-reset ``H`` ``[T, *S]``, rebuilt from its post-reset ``v_seq``."""
    with torch.no_grad():
        r = None if r_tau is None else r_tau.reshape(())
        v_prev = torch.cat([v_init.unsqueeze(0), v_seq[:-1]]) if len(v_seq) else v_seq
        return neuron.charge(x_seq, v_prev, r)


def surrogate_jumps(surrogate_function: object) -> tuple[float, ...]:
    """Points ``x`` (other than 0) where the surrogate's gradient jumps."""
    if isinstance(surrogate_function, surrogate.Rect):
        half = 0.5 / surrogate_function.alpha
        return (-half, half)
    if isinstance(surrogate_function, surrogate.PiecewiseLeakyReLU):
        return (-surrogate_function.w, surrogate_function.w)
    return ()


def near_threshold_neurons(
    neuron: Neuron, h: torch.Tensor, surrogate_function: object, tol: float = NEAR_THRESHOLD
) -> torch.Tensor:
    """Bool ``[NCL]``: neurons whose ``H - V_th`` comes within ``tol`` of 0 (or of a jump
    of the surrogate gradient) at some step."""
    d = (h.reshape(h.shape[0], -1).double() - neuron.v_threshold).abs()
    near = (d < tol).any(0)
    signed = h.reshape(h.shape[0], -1).double() - neuron.v_threshold
    for jump in surrogate_jumps(surrogate_function):
        near |= ((signed - jump).abs() < tol).any(0)
    return near


# -- comparisons ----------------------------------------------------------------------------


def flat_steps(t: torch.Tensor, T: int) -> torch.Tensor:
    """``[T, *S]`` -> ``[T, NCL]``."""
    return t.reshape(T, -1)


def assert_close_fp32(actual, expected, name: str, atol_scale: float | None = None) -> None:
    """``|a - e| <= 1e-5 |e| + 1e-5 scale`` with ``scale = max|e|`` unless given."""
    assert actual is not None and expected is not None, f"{name}: a gradient is missing"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item() if atol_scale is None else atol_scale
    torch.testing.assert_close(
        actual.float(),
        expected.float(),
        rtol=FP32_RTOL,
        atol=FP32_RTOL * max(scale, 1e-30),
        msg=lambda m: f"{name}: {m}",
    )


def relative_norm_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||a - e|| / ||e||`` in float64 (0 when both are empty or zero)."""
    a, e = actual.double(), expected.double()
    denom = e.norm().item()
    diff = (a - e).norm().item()
    if denom == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / denom


def plif_r_tau_grad_scale(
    neuron: Neuron,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor,
    surrogate_function: object,
    out_grads: dict[str, torch.Tensor | None],
) -> float:
    """Sum over neurons of ``|dL/d(1/tau)|`` per neuron: the scale of the r_tau gradient.

    Reference loop with one ``1/tau`` per neuron (all equal), so each neuron's share of
    the summed gradient is visible.
    """
    x = x_seq.detach().float()
    r_full = r_tau.detach().float().reshape(()).expand(x.shape[1:]).clone().requires_grad_()

    def charge(x_t, v):
        return plif_charge(x_t, v, r_full, neuron.decay_input, neuron.v_reset)

    spike_seq, v_last, v_seq = reference.run_multistep(
        x,
        v_init.detach().float(),
        charge,
        v_threshold=neuron.v_threshold,
        v_reset=neuron.v_reset,
        detach_reset=neuron.detach_reset,
        surrogate_function=surrogate_function,
        store_v_seq=True,
    )
    outputs = {"spike": spike_seq, "v_last": v_last, "v_seq": v_seq}
    pairs = [(outputs[k], g.float()) for k, g in out_grads.items() if g is not None]
    if not pairs or not any(out.requires_grad for out, _ in pairs):
        return 0.0
    (grad,) = torch.autograd.grad(
        [o for o, _ in pairs], [r_full], [g for _, g in pairs], allow_unused=True
    )
    return 0.0 if grad is None else grad.abs().sum().item()


@dataclass
class Comparison:
    """What :func:`compare_with_reference` found (for extra assertions in tests)."""

    kernel: Run
    reference: Run
    excluded: torch.Tensor  # bool [NCL]
    spike_rate: float


def compare_with_reference(
    kernel_fn: Callable,
    neuron: Neuron,
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    r_tau: torch.Tensor | None,
    surrogate_function: object,
    *,
    store_v_seq: bool,
    out_grads: dict[str, torch.Tensor | None],
    wrt: tuple[str, ...] = ("x", "v", "r"),
) -> Comparison:
    """Run the kernel and the fp32 torch reference on the same inputs and assert that
    outputs and gradients agree (rules in the module docstring).

    ``x_seq`` etc. may be fp16/bf16: the reference then runs in fp32 on the upcast inputs
    and incoming gradients, and :data:`LOW_PRECISION_TOLERANCES` apply.
    """
    assert store_v_seq or out_grads.get("v_seq") is None, "v_seq gradient without v_seq"
    dtype = x_seq.dtype
    low_precision = dtype in LOW_PRECISION_TOLERANCES
    T = x_seq.shape[0]
    kern = run_with_grads(
        kernel_fn,
        neuron,
        x_seq,
        v_init,
        r_tau,
        surrogate_function,
        store_v_seq=store_v_seq,
        out_grads=out_grads,
        wrt=wrt,
    )
    ref_grads = {k: (None if g is None else g.float()) for k, g in out_grads.items()}
    ref = run_with_grads(
        REFERENCE[neuron.kind],
        neuron,
        x_seq.float(),
        v_init.float(),
        None if r_tau is None else r_tau.float(),
        surrogate_function,
        store_v_seq=True,  # the reference's v_seq gives H for the near-threshold test
        out_grads=ref_grads,
        wrt=wrt,
    )

    # Output dtypes and shapes follow the input.
    assert kern.spike_seq.dtype == dtype and kern.spike_seq.shape == x_seq.shape
    assert kern.v_last.dtype == dtype and kern.v_last.shape == v_init.shape
    if store_v_seq:
        assert kern.v_seq is not None and kern.v_seq.shape == x_seq.shape
        assert kern.v_seq.dtype == dtype
    else:
        assert kern.v_seq is None, "store_v_seq=False must return v_seq=None"
    for name, grad, like in (("x", kern.grad_x, x_seq), ("v", kern.grad_v, v_init)):
        if grad is not None:
            assert grad.dtype == dtype and grad.shape == like.shape, f"grad_{name} dtype/shape"
    if T == 0:  # operator contract: empty spikes, v_last = v_init (gradient: identity)
        assert kern.spike_seq.numel() == 0
        torch.testing.assert_close(kern.v_last, v_init, rtol=0, atol=0)
        if "v" in wrt and out_grads.get("v_last") is not None:
            torch.testing.assert_close(kern.grad_v, out_grads["v_last"], rtol=0, atol=0)
        return Comparison(kern, ref, torch.zeros(0, dtype=torch.bool), 0.0)

    # Spikes: equal, except in neurons where the reference H is within 1e-5 of V_th.
    h = reference_h(
        neuron, x_seq.float(), v_init.float(), None if r_tau is None else r_tau.float(), ref.v_seq
    )
    near = near_threshold_neurons(neuron, h, surrogate_function).to(x_seq.device)
    k_spikes = flat_steps(kern.spike_seq, T).float()
    r_spikes = flat_steps(ref.spike_seq, T)
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
            f"where the reference H is within rounding of V_th; excluded from comparison",
            stacklevel=2,
        )
    keep = ~excluded
    assert keep.numel() == 0 or keep.any(), "every neuron was excluded: degenerate inputs"

    def pick(t: torch.Tensor, per_step: bool) -> torch.Tensor:
        return flat_steps(t, T)[:, keep] if per_step else t.reshape(-1)[keep]

    pairs = [
        ("spike_seq", kern.spike_seq, ref.spike_seq, True),
        ("v_last", kern.v_last, ref.v_last, False),
        ("grad_x", kern.grad_x, ref.grad_x, True),
        ("grad_v_init", kern.grad_v, ref.grad_v, False),
    ]
    if store_v_seq:
        pairs.insert(2, ("v_seq", kern.v_seq, ref.v_seq, True))
    for name, actual, expected, per_step in pairs:
        if expected is None and actual is None:
            continue
        if expected is None:  # no path from the used outputs: the kernel must give zeros
            assert not actual.any(), f"{name}: expected no gradient, got nonzero values"
            continue
        assert actual is not None, f"{name}: the kernel gave no gradient"
        a, e = pick(actual, per_step), pick(expected, per_step)
        if name == "spike_seq":
            assert torch.equal(a.float(), e), "spike_seq differs"
        elif low_precision:
            tol = LOW_PRECISION_TOLERANCES[dtype][1 if name.startswith("v") else 2]
            err = relative_norm_error(a, e)
            assert err <= tol, f"{name}: relative-norm error {err:.2e} > {tol:.1e} ({dtype})"
        else:
            assert_close_fp32(a, e, name)

    if neuron.has_r_tau and "r" in wrt and ref.grad_r is not None:
        assert kern.grad_r is not None and kern.grad_r.shape == r_tau.shape
        if excluded.any():
            sub = _restrict_to_neurons(x_seq, v_init, out_grads, keep, T)
            compare_with_reference(
                kernel_fn,
                neuron,
                sub[0],
                sub[1],
                r_tau,
                surrogate_function,
                store_v_seq=store_v_seq,
                out_grads=sub[2],
                wrt=wrt,
            )
        else:
            scale = plif_r_tau_grad_scale(
                neuron, x_seq, v_init, r_tau, surrogate_function, out_grads
            )
            if low_precision:
                tol = LOW_PRECISION_TOLERANCES[dtype][2]
                err = (kern.grad_r.double() - ref.grad_r.double()).abs().item()
                assert err <= tol * scale, f"grad_r_tau: error {err:.3e} > {tol} x {scale:.3e}"
            else:
                assert_close_fp32(kern.grad_r, ref.grad_r, "grad_r_tau", atol_scale=scale)
    return Comparison(kern, ref, excluded, ref.spike_seq.float().mean().item())


def _restrict_to_neurons(x_seq, v_init, out_grads, keep, T):
    """The inputs and incoming gradients of only the neurons in ``keep`` (as ``[T, n]``)."""
    x = flat_steps(x_seq, T)[:, keep].contiguous()
    v = v_init.reshape(-1)[keep].contiguous()
    grads = {}
    for k, g in out_grads.items():
        if g is None:
            grads[k] = None
        elif k == "v_last":
            grads[k] = g.reshape(-1)[keep].contiguous()
        else:
            grads[k] = flat_steps(g, T)[:, keep].contiguous()
    return x, v, grads


def random_out_grads(
    spike_seq_like: torch.Tensor,
    v_like: torch.Tensor,
    *,
    use: tuple[str, ...] = OUTPUTS,
    seed: int = 100,
) -> dict[str, torch.Tensor | None]:
    """Random incoming gradients for the outputs named in ``use`` (others ``None``)."""
    grads: dict[str, torch.Tensor | None] = {}
    for i, name in enumerate(OUTPUTS):
        like = v_like if name == "v_last" else spike_seq_like
        grads[name] = random_like(like, seed + i) if name in use else None
    return grads
