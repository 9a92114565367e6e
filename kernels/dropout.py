"""Dropout drawn from a counter-based RNG (Philox), shared by every kernel that drops elements.

    keep(r, c) = (philox(seed; counter (c // 4, r, 0, 0))[c % 4] >> 1) >= threshold,   threshold = ⌊p·2³¹⌋

for element (r, c) of the tensor viewed as [R, C] (C its last dim, R the product of the others):
one Philox4x32-10 call (`tl.philox`, Triton's counter-based generator behind tl.rand) serves four
neighbouring columns, a quarter of the integer work and of the registers of one call per element.
The counter depends only on the element's (row, column), so a kernel draws the same bit for an
element whatever its tiling: the matmul epilogue (output [..., M, N]), the attention kernels (probabilities
[B, H, Tq, Tk], row = (b·H + h)·Tq + q, the dK/dV kernel walking them transposed), and this
module's elementwise kernel. Nothing is stored: a backward regenerates the mask from (seed, index).
Kept elements are scaled by 1/(1-p). p = 0 is a constexpr-off path in every kernel.

`dropout_mask` rebuilds the same mask in plain PyTorch (bit-exact Philox4x32-10) so references,
tests and the torch backend reproduce what the kernels drew. `draw_seed` takes a seed from
torch's default CPU generator: `torch.manual_seed` and a restored RNG state replay the masks.
"""
from __future__ import annotations

import math
import operator

import torch

from ._common import HAS_TRITON, check_float, interpreting, use_triton

if HAS_TRITON:
    import triton
    import triton.language as tl

