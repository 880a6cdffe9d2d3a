"""Test cases for the cupy kernels and the independent reference they are checked against.

The reference is :mod:`sj_core.reference` (pure-torch loops, differentiated by autograd).
Spikes may differ only where the reference ``H`` is within ``1e-5`` of the threshold
(DESIGN.md): :func:`run_reference` records ``H - V_th`` at every step so that
:func:`check_spikes` can say where a flip is allowed; neurons that flipped are left out of
the value and gradient comparisons (their later trajectories legitimately differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from sj_core import reference
from sj_cupy import launch, operators
from sj_cupy._backend import cupy_installed
from sj_cupy.codegen import DTYPES, VECTOR_BYTES, KernelVariant, kernel_params

V_THRESHOLD = 1.0
HARD_V_RESET = -0.1  # not 0, so that V_r matters in the LIF/PLIF charge
NEAR_THRESHOLD = 1e-5

# Tolerances (relative to the reference's largest magnitude, and element-wise relative).
# fp32: DESIGN.md's 1e-5. fp16/bf16: the kernels compute in fp32 from the same rounded
# inputs, so the outputs differ from an fp32 reference by a few roundings of the dtype.
TOLERANCES = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}


# -- which kernel ran: scalar (one neuron per thread) or vector (16-byte accesses) ----------


def check_vector_launch(variant: KernelVariant, args: tuple) -> None:
    """What the GPU would fault on (a misaligned 16-byte access) or silently get wrong (a
    partial last vector): the host must never launch a vector kernel with such arguments."""
    if variant.vec == 1:
        return
    params = kernel_params(variant)
    n = args[[p.name for p in params].index("N")]
    assert n % variant.vec == 0, f"{variant.kernel_name} launched with N = {n}"
    for param, value in zip(params, args, strict=True):
        if param.per_neuron:
            assert value % VECTOR_BYTES == 0, f"{variant.kernel_name}: {param.name} misaligned"


class RecordingLauncher:
    """Runs kernels through another launcher (CuPy on the GPU) and records the variants,
    checking first that a vector kernel gets sizes and pointers it can take."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.device_type = inner.device_type
        self.launches: list[KernelVariant] = []

    def launch(self, variant, args, n_blocks, device) -> None:
        check_vector_launch(variant, args)
        self.launches.append(variant)
        self.inner.launch(variant, args, n_blocks, device)


def launched_vecs(direction: str | None = None) -> list[int]:
    """Neurons per thread of every kernel the active (recording) launcher ran so far,
    optionally only the ``"forward"`` or ``"backward"`` ones."""
    return [
        v.vec
        for v in launch.get_launcher().launches
        if direction is None or v.direction == direction
    ]


def vector_width(dtype: torch.dtype) -> int:
    """Neurons per thread of the vector kernels for ``dtype`` (4 fp32, 8 fp16/bf16)."""
    return DTYPES[str(dtype).removeprefix("torch.")].vec


