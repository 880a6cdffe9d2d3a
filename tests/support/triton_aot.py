"""Compile the Triton kernels the triton backend would launch, for a GPU, on a machine
without one.

Triton's CPU interpreter runs the kernels' Python, not the compiler: a kernel that the
interpreter runs can still be refused by the compiler (a branch that changes a value's
type, an operation without a lowering). This script runs the backend's host code with
every kernel launch captured instead of run, then compiles each captured launch (its
compile-time constants, and a signature from its actual arguments) with
``triton.compile`` for an NVIDIA target, down to machine code with the ``ptxas`` that
Triton ships.

Run it in a process where ``TRITON_INTERPRET`` is not set (the kernels must be
``JITFunction`` s)::

    python tests/support/triton_aot.py        # prints one JSON line per launch

``tests/triton/test_triton_aot_compile.py`` runs it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

#: The target: compute capability 9.0 (H100 / H200), 32 threads per warp.
CAPABILITY, WARP_SIZE = 90, 32

_POINTER_TYPES = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}


class _Captured:
    """``kernel[grid](*args, **kwargs)`` recorded, not launched."""

    def __init__(self, kernel, launches: list) -> None:
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid) -> Callable[..., None]:
        def record(*args, **kwargs) -> None:
            self.launches.append((self.kernel, args, kwargs))

        return record


@contextmanager
def captured_launches() -> Iterator[list]:
    """Every kernel launch of sj-triton's neuron kernels inside the block, recorded as
    ``(kernel, args, kwargs)``; nothing runs (the outputs are left unwritten)."""
    from sj_triton import operators
    from sj_triton.neuron_kernel import kernel_op

    names = [n for n in dir(kernel_op) if n.startswith("neuron_") and n.endswith("_kernel")]
    launches: list = []
    originals = {name: getattr(kernel_op, name) for name in names}
    for name, kernel in originals.items():
        setattr(kernel_op, name, _Captured(kernel, launches))
    # The operators take CPU tensors (nothing runs on them) as under the interpreter.
    interpreter = operators._INTERPRETER
    operators._INTERPRETER = True
    try:
        yield launches
    finally:
        operators._INTERPRETER = interpreter
        for name, kernel in originals.items():
            setattr(kernel_op, name, kernel)


def _argument_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return _POINTER_TYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    return "fp32"


def compile_launch(kernel, args: tuple, kwargs: dict) -> float:
    """Compile one captured launch for the target; returns the seconds it took."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    options = {k: kwargs[k] for k in ("num_warps", "num_stages") if k in kwargs}
    constexprs = {k: v for k, v in kwargs.items() if k not in options}
    names = kernel.arg_names
    signature = {}
    for name, value in zip(names, args, strict=False):
        signature[name] = _argument_type(value)
    for name in constexprs:
        signature[name] = "constexpr"
    start = time.perf_counter()
    triton.compile(
        ASTSource(kernel, signature, constexprs),
        target=GPUTarget("cuda", CAPABILITY, WARP_SIZE),
        options=options,
    )
    return time.perf_counter() - start


def _cases() -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, run)``: ``run`` calls the backend as a user would (forward and backward)."""
    from neuron_cases import NeuronCase, flag_settings, make_inputs, make_surrogate

    from sj_core.neuron.statements import STATEMENTS
    from sj_triton import operators
    from sj_triton.neuron_kernel import launch_config

    def run(case, T, dtype, *, train=True, store_v_seq=False, surrogate="Sigmoid"):
        x_seq, states, tensors = make_inputs(case, T, (4, 64), dtype=dtype)
        op = getattr(operators, f"{case.name}_multi_step")
        leaves = [t.requires_grad_(train) for t in (x_seq, *states)]
        with torch.set_grad_enabled(train):
            outputs = op(*leaves, *tensors, **case.kwargs(make_surrogate(surrogate), store_v_seq))
            if train:
                used = [o for o in outputs if o is not None and o.requires_grad]
                torch.autograd.grad(used, leaves, [torch.ones_like(o) for o in used])

    for name in STATEMENTS:
        for flags in flag_settings(name):
            hard = NeuronCase(name, -0.3, 0.9, False, flags)
            yield f"{hard.id}-fp32-train", lambda c=hard: run(c, 8, torch.float32)
        soft = NeuronCase(name, None, 1.25, True, flag_settings(name)[0])
        yield (
            f"{soft.id}-bf16-train-v_seq",
            lambda c=soft: run(c, 8, torch.bfloat16, store_v_seq=True, surrogate="ATan"),
        )
        yield f"{soft.id}-fp16-inference", lambda c=soft: run(c, 8, torch.float16, train=False)
        if STATEMENTS[name].adaptation is None:
            for T in (1, 5, 16):

                def recompute(c=hard, T=T) -> None:
                    with launch_config.recompute_short_sequences():
                        run(c, T, torch.float32, store_v_seq=T == 5)

                yield f"{hard.id}-fp32-train-recompute-T{T}", recompute


def main() -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")
        return 2
    failures = 0
    for name, run in _cases():
        with captured_launches() as launches:
            run()
        for kernel, args, kwargs in launches:
            record = {"case": name, "kernel": kernel.__name__}
            try:
                record["seconds"] = round(compile_launch(kernel, args, kwargs), 2)
            except Exception:  # report every failure, not only the first
                failures += 1
                record["error"] = traceback.format_exc(limit=-3)
            print(json.dumps(record), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
