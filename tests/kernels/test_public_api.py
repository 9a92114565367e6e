"""The public kernel API: every function importable from nndsl.kernels, the kernels taken where they
run (CUDA, or the CPU under the interpreter), and the CPU fallback
(no interpreter, no CUDA) giving the reference result with gradients."""
from __future__ import annotations

import importlib

import pytest
import torch

import nndsl.kernels as K
from tolerance import assert_close, dot_tol


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



_MODULE = {"layer_norm": "norms", "rms_norm": "norms", "log_softmax": "softmax"}  # else the name


def _refuse(*args, **kwargs):
    raise AssertionError("a PyTorch reference ran where the kernels should have")


def test_public_functions_take_the_kernels(monkeypatch, device):
    """Where the kernels run (CUDA tensors, or the CPU under the interpreter), every public function
    launches them: the references are made to raise, and the results and gradients still match
    float64 references computed beforehand."""
    half = torch.bfloat16 if device == "cuda" else torch.float32  # the interpreter has no bf16
    x = torch.randn(6, 40, device=device)
    target = torch.randint(0, 40, (6,), device=device)
    cases = {  # name -> (inputs, call(function, *inputs))
        "matmul": ((x, torch.randn(40, 24, device=device) / 6), lambda f, a, b: f(a, b, activation="gelu")),
        "attention": (tuple(torch.randn(1, 2, 33, 64, device=device, dtype=half) for _ in range(3)),
                      lambda f, q, k, v: f(q, k, v, causal=True)),
        "conv2d": ((torch.randn(2, 3, 9, 9, device=device), torch.randn(4, 3, 3, 3, device=device) / 5),
                   lambda f, a, w: f(a, w, padding=1, activation="relu")),
        "cross_entropy": ((x,), lambda f, a: f(a, target)),
        "layer_norm": ((x,), lambda f, a: f(a)),
        "rms_norm": ((x,), lambda f, a: f(a)),
        "softmax": ((x,), lambda f, a: f(a, 0)),
        "log_softmax": ((x,), lambda f, a: f(a)),
    }
    refs = {}  # name -> (float64 output, a random output gradient, float64 input gradients)
    for name, (inputs, call) in cases.items():
        leaves = [t.double().requires_grad_() for t in inputs]
        y = call(getattr(K, f"{name}_reference"), *leaves)
        dy = torch.randn_like(y)
        refs[name] = (y, dy, torch.autograd.grad(y, leaves, dy))
    for name in cases:
        monkeypatch.setattr(importlib.import_module(f"nndsl.kernels.{_MODULE.get(name, name)}"),
                            f"{name}_reference", _refuse)
    for name, (inputs, call) in cases.items():
        leaves = [t.detach().requires_grad_() for t in inputs]
        out = call(getattr(K, name), *leaves)
        y, dy, ref_grads = refs[name]
        grads = torch.autograd.grad(out, leaves, dy.to(out.dtype))
        tol = dot_tol(out.dtype, device)
        assert_close(name, out, y, tol)
        for i, (g, r) in enumerate(zip(grads, ref_grads)):
            assert_close(f"{name} grad {i}", g, r, tol)
