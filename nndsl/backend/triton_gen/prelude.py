"""Hand-written Triton helpers the generated kernels import (what ``tl`` lacks, portable to the
interpreter): ``gen_tanh`` and ``gen_pow`` with PyTorch's special cases."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def gen_tanh(x):
    """tanh(x) = sign(x)·(1 - e^{-2|x|}) / (1 + e^{-2|x|}): no overflow for any x."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def gen_pow(x, y):
    """x ** y as torch.pow: |x|^y with the sign of x for odd integer y, nan for x < 0 and
    non-integer y, 1 for y = 0 (0 ** 0 too), 0 ** y = 0 for y > 0 and inf for y < 0."""
    ax = tl.abs(x)
    mag = tl.exp(y * tl.log(ax))
    yi = tl.floor(y)
    is_int = y == yi
    odd = is_int & ((yi - 2.0 * tl.floor(yi * 0.5)) == 1.0)
    signed = tl.where(odd, -mag, mag)
    neg = tl.where(is_int, signed, float("nan"))
    out = tl.where(x < 0.0, neg, mag)
    return tl.where(y == 0.0, 1.0, out)
