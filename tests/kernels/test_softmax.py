"""Softmax / log-softmax kernels vs the float64 reference: outputs and input gradients.

Under the interpreter the block is 32 columns, so widths 1 and 7 take the one-block path and
33 and 127 the two-loop (online max / sum-exp) path. With NNDSL_TEST_CUDA=1 on a GPU the tests
taking `device` run compiled on CUDA, plus the real-size `cuda` tests at the end.
"""
import pytest
import torch

from nndsl.kernels.softmax import (log_softmax, log_softmax_reference, softmax, softmax_bwd,
                                   softmax_fwd, softmax_reference)
from tolerance import TOL, assert_close

FUNCS = {"softmax": (softmax, softmax_reference), "log_softmax": (log_softmax, log_softmax_reference)}


def _check(name, x, dim=-1, tol=None):
    """Output and dx of FUNCS[name] on x vs the float64 reference on the same values."""
    fn, ref = FUNCS[name]
    tol = tol or TOL[x.dtype]
    x = x.detach().requires_grad_()
    y = fn(x, dim)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    x64 = x.detach().double().requires_grad_()
    y64 = ref(x64, dim)
    (dx64,) = torch.autograd.grad(y64, x64, dy.double())
    assert_close(f"{name} y", y, y64, tol)
    assert_close(f"{name} dx", dx, dx64, tol)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("d", [1, 7, 33, 127])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_rows(name, d, lead, device):
    _check(name, torch.randn(*lead, d, device=device) * 3)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dim", [0, 1, -2])
def test_other_dims(name, dim, device):
    _check(name, torch.randn(6, 37, 5, device=device), dim)


@pytest.mark.parametrize("name", FUNCS)
def test_non_contiguous(name, device):
    base = torch.randn(40, 9, device=device)
    _check(name, base.t())  # (9, 40), column stride 9
    _check(name, torch.randn(4, 70, device=device)[:, ::2])  # every other column


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("d", [7, 70])
def test_large_magnitude(name, d, device):
    x = torch.randn(4, d, device=device) * 1e4  # exp would overflow without the max shift
    x[:, 1] = x[:, 0] + torch.rand(4, device=device) * 10  # some rows not one-hot
    x = x.requires_grad_()
    fn, ref = FUNCS[name]
    y = fn(x)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    x64 = x.detach().double().requires_grad_()
    y64 = ref(x64)
    (dx64,) = torch.autograd.grad(y64, x64, dy.double())
    assert_close("y", y, y64, TOL[x.dtype])
    # softmax's dx = y * (dy - sum(dy * y)) cancels when y is near one-hot, for PyTorch too: the
    # error is measured against the size of dy instead of the (tiny) size of dx.
    assert torch.isfinite(dx).all(), "dx: non-finite values"
    err = ((dx.double() - dx64).norm() / dy.double().norm()).item()
    assert err < TOL[x.dtype], f"dx: error {err:.3e} (relative to |dy|) >= {TOL[x.dtype]:.1e}"


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("d", [7, 45])
def test_launchers_write_every_element(log, d, device):
    x = torch.randn(3, 4, d, device=device)
    y = softmax_fwd(x, log, out=torch.full_like(x, float("nan")))
    ref = (log_softmax_reference if log else softmax_reference)(x.double())
    assert_close("y", y, ref, TOL[torch.float32])
    dy = torch.randn_like(x)
    dx = softmax_bwd(y, dy, log, out=torch.full_like(x, float("nan")))
    x64 = x.double().requires_grad_()
    (dx64,) = torch.autograd.grad((log_softmax_reference if log else softmax_reference)(x64), x64, dy.double())
    assert_close("dx", dx, dx64, TOL[torch.float32])


def test_reference_matches_torch():
    x = torch.randn(5, 11, dtype=torch.float64)
    assert torch.allclose(softmax_reference(x, 0), torch.softmax(x, 0))
    assert torch.allclose(log_softmax_reference(x, -1), torch.log_softmax(x, -1))


def test_value_errors(device):
    x = torch.randn(3, 4, device=device)
    with pytest.raises(ValueError, match="x has dtype torch.int64"):
        softmax(torch.ones(3, 4, dtype=torch.int64, device=device))
    with pytest.raises(ValueError, match="dim must be"):
        softmax(x, 2)
    with pytest.raises(ValueError, match="at least 1 dim"):
        log_softmax(torch.tensor(1.0, device=device))
    with pytest.raises(ValueError, match="out must be"):
        softmax_fwd(x, out=torch.empty(4, 3, device=device))
    with pytest.raises(ValueError, match="dy must have the shape"):
        softmax_bwd(x, torch.randn(3, 5, device=device))


# ---- real sizes on a GPU (compiled kernels, autotuned): the CUDA run only --------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [4096, 16384, 50257])  # one block, widest block, two-loop path
@pytest.mark.parametrize("name", FUNCS)
def test_cuda_sizes(dtype, d, name):
    _check(name, torch.randn(256, d, device="cuda", dtype=dtype) * 4)


@pytest.mark.cuda
def test_cuda_other_dim_bf16():
    _check("softmax", torch.randn(8, 1000, 64, device="cuda", dtype=torch.bfloat16), 1)