_M32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers (Triton's philox_impl)
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85  # Philox4x32 key increments
_ROUNDS = 10  # tl.philox's default
MAX_INDEX = 2**31  # rows and columns of the [R, C] view must stay below this (int32 counters)

# ----------------------------------------------------------------------------------------- kernels
if HAS_TRITON:

    @triton.jit
    def dropout_keep(
        seed,  # int scalar
        row0,  # first row of the tile in the [R, C] view
        col0,  # first column of the tile (a multiple of 4)
        threshold,  # int32 scalar ⌊p·2³¹⌋
        BLOCK_R: tl.constexpr,  # tile rows
        BLOCK_C: tl.constexpr,  # tile columns (a multiple of 4)
    ):
        """[BLOCK_R, BLOCK_C] bools, True where element (row0 + i, col0 + j) survives."""
        rows = row0.to(tl.int32) + tl.arange(0, BLOCK_R)
        groups = col0.to(tl.int32) // 4 + tl.arange(0, BLOCK_C // 4)
        zero = tl.zeros([BLOCK_R, BLOCK_C // 4], tl.int32)
        w0, w1, w2, w3 = tl.philox(seed, groups[None, :] + zero, rows[:, None] + zero, zero, zero)
        # join stacks on a new last axis: [R, C/4, i, j] holds word 2i + j, so row-major column 4g + k
        # gets word k of group g
        bits = tl.reshape(tl.join(tl.join(w0, w2), tl.join(w1, w3)), [BLOCK_R, BLOCK_C])
        return (bits >> 1).to(tl.int32) >= threshold

    @triton.jit(do_not_specialize=["seed", "threshold"])
    def _dropout_kernel(
        x_ptr,  # input [R, C], any strides
        out_ptr,  # output [R, C], any strides
        R, C,  # sizes
        stride_xr, stride_xc,  # input strides
        stride_or, stride_oc,  # output strides
        seed,  # Philox key
        threshold,  # ⌊p·2³¹⌋
        scale,  # 1 / (1 - p)
        BLOCK_R: tl.constexpr,  # rows per program
        BLOCK_C: tl.constexpr,  # columns per program
    ):
        offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = (offs_r[:, None] < R) & (offs_c[None, :] < C)
        r64 = offs_r.to(tl.int64)[:, None]
        x = tl.load(x_ptr + r64 * stride_xr + offs_c[None, :] * stride_xc, mask=mask, other=0.0)
        keep = dropout_keep(seed, tl.program_id(0) * BLOCK_R, tl.program_id(1) * BLOCK_C, threshold,
                            BLOCK_R, BLOCK_C)
        y = tl.where(keep, x.to(tl.float32) * scale, 0.0)
        tl.store(out_ptr + r64 * stride_or + offs_c[None, :] * stride_oc, y.to(out_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------- launchers
def check_dropout(dropout_p, seed) -> tuple[float, int]:
    """Validate (dropout_p, seed) (ValueError naming the culprit); returns (p, seed as int).

    seed None draws one from torch's default generator (only when p > 0)."""
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise ValueError(f"dropout_p must be a float in [0, 1), got {dropout_p!r}")
    p = float(dropout_p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if seed is None:
        return p, draw_seed() if p > 0.0 else 0
    try:
        s = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}") from None
    if isinstance(seed, bool) or not 0 <= s < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    return p, s


def draw_seed() -> int:
    """A seed from torch's default CPU generator (no GPU sync): manual_seed / set_rng_state replay it."""
    return int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))


def threshold(p: float) -> int:
    """The int32 cut on 31 random bits: an element is kept with probability 1 - threshold / 2³¹."""
    return int(p * 2**31)


def check_index_range(rows: int, cols: int, what: str) -> None:
    """The kernels count rows and columns in int32: refuse views that would wrap."""
    if rows >= MAX_INDEX or cols >= MAX_INDEX:
        raise ValueError(f"dropout over {what} needs fewer than 2**31 rows and columns, "
                         f"got {rows} rows x {cols} columns")


def dropout_forward(x: torch.Tensor, p: float, seed: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Launch the elementwise kernel: x * keep / (1 - p), keep drawn for x viewed as [R, C]."""
    C = x.shape[-1] if x.dim() else 1
    x2 = x.reshape(-1, C)
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype) if out is None else out
    o2 = out.view(-1, C)
    R = x2.shape[0]
    check_index_range(R, C, f"a tensor of shape {tuple(x.shape)}")
    if out.numel() == 0:
        return out
    block_r, block_c = (16, 16) if interpreting() else (32, 128)
    grid = (triton.cdiv(R, block_r), triton.cdiv(C, block_c))
    _dropout_kernel[grid](x2, o2, R, C, *x2.stride(), *o2.stride(), seed, threshold(p), 1.0 / (1.0 - p),
                          BLOCK_R=block_r, BLOCK_C=block_c)
    return out


# ----------------------------------------------------------------------------------------- autograd
class _DropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, seed):
        ctx.p, ctx.seed = p, seed  # the seed, never the mask
        return dropout_forward(x, p, seed)

    @staticmethod
    def backward(ctx, grad):
        return dropout_forward(grad, ctx.p, ctx.seed), None, None


# ---------------------------------------------------------------------------------------- reference
def _mulhilo(a: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit halves of a·x for a 32-bit constant and uint32 values held in int64
    (split in 16-bit halves so nothing overflows int64)."""
    lo = a * (x & 0xFFFF)  # < 2^48
    mid = a * (x >> 16) + (lo >> 16)  # < 2^49
    return mid >> 16, ((mid & 0xFFFF) << 16) | (lo & 0xFFFF)


def philox4x32(seed: int, c0, c1, c2=0, c3=0) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 of counter (c0, c1, c2, c3) (uint32 values in int64 tensors or ints,
    broadcast) under key (seed & 0xffffffff, seed >> 32): the four output words, as int64 —
    the same rounds as Triton's tl.philox."""
    c0, c1, c2, c3 = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3)))
    k0, k1 = seed & _M32, (seed >> 32) & _M32
    for _ in range(_ROUNDS):
        hi_b, lo_b = _mulhilo(_ROUND_B, c2)
        hi_a, lo_a = _mulhilo(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _KEY_A) & _M32, (k1 + _KEY_B) & _M32
    return c0, c1, c2, c3


def dropout_mask(seed: int, shape, p: float, device=None) -> torch.Tensor:
    """The keep mask (bool, `shape`) the kernels draw for (seed, p) over a tensor of that shape:
    element (r, c) of its [R, C] view is kept iff keep(r, c) (module docstring). For matmul pass
    the output shape, for attention the probabilities' [B, H, Tq, Tk]."""
    p, seed = check_dropout(p, seed)
    shape = tuple(int(n) for n in shape)
    C = shape[-1] if shape else 1
    R = math.prod(shape[:-1]) if shape else 1
    check_index_range(R, C, f"shape {shape}")
    rows = torch.arange(R, device=device, dtype=torch.int64)[:, None]
    groups = torch.arange((C + 3) // 4, device=device, dtype=torch.int64)[None, :]
    bits = torch.stack(philox4x32(seed, groups, rows), -1).reshape(R, -1)[:, :C]  # column 4g + k: word k
    return ((bits >> 1) >= threshold(p)).reshape(shape)


def dropout_reference(x: torch.Tensor, p: float, seed: int | None = None, mask: torch.Tensor | None = None):
    """x * keep / (1 - p) in plain PyTorch, keep = `mask` or dropout_mask(seed, x.shape, p)."""
    p, seed = check_dropout(p, seed)
    if p == 0.0:
        return x
    if mask is None:
        mask = dropout_mask(seed, x.shape, p, x.device)
    return x * mask.to(device=x.device, dtype=x.dtype) / (1.0 - p)


# ------------------------------------------------------------------------------------------- public
def dropout(x: torch.Tensor, p: float = 0.5, seed: int | None = None) -> torch.Tensor:
    """Inverted dropout with the kernels' Philox mask: x * keep / (1 - p). seed None draws one from
    torch's generator. Differentiable in x; the backward regenerates the mask from the seed."""
    check_float("x", x)
    p, seed = check_dropout(p, seed)
    if p == 0.0:
        return x
    if not use_triton(x):
        return dropout_reference(x, p, seed)
    if torch.is_grad_enabled() and x.requires_grad:
        return _DropoutFunction.apply(x, p, seed)
    return dropout_forward(x, p, seed)