def misaligned(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``tensor`` that starts one element past a 16-byte boundary
    (a view into a larger buffer, as a slice of a bigger tensor would be)."""
    buffer = tensor.new_empty(tensor.numel() + 1 + VECTOR_BYTES // tensor.element_size())
    offset = (-buffer.data_ptr() % VECTOR_BYTES) // tensor.element_size() + 1
    view = buffer[offset : offset + tensor.numel()].view(tensor.shape)
    view.copy_(tensor)
    assert view.is_contiguous() and view.data_ptr() % VECTOR_BYTES != 0
    return view


def require_cuda_and_cupy() -> None:
    """Skip (with the reason) unless the GPU path can run here."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    # Not importorskip: tests/cupy itself imports as a namespace package "cupy".
    if not cupy_installed():
        pytest.skip("CuPy is not installed: pip install 'sj-cupy[cuda13]'")


@dataclass(frozen=True)
class NeuronCase:
    """One neuron family in one configuration, with inputs that make it fire sometimes."""

    neuron: str
    params: dict = field(default_factory=dict)
    decay_input: bool | None = None  # None: the neuron has no such option
    input_scale: float = 0.5
    input_shift: float = 0.4

    @property
    def id(self) -> str:
        if self.decay_input is None:
            return self.neuron
        return f"{self.neuron}-{'decay' if self.decay_input else 'nodecay'}"

    @property
    def has_w(self) -> bool:
        return self.neuron == "izhikevich"

    @property
    def has_r_tau(self) -> bool:
        return self.neuron == "plif"

    def kwargs(self) -> dict:
        extra = dict(self.params)
        if self.decay_input is not None:
            extra["decay_input"] = self.decay_input
        return extra


CASES = [
    NeuronCase("if", input_scale=0.5, input_shift=0.3),
    NeuronCase("lif", {"tau": 2.5}, True, 0.8, 1.0),
    NeuronCase("lif", {"tau": 2.5}, False, 0.8, 0.5),
    NeuronCase("plif", {}, True, 0.8, 1.0),
    NeuronCase("plif", {}, False, 0.8, 0.5),
    NeuronCase("qif", {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": -0.05}),
    NeuronCase("eif", {"tau": 2.0, "delta_T": 1.0, "theta_rh": 0.8, "v_rest": -0.05}),
    NeuronCase(
        "izhikevich",
        {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": -0.1, "a": 0.5, "b": 0.2, "tau_w": 2.0},
        input_shift=0.5,
    ),
]
CASE_BY_ID = {case.id: case for case in CASES}
R_TAU = 0.4  # PLIF's 1/tau


def make_inputs(case: NeuronCase, T: int, shape: tuple[int, ...], dtype, device, seed=0):
    """``(x_seq, v_init, w_init | None, r_tau | None)``, fp32 values rounded to ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    x_seq = torch.randn(T, *shape, generator=generator) * case.input_scale + case.input_shift
    v_init = torch.rand(*shape, generator=generator) * 0.5
    w_init = torch.rand(*shape, generator=generator) * 0.2 if case.has_w else None
    r_tau = torch.tensor([R_TAU]) if case.has_r_tau else None

    def to(t):
        return None if t is None else t.to(dtype).to(device)

    return to(x_seq), to(v_init), to(w_init), None if r_tau is None else r_tau.to(device)


def tensor_args(case: NeuronCase, x_seq, v_init, w_init, r_tau) -> tuple:
    """The positional tensors of the operator: ``(x_seq, v_init[, w_init][, r_tau])``."""
    args = [x_seq, v_init]
    if case.has_w:
        args.append(w_init)
    if case.has_r_tau:
        args.append(r_tau)
    return tuple(args)


class _Recorder(torch.nn.Module):
    """Calls ``surrogate`` unchanged and records its input ``H - V_th`` per step."""

    def __init__(self, surrogate) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.margins: list[torch.Tensor] = []

    def forward(self, x):
        self.margins.append(x.detach())
        return self.surrogate(x)


def call(function, case: NeuronCase, args, *, v_reset, detach_reset, surrogate, store_v_seq):
    return function(
        *args,
        v_threshold=V_THRESHOLD,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=surrogate,
        store_v_seq=store_v_seq,
        **case.kwargs(),
    )


def run_reference(case, args, **kwargs):
    """The reference loop; returns ``(outputs, margins [T, *S])``."""
    recorder = _Recorder(kwargs.pop("surrogate"))
    outputs = call(
        getattr(reference, f"multistep_{case.neuron}"), case, args, surrogate=recorder, **kwargs
    )
    x_seq = args[0]
    margins = torch.stack(recorder.margins) if recorder.margins else x_seq.new_empty(x_seq.shape)
    return outputs, margins


def run_kernel(case, args, **kwargs):
    return call(getattr(operators, f"{case.neuron}_multi_step"), case, args, **kwargs)


def check_spikes(spikes: torch.Tensor, ref_spikes: torch.Tensor, margins: torch.Tensor):
    """Spikes equal the reference's except where the reference ``H`` is within
    ``NEAR_THRESHOLD`` of the threshold. Returns the neurons (``[*S]`` bool) that never
    flipped."""
    assert spikes.shape == ref_spikes.shape
    flipped = spikes.float() != ref_spikes.float()
    near = margins.float().abs() < NEAR_THRESHOLD
    assert not (flipped & ~near).any(), (
        f"{int((flipped & ~near).sum())} spikes differ from the reference away from the threshold"
    )
    if spikes.shape[0] == 0:
        return torch.ones(spikes.shape[1:], dtype=torch.bool, device=spikes.device)
    return ~flipped.any(0)


def assert_close(got, want, dtype, keep=None, what=""):
    """``got`` (any dtype) matches the fp32/fp64 ``want`` within the dtype's tolerance,
    over the neurons in ``keep`` (a ``[*S]`` mask broadcast over leading time steps)."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    got, want = got.detach().double(), want.detach().double()
    if keep is not None and got.dim() >= keep.dim() and keep.numel() > 0:
        got, want = got[..., keep], want[..., keep]
    tol = TOLERANCES[dtype]
    scale = want.abs().max().item() if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(scale, 1e-3), msg=what)


def upstream_grads(outputs, seed=1):
    """Random weights for every output (``None`` outputs get ``None``)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        None if o is None else torch.randn(o.shape, generator=generator).to(o.device)
        for o in outputs
    ]


def weighted_sum(outputs, weights):
    total = 0.0
    for output, weight in zip(outputs, weights, strict=True):
        if output is not None and weight is not None:
            total = total + (output.float() * weight).sum()
    return total
