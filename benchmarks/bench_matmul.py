"""matmul benchmark cases: nndsl's fused Triton GEMM against cuBLAS (torch.matmul / torch.addmm).

Square GEMMs (512 ... 8192) and the GPT-2-small layer shapes at B*T = 8192 tokens, bf16, forward
and forward+backward. Where our kernel fuses bias / gelu / residual, the torch side runs the same
ops in eager PyTorch (addmm, then F.gelu, then +), which is what a model would otherwise do.
FLOPs: 2*M*N*K per GEMM, x3 with the backward (dA and dB).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nndsl.kernels.matmul import matmul

TOKENS = 8192  # GPT-2 small, B*T
# (name, K, N, bias, activation, residual) of the four linear layers of a GPT-2-small block
GPT2 = [
    ("gpt2 qkv 768->2304 +bias", 768, 2304, True, None, False),
    ("gpt2 attn proj 768->768 +bias+res", 768, 768, True, None, True),
    ("gpt2 fc 768->3072 +bias+gelu", 768, 3072, True, "gelu", False),
    ("gpt2 fc2 3072->768 +bias+res", 3072, 768, True, None, True),
]
_TORCH_ACT = {None: lambda z: z, "gelu": F.gelu}


def _case(name, mode, m, k, n, bias=False, activation=None, residual=False) -> dict:
    grad = mode == "fwd+bwd"
    new = dict(device="cuda", dtype=torch.bfloat16)
    a = torch.randn(m, k, **new).requires_grad_(grad)
    b = (torch.randn(k, n, device="cuda") / k**0.5).to(torch.bfloat16).requires_grad_(grad)
    bias_t = torch.randn(n, **new).requires_grad_(grad) if bias else None
    res = torch.randn(m, n, **new).requires_grad_(grad) if residual else None
    inputs = [t for t in (a, b, bias_t, res) if t is not None]

    def ours():
        return matmul(a, b, bias_t, activation, res)

    def theirs():
        z = torch.addmm(bias_t, a, b) if bias_t is not None else torch.matmul(a, b)
        y = _TORCH_ACT[activation](z)
        return y + res if res is not None else y

    if grad:
        dy = torch.randn(m, n, **new)
        fns = (lambda: torch.autograd.grad(ours(), inputs, dy),
               lambda: torch.autograd.grad(theirs(), inputs, dy))
    else:
        fns = (ours, theirs)
    return {"family": "matmul", "name": name, "mode": mode, "triton": fns[0], "torch": fns[1],
            "flops": 2.0 * m * n * k * (3 if grad else 1), "bytes": None}


def cases(quick: bool = False) -> list[dict]:
    squares = (1024, 4096) if quick else (512, 1024, 2048, 4096, 8192)
    layers = [GPT2[0], GPT2[2]] if quick else GPT2
    out = []
    for mode in ("fwd", "fwd+bwd"):
        out += [_case(f"square {s}x{s}x{s}", mode, s, s, s) for s in squares]
        out += [_case(f"{name} x{TOKENS}", mode, TOKENS, k, n, bias, act, res)
                for name, k, n, bias, act, res in layers]
    return out
