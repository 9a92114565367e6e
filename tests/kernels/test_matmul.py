"""matmul kernels vs the float64 reference: outputs and the gradients of a, b, bias and residual.

Interpreter tests (CPU, TRITON_INTERPRET=1) use sizes that are not multiples of the 16x16x16
interpreter tiles; CUDA tests at real sizes run only where a GPU is present.
Broadcasting supported (and tested): the batch dims of a [..., M, K] and b [..., K, N] broadcast
like torch.matmul (numpy rules, either side may be missing dims or have size 1).
"""
from __future__ import annotations

import importlib

import pytest
import torch

from nndsl.kernels.dropout import dropout_mask
from nndsl.kernels.matmul import ACTIVATIONS, matmul, matmul_backward, matmul_forward, matmul_reference
from tolerance import TOL, TOL_TF32, assert_close

mod = importlib.import_module("nndsl.kernels.matmul")  # the module (nndsl.kernels.matmul is the function)

NAMES = ("a", "b", "bias", "residual")


def _inputs(a_shape, b_shape, bias=True, residual=True, device="cpu", dtype=torch.float32):
    """Fresh random a, b (scaled so z = a @ b stays O(1)), bias, residual."""
    new = dict(device=device, dtype=dtype)
    a = torch.randn(a_shape, **new)
    b = (torch.randn(b_shape, device=device) / max(b_shape[-2], 1) ** 0.5).to(dtype)
    out_shape = torch.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])
    return (a, b, torch.randn(b_shape[-1], **new) if bias else None,
            torch.randn(out_shape, **new) if residual else None)


def _check(a, b, bias=None, residual=None, activation=None, tol=TOL[torch.float32], grad_of=NAMES,
           dropout_p=0.0, seed=None):
    """matmul forward + backward vs the float64 reference; every gradient in `grad_of` compared.
    With dropout the reference gets the mask materialized by dropout_mask for the same seed."""
    args = [t.detach().requires_grad_(n in grad_of) if t is not None else None
            for n, t in zip(NAMES, (a, b, bias, residual))]
    ref_args = [t.detach().to(torch.float64).requires_grad_(t.requires_grad) if t is not None else None
                for t in args]
    y = matmul(args[0], args[1], args[2], activation, args[3], dropout_p=dropout_p, seed=seed)
    mask = dropout_mask(seed, y.shape, dropout_p, y.device) if dropout_p else None
    y_ref = matmul_reference(ref_args[0], ref_args[1], ref_args[2], activation, ref_args[3],
                             dropout_p=dropout_p, mask=mask)
    assert_close("y", y, y_ref, tol)
    names = [n for n, t in zip(NAMES, args) if t is not None and t.requires_grad]
    if not names:
        return
    dy = torch.randn_like(y_ref)
    grads = torch.autograd.grad(y, [args[NAMES.index(n)] for n in names], dy.to(y.dtype))
    ref_grads = torch.autograd.grad(y_ref, [ref_args[NAMES.index(n)] for n in names], dy)
    for n, g, r in zip(names, grads, ref_grads):
        assert_close(f"d{n}", g, r, tol)


# ----------------------------------------------------------------------------------------------
# Interpreter: 2-D shapes, activations, optional bias / residual
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 33, 7), (7, 1, 33), (33, 7, 70), (70, 33, 1),
                                   (70, 70, 33)])
def test_shapes_2d(m, k, n):
    _check(*_inputs((m, k), (k, n)), activation="gelu")


@pytest.mark.parametrize("a_shape,b_shape", [
    ((65, 9), (9, 7)),  # dB over 65 rows in 4 chunks of 32: the last one is empty
    ((3, 70, 9), (9, 7)),  # 210 rows, ragged chunks
    ((2, 70, 5), (2, 5, 3)),  # batched b: chunks per batch entry
])
def test_split_k(a_shape, b_shape, monkeypatch):
    """Small weight gradients over many rows take the split-K path (tiny thresholds when interpreted)."""
    splits, split_k = [], mod._split_k
    monkeypatch.setattr(mod, "_split_k", lambda *args: splits.append(split_k(*args)) or splits[-1])
    _check(*_inputs(a_shape, b_shape), activation="silu")
    assert max(splits) > 1, f"expected a split-K launch, got splits {splits}"


