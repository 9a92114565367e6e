"""LayerNorm / RMSNorm kernels vs the float64 reference: outputs and gradients of x, weight, bias.

Under the interpreter the block is 32 columns: widths 1 and 7 take the one-block path, 25 the
one-block backward with its columns split over 2 programs, 33 and 127 the looped (wide-row)
path; the backward runs 3 row chunks, so dw/db are reduced over ragged partial sums.
Tests taking `device` run in both groups (CPU under the interpreter; compiled on the GPU with
NNDSL_TEST_CUDA=1); `cuda` tests only in the CUDA run.
"""
import pytest
import torch
import torch.nn.functional as F

from nndsl.kernels.norms import (layer_norm, layer_norm_reference, norm_bwd, norm_fwd, rms_norm,
                                 rms_norm_reference)
from tolerance import TOL, assert_close



def _params(d, dtype, has_w, has_b, device):
    w = torch.randn(d, device=device, dtype=dtype) if has_w else None
    b = torch.randn(d, device=device, dtype=dtype) if has_b else None
    return w, b


def _check(x, w, b, rms, eps=1e-5, tol=None):
    """Output and the gradient of every tensor input vs the float64 reference."""
    tol = tol or TOL[x.dtype]
    ins = {"x": x, "weight": w, "bias": b}
    ins = {k: v.detach().requires_grad_() for k, v in ins.items() if v is not None}
    ins64 = {k: v.detach().double().requires_grad_() for k, v in ins.items()}
    if rms:
        y = rms_norm(ins["x"], ins.get("weight"), eps)
        y64 = rms_norm_reference(ins64["x"], ins64.get("weight"), eps)
    else:
        y = layer_norm(ins["x"], ins.get("weight"), ins.get("bias"), eps)
        y64 = layer_norm_reference(ins64["x"], ins64.get("weight"), ins64.get("bias"), eps)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, list(ins.values()), dy)
    grads64 = torch.autograd.grad(y64, list(ins64.values()), dy.double())
    assert_close("y", y, y64, tol)
    for name, g, g64 in zip(ins, grads, grads64):
        assert_close(f"d{name}", g, g64, tol)


AFFINE = [(True, True), (True, False), (False, True), (False, False)]  # (weight, bias) given


@pytest.mark.parametrize("d", [1, 7, 25, 33, 127])
@pytest.mark.parametrize("lead", [(), (2, 4)])
@pytest.mark.parametrize("has_w,has_b", [(True, True)])
def test_layer_norm(d, lead, has_w, has_b, device):
    x = torch.randn(*lead, d, device=device) * 2 + 0.5
    _check(x, *_params(d, x.dtype, has_w, has_b, device), rms=False)


@pytest.mark.parametrize("d", [7, 25, 33])
@pytest.mark.parametrize("has_w,has_b", AFFINE[1:])
def test_layer_norm_affine_none(d, has_w, has_b, device):
    test_layer_norm(d, (2, 4), has_w, has_b, device)


@pytest.mark.parametrize("d", [1, 7, 25, 33, 127])
@pytest.mark.parametrize("lead", [(), (2, 4)])
@pytest.mark.parametrize("has_w", [True, False])
def test_rms_norm(d, lead, has_w, device):
    x = torch.randn(*lead, d, device=device) * 2 + 0.5
    # One column: dx = dy * w * eps / (x^2 + eps)^1.5 is all cancellation unless eps is large.
    eps = 0.5 if d == 1 else 1e-6
    _check(x, _params(d, x.dtype, has_w, False, device)[0], None, rms=True, eps=eps)


@pytest.mark.parametrize("rms", [False, True])
@pytest.mark.parametrize("d", [7, 40])
def test_non_contiguous(rms, d, device):
    w, b = _params(d, torch.float32, True, not rms, device)
    _check(torch.randn(d, 12, device=device).t(), w, b, rms)  # column stride 12
    _check(torch.randn(2, 3, 2 * d, device=device)[..., ::2], w, b, rms)  # every other column
    wide_w = torch.randn(2 * d, device=device)[::2]  # strided weight
    _check(torch.randn(6, d, device=device), wide_w, b, rms)


