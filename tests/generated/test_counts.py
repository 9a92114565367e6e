"""Kernel counts of generated kernels (counted, not run): a chain of N pointwise ops is one kernel
forward and at most two backward (the kernel, and one reduction for a broadcast input's gradient)."""
from __future__ import annotations

import pytest
import torch

import nndsl
from nndsl.backend import launches

CHAIN = """model M(x: f32[B, T, N], y: f32[N], N: int = 6) -> f32[B, T, N] {{
    return {expr}
}}"""
UNARY = ["tanh({})", "sigmoid({})", "({}) * 1.5", "gelu({})", "({}) - 0.25", "silu({})", "({}) ** 2", "abs({})"]


def _chain(n: int, broadcast: bool) -> str:
    e = "x + y" if broadcast else "x * 0.5"
    for i in range(n - 1):
        e = UNARY[i % len(UNARY)].format(e)
    return CHAIN.format(expr=e)


def _count(module, x, y):
    with launches.count_launches(execute=False) as got:
        launches.at("forward")
        out = module(x, y)
        launches.at("loss")
        loss = out.sum()
        grad = torch.ones_like(loss)
        launches.at("backward")
        loss.backward(grad)
    return got.by_name("forward"), got.by_name("backward")


@pytest.mark.parametrize("n", [2, 5, 9])
@pytest.mark.parametrize("broadcast", [False, True])
def test_a_chain_is_one_kernel_forward_and_at_most_two_backward(n, broadcast):
    m = nndsl.compile(_chain(n, broadcast), backend="triton")
    assert [node.op for node in m.nndsl_graphs["triton"].nodes] == ["generated"]
    x = torch.randn(3, 5, 6, requires_grad=True)
    y = torch.randn(6, requires_grad=True)
    fwd, bwd = _count(m, x, y)
    assert sum(fwd.values()) == 1 and all(k.startswith("triton:gen_") for k in fwd), fwd
    # the backward kernel writes x's gradient; y's [N] gradient is the row sum of its share
    want = 2 if broadcast else 1
    assert sum(bwd.values()) == want, bwd
    assert sum(n for k, n in bwd.items() if k.startswith("triton:gen_") and k.split(":")[1].count("_bwd_")) == 1, bwd
    eager = nndsl.compile(_chain(n, broadcast), backend="torch")
    efwd, _ = _count(eager, x.detach().requires_grad_(), y.detach().requires_grad_())
    assert sum(efwd.values()) >= n, efwd  # eager launches one kernel per op


def test_an_op_without_a_derivative_row_falls_back_to_autograd_and_says_so(monkeypatch):
    from nndsl.backend.triton_gen import derivatives, op

    monkeypatch.delitem(derivatives.GRAD, "tanh")
    monkeypatch.setattr(op, "_backward_specs", {})
    src = CHAIN.format(expr="tanh(x + y) * 1.5")
    m = nndsl.compile(src, backend="triton").double()
    ref = nndsl.compile(src, backend="torch").double()
    (node,) = m.nndsl_graphs["triton"].nodes
    assert op.backward_note(op.spec_of(node.attrs["kernel"])) == \
        "PyTorch autograd over the reference (no derivative row for tanh)"
    x = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, dtype=torch.float64, requires_grad=True)
    gx, gy = torch.autograd.grad(m(x, y).square().sum(), (x, y))
    rx, ry = torch.autograd.grad(ref(x, y).square().sum(), (x, y))
    torch.testing.assert_close(gx, rx, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(gy, ry, atol=1e-12, rtol=1e-10)
