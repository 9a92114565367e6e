"""Dropout inside a generated kernel: the kernel draws the same Philox bits as every nndsl kernel
(``kernels.dropout.dropout_mask`` over the ``[R, C]`` view), keeps 1 - p of the elements, draws the
same mask for the same seed, and its backward regenerates that very mask."""
from __future__ import annotations

import math

import torch

import nndsl
from nndsl.backend.triton_gen import op
from nndsl.kernels.dropout import dropout_mask

SRC = """model M(x: f32[B, T, N], b: f32[N], N: int = 37) -> f32[B, T, N] {
    return dropout(x + b, 0.3) * 2.0
}"""
P = 0.3


def _module():
    m = nndsl.compile(SRC, backend="triton")
    (node,) = m.nndsl_graphs["triton"].nodes
    assert node.op == "generated" and node.attrs["ops"] == ("add", "dropout", "mul_s")
    return m.train()


def _run(m, x, b, seed):
    torch.manual_seed(seed)
    return m(x, b)


def test_keep_rate_within_three_sigma_and_the_kernels_own_bits():
    m = _module()
    x, b = torch.randn(4, 9, 37), torch.randn(37)
    torch.manual_seed(11)
    seed = int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))  # what the step draws first
    y = _run(m, x, b, 11)
    kept = (y != 0).float().mean().item()
    n = y.numel()
    assert abs(kept - (1 - P)) < 3 * math.sqrt(P * (1 - P) / n), kept
    mask = dropout_mask(seed, (4 * 9, 37), P).reshape(4, 9, 37)
    torch.testing.assert_close(y, torch.where(mask, (x + b) / (1 - P) * 2.0, torch.zeros(())), atol=1e-6, rtol=1e-5)


def test_same_seed_same_mask_other_seed_other_mask():
    m = _module()
    x, b = torch.randn(3, 5, 37), torch.randn(37)
    a1, a2, c = _run(m, x, b, 5), _run(m, x, b, 5), _run(m, x, b, 6)
    assert torch.equal(a1, a2)
    assert not torch.equal(a1 != 0, c != 0)


def test_backward_regenerates_the_forward_mask():
    m = _module()
    x = torch.randn(3, 5, 37, requires_grad=True)
    b = torch.randn(37, requires_grad=True)
    y = _run(m, x, b, 3)
    y.backward(torch.ones_like(y))
    keep = y.detach() != 0
    torch.testing.assert_close(x.grad, keep.float() * 2.0 / (1 - P))
    torch.testing.assert_close(b.grad, (keep.float() * 2.0 / (1 - P)).sum((0, 1)))


def test_eval_mode_keeps_everything():
    m = _module().eval()
    x, b = torch.randn(2, 3, 37), torch.randn(37)
    torch.testing.assert_close(m(x, b), (x + b) * 2.0)


def test_reference_draws_the_same_mask_as_the_kernel():
    m = _module()
    key = m.nndsl_graphs["triton"].nodes[0].attrs["kernel"]
    spec = op.spec_of(key)
    x, b = torch.randn(2, 7, 37), torch.randn(37)
    kern = op.launch(spec, [x, b], [], [1234], True)[0]
    from nndsl.backend.triton_gen import reference

    ref = reference.evaluate(spec, [x, b], [], [1234], True)[0]
    torch.testing.assert_close(kern, ref, atol=1e-6, rtol=1e-5)


def test_dropout_inside_a_row_kernel_one_pass_and_looped(monkeypatch):
    """bias + dropout + residual + a hand-written layernorm: one row kernel, whose row fits one tile
    (N = 13) or is walked in a loop (N = 37: the interpreter's one-pass limit is 32)."""
    src = """model M(h: f32[B, N], b: f32[N], r: f32[B, N], N: int = 37) -> f32[B, N] {
        z = r + dropout(h + b, 0.25)
        c = z - mean(z, dim=-1, keepdim=true)
        return c * (mean(c * c, dim=-1, keepdim=true) + 1e-5) ** -0.5
    }"""
    for N in (13, 37):
        m = nndsl.compile(src, backend="triton", N=N).train()
        (node,) = [n for n in m.nndsl_graphs["triton"].nodes if n.op == "generated"]
        assert node.attrs["ops"][:3] == ("add", "dropout", "add") and "mean" in node.attrs["ops"]
        h, b, r = torch.randn(5, N), torch.randn(N), torch.randn(5, N)
        torch.manual_seed(2)
        seed = int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))
        torch.manual_seed(2)
        y = m(h, b, r)
        keep = dropout_mask(seed, (5, N), 0.25)
        z = r + torch.where(keep, (h + b) / 0.75, torch.zeros(()))
        want = torch.nn.functional.layer_norm(z, (N,), eps=1e-5)
        torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-4)