@pytest.mark.parametrize("activation", (None,) + ACTIVATIONS)
def test_activations(activation):
    a, b, bias, _ = _inputs((33, 17), (17, 70), residual=False)
    _check(a, b, bias, activation=activation)


@pytest.mark.parametrize("bias,residual", [(False, False), (True, False), (False, True)])
def test_bias_residual_optional(bias, residual):
    a, b, bias_t, res = _inputs((7, 33), (33, 9), bias=bias, residual=residual)
    _check(a, b, bias_t, res, "relu")


# ----------------------------------------------------------------------------------------------
# Interpreter: batch dims and broadcasting
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a_shape,b_shape,activation", [
    ((3, 5, 17), (17, 9), "silu"),  # batched a, 2-D b: one GEMM over 15 rows
    ((2, 3, 5, 17), (2, 3, 17, 9), "gelu"),  # batched b, equal batch dims (collapse to one)
    ((2, 1, 5, 17), (3, 17, 9), "tanh"),  # both broadcast: out (2, 3, 5, 9), two batch dims
    ((5, 17), (4, 17, 9), None),  # 2-D a against a batch of b: da sums over the batch
    ((2, 3, 5, 17), (1, 17, 9), "relu"),  # b's batch dims all 1: one GEMM
    ((2, 1, 3, 1, 5, 7), (1, 2, 1, 2, 7, 4), "sigmoid"),  # 4 independent batch dims: copied to 1
])
def test_batched(a_shape, b_shape, activation):
    a, b, bias, res = _inputs(a_shape, b_shape)
    _check(a, b, bias, res, activation)


def test_non_contiguous_2d():
    a = torch.randn(33, 7).t()  # (7, 33) transposed view
    b = torch.randn(70, 33).t()[:, ::2] / 6  # (33, 35), transposed and strided
    res = torch.randn(35, 7).t()
    _check(a, b, torch.randn(35), res, "gelu_tanh")


def test_non_contiguous_batched():
    a = torch.randn(3, 17, 5).transpose(1, 2)  # batched a whose rows cannot be flattened: copied
    _check(a, torch.randn(9, 17).t() / 4, torch.randn(9), activation="silu")
    a = torch.randn(3, 2, 5, 17).transpose(0, 1)  # batch dims permuted
    b = torch.randn(2, 3, 9, 17).transpose(-1, -2) / 4
    _check(a, b, torch.randn(9), torch.randn(2, 3, 5, 9), "gelu")


@pytest.mark.parametrize("grad_of", [("a",), ("b",), ("bias",), ("b", "bias"), ("residual",)])
def test_gradient_subsets(grad_of):
    a, b, bias, res = _inputs((2, 9, 17), (17, 33))
    _check(a, b, bias, res, "gelu", grad_of=grad_of)
    a, b, bias, res = _inputs((2, 9, 17), (2, 17, 33))
    _check(a, b, bias, res, None, grad_of=grad_of)


def test_no_grad_forward():
    a, b, bias, res = _inputs((3, 7, 33), (33, 9))
    with torch.no_grad():
        y = matmul(a, b, bias, "sigmoid", res)
    assert_close("y", y, matmul_reference(a.double(), b.double(), bias.double(), "sigmoid", res.double()),
                 TOL[torch.float32])


def test_reference_fallback(monkeypatch):
    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    _check(*_inputs((5, 7, 9), (9, 4)), activation="gelu")


# ----------------------------------------------------------------------------------------------
# Interpreter: dropout in the epilogue (mask from dropout_mask, regenerated in the backward)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("a_shape,b_shape,bias,activation,residual", [
    ((37, 19), (19, 29), False, None, False),  # dropout alone: the backward regenerates grad * keep
    ((37, 19), (19, 29), True, None, True),  # the GPT residual projection: x + dropout(linear(h))
    ((37, 19), (19, 29), True, "gelu", True),  # with an activation the mask rides in s
    ((2, 37, 19), (19, 29), False, "relu", False),  # batched a, one GEMM over 74 rows
    ((2, 37, 19), (2, 19, 29), True, "silu", True),  # batched b: rows counted across batch entries
])
def test_dropout(p, a_shape, b_shape, bias, activation, residual):
    a, b, bias_t, res = _inputs(a_shape, b_shape, bias=bias, residual=residual)
    _check(a, b, bias_t, res, activation, dropout_p=p, seed=1234)


