"""Fused linear + cross-entropy vs the float64 reference (F.linear + F.cross_entropy): the loss
and the gradients of x, W and b, an upstream gradient that is not 1, and the memory bound.

Interpreter tests use odd sizes (N = 53, D = 37, V = 65 or 1003: no multiple of the 16-wide
interpreter tiles nor of the 32-class cross-entropy steps) and chunks that do not divide N.
The interpreter's tl.dot has no bf16, so CPU bf16 takes the reference path (tested as such);
bf16 through the kernels is tested on CUDA at GPT-2 size.
"""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from nndsl.kernels._common import interpreting
from nndsl.kernels.linear_cross_entropy import (default_chunk_rows, linear_cross_entropy,
                                                linear_cross_entropy_forward,
                                                linear_cross_entropy_reference)
from tolerance import TOL, TOL_TF32, assert_close

mod = importlib.import_module("nndsl.kernels.linear_cross_entropy")
DEVICE = "cuda" if torch.cuda.is_available() and not interpreting() else "cpu"
needs_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="needs a GPU with NNDSL_TEST_CUDA=1")
# (dtype, tolerance on the relative error of loss and every gradient)
KERNEL_DTYPES = [
    (torch.float32, TOL[torch.float32] if DEVICE == "cpu" else TOL_TF32),  # fp32 dots (tf32 if enabled)
    (torch.float16, TOL[torch.float16]),  # logits and dlogits rounded to fp16 (2^-11), fp32 sums
]
NAMES = ("x", "weight", "bias")


def _inputs(n, d, v, dtype=torch.float32, bias=True, ignored=0.25, ignore_index=-100, device=DEVICE):
    """Fresh x [n, d], W [v, d] scaled so logits are O(2), bias, targets with ~`ignored` ignored
    (never row 0)."""
    x = torch.randn(n, d, device=device).to(dtype)
    w = (torch.randn(v, d, device=device) * 2 / math.sqrt(d)).to(dtype)
    b = torch.randn(v, device=device).to(dtype) if bias else None
    t = torch.randint(0, v, (n,), device=device)
    keep = torch.rand(n, device=device) >= ignored
    keep[:1] = True  # one row counted at least: an all-ignored mean is NaN (test_all_ignored)
    return x, w, torch.where(keep, t, torch.full_like(t, ignore_index)), b


def _check(x, w, t, b=None, reduction="mean", tol=TOL[torch.float32], grad_of=NAMES, **kw):
    """Loss and the gradients in `grad_of` vs float64, with a random upstream gradient."""
    leaves = [a.detach().requires_grad_(name in grad_of) if a is not None else None
              for name, a in zip(NAMES, (x, w, b))]
    ref_leaves = [a.detach().double().requires_grad_(a.requires_grad) if a is not None else None
                  for a in leaves]
    loss = linear_cross_entropy(leaves[0], leaves[1], t, leaves[2], reduction=reduction, **kw)
    ref = linear_cross_entropy_reference(ref_leaves[0], ref_leaves[1], t, ref_leaves[2],
                                         kw.get("ignore_index", -100), reduction)
    assert loss.dtype == torch.float32, f"loss dtype {loss.dtype}, expected float32"
    assert_close(f"loss ({reduction})", loss, ref, tol)
    names = [n for n, a in zip(NAMES, leaves) if a is not None and a.requires_grad]
    g = torch.rand((), device=x.device, dtype=torch.float64) + 0.5  # upstream gradient, not 1
    grads = torch.autograd.grad(loss, [leaves[NAMES.index(n)] for n in names], g.float())
    refs = torch.autograd.grad(ref, [ref_leaves[NAMES.index(n)] for n in names], g)
    for name, got, want in zip(names, grads, refs):
        assert got.dtype == x.dtype, f"d{name} dtype {got.dtype}, expected {x.dtype}"
        assert_close(f"d{name} ({reduction})", got, want, tol)


# ---- the interpreter: odd shapes, dtypes, reductions, chunks ---------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype,tol", KERNEL_DTYPES)
@pytest.mark.parametrize("n,d,v", [(53, 37, 65), (1, 5, 3)])
def test_matches_reference(n, d, v, dtype, tol, reduction):
    _check(*_inputs(n, d, v, dtype), reduction=reduction, tol=tol)


def test_wide_vocabulary():  # 32 steps of the online sum-exp, 63 column tiles (slow: one case)
    _check(*_inputs(9, 16, 1003), chunk_rows=4)


@pytest.mark.parametrize("n,chunk_rows", [(9, 1), (53, 7), (53, 53), (53, 1000)])
def test_chunk_sizes(n, chunk_rows):
    _check(*_inputs(n, 37, 65), reduction="sum", chunk_rows=chunk_rows)


@pytest.mark.parametrize("grad_of", [("x",), ("weight",), ("bias",), ("x", "weight")])
def test_some_gradients(grad_of):
    _check(*_inputs(21, 11, 70), grad_of=grad_of, chunk_rows=8)


