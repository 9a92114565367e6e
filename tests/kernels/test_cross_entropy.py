"""Fused cross-entropy vs the float64 reference (F.cross_entropy, classes last): loss and dlogits.

Under the interpreter the kernels step over 32 classes at a time, so C = 70 and 1000 take
several steps of the online logsumexp. Tests taking `device` run in both groups (CPU under the
interpreter; compiled on the GPU with NNDSL_TEST_CUDA=1); `cuda` tests only in the CUDA run.
"""
import pytest
import torch
import torch.nn.functional as F

from nndsl.kernels.cross_entropy import (cross_entropy, cross_entropy_bwd, cross_entropy_fwd,
                                         cross_entropy_reference)
from tolerance import TOL, assert_close

REDUCTIONS = ["mean", "sum", "none"]


def _targets(shape, c, device, ignore_index=-100, ignored=0.25):
    """Random class indices with about `ignored` of them set to ignore_index."""
    t = torch.randint(0, c, shape, device=device)
    return torch.where(torch.rand(shape, device=device) < ignored, torch.full_like(t, ignore_index), t)


def _check(logits, target, reduction, ignore_index=-100, tol=None):
    """Loss and dlogits vs the float64 reference on the same values."""
    tol = tol or TOL[logits.dtype]
    x = logits.detach().requires_grad_()
    loss = cross_entropy(x, target, ignore_index, reduction)
    g = torch.randn_like(loss)
    (dx,) = torch.autograd.grad(loss, x, g)
    x64 = logits.detach().double().requires_grad_()
    loss64 = cross_entropy_reference(x64, target, ignore_index, reduction)
    (dx64,) = torch.autograd.grad(loss64, x64, g.double())
    assert loss.dtype == logits.dtype, f"loss dtype {loss.dtype} != logits dtype {logits.dtype}"
    assert_close(f"loss ({reduction})", loss, loss64, tol)
    assert_close(f"dlogits ({reduction})", dx, dx64, tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c", [1, 5, 70, 1000])
def test_2d(reduction, c, device):
    _check(torch.randn(7, c, device=device) * 3, _targets((7,), c, device), reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c", [5, 70])
def test_3d_and_1d(reduction, c, device):
    _check(torch.randn(2, 3, c, device=device), _targets((2, 3), c, device), reduction)
    _check(torch.randn(c, device=device), torch.randint(0, c, (), device=device), reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_custom_ignore_index(reduction, device):
    t = torch.tensor([3, 0, 3, 5, 3], device=device)  # ignore_index is a valid class here
    _check(torch.randn(5, 40, device=device), t, reduction, ignore_index=3)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_ignored(reduction, device):
    x = torch.randn(4, 37, device=device).requires_grad_()
    t = torch.full((4,), -100, device=device)
    loss = cross_entropy(x, t, reduction=reduction)
    ref = F.cross_entropy(x.detach().double(), t, reduction=reduction)
    if reduction == "mean":  # 0 / 0, as in PyTorch
        assert torch.isnan(loss) and torch.isnan(ref), f"expected nan, got {loss.item()} (ref {ref.item()})"
        loss.backward()
    else:
        assert torch.equal(loss.double(), ref), f"expected {ref}, got {loss}"
        loss.backward(torch.ones_like(loss))
    assert torch.equal(x.grad, torch.zeros_like(x)), "ignored rows must get zero gradient"


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_large_magnitude(reduction, device):
    x = torch.randn(6, 70, device=device) * 1e4  # exp would overflow without the max shift
    # dlogits = exp(x - lse) carries the fp32 rounding of lse (|lse| * 2**-24, relative).
    _check(x, _targets((6,), 70, device), reduction, tol=max(TOL[x.dtype], 4 * 2**-24 * x.abs().max().item()))


def test_non_contiguous(device):
    logits = torch.randn(50, 9, device=device).t()  # (9, 50) with class stride 9
    target = torch.randint(0, 50, (9, 2), device=device)[:, 0]  # stride 2
    for reduction in REDUCTIONS:
        _check(logits, target, reduction)
    _check(torch.randn(3, 4, 80, device=device)[:, ::2, ::2], _targets((3, 2), 40, device), "mean")


def test_launchers_write_every_row(device):
    x, t = torch.randn(6, 45, device=device), torch.randint(0, 45, (6,), device=device)
    t[0] = -100  # lse of an ignored row is not computed
    nan = lambda *s: torch.full(s, float("nan"), device=device)  # noqa: E731
    loss, lse = cross_entropy_fwd(x, t, out=(nan(6), nan(6)))
    ref = F.cross_entropy(x.double(), t, reduction="none")
    assert_close("loss", loss, ref, TOL[torch.float32])
    assert_close("lse", lse[1:], torch.logsumexp(x.double(), -1)[1:], TOL[torch.float32])
    g = torch.randn(6, device=device)
    dx = cross_entropy_bwd(x, t, lse, g, out=nan(6, 45))
    x64 = x.double().requires_grad_()
    (dx64,) = torch.autograd.grad(F.cross_entropy(x64, t, reduction="none"), x64, g.double())
    assert_close("dlogits", dx, dx64, TOL[torch.float32])


def test_value_errors(device):
    x = torch.randn(4, 6, device=device)
    t = torch.randint(0, 6, (4,), device=device)
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        cross_entropy(x, t[:3])
    with pytest.raises(ValueError, match=r"target must have shape \(2, 3\)"):
        cross_entropy(torch.randn(2, 3, 6, device=device), t)
    with pytest.raises(ValueError, match="logits has dtype torch.int64"):
        cross_entropy(torch.ones(4, 6, dtype=torch.int64, device=device), t)
    with pytest.raises(ValueError, match="target must be an int64"):
        cross_entropy(x, t.to(torch.int32))
    with pytest.raises(ValueError, match="target must be an int64"):
        cross_entropy(x, t.float())
    with pytest.raises(ValueError, match="reduction must be one of"):
        cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="at least one class"):
        cross_entropy(torch.randn(4, 0, device=device), t)
    if device == "cpu":  # checked only where it costs no device sync
        with pytest.raises(ValueError, match="outside"):
            cross_entropy(x, torch.tensor([0, 1, 6, 2], device=device))


# ---- real sizes on a GPU (compiled kernels, autotuned): the CUDA run only --------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("c", [50257, 32000, 128])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_sizes(dtype, c, reduction):
    x = torch.randn(512, c, device="cuda", dtype=dtype) * 2
    _check(x, _targets((512,), c, "cuda"), reduction)


@pytest.mark.cuda
def test_cuda_3d_bf16_large_values():
    x = torch.randn(4, 256, 50257, device="cuda", dtype=torch.bfloat16) * 100
    _check(x, _targets((4, 256), 50257, "cuda"), "mean")
