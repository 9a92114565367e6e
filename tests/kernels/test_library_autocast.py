"""nndsl.kernels.library under torch.autocast: matmul, attention and conv2d run in the autocast
dtype (bf16 or fp16, read at each call), the norms, softmax and cross-entropy in float32.

The dtypes an op's implementation receives are read by a spy on the family function it calls.
The interpreter has no bf16, so on the CPU the low-precision spies compute with the float32
reference and round to the dtype they were given; the public wrappers take their references
there themselves. Values and gradients are compared with float64 references.
"""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

import nndsl.kernels.library as L
from tolerance import TOL, assert_close

_mm, _at, _cv, _ce, _nm, _sm = (importlib.import_module(f"nndsl.kernels.{n}") for n in
                                ("matmul", "attention", "conv2d", "cross_entropy", "norms", "softmax"))
LOW = [torch.bfloat16, torch.float16]
TOL_FP32 = TOL[torch.float32]


class Spy:
    """Stands in for `module.name`; records the float dtypes of each call's tensors, then runs
    `body` (default: the original function)."""

    def __init__(self, monkeypatch, module, name, body=None):
        self.original, self.dtypes = getattr(module, name), []
        self.body = body or self.original
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        self.dtypes.append({a.dtype for a in (*args, *kwargs.values())
                            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.numel()})
        return self.body(*args, **kwargs)


def _f32(*ts):
    return [t.float() if t is not None else None for t in ts]


# ----------------------------------------------------------------------------- the ops' Autocast kernels
@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
def test_low_ops_receive_the_autocast_dtype(monkeypatch, dtype):
    """Each call reads the region's dtype: a bf16 region, then an fp16 one, each gets its own."""
    mm = Spy(monkeypatch, _mm, "matmul_forward", lambda a, b, bias, act, res, **k: (
        _mm.matmul_reference(*_f32(a, b, bias), act, *_f32(res)).to(a.dtype), None))
    at = Spy(monkeypatch, _at, "_attention_fwd", lambda q, k, v, causal, scale, **kw: (
        _at.attention_reference(*_f32(q, k, v), causal, scale).to(q.dtype),
        q.new_zeros((q.shape[0] * q.shape[1], q.shape[2]), dtype=torch.float32)))
    cv = Spy(monkeypatch, _cv, "conv2d_fwd", lambda x, w, b, *conf, save_preact: (
        _cv.conv2d_reference(*_f32(x, w, b), *conf).to(x.dtype), None))
    a, b, bias, res = torch.randn(2, 5, 7), torch.randn(7, 9) * 0.4, torch.randn(9), torch.randn(2, 5, 9)
    q, k, v = (torch.randn(1, 2, 5, 16) for _ in range(3))
    x, w, wb = torch.randn(2, 3, 7, 6), torch.randn(4, 3, 3, 3) * 0.3, torch.randn(4)
    with torch.autocast("cpu", dtype=dtype):
        y_mm = torch.ops.nndsl.matmul(a, b, bias, "gelu", res, 0.0, 0, False)[0]
        y_at = torch.ops.nndsl.attention(q, k, v, True, 0.25, 0.0, 0)[0]
        y_cv = torch.ops.nndsl.conv2d(x, w, wb, [1, 1], [1, 0], [1, 1], 1, "relu", False)[0]
    for name, spy, y in (("matmul", mm, y_mm), ("attention", at, y_at), ("conv2d", cv, y_cv)):
        assert spy.dtypes == [{dtype}], f"{name} received {spy.dtypes}, expected {dtype}"
        assert y.dtype == dtype, f"{name} returned {y.dtype}"
    d = [t.double() for t in (a, b, bias, res, q, k, v, x, w, wb)]
    assert_close("matmul", y_mm, F.gelu(d[0] @ d[1] + d[2]) + d[3], TOL[dtype])
    assert_close("attention", y_at, F.scaled_dot_product_attention(*d[4:7], is_causal=True, scale=0.25), TOL[dtype])
    assert_close("conv2d", y_cv, F.relu(F.conv2d(d[7], d[8], d[9], padding=(1, 0))), TOL[dtype])