def test_dropout_only_some_grads():
    a, b, bias, res = _inputs((2, 37, 19), (19, 29))
    for grad_of in (("a",), ("b", "bias"), ("residual",)):
        _check(a, b, bias, res, None, grad_of=grad_of, dropout_p=0.3, seed=5)
        _check(a, b, bias, res, "tanh", grad_of=grad_of, dropout_p=0.3, seed=5)


def test_dropout_zero_is_unchanged():
    """p = 0: the very same numbers as a call without dropout, whatever the seed, and no draw from torch."""
    a, b, bias, res = _inputs((37, 19), (19, 29))
    state = torch.get_rng_state()
    want = matmul(a, b, bias, "gelu", res)
    assert torch.equal(matmul(a, b, bias, "gelu", res, dropout_p=0.0, seed=77), want)
    assert torch.equal(matmul(a, b, bias, "gelu", res, dropout_p=0.0), want)
    assert torch.equal(torch.get_rng_state(), state)


def test_dropout_seeds():
    a, b, bias, _ = _inputs((37, 19), (19, 29), residual=False)
    y = matmul(a, b, bias, dropout_p=0.5, seed=3)
    assert torch.equal(y, matmul(a, b, bias, dropout_p=0.5, seed=3))
    assert not torch.equal(y != 0, matmul(a, b, bias, dropout_p=0.5, seed=4) != 0)
    torch.manual_seed(11)
    drawn = matmul(a, b, bias, dropout_p=0.5)
    torch.manual_seed(11)
    assert torch.equal(matmul(a, b, bias, dropout_p=0.5), drawn)


def test_dropout_reference_fallback_draws_the_kernel_mask(monkeypatch):
    a, b, bias, res = _inputs((2, 37, 19), (19, 29))
    kernel = matmul(a, b, bias, "gelu", res, dropout_p=0.5, seed=8)
    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    assert_close("fallback", matmul(a, b, bias, "gelu", res, dropout_p=0.5, seed=8), kernel, TOL[torch.float32])


# ----------------------------------------------------------------------------------------------
# Interpreter: launchers write every element (outputs pre-filled with NaN)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a_shape,b_shape", [((33, 17), (17, 35)), ((2, 3, 7, 17), (2, 3, 17, 9))])
def test_launchers_write_everything(a_shape, b_shape):
    a, b, bias, res = _inputs(a_shape, b_shape)
    y = torch.full(res.shape, float("nan"))
    s = torch.full(res.shape, float("nan"))
    matmul_forward(a, b, bias, "gelu", res, save_grad=True, out=y, grad_out=s)
    z = (torch.matmul(a.double(), b.double()) + bias.double()).requires_grad_()
    act_grad, = torch.autograd.grad(torch.nn.functional.gelu(z).sum(), z)
    assert_close("y", y, matmul_reference(a.double(), b.double(), bias.double(), "gelu", res.double()),
                 TOL[torch.float32])
    assert_close("s", s, act_grad, TOL[torch.float32])

    g = torch.randn(res.shape)
    da, db = torch.full(a.shape, float("nan")), torch.full(b.shape, float("nan"))
    _, _, dbias = matmul_backward(g, a, b, s, need_bias=True, out_a=da, out_b=db)
    dz = g.double() * act_grad
    assert_close("da", da, dz @ b.double().transpose(-1, -2), TOL[torch.float32])
    assert_close("db", db, a.double().transpose(-1, -2) @ dz, TOL[torch.float32])
    assert_close("dbias", dbias, dz.reshape(-1, dz.shape[-1]).sum(0), TOL[torch.float32])


