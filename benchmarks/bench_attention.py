"""Benchmark cases for the flash attention kernels vs torch's F.scaled_dot_product_attention.

B·H = 64 up to T = 2048 and 32 beyond (H = 16), T in 512..8192, D in {64, 128}, causal or not,
forward alone and forward + backward, bf16 on CUDA. FLOPs = 4·B·H·Tq·Tk·D for the forward (two
matmuls), halved when causal; forward + backward counts 3.5x the forward (the backward's five
matmuls, one of them the recomputed q kᵀ).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nndsl.kernels.attention import attention

HEADS = 16


def _case(T: int, D: int, causal: bool, mode: str) -> dict:
    bh = 64 if T <= 2048 else 32
    B = bh // HEADS
    shape = (B, HEADS, T, D)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=mode != "fwd")
               for _ in range(3))
    do = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    flops = 4.0 * bh * T * T * D * (0.5 if causal else 1.0)
    tensor_bytes = bh * T * D * q.element_size()
    if mode == "fwd":
        # read q, k, v; write o (the lse row is D times smaller)
        nbytes = 4 * tensor_bytes

        def triton_fn():
            with torch.no_grad():
                return attention(q, k, v, causal=causal)

        def torch_fn():
            with torch.no_grad():
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    else:
        flops *= 3.5
        # forward traffic, then read q, k, v, o, dO and write dq, dk, dv
        nbytes = 12 * tensor_bytes

        def triton_fn():
            return torch.autograd.grad(attention(q, k, v, causal=causal), (q, k, v), do)

        def torch_fn():
            return torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=causal), (q, k, v), do)

    return {
        "family": "attention",
        "name": f"B={B} H={HEADS} T={T} D={D}{' causal' if causal else ''}",
        "mode": mode,
        "triton": triton_fn,
        "torch": torch_fn,
        "flops": flops,
        "bytes": float(nbytes),
    }


def cases(quick: bool = False) -> list[dict]:
    seqs = (1024, 4096) if quick else (512, 1024, 2048, 4096, 8192)
    return [_case(T, D, causal, mode)
            for mode in ("fwd", "fwd+bwd")
            for D in (64, 128)
            for causal in (False, True)
            for T in seqs]
