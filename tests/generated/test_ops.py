"""Every pointwise op and last-axis reduction of the stdlib, computed by a generated kernel: values
and gradients against the PyTorch backend in float64 (the kernel computes in float64 when its inputs
are), and ``gradcheck`` of the kernel itself under the interpreter, on odd and broadcast shapes."""
from __future__ import annotations

import pytest
import torch

from nndsl.backend.triton_gen.lower import LOWER
from nndsl.ops.meta import META, POINTWISE, REDUCTION

from .kit import PROGRAM, assert_close_all, both, generated_ops, values_and_grads

FULL = "f32[B, T, N]"
# op -> (expression over x [B, T, N] and y [N], output type); each puts the op in a chain of two ops
# or more, so the group pass makes a kernel of it
CASES = {
    "add": ("x + y * 1.5", FULL),
    "sub": ("x - y * 1.5", FULL),
    "mul": ("x * y + 0.5", FULL),
    "div": ("x / (y * y + 1.0)", FULL),
    "pow": ("pow(abs(x) + 0.5, y)", FULL),
    "maximum": ("max(x, y * 1.5)", FULL),
    "minimum": ("min(x, y * 1.5)", FULL),
    "add_s": ("(x + 2.0) * y", FULL),
    "sub_s": ("(x - 2.0) * y", FULL),
    "mul_s": ("x * 3.0 + y", FULL),
    "div_s": ("x / 3.0 + y", FULL),
    "rsub_s": ("(2.0 - x) * y", FULL),
    "rdiv_s": ("2.0 / (x * x + 1.0)", FULL),
    "pow_s": ("(x * x + 1.0) ** 1.5 + x ** 3 - (x * x + 0.5) ** -0.5", FULL),
    "neg": ("-(x * y)", FULL),
    "relu": ("relu(x + y)", FULL),
    "silu": ("silu(x + y)", FULL),
    "sigmoid": ("sigmoid(x * 2.0)", FULL),
    "tanh": ("tanh(x * 2.0)", FULL),
    "exp": ("exp(x * 0.5) + y", FULL),
    "log": ("log(x * x + 1.0)", FULL),
    "sqrt": ("sqrt(x * x + 1.0)", FULL),
    "rsqrt": ("rsqrt(x * x + 1.0)", FULL),
    "abs": ("abs(x) * y", FULL),
    "gelu": ("gelu(x + y) + gelu(x * 2.0, approximate=\"tanh\")", FULL),
    "leaky_relu": ("leaky_relu(x + y, slope=0.2)", FULL),
    "elu": ("elu(x + y, alpha=0.7)", FULL),
    "softplus": ("softplus(x * 3.0, beta=2.0, threshold=4.0)", FULL),
    "hardswish": ("hardswish(x * 4.0)", FULL),
    "sin": ("sin(x * 2.0)", FULL),
    "cos": ("cos(x * 2.0)", FULL),
    "clamp": ("clamp(x + y, min=-0.5, max=0.5)", FULL),
    "where": ("where(gt(x, y), x * 2.0, y) + where(lt(x, 0.0), 1.5, x)", FULL),
    "gt": ("where(gt(x, 0.1), x, y * 2.0)", FULL),
    "ge": ("where(ge(x, y), x, y * 2.0)", FULL),
    "lt": ("where(lt(x, y), x, y * 2.0)", FULL),
    "le": ("where(le(x, 0.1), x, y * 2.0)", FULL),
    "eq": ("where(eq(x, x), x * y, y)", FULL),
    "ne": ("where(ne(x, y), x * y, y)", FULL),
    "cast": ("cast(cast(x * 3.0, \"f16\"), \"f32\") + y", FULL),
    "sum": ("sum(x * y, dim=-1, keepdim=true) * 2.0", "f32[B, T, 1]"),
    "mean": ("mean(x * y, dim=-1) + 1.0", "f32[B, T]"),
    "max": ("max(x * y, dim=-1, keepdim=true) - 1.0", "f32[B, T, 1]"),
    "min": ("min(x * y, dim=-1) * 3.0", "f32[B, T]"),
    "var": ("var(x * 2.0, dim=-1, keepdim=true) + 1.0", "f32[B, T, 1]"),
    "std": ("std(x + y, dim=-1, correction=0) * 2.0", "f32[B, T]"),
    "dropout": ("dropout(x + y, 0.3) * 2.0", FULL),  # eval mode here; training is test_dropout's
    # row kernels a generated kernel takes over with the chain before or after them
    "softmax": ("softmax(x * y, dim=-1) * 2.0", FULL),
    "log_softmax": ("log_softmax(x + y, dim=-1) * 2.0", FULL),
    "layernorm": ("layernorm(x + y) * 2.0", FULL),
    "rmsnorm": ("rmsnorm(x * 1.5 + y) - y", FULL),
}
# rows for ops that are neither pointwise nor reductions: the norms a generated kernel takes over
ROW_LAYERS = {"layernorm", "rmsnorm"}


def test_every_pointwise_op_and_reduction_has_a_row_and_a_case():
    ops = {op for op, m in META.items() if m.kind in (POINTWISE, REDUCTION)} - {"cross_entropy_loss"}
    assert ops == set(LOWER) - ROW_LAYERS, "ops without a generated-kernel row (or rows without an op)"
    assert set(LOWER) == set(CASES), "every row needs a test case"


def _inputs(B: int, T: int, N: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, N, generator=g, dtype=torch.float64),
            torch.randn(N, generator=g, dtype=torch.float64)]


@pytest.mark.parametrize("op", sorted(CASES))
def test_generated_kernel_matches_pytorch(op):
    expr, out = CASES[op]
    tri, ref = both(PROGRAM.format(expr=expr, out=out), N=7)
    assert generated_ops(tri)[op] >= 1, f"{op} is not in a generated kernel: {tri.nndsl_graphs['triton'].nodes}"
    tri.eval(), ref.eval()
    xs = _inputs(3, 5, 7, seed=hash(op) % 1000)
    got, want = values_and_grads(tri, xs), values_and_grads(ref, xs)
    assert_close_all(got[0], want[0], 1e-10, 1e-9, f"{op} output")
    assert_close_all(got[1], want[1], 1e-9, 1e-8, f"{op} gradient")


@pytest.mark.parametrize("op", sorted(set(CASES) - {"eq", "ne", "cast"}))
def test_gradcheck_under_the_interpreter(op):
    """The backward kernel against finite differences of the forward kernel (float64)."""
    expr, out = CASES[op]
    tri, _ = both(PROGRAM.format(expr=expr, out=out), N=5)
    tri.eval()
    x, y = (t.requires_grad_() for t in _inputs(2, 3, 5, seed=7))
    if op in ("relu", "leaky_relu", "elu", "abs", "clamp", "hardswish", "max", "min", "maximum", "minimum",
              "where", "gt", "ge", "lt", "le"):
        x = (x + 0.05 * torch.sign(x.detach())).detach().requires_grad_()  # away from the kinks
    assert torch.autograd.gradcheck(lambda a, b: tri(a, b), (x, y), fast_mode=True, atol=1e-6, rtol=1e-5)