# ----------------------------------------------------------------------------------------------
# Argument errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,match", [
    ((torch.randn(3, 4), torch.randn(5, 6)), "inner sizes"),  # K mismatch
    ((torch.randn(3, 4), torch.randn(4, 6), torch.randn(5)), "bias must have shape"),
    ((torch.randn(3, 4), torch.randn(4, 6), torch.randn(1, 6)), "bias must have shape"),
    ((torch.ones(3, 4, dtype=torch.int32), torch.ones(4, 6, dtype=torch.int32)), "dtype"),
    ((torch.randn(3, 4), torch.randn(4, 6), None, "elu"), "unknown activation"),
    ((torch.randn(3, 4), torch.randn(4, 6), None, None, torch.randn(6, 3)), "residual must have"),
    ((torch.randn(2, 3, 4), torch.randn(3, 4, 5)), "do not broadcast"),
    ((torch.randn(4), torch.randn(4, 6)), "2\\+ dims"),
    ((torch.randn(3, 4), torch.randn(4, 6, dtype=torch.float16)), "same dtype"),
])
def test_errors(args, match):
    with pytest.raises(ValueError, match=match):
        matmul(*args)


def test_dropout_errors():
    with pytest.raises(ValueError, match="dropout_p must be in"):
        matmul(torch.randn(3, 4), torch.randn(4, 6), dropout_p=1.0)
    with pytest.raises(ValueError, match="seed must be an int"):
        matmul(torch.randn(3, 4), torch.randn(4, 6), dropout_p=0.5, seed=-3)
    with pytest.raises(ValueError, match="mask must have the output shape"):
        matmul_reference(torch.randn(3, 4), torch.randn(4, 6), dropout_p=0.5, mask=torch.ones(6, 3, dtype=torch.bool))


def test_out_buffer_errors():
    with pytest.raises(ValueError, match="out must be"):
        matmul_forward(torch.randn(3, 4), torch.randn(4, 6), out=torch.empty(6, 3))


# ----------------------------------------------------------------------------------------------
# CUDA, real sizes (run only where a GPU is present)
# ----------------------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# fp32 dots use TF32 exactly when torch.matmul would
_FP32_TOL = TOL_TF32 if torch.backends.cuda.matmul.allow_tf32 else TOL[torch.float32]
CUDA_DTYPES = [(torch.float32, _FP32_TOL), (torch.float16, TOL[torch.float16]),
               (torch.bfloat16, TOL[torch.bfloat16])]


@cuda
@pytest.mark.parametrize("dtype,tol", CUDA_DTYPES)
@pytest.mark.parametrize("a_shape,b_shape,activation,bias,residual", [
    ((1024, 768), (768, 3072), "gelu", True, False),  # GPT-2 fc
    ((4, 256, 768), (768, 768), None, True, True),  # attention projection + residual
    ((1000, 999), (999, 1001), "gelu_tanh", True, True),  # ragged everywhere
    ((4, 12, 256, 64), (4, 12, 64, 256), "silu", False, False),  # batched b
    ((8, 1, 128, 96), (6, 96, 80), "tanh", True, True),  # broadcast batch dims
])
def test_cuda(dtype, tol, a_shape, b_shape, activation, bias, residual):
    a, b, bias_t, res = _inputs(a_shape, b_shape, bias, residual, device="cuda", dtype=dtype)
    _check(a, b, bias_t, res, activation, tol=tol)


@cuda
@pytest.mark.parametrize("dtype,tol", CUDA_DTYPES)
@pytest.mark.parametrize("a_shape,b_shape,activation", [
    ((8, 256, 384), (384, 384), None),  # baby GPT residual projection: x + dropout(linear(h))
    ((1000, 999), (999, 1001), "gelu"),  # ragged, mask carried in s
])
def test_cuda_dropout(dtype, tol, a_shape, b_shape, activation):
    a, b, bias_t, res = _inputs(a_shape, b_shape, True, True, device="cuda", dtype=dtype)
    _check(a, b, bias_t, res, activation, tol=tol, dropout_p=0.2, seed=2024)


@cuda
@pytest.mark.parametrize("dtype,tol", CUDA_DTYPES)
def test_cuda_non_contiguous(dtype, tol):
    a = torch.randn(768, 512, device="cuda", dtype=dtype).t()
    b = (torch.randn(1024, 768, device="cuda") / 28).to(dtype).t()  # nn.Linear's weight layout
    _check(a, b, torch.randn(1024, device="cuda", dtype=dtype), activation="relu", tol=tol)