def test_without_bias_and_3d_non_contiguous_x():
    x, w, _, _ = _inputs(3 * 5, 37, 65, bias=False)
    x3 = torch.randn(5, 3, 37, device=DEVICE).transpose(0, 1)  # [3, 5, 37], not contiguous
    t = _inputs(15, 37, 65)[2].view(3, 5)
    _check(x3, w, t, None, chunk_rows=4)
    _check(x, w, t.reshape(-1), None, reduction="sum")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_custom_ignore_index(reduction):
    x, w, _, b = _inputs(9, 13, 40)
    t = torch.tensor([3, 0, 3, 5, 3, 39, 3, 1, 3], device=DEVICE)  # ignore_index is a valid class here
    _check(x, w, t, b, reduction=reduction, ignore_index=3, chunk_rows=4)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored(reduction):
    x, w, _, b = _inputs(6, 9, 17)
    t = torch.full((6,), -100, device=DEVICE)
    leaves = [a.requires_grad_() for a in (x, w, b)]
    loss = linear_cross_entropy(*leaves[:2], t, leaves[2], reduction=reduction)
    ref = F.cross_entropy(F.linear(x.double(), w.double(), b.double()), t, reduction=reduction)
    if reduction == "mean":  # 0 / 0, as in PyTorch
        assert torch.isnan(loss) and torch.isnan(ref), f"expected nan, got {loss.item()} (ref {ref.item()})"
    else:
        assert loss.item() == 0.0 and ref.item() == 0.0, f"expected 0, got {loss.item()} (ref {ref.item()})"
    loss.backward()
    for name, a in zip(NAMES, leaves):
        assert torch.equal(a.grad, torch.zeros_like(a)), f"d{name} must be 0 when every row is ignored"


def test_backward_twice_with_retain_graph():
    x, w, t, b = _inputs(13, 7, 30)
    w.requires_grad_()
    loss = linear_cross_entropy(x, w, t, b, chunk_rows=5)
    (g1,) = torch.autograd.grad(loss, w, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, w, torch.tensor(3.0, device=DEVICE))
    assert_close("second backward", g2, 3 * g1.double(), TOL[torch.float32])


def test_no_grad_gives_the_loss_only():
    x, w, t, b = _inputs(19, 9, 33)
    with torch.no_grad():
        loss = linear_cross_entropy(x.requires_grad_(), w, t, b, chunk_rows=6)
    assert not loss.requires_grad
    assert_close("loss", loss, linear_cross_entropy_reference(x.double(), w.double(), t, b.double()),
                 TOL[torch.float32])
    out = linear_cross_entropy_forward(x, w, t, b, need_x=False, need_weight=False, need_bias=False)
    assert out[1:] == (None, None, None), "no gradient was asked for"


def test_default_chunk_rows():
    # Liger's rule, next power of two >= n / ceil(v / d), with a floor of d rows; at most n
    assert default_chunk_rows(8192, 768, 50257) == 1024  # ceil(8192 / 66) = 125 < d = 768 -> 1024
    assert default_chunk_rows(2**20, 768, 50257) == 16384  # ceil(2**20 / 66) = 15888 -> 16384
    assert default_chunk_rows(53, 7, 65) == 8  # ceil(53 / 10) = 6 < d = 7 -> 8
    assert default_chunk_rows(53, 37, 65) == 53  # ceil(53 / 2) = 27 < d = 37 -> 64, capped at n
    assert default_chunk_rows(5, 64, 10) == 5  # v < d: one chunk of every row
    assert default_chunk_rows(0, 7, 65) == 1
    assert default_chunk_rows(2**20, 8192, 256000) == (2**31 - 1) // 256000  # int32 offsets