def test_fp32_ops_receive_float32(monkeypatch):
    """Norms, softmax and cross-entropy get float32 (here from bf16 inputs) and run their kernels."""
    spies = {n: Spy(monkeypatch, m, f) for n, m, f in (("norm", _nm, "norm_fwd"), ("softmax", _sm, "softmax_fwd"),
                                                         ("cross_entropy", _ce, "cross_entropy_fwd"))}
    x, w, b = (t.to(torch.bfloat16) for t in (torch.randn(3, 5, 6), torch.randn(6), torch.randn(6)))
    target = torch.randint(0, 6, (3, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ln = torch.ops.nndsl.layer_norm(x, w, b, 1e-5)[0]
        rms = torch.ops.nndsl.rms_norm(x, w, 1e-6)[0]
        sm = torch.ops.nndsl.softmax(x, 1)
        lsm = torch.ops.nndsl.log_softmax(x, 2)
        ce = torch.ops.nndsl.cross_entropy(x, target, -100)[0]
    assert spies["norm"].dtypes == [{torch.float32}] * 2, spies["norm"].dtypes
    assert spies["softmax"].dtypes == [{torch.float32}] * 2, spies["softmax"].dtypes
    assert spies["cross_entropy"].dtypes == [{torch.float32}], spies["cross_entropy"].dtypes
    xd, wd, bd = x.double(), w.double(), b.double()
    for name, y, ref in (("layer_norm", ln, F.layer_norm(xd, (6,), wd, bd, 1e-5)),
                         ("rms_norm", rms, F.rms_norm(xd, (6,), wd, 1e-6)),
                         ("softmax", sm, torch.softmax(xd, 1)), ("log_softmax", lsm, torch.log_softmax(xd, 2)),
                         ("cross_entropy", ce, F.cross_entropy(xd.reshape(15, 6), target.reshape(15), reduction="none"))):
        assert y.dtype == torch.float32, f"{name} returned {y.dtype}"
        assert_close(name, y, ref, TOL_FP32)


# ----------------------------------------------------------------------------- the public wrappers
def _leaves(*tensors):
    return [t.clone().requires_grad_() for t in tensors]


def _check_grads(name, leaves, refs, tol):
    for i, (t, r) in enumerate(zip(leaves, refs)):
        assert t.grad is not None and t.grad.dtype == t.dtype, f"{name} grad {i}: {t.grad and t.grad.dtype}"
        assert_close(f"{name} grad {i}", t.grad, r.grad, tol)


def test_wrappers_mix_fp32_weights_with_bf16_activations():
    """fp32 weights meet bf16 activations (a mix the families reject outside autocast): the matmul
    types return bf16 and the norms fp32; every gradient comes back in its leaf's dtype, near float64."""
    bf = torch.bfloat16
    a, b, bias, res = _leaves(torch.randn(2, 5, 7).to(bf), torch.randn(7, 9) * 0.4, torch.randn(9), torch.randn(2, 5, 9))
    q, k, v = _leaves(torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5, 16).to(bf), torch.randn(1, 2, 5, 16))
    x, w, wb = _leaves(torch.randn(2, 3, 7, 6).to(bf), torch.randn(4, 3, 3, 3) * 0.3, torch.randn(4))
    h, g, gb = _leaves(torch.randn(3, 5, 6).to(bf), torch.randn(6), torch.randn(6))
    with torch.autocast("cpu", dtype=bf):
        outs = {"matmul": L.matmul(a, b, bias, "gelu", res), "attention": L.attention(q, k, v, causal=True),
                "conv2d": L.conv2d(x, w, wb, padding=1, activation="relu"), "layer_norm": L.layer_norm(h, g, gb)}
    assert {n: y.dtype for n, y in outs.items()} == {"matmul": bf, "attention": bf, "conv2d": bf,
                                                      "layer_norm": torch.float32}
    d = _leaves(*(t.detach().double() for t in (a, b, bias, res, q, k, v, x, w, wb, h, g, gb)))
    refs = {"matmul": F.gelu(d[0] @ d[1] + d[2]) + d[3],
            "attention": F.scaled_dot_product_attention(d[4], d[5], d[6], is_causal=True),
            "conv2d": F.relu(F.conv2d(d[7], d[8], d[9], padding=1)),
            "layer_norm": F.layer_norm(d[10], (6,), d[11], d[12])}
    leaves = {"matmul": (a, b, bias, res), "attention": (q, k, v), "conv2d": (x, w, wb), "layer_norm": (h, g, gb)}
    for i, (name, y) in enumerate(outs.items()):
        # bf16 math: one rounding of the inputs and of the output; the layer norm's bf16 input is exact
        assert_close(name, y, refs[name], TOL[bf] if y.dtype == bf else TOL_FP32)
        torch.manual_seed(i)
        dy = torch.randn_like(refs[name])
        (y.double() * dy).sum().backward()
        (refs[name] * dy).sum().backward()
    for name, ls in leaves.items():
        first = {"matmul": 0, "attention": 4, "conv2d": 7, "layer_norm": 10}[name]
        # a bf16 gradient of a bf16 forward: a few roundings along the chain
        _check_grads(name, ls, d[first:first + len(ls)], 3 * TOL[bf] if name != "layer_norm" else TOL[bf])


def test_cross_entropy_and_softmax_wrappers_compute_in_fp32():
    logits = (torch.randn(4, 7, 11) * 3).to(torch.float16)
    target = torch.randint(0, 11, (4, 7))
    with torch.autocast("cpu", dtype=torch.float16):
        loss = L.cross_entropy(logits, target)
        probs = L.softmax(logits)
        logp = L.log_softmax(logits, 1)
    assert (loss.dtype, probs.dtype, logp.dtype) == (torch.float32,) * 3
    ld = logits.double()
    assert_close("cross_entropy", loss, F.cross_entropy(ld.reshape(28, 11), target.reshape(28)), TOL_FP32)
    assert_close("softmax", probs, torch.softmax(ld, -1), TOL_FP32)
    assert_close("log_softmax", logp, torch.log_softmax(ld, 1), TOL_FP32)


def test_outside_autocast_nothing_is_cast():
    with pytest.raises(ValueError, match="same dtype"):
        L.matmul(torch.randn(3, 4), torch.randn(4, 5, dtype=torch.bfloat16))
    y = L.layer_norm(torch.randn(3, 6, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def test_low_precision_on_the_cpu_takes_the_references():
    """The interpreter has no bf16: a bf16 matmul or conv2d on the CPU must not reach a kernel."""
    a, b = torch.randn(3, 5, 17), torch.randn(17, 6)
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    for dtype in LOW:
        assert_close(f"matmul {dtype}", L.matmul(a.to(dtype), b.to(dtype)), a.double() @ b.double(), TOL[dtype])
        assert_close(f"conv2d {dtype}", L.conv2d(x.to(dtype), w.to(dtype)), F.conv2d(x.double(), w.double()),
                     TOL[dtype])


def test_torch_compile_traces_the_autocast_kernels():
    """torch.compile(fullgraph=True) traces an autocast region around the ops and the wrappers
    (AOTAutograd dispatches through the Autocast kernels) and gives the eager dtypes and values."""
    def step(a, b, x, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return (torch.ops.nndsl.matmul(a, b, None, "none", None, 0.0, 0, False)[0], L.matmul(a, b),
                    L.layer_norm(x, w))

    args = (torch.randn(3, 16), torch.randn(16, 5), torch.randn(3, 6, dtype=torch.bfloat16), torch.randn(6))
    eager = step(*args)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(*args)
    assert [t.dtype for t in compiled] == [torch.bfloat16, torch.bfloat16, torch.float32]
    for i, (c, e) in enumerate(zip(compiled, eager)):
        assert torch.equal(c, e), f"output {i} differs between torch.compile and eager"


# ----------------------------------------------------------------------------- on a GPU: the real kernels
@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
def test_autocast_runs_the_kernels_cuda(dtype):
    a, b, bias = torch.randn(4, 300, 512, device="cuda"), torch.randn(512, 768, device="cuda") * 0.05, \
        torch.randn(768, device="cuda")
    q, k, v = (torch.randn(2, 4, 300, 64, device="cuda") for _ in range(3))
    h = torch.randn(4, 300, 768, device="cuda", dtype=dtype)
    with torch.autocast("cuda", dtype=dtype):
        y = L.matmul(a, b, bias, "gelu")
        o = L.attention(q, k, v, causal=True)
        n = L.layer_norm(h)
    assert (y.dtype, o.dtype, n.dtype) == (dtype, dtype, torch.float32)
    d = [t.double() for t in (a, b, bias, q, k, v, h)]
    assert_close("matmul", y, F.gelu(d[0] @ d[1] + d[2]), TOL[dtype])
    assert_close("attention", o, F.scaled_dot_product_attention(*d[3:6], is_causal=True), TOL[dtype])
    assert_close("layer_norm", n, F.layer_norm(d[6], (768,)), TOL_FP32)
