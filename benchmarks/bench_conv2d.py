"""Benchmark cases for conv2d: the 3x3 convolutions of ResNet-50 (torchvision v1.5) at batch 64.

Triton implicit GEMM (nndsl.kernels.conv2d) against cuDNN (F.conv2d), bf16, channels-last
activations for both lines (cuDNN's fast layout; the Triton launcher would convert NCHW itself).
flops = 2*N*Cout*Hout*Wout*Cin*KH*KW/groups, x3 for fwd+bwd (dx and dw each cost one forward).
bytes = the minimum traffic: x, w, y read/written once per GEMM (fwd: x + w + y; bwd adds
dy + w + dx for dx and dy + x + dw for dw).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nndsl.kernels.conv2d import conv2d

BATCH = 64
# (channels, input size, stride): Cin = Cout, 3x3, padding 1
RESNET50_3X3 = [
    (64, 56, 1), (128, 28, 1), (256, 14, 1), (512, 7, 1),  # stride-1 blocks of layer1..layer4
    (128, 56, 2), (256, 28, 2), (512, 14, 2),  # first block of layer2..layer4 (v1.5: stride on the 3x3)
]


def _case(c: int, size: int, stride: int, mode: str) -> dict:
    dev, dt = "cuda", torch.bfloat16
    grad = mode == "fwd+bwd"
    x = torch.randn(BATCH, c, size, size, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(c, c, 3, 3, device=dev, dtype=dt) / (9 * c) ** 0.5)
    x.requires_grad_(grad)
    w.requires_grad_(grad)
    out = (size + 2 - 3) // stride + 1
    dy = torch.randn(BATCH, c, out, out, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)

    def run(fn):
        if not grad:
            return lambda: fn(x, w, None, stride, 1)
        return lambda: torch.autograd.grad(fn(x, w, None, stride, 1), (x, w), dy)

    flops = 2.0 * BATCH * c * out * out * c * 9
    elem = x.element_size()
    x_n, w_n, y_n = x.numel(), w.numel(), dy.numel()
    nbytes = (x_n + w_n + y_n) * elem
    if grad:
        nbytes += ((y_n + w_n + x_n) + (y_n + x_n + w_n)) * elem
    return {
        "family": "conv2d",
        "name": f"N{BATCH} {c}->{c} @{size}x{size} k3 s{stride} p1",
        "mode": mode,
        "triton": run(conv2d),
        "torch": run(F.conv2d),
        "flops": flops * (3 if grad else 1),
        "bytes": float(nbytes),
    }


def cases(quick: bool = False) -> list[dict]:
    """All ResNet-50 3x3 layers, fwd and fwd+bwd; quick keeps the first stride-1 and stride-2 layer."""
    shapes = [RESNET50_3X3[0], RESNET50_3X3[4]] if quick else RESNET50_3X3
    return [_case(c, size, stride, mode) for c, size, stride in shapes for mode in ("fwd", "fwd+bwd")]
