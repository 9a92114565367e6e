"""The Philox dropout shared by the kernels: the PyTorch rebuild of the mask against the published
Philox4x32-10 answers and against the bits Triton draws, keep rates, seeding, argument errors.

Kernel runs are under TRITON_INTERPRET=1 at small odd shapes; rates are measured on masks rebuilt
by `dropout_mask`, which the first tests tie bit for bit to the kernels.
"""
from __future__ import annotations

import math

import pytest
import torch

from nndsl.kernels.dropout import (check_dropout, dropout, dropout_forward, dropout_mask, dropout_reference,
                                   philox4x32)
from tolerance import TOL, assert_close

# Random123's known-answer vectors for Philox4x32-10: (key as k1 << 32 | k0, counter, output)
PHILOX_KAT = [
    (0, (0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (0xFFFFFFFF_FFFFFFFF, (0xFFFFFFFF,) * 4, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (0x299F31D0_A4093822, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("key,counter,want", PHILOX_KAT)
def test_philox_known_answers(key, counter, want):
    got = tuple(int(w) for w in philox4x32(key, *counter))
    assert got == want, f"philox4x32 {[hex(w) for w in got]} != Random123 {[hex(w) for w in want]}"


@pytest.mark.parametrize("shape", [(37, 29), (2, 3, 19, 45), (1, 1)])
@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2**31 - 2, 2**40 + 7])  # one seed with a non-zero high key word
def test_kernel_draws_dropout_mask(shape, p, seed):
    """The elementwise kernel keeps exactly the elements dropout_mask names, scaled by 1/(1-p)."""
    x = torch.rand(shape) + 0.5  # no zeros of its own
    y = dropout_forward(x, p, seed)
    mask = dropout_mask(seed, shape, p)
    assert torch.equal(y != 0, mask), f"{int((y != 0).ne(mask).sum())} elements differ from dropout_mask"
    assert_close("kept values", y, x.double() * mask / (1 - p), TOL[torch.float32])


def test_kernel_on_strided_input():
    x = torch.randn(29, 37).t()  # (37, 29) transposed: the mask follows the logical index
    assert torch.equal(dropout_forward(x, 0.5, 11) != 0, dropout_mask(11, x.shape, 0.5) & (x != 0))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_within_3_sigma(p):
    n_rows, n_cols = 257, 511
    keep = dropout_mask(1234, (n_rows, n_cols), p).double()
    n = keep.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(keep.mean().item() - (1 - p)) < 3 * sigma, f"keep rate {keep.mean().item():.4f}, want {1 - p}"
    # neighbours are independent: both kept at rate (1-p)^2, along rows and along columns
    q = (1 - p) ** 2
    for name, pair in (("row", keep[:, 1:] * keep[:, :-1]), ("column", keep[1:] * keep[:-1])):
        sigma = math.sqrt(q * (1 - q) / pair.numel())
        assert abs(pair.mean().item() - q) < 3 * sigma, f"{name} neighbours both kept at {pair.mean().item():.4f}, want {q:.4f}"


def test_same_seed_same_mask_other_seed_other_mask():
    a = dropout_mask(7, (37, 29), 0.5)
    assert torch.equal(a, dropout_mask(7, (37, 29), 0.5))
    differ = (a != dropout_mask(8, (37, 29), 0.5)).double().mean().item()
    assert 0.35 < differ < 0.65, f"masks of seeds 7 and 8 differ in {differ:.2f} of elements, want about 0.5"


def test_mask_depends_on_row_and_column_only():
    """(r, c) of the [R, C] view: a [2, 3, 5, 7] mask is the [30, 7] one reshaped, and a prefix of rows
    or columns of a bigger tensor draws the same bits (tiling and launch shape do not matter)."""
    big = dropout_mask(3, (30, 9), 0.3)
    assert torch.equal(dropout_mask(3, (2, 3, 5, 7), 0.3), big[:, :7].reshape(2, 3, 5, 7))


def test_seed_none_follows_torch_generator():
    """seed=None draws from torch's CPU generator: manual_seed and a restored RNG state replay the mask."""
    x = torch.rand(37, 29) + 0.5
    torch.manual_seed(5)
    first = dropout(x, 0.5)
    state = torch.get_rng_state()
    second = dropout(x, 0.5)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x, 0.5), second)  # a resumed run
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.5), first)
    assert not torch.equal(first, second)


def test_p_zero_draws_nothing():
    x = torch.randn(5, 7)
    state = torch.get_rng_state()
    assert dropout(x, 0.0) is x
    assert check_dropout(0.0, None) == (0.0, 0)
    assert torch.equal(torch.get_rng_state(), state)


def test_backward_regenerates_the_mask():
    x = torch.randn(37, 29, requires_grad=True)
    y = dropout(x, 0.3, seed=99)
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, g)
    mask = dropout_mask(99, x.shape, 0.3)
    assert_close("dx", dx, g.double() * mask / 0.7, TOL[torch.float32])


def test_reference_fallback_matches_kernel(monkeypatch):
    import importlib

    mod = importlib.import_module("nndsl.kernels.dropout")
    x = torch.randn(19, 37)
    kernel = dropout(x, 0.4, seed=21)
    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    assert_close("fallback", dropout(x, 0.4, seed=21), kernel.double(), TOL[torch.float32])
    assert torch.equal(dropout_reference(x, 0.4, mask=dropout_mask(21, x.shape, 0.4)), dropout(x, 0.4, seed=21))


@pytest.mark.parametrize("p,seed,match", [
    (1.0, 0, "dropout_p must be in \\[0, 1\\)"),
    (-0.1, 0, "dropout_p must be in"),
    ("0.5", 0, "dropout_p must be a float"),
    (True, 0, "dropout_p must be a float"),
    (0.5, -1, "seed must be an int"),
    (0.5, 1.5, "seed must be an int"),
    (0.5, 2**63, "seed must be an int"),
    (0.5, True, "seed must be an int"),
])
def test_argument_errors(p, seed, match):
    with pytest.raises(ValueError, match=match):
        check_dropout(p, seed)
