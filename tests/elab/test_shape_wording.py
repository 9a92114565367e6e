"""Shape mismatches read as plain English: "expected dim 1 to be 784 (the model's `D`), got 28",
never "dim 1 should be 784 = 784"."""
from __future__ import annotations

import random

import pytest

from nndsl.elaborate import elaborate
from nndsl.errors import NndslShapeError
from nndsl.frontend.parser import parse


def shape_error(text: str) -> NndslShapeError:
    with pytest.raises(NndslShapeError) as info:
        elaborate(parse(text, "t.nn"), None, {})
    return info.value


def test_a_literal_dim_says_expected_and_got():
    want, got = random.randint(2, 900), random.randint(2, 900)
    got += got == want
    err = shape_error(f"model M(x: f32[B, 7]) -> f32[B, {want}] {{\n    return linear(x, {got})\n}}\n")
    assert err.hint == f"expected dim 1 to be {want}, got {got}"
    assert (err.span.line, err.span.col) == (2, 12)


def test_a_hyperparameter_dim_names_its_owner():
    err = shape_error("model M(x: f32[B, 28], D: int = 784) -> f32[B, D] {\n    return linear(x, 28)\n}\n")
    assert err.hint == "expected dim 1 to be 784 (the model's `D`), got 28"
    err = shape_error("block Mlp(x: f32[B, D], D: int = 784) -> f32[B, D] {\n    return linear(x, D)\n}\n"
                      "model M(x: f32[B, 28]) -> f32[B, 784] {\n    return Mlp(x)\n}\n")
    assert err.hint == "expected dim 1 to be 784 (Mlp's `D`), got 28"
    assert err.message == "Mlp expects x: f32[B, D] with D = 784, got f32[B, 28]"


def test_a_dim_bound_by_another_argument_says_which():
    err = shape_error("block Mix(x: f32[B, D], y: f32[B, D]) -> f32[B, D] {\n    return x\n}\n"
                      "model M(a: f32[B, 28], b: f32[B, 32]) -> f32[B, 28] {\n    return Mix(a, b)\n}\n")
    assert err.hint == "expected dim 1 to be 28 (`D`, from dim 1 of x), got 32"
    assert (err.span.line, err.span.col) == (5, 19)


def test_an_expression_dim_shows_its_value_once():
    err = shape_error("block Half(x: f32[B, 2 * D], D: int = 16) -> f32[B, D] {\n    return linear(x, D)\n}\n"
                      "model M(x: f32[B, 28]) -> f32[B, 16] {\n    return Half(x)\n}\n")
    assert err.hint == "expected dim 1 to be 2 * D = 32, got 28"
    assert " = 32 = " not in str(err) and "should be" not in str(err)
