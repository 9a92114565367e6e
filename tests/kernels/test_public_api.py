"""The public kernel API: every function importable from nndsl.kernels, and the CPU fallback
(no interpreter, no CUDA) giving the reference result with gradients."""
from __future__ import annotations

import importlib

import pytest
import torch

import nndsl.kernels as K
from tolerance import assert_close


def test_public_names_are_functions_not_modules():
    for name in K.__all__:
        assert callable(getattr(K, name)), name
        assert not isinstance(getattr(K, name), type(importlib)), f"nndsl.kernels.{name} is a module"


@pytest.mark.parametrize("interpret", ["0"])
def test_cpu_fallback_matches_reference(monkeypatch, interpret):
    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    a = torch.randn(9, 13, requires_grad=True)
    b = torch.randn(13, 5, requires_grad=True)
    out = K.matmul(a, b, activation="relu")
    ref = torch.relu(a.double() @ b.double())
    assert_close("matmul fallback", out, ref, 1e-5)
    out.sum().backward()
    assert a.grad is not None and b.grad is not None
