"""Benchmark cases for the row-wise kernels: cross-entropy, LayerNorm, RMSNorm, softmax (bf16).

Against PyTorch's own ops: F.cross_entropy, F.layer_norm, F.rms_norm, torch.softmax.
These kernels are memory-bound, so each case gives "bytes" (the minimum traffic of one call,
counted once per tensor read or written) and the driver reports GB/s; the "copy" family comes
first and measures the copy bandwidth (x.clone() of 1 GiB: 1 GiB read + 1 GiB written), so the
driver can state every other rate as a % of it. Byte counts (e = 2 bytes, bf16):
  cross-entropy  fwd: logits N*C*e (+ targets, per-row loss/lse)   fwd+bwd: + logits read and
                 dlogits written = 3*N*C*e
  norms, softmax fwd: x read + y written = 2*M*D*e                 fwd+bwd: + x (or y), dy read
                 and dx written = 5*M*D*e (weights and row statistics are O(D + M), left out)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nndsl.kernels.cross_entropy import cross_entropy
from nndsl.kernels.norms import layer_norm, rms_norm
from nndsl.kernels.softmax import softmax

DT = torch.bfloat16
ROWS = 8192
VOCAB = 50257


def _pair(mode, ours, theirs, inputs, grad_out):
    """Zero-argument callables for one case: forward only, or forward + backward to `inputs`."""
    if mode == "fwd":
        def run(fn):
            def call():
                with torch.no_grad():
                    return fn()
            return call
    else:
        def run(fn):
            return lambda: torch.autograd.grad(fn(), inputs, grad_out)
    return run(ours), run(theirs)


def _copy_case() -> dict:
    src = torch.empty(2**30 // 2, device="cuda", dtype=DT).normal_()
    dst = torch.empty_like(src)
    return {"family": "copy", "name": "1 GiB bf16 (copy_ | clone)", "mode": "fwd",
            "triton": lambda: dst.copy_(src),  # no Triton kernel here: copy into a preallocated tensor
            "torch": lambda: src.clone(),  # the driver's reference copy bandwidth
            "flops": None, "bytes": 2.0 * 2**30}


def _ce_case(n: int, c: int, mode: str) -> dict:
    grad = mode != "fwd"
    logits = torch.randn(n, c, device="cuda", dtype=DT, requires_grad=grad)
    target = torch.randint(0, c, (n,), device="cuda")
    g = torch.ones((), device="cuda", dtype=DT)
    ours, theirs = _pair(mode, lambda: cross_entropy(logits, target),
                         lambda: F.cross_entropy(logits, target), (logits,), g)
    e = logits.element_size()
    nbytes = n * c * e * (3 if grad else 1) + n * (8 + 8)  # + targets, per-row loss and lse
    return {"family": "cross_entropy", "name": f"N={n} C={c}", "mode": mode, "triton": ours,
            "torch": theirs, "flops": None, "bytes": float(nbytes)}


def _row_case(family: str, m: int, d: int, mode: str) -> dict:
    grad = mode != "fwd"
    x = torch.randn(m, d, device="cuda", dtype=DT, requires_grad=grad)
    dy = torch.randn(m, d, device="cuda", dtype=DT)
    w = torch.randn(d, device="cuda", dtype=DT, requires_grad=grad)
    b = torch.randn(d, device="cuda", dtype=DT, requires_grad=grad)
    if family == "layer_norm":
        inputs = (x, w, b)
        ours, theirs = lambda: layer_norm(x, w, b), lambda: F.layer_norm(x, (d,), w, b)
    elif family == "rms_norm":
        inputs = (x, w)
        ours, theirs = lambda: rms_norm(x, w), lambda: F.rms_norm(x, (d,), w, 1e-6)
    else:
        inputs = (x,)
        ours, theirs = lambda: softmax(x, -1), lambda: torch.softmax(x, -1)
    ours, theirs = _pair(mode, ours, theirs, inputs, dy)
    nbytes = m * d * x.element_size() * (5 if grad else 2)
    return {"family": family, "name": f"M={m} D={d}", "mode": mode, "triton": ours, "torch": theirs,
            "flops": None, "bytes": float(nbytes)}


def cases(quick: bool = False) -> list[dict]:
    """Copy bandwidth first, then every family at its sizes, fwd and fwd+bwd; quick: one size each."""
    norm_d = (4096,) if quick else (4096, 8192, 16384)
    soft_d = (4096,) if quick else (4096, 16384)
    out = [_copy_case()]
    for mode in ("fwd", "fwd+bwd"):
        out.append(_ce_case(ROWS, VOCAB, mode))
        out += [_row_case(fam, ROWS, d, mode) for fam in ("layer_norm", "rms_norm") for d in norm_d]
        out += [_row_case("softmax", ROWS, d, mode) for d in soft_d]
    return out
