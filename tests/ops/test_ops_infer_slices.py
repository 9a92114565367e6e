"""Slices get the size PyTorch gives: bounds wrap once when negative and clamp to the axis, an empty
range has size 0 — for static axes and for symbolic ones (checked at every small size). A symbolic
bound whose sign is unknown (``T - 3``) is refused with a located error."""
from __future__ import annotations

import itertools

import pytest
import sympy
import torch

from nndsl import compiler
from nndsl.errors import NndslShapeError

BOUNDS = (None, 0, 1, 2, 5, -1, -2, -5, "T - 1", "T - 3")
STEPS = (None, 1, 2, 3)
T = sympy.Symbol("T", integer=True, positive=True)


def _text(v) -> str:
    return "" if v is None else str(v)


def _torch_size(start, stop, step, n: int) -> int:
    lo, hi = (None if b is None else eval(str(b), {"T": n}) for b in (start, stop))  # T bound to n
    return torch.empty(2, n)[:, lo:hi:step].shape[1]


def _checked(dim: str, index: str):
    return compiler.check(f"model M(x: f32[2, {dim}]) {{\n  return x[:, {index}]\n}}\n").graph.outputs[0].type


@pytest.mark.parametrize("step", STEPS)
def test_symbolic_slice_sizes_match_torch_at_every_size(step):
    for start, stop in itertools.product(BOUNDS, BOUNDS):
        index = f"{_text(start)}:{_text(stop)}" + (f":{step}" if step is not None else "")
        if "T - 3" in (start, stop):  # negative for T < 3, not for larger T: where would it start?
            with pytest.raises(NndslShapeError, match="sign of slice bound T - 3") as err:
                _checked("T", index)
            assert err.value.span is not None and err.value.span.line == 2
            continue
        size = _checked("T", index).shape[1]
        for n in range(1, 8):
            got, want = int(sympy.sympify(size).subs(T, n)), _torch_size(start, stop, step, n)
            assert got == want, f"x[:, {index}] with T = {n}: checked {size} = {got}, torch gives {want}"


@pytest.mark.parametrize("n", [1, 3, 6])
def test_static_slice_sizes_match_torch(n):
    for start, stop, step in itertools.product(BOUNDS[:8], BOUNDS[:8], STEPS):
        index = f"{_text(start)}:{_text(stop)}" + (f":{step}" if step is not None else "")
        got, want = _checked(str(n), index).shape[1], _torch_size(start, stop, step, n)
        assert got == want, f"x[:, {index}] on size {n}: checked {got}, torch gives {want}"
