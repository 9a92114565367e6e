"""Compile-time work is bounded: every limit of ``nndsl.limits`` gives a located NndslLimitError
(file:line:col, the offending text under the caret, the limit in the message) quickly, and
``check`` never allocates a weight."""
from __future__ import annotations

import resource
import time

import pytest

from nndsl import compiler, limits
from nndsl.errors import NndslError, NndslLimitError, NndslShapeError


def _model(body: str, params: str = "x: f32[B, 4]") -> str:
    return f"model M({params}) {{\n{body}\n}}\n"


def _fails(src: str, text: str, limit: object, cls=NndslLimitError, **hp) -> NndslError:
    start = time.monotonic()
    with pytest.raises(cls) as err:
        compiler.check(src, hyperparams=hp or None)
    assert time.monotonic() - start < 5, "a limit must be hit quickly"
    e = err.value
    assert e.span is not None and e.span.line >= 1, f"no location: {e}"
    assert text in e.span.source_line(), f"{text!r} is not on the reported line: {e}"
    assert f"{limit:,}" in e.message or str(limit) in e.message, f"the limit {limit} is not named: {e}"
    return e


def test_repeat_count_is_bounded():
    _fails(_model("  repeat 100000000000 {\n    x = relu(x)\n  }\n  return x"), "100000000000", limits.MAX_REPEAT)


def test_repeat_count_through_a_hyperparameter_is_bounded():
    src = _model("  repeat N {\n    x = relu(x)\n  }\n  return x", "x: f32[B, 4], N: int = 2")
    e = _fails(src, "repeat N", limits.MAX_REPEAT, N="1000000000")
    assert "1000000000" in e.message


def test_nested_repeats_are_bounded_by_the_statement_budget():
    body = "  repeat 9000 {\n    repeat 9000 {\n      x = relu(x)\n    }\n  }\n  return x"
    _fails(_model(body), "x = relu(x)", limits.MAX_STEPS)


@pytest.mark.parametrize("dim", ["4 ** 100000000", "(B + 1) ** 100000"])
def test_huge_exponents_are_refused(dim):
    _fails(_model("  return x", f"x: f32[B, {dim}]"), dim, limits.MAX_EXPONENT)


def test_huge_negative_exponent_of_a_scalar_is_refused():
    _fails(_model("  n = 3 ** -10000000000\n  return x"), "3 ** -10000000000", limits.MAX_EXPONENT)


def test_huge_integer_literal():
    big = "9" * 5000
    _fails(_model("  return x", f"x: f32[B, {big}]"), "999", limits.MAX_INT)


def test_huge_hyperparameter_override():
    src = _model("  return linear(x, N)", "x: f32[B, 4], N: int = 2")
    _fails(src, "N: int", limits.MAX_INT, N=str(10 ** 30))


def test_scalar_arithmetic_cannot_grow_without_bound():
    _fails(_model("  n = 2\n  repeat 100 {\n    n = n * n\n  }\n  return x"), "n * n", limits.MAX_INT)


def test_symbolic_dims_cannot_grow_without_bound():
    src = _model("  repeat 200 {\n    x = concat(x, x, dim=1)\n  }\n  return x", "x: f32[B, T]")
    _fails(src, "concat(x, x, dim=1)", limits.MAX_INT)


def test_dim_size_is_bounded():
    _fails(_model("  return x", f"x: f32[B, {2 ** 41}]"), str(2 ** 41), limits.MAX_DIM)


def test_parameter_element_count_is_bounded():
    src = _model("  return linear(x, 4000000000)", "x: f32[B, 4000000000]")
    _fails(src, "linear(x, 4000000000)", limits.MAX_NUMEL)


def test_deep_nesting_is_located():
    deep = "(" * 300 + "x" + ")" * 300
    _fails(_model(f"  return {deep}"), "((((", limits.MAX_NESTING)


def test_negative_sizes_are_shape_errors():
    e = _fails(_model("  return x", "x: f32[B, 3 - 5]"), "3 - 5", -2, cls=NndslShapeError)
    assert "negative" in e.message


def test_check_does_not_allocate_weights(monkeypatch):
    """A 1.6-billion-parameter layer is checked in well under a second, with no memory growth."""
    import nndsl.backend.torch_codegen as codegen

    monkeypatch.setattr(codegen, "lower", lambda *a, **k: pytest.fail("check must not lower the graph"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    checked = compiler.check(_model("  return linear(x, 40000)", "x: f32[B, 40000]"))
    assert time.monotonic() - start < 2
    assert checked.graph.num_parameters() == 40000 * 40000 + 40000
    assert "1,600,040,000" in checked.summary()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000, f"check grew the process by {grown_kib} KiB"