# ---- memory: no tensor of N x V elements, every allocated buffer written ----------------------
class _Spy(TorchDispatchMode):
    """Records the largest tensor (in bytes) any aten op produces (the interpreter's own byte
    views of the kernels' arguments included), and fills every new uninitialized float tensor
    with NaN, so that an element left unwritten poisons the result."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                self.largest = max(self.largest, o.numel() * o.element_size())
                if func.overloadpacket in (torch.ops.aten.empty, torch.ops.aten.empty_strided,
                                           torch.ops.aten.empty_like) and o.is_floating_point():
                    o.fill_(float("nan"))
        return out


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_peak_memory_is_one_chunk_and_buffers_are_written(reduction):
    n, d, v, rows = 53, 7, 65, 8  # fp32 elements: N*V = 3445; a chunk of logits 520; W 455; x 371
    x, w, t, b = _inputs(n, d, v)
    leaves = [a.requires_grad_() for a in (x, w, b)]
    with _Spy() as spy:
        loss = linear_cross_entropy(*leaves[:2], t, leaves[2], reduction=reduction, chunk_rows=rows)
        grads = torch.autograd.grad(loss, leaves)
    bound = 4 * max(rows * v, v * d, n * d)
    assert spy.largest <= bound, f"a tensor of {spy.largest} bytes was made; bound {bound} (N*V: {4 * n * v})"
    refs = [a.detach().double().requires_grad_() for a in leaves]
    ref = linear_cross_entropy_reference(refs[0], refs[1], t, refs[2], reduction=reduction)
    assert_close("loss", loss, ref, TOL[torch.float32])
    for name, got, want in zip(NAMES, grads, torch.autograd.grad(ref, refs)):
        assert_close(f"d{name}", got, want, TOL[torch.float32])
    with _Spy() as spy:  # the spy can fail: the unfused reference makes the [N, V] logits
        linear_cross_entropy_reference(x, w, t, b, reduction=reduction)
    assert spy.largest >= 4 * n * v, f"the spy saw at most {spy.largest} bytes from the reference"


# ---- fallbacks and errors --------------------------------------------------------------------
def test_falls_back_to_reference_without_the_interpreter(monkeypatch):
    x, w, t, b = _inputs(11, 6, 20, device="cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(mod, "linear_cross_entropy_forward", None)  # a kernel launch would raise
    assert torch.equal(linear_cross_entropy(x, w, t, b), linear_cross_entropy_reference(x, w, t, b))


def test_bf16_on_cpu_takes_the_reference():
    x, w, t, b = _inputs(17, 9, 31, dtype=torch.bfloat16, device="cpu")
    loss = linear_cross_entropy(x, w, t, b, reduction="sum")
    assert torch.equal(loss, linear_cross_entropy_reference(x, w, t, b, reduction="sum"))
    _check(x, w, t, b, tol=TOL[torch.bfloat16])  # bf16 inputs, upcast logits: within bf16 tolerance


def test_value_errors():
    x, w, t, b = _inputs(4, 6, 9)
    cases = [
        ((x, w, t[:3]), {}, r"target must have shape \(4,\)"),
        ((x[:, :5], w, t), {}, r"x must be \[\.\.\., D\] with D = weight.shape\[1\] = 6"),
        ((x, w[None], t), {}, "weight must have 2 dims"),
        ((x, w.double(), t), {}, "weight has dtype torch.float64"),
        ((x, w.half(), t), {}, "must have the same dtype"),
        ((x, w, t.int()), {}, "target must be an int64"),
        ((x, w, t, b[:5]), {}, r"bias must have shape \(9,\)"),
        ((x, w, t), {"reduction": "none"}, "reduction must be one of"),
        ((x, w, t), {"chunk_rows": 0}, "chunk_rows must be None or a positive int"),
        ((x, w, t), {"ignore_index": 1.5}, "ignore_index must be an int"),
        ((x, w[:0], t), {}, "at least one class"),
    ]
    if DEVICE == "cpu":  # checked only where it costs no device sync
        cases.append(((x, w, torch.tensor([0, 1, 9, 2])), {}, "outside"))
    for args, kw, match in cases:
        with pytest.raises(ValueError, match=match):
            linear_cross_entropy(*args, **kw)


# ---- real sizes on a GPU (compiled, autotuned kernels) ---------------------------------------
GPT2 = (8192, 768, 50257)  # tokens (8 x 1024), width, vocabulary of GPT-2 small


@needs_cuda
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [False, True])
def test_cuda_gpt2_head_bf16(reduction, bias):
    _check(*_inputs(*GPT2, torch.bfloat16, bias=bias), reduction=reduction, tol=TOL[torch.bfloat16])


@needs_cuda
@pytest.mark.parametrize("dtype,tol", KERNEL_DTYPES)
def test_cuda_other_dtypes(dtype, tol):
    _check(*_inputs(2048, 768, 50257, dtype), tol=tol)


@needs_cuda
def test_cuda_odd_sizes_and_chunks():
    for chunk_rows in (None, 1000, 5000):
        _check(*_inputs(4099, 771, 32003, torch.bfloat16), chunk_rows=chunk_rows, tol=TOL[torch.bfloat16])


@needs_cuda
def test_cuda_peak_memory_is_bounded_by_the_chunk():
    n, d, v = GPT2
    x, w, t, _ = _inputs(n, d, v, torch.bfloat16)
    x.requires_grad_()
    w.requires_grad_()
    linear_cross_entropy(x, w, t).backward()  # autotuning (it copies dW to restore it) done here
    x.grad = w.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    linear_cross_entropy(x, w, t).backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    e = x.element_size()
    rows = default_chunk_rows(n, d, v)
    # forward: a chunk of logits, dx, fp32 dW (then dW in bf16, the chunk freed); backward:
    # dx, dW and their scaled copies; 16 MiB slack
    bound = max(rows * v * e + n * d * e + v * d * 4, n * d * e * 2 + v * d * (4 + 2 * e)) + 2**24
    assert extra <= bound, f"peak extra memory {extra / 2**20:.0f} MiB > bound {bound / 2**20:.0f} MiB"
    logits = n * v * e
    assert extra < logits / 2, f"{extra / 2**20:.0f} MiB: not far below the {logits / 2**20:.0f} MiB logits"