@pytest.mark.parametrize("rms", [False, True])
def test_large_magnitude(rms, device):
    x = torch.randn(5, 70, device=device) * 1e4 + 3e4
    _check(x, *_params(70, x.dtype, True, not rms, device), rms)


def test_matches_torch_functional():
    x, w, b = torch.randn(5, 33, dtype=torch.float64), torch.randn(33, dtype=torch.float64), torch.randn(33, dtype=torch.float64)
    assert torch.allclose(layer_norm_reference(x, w, b), F.layer_norm(x, (33,), w, b, 1e-5))
    assert torch.allclose(rms_norm_reference(x, w), F.rms_norm(x, (33,), w, 1e-6))


@pytest.mark.parametrize("rms", [False, True])
@pytest.mark.parametrize("d", [7, 25, 40])
@pytest.mark.parametrize("programs", [1, 4, 64])  # one chunk, ragged chunks, one row each
def test_launchers_write_everything(rms, d, programs, device):
    """NaN-filled outputs must be overwritten; dw/db must not depend on the chunking."""
    m = 9
    x, dy = torch.randn(m, d, device=device), torch.randn(m, d, device=device)
    w, b = _params(d, torch.float32, True, not rms, device)
    y, mean, rstd = norm_fwd(x, w, b, 1e-5, rms, out=torch.full_like(x, float("nan")))
    dx, dw, db = norm_bwd(dy, x, w, mean, rstd, need_dw=True, need_db=not rms,
                          out=torch.full_like(x, float("nan")), programs=programs)
    ins64 = [t.double().requires_grad_() for t in (x, w, b) if t is not None]
    y64 = (rms_norm_reference(*ins64, 1e-5) if rms else layer_norm_reference(*ins64, 1e-5))
    grads64 = torch.autograd.grad(y64, ins64, dy.double())
    assert_close("y", y, y64, TOL[torch.float32])
    for name, g, g64 in zip(("dx", "dw", "db"), (dx, dw, db), grads64):
        assert_close(name, g, g64, TOL[torch.float32])
    assert torch.isfinite(rstd).all() and (rms or torch.isfinite(mean).all())


def test_value_errors(device):
    x = torch.randn(4, 6, device=device)
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        layer_norm(x, torch.randn(5, device=device))
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        layer_norm(x, None, torch.randn(6, 1, device=device))
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        rms_norm(x, torch.randn(3, 2, device=device))
    with pytest.raises(ValueError, match="x has dtype torch.int32"):
        layer_norm(torch.ones(4, 6, dtype=torch.int32, device=device))
    with pytest.raises(ValueError, match="weight has dtype torch.int64"):
        rms_norm(x, torch.ones(6, dtype=torch.int64, device=device))
    with pytest.raises(ValueError, match="same dtype"):
        layer_norm(x, torch.randn(6, device=device, dtype=torch.float16))
    with pytest.raises(ValueError, match="at least 1 dim"):
        rms_norm(torch.tensor(2.0, device=device))
    with pytest.raises(ValueError, match="no bias"):
        norm_fwd(x, None, torch.randn(6, device=device), rms=True)
    with pytest.raises(ValueError, match="out must be"):
        norm_fwd(x, out=torch.empty(6, 4, device=device))


# ---- real sizes on a GPU (compiled kernels, autotuned): the CUDA run only --------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [768, 4096, 16384, 20000])  # one block, split columns, wide rows
@pytest.mark.parametrize("rms", [False, True])
def test_cuda_sizes(dtype, d, rms):
    x = torch.randn(1000, d, device="cuda", dtype=dtype) + 1
    w, b = _params(d, dtype, True, not rms, "cuda")
    _check(x, w, b, rms)


@pytest.mark.cuda
def test_cuda_no_affine_3d():
    _check(torch.randn(4, 300, 4096, device="cuda", dtype=torch.bfloat16), None, None, rms=False)
