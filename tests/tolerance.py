"""Comparison helpers for kernel tests: relative error against a float64 reference."""
from __future__ import annotations

import torch

# (dtype, tolerance on ||out - ref|| / ||ref||)
TOL = {
    torch.float32: 1e-4,  # float32 arithmetic, fp32 accumulation
    torch.float16: 5e-3,  # half inputs, fp32 accumulation
    torch.bfloat16: 1e-2,  # 8-bit mantissa
}
TOL_TF32 = 1e-3  # tl.dot on fp32 inputs may use tf32 on a GPU


def dot_tol(dtype: torch.dtype, device: str | torch.device) -> float:
    """Tolerance for a kernel built on tl.dot: fp32 dots run in tf32 on a GPU (Triton's default)."""
    return TOL_TF32 if dtype == torch.float32 and torch.device(device).type == "cuda" else TOL[dtype]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.detach().to(torch.float64)
    ref = ref.detach().to(torch.float64)
    denom = ref.norm().item()
    num = (out - ref).norm().item()
    if denom == 0.0:
        return num
    return num / denom


def assert_close(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert torch.isfinite(out).all(), f"{name}: non-finite values (unwritten or overflowed elements)"
    err = rel_err(out, ref)
    assert err < tol, f"{name}: relative error {err:.3e} >= tolerance {tol:.1e}"
