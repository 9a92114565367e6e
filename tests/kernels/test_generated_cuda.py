"""Generated kernels compiled on a GPU at real sizes (the CUDA run: NNDSL_TEST_CUDA=1 -m cuda).

Each chain is compiled on the Triton backend and checked against the PyTorch backend in float64
(values and gradients), in the dtype of the case; a row reduction over a vocabulary-sized row runs
the looped kernel; dropout draws ``dropout_mask``'s bits. The same tests at tiny sizes run under
the interpreter in tests/generated.
"""
from __future__ import annotations

import pytest
import torch

import nndsl
from nndsl.kernels.dropout import dropout_mask

# case -> (program over x [M, N] and w [N], sizes)
CASES = {
    "rmsnorm": ("x * (mean(x ** 2, dim=-1, keepdim=true) + 1e-5) ** -0.5 * w", (4096, 4096)),
    "swiglu": ("x * sigmoid(x) * (x + w)", (8192, 2752)),
    "gelu_tanh": ("0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))) + w", (8192, 4096)),
    "row_over_a_vocabulary": ("x - log(sum(exp(x - 3.0), dim=-1, keepdim=true)) * w", (64, 50257)),
}
TOL = {torch.float32: (2e-5, 2e-5), torch.bfloat16: (3e-2, 3e-2), torch.float16: (4e-3, 4e-3)}


def _src(expr: str, N: int) -> str:
    return f"model M(x: f32[M, N], w: f32[N], N: int = {N}) -> f32[M, N] {{\n    return {expr}\n}}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_chain_cuda(case, dtype):
    expr, (M, N) = CASES[case]
    tri = nndsl.compile(_src(expr, N), backend="triton").cuda()
    ref = nndsl.compile(_src(expr, N), backend="torch").cuda().double()
    assert any(n.op == "generated" for n in tri.nndsl_graphs["triton"].nodes)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(M, N, device="cuda", generator=g).to(dtype).requires_grad_()
    w = torch.randn(N, device="cuda", generator=g).to(dtype).requires_grad_()
    y = tri(x, w)
    assert y.dtype == dtype
    dy = torch.randn(y.shape, device="cuda", generator=g).to(dtype)
    y.backward(dy)
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    yd = ref(xd, wd)
    yd.backward(dy.double())
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(y.double(), yd, atol=atol * yd.abs().max().item(), rtol=rtol)
    torch.testing.assert_close(x.grad.double(), xd.grad, atol=atol * xd.grad.abs().max().item(), rtol=rtol)
    # w's gradient sums over M rows: its error grows with them
    torch.testing.assert_close(w.grad.double(), wd.grad, atol=atol * wd.grad.abs().max().item() * 4, rtol=rtol * 4)


def test_generated_dropout_draws_the_kernels_bits_cuda():
    src = "model M(x: f32[M, N], b: f32[N], N: int = 4096) -> f32[M, N] {\n    return dropout(x + b, 0.1) * 2.0\n}"
    m = nndsl.compile(src, backend="triton").cuda().train()
    x = torch.randn(2048, 4096, device="cuda")
    b = torch.randn(4096, device="cuda")
    torch.manual_seed(3)
    seed = int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))
    torch.manual_seed(3)
    y = m(x, b)
    keep = dropout_mask(seed, (2048, 4096), 0.1, "cuda")
    torch.testing.assert_close(y, torch.where(keep, (x + b) / 0.9 * 2.0, torch.zeros((), device="cuda")))
