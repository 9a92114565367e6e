"""The torch.library ops (nndsl.kernels.library): schema, fake and autograd registrations
(torch.library.opcheck), values and gradients against the family functions and the float64
references, torch.compile(fullgraph=True) without graph breaks, and (CUDA) Inductor and a
CUDA-graph capture of a training step.

Tests taking `device` run at tiny odd shapes in both groups (CPU under the interpreter; compiled
on the GPU with NNDSL_TEST_CUDA=1); `cuda` tests only in the CUDA run.
"""
from __future__ import annotations

import importlib

import pytest
import torch
import torch._dynamo.testing

import nndsl.kernels as K
import nndsl.kernels.library as L
from tolerance import TOL, assert_close, dot_tol

_mm = importlib.import_module("nndsl.kernels.matmul")
_at = importlib.import_module("nndsl.kernels.attention")


def _leaf(*shape, device, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, device=device, dtype=dtype) * scale).requires_grad_()


def _target(shape, c, device):
    t = torch.randint(0, c, shape, device=device)
    return torch.where(torch.rand(shape, device=device) < 0.25, torch.full_like(t, -100), t)


# name -> (op, sample arguments on a device); every float tensor needs a gradient, so the
# autograd registration and the backward op are exercised too
OP_SAMPLES = {
    "matmul": lambda d: (torch.ops.nndsl.matmul.default,
                         (_leaf(2, 5, 7, device=d), _leaf(7, 9, device=d, scale=0.4), _leaf(9, device=d), "gelu",
                          _leaf(2, 5, 9, device=d), 0.0, 0, True)),
    "matmul_no_act": lambda d: (torch.ops.nndsl.matmul.default,
                                (_leaf(5, 7, device=d), _leaf(3, 7, 9, device=d), None, "none", None, 0.0, 0, False)),
    "attention": lambda d: (torch.ops.nndsl.attention.default,
                            (_leaf(1, 2, 9, 16, device=d), _leaf(1, 2, 9, 16, device=d), _leaf(1, 2, 9, 16, device=d),
                             True, 0.3, 0.0, 0)),
    "conv2d": lambda d: (torch.ops.nndsl.conv2d.default,
                         (_leaf(1, 3, 7, 5, device=d), _leaf(4, 3, 3, 3, device=d, scale=0.3), _leaf(4, device=d),
                          [2, 1], [1, 1], [1, 1], 1, "silu", True)),
    "conv2d_relu": lambda d: (torch.ops.nndsl.conv2d.default,
                              (_leaf(1, 4, 6, 5, device=d), _leaf(4, 2, 3, 1, device=d, scale=0.3), None,
                               [1, 1], [1, 0], [1, 1], 2, "relu", True)),
    "cross_entropy": lambda d: (torch.ops.nndsl.cross_entropy.default,
                                (_leaf(6, 37, device=d), _target((6,), 37, d), -100)),
    "layer_norm": lambda d: (torch.ops.nndsl.layer_norm.default,
                             (_leaf(3, 2, 33, device=d), _leaf(33, device=d), _leaf(33, device=d), 1e-5)),
    "rms_norm": lambda d: (torch.ops.nndsl.rms_norm.default, (_leaf(5, 7, device=d), _leaf(7, device=d), 1e-6)),
    "softmax": lambda d: (torch.ops.nndsl.softmax.default, (_leaf(4, 9, 3, device=d), 1)),
    "log_softmax": lambda d: (torch.ops.nndsl.log_softmax.default, (_leaf(5, 40, device=d), 1)),
}


@pytest.mark.parametrize("name", OP_SAMPLES)
def test_opcheck(name, device):
    op, args = OP_SAMPLES[name](device)
    torch.library.opcheck(op, args)


# name -> (library wrapper, family function, float64 reference, inputs on a device, dot-based?)
def _cases(d):
    x4 = _leaf(2, 3, 9, 7, device=d)
    q, k, v = (_leaf(1, 2, 11, 24, device=d) for _ in range(3))
    return {
        "matmul": (L.matmul, K.matmul, K.matmul_reference,
                   (_leaf(3, 5, 17, device=d), _leaf(17, 9, device=d, scale=0.3), _leaf(9, device=d), "tanh",
                    _leaf(3, 5, 9, device=d)), True),
        "attention": (L.attention, K.attention, K.attention_reference, (q, k, v, True), True),
        "conv2d": (L.conv2d, K.conv2d, K.conv2d_reference,
                   (x4, _leaf(4, 3, 3, 3, device=d, scale=0.3), _leaf(4, device=d), 2, 1, 1, 1, "gelu"), True),
        "cross_entropy_mean": (L.cross_entropy, K.cross_entropy, K.cross_entropy_reference,
                               (_leaf(2, 3, 45, device=d), _target((2, 3), 45, d)), False),
        "cross_entropy_none": (L.cross_entropy, K.cross_entropy, K.cross_entropy_reference,
                               (_leaf(7, 45, device=d), _target((7,), 45, d), -100, "none"), False),
        "cross_entropy_sum": (L.cross_entropy, K.cross_entropy, K.cross_entropy_reference,
                              (_leaf(7, 45, device=d), _target((7,), 45, d), -100, "sum"), False),
        "layer_norm": (L.layer_norm, K.layer_norm, K.layer_norm_reference,
                       (_leaf(4, 37, device=d), _leaf(37, device=d), _leaf(37, device=d)), False),
        "layer_norm_bias_only": (L.layer_norm, K.layer_norm, K.layer_norm_reference,
                                 (_leaf(3, 7, device=d), None, _leaf(7, device=d)), False),
        "rms_norm": (L.rms_norm, K.rms_norm, K.rms_norm_reference, (_leaf(2, 3, 25, device=d), _leaf(25, device=d)),
                     False),
        "softmax": (L.softmax, K.softmax, K.softmax_reference, (_leaf(3, 37, 5, device=d), -2), False),
        "log_softmax": (L.log_softmax, K.log_softmax, K.log_softmax_reference, (_leaf(6, 41, device=d),), False),
    }


def _grads(fn, args):
    """fn(*args) and the gradients of its float tensor arguments for a fixed random output gradient."""
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    y = fn(*args)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return y, torch.autograd.grad(y, leaves, dy.to(y.device, y.dtype))


@pytest.mark.parametrize("name", list(_cases("cpu")))
def test_wrappers_match_family_and_reference(name, device):
    wrapper, family, reference, args, dots = _cases(device)[name]
    y, grads = _grads(wrapper, args)
    y_fam, grads_fam = _grads(family, args)
    # the same kernels run either way: equal to the bit
    assert torch.equal(y, y_fam), f"{name}: y differs from the family function's"
    for i, (g, g_fam) in enumerate(zip(grads, grads_fam)):
        assert torch.equal(g, g_fam), f"{name}: gradient {i} differs from the family function's"
    args64 = [a.detach().double().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
              for a in args]
    y64, grads64 = _grads(reference, args64)
    tol = dot_tol(torch.float32, device) if dots else TOL[torch.float32]
    assert_close(f"{name} y", y, y64, tol)
    for i, (g, g64) in enumerate(zip(grads, grads64)):
        assert_close(f"{name} grad {i}", g, g64, tol)


def _block(x, w1, b1, w2, ln_w, q_w, target):
    """A small network through the library ops: norm, attention, MLP epilogue, softmax, loss."""
    h = L.layer_norm(x, ln_w)
    qkv = L.matmul(h, q_w).view(x.shape[0], x.shape[1], 3, 2, 16).permute(2, 0, 3, 1, 4)
    a = L.attention(qkv[0], qkv[1], qkv[2], causal=True).transpose(1, 2).reshape(h.shape)
    h = L.matmul(L.rms_norm(a), w1, b1, "gelu")
    y = L.matmul(h, w2, residual=x)
    p = L.softmax(y, -1) + L.log_softmax(y, -1).exp()
    return L.cross_entropy(y + p, target)


def _block_inputs(device, dtype=torch.float32):
    return ([_leaf(2, 11, 32, device=device, dtype=dtype), _leaf(32, 48, device=device, dtype=dtype, scale=0.2),
             _leaf(48, device=device, dtype=dtype), _leaf(48, 32, device=device, dtype=dtype, scale=0.15),
             _leaf(32, device=device, dtype=dtype), _leaf(32, 96, device=device, dtype=dtype, scale=0.2)],
            _target((2, 11), 32, device))


def _conv(x, w, b):
    return L.conv2d(x, w, b, stride=2, padding=1, activation="relu").sum()


def test_compile_fullgraph_without_graph_breaks(device):
    """aot_eager traces the forward and the backward through the fake registrations: one frame,
    every op in it, the same loss and gradients as the eager wrappers."""
    params, target = _block_inputs(device)
    for fn, args in ((_block, (*params, target)),
                     (_conv, (_leaf(1, 3, 9, 7, device=device), _leaf(4, 3, 3, 3, device=device), _leaf(4, device=device)))):
        torch._dynamo.reset()
        counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
        compiled = torch.compile(fn, fullgraph=True, backend=counter)
        leaves = [a for a in args if a.requires_grad]
        loss = compiled(*args)
        grads = torch.autograd.grad(loss, leaves)
        loss_eager = fn(*args)
        grads_eager = torch.autograd.grad(loss_eager, leaves)
        assert counter.frame_count == 1, f"{fn.__name__}: {counter.frame_count} frames (graph breaks)"
        called = {str(n.target).removesuffix(".default") for g in counter.graphs for n in g.graph.nodes
                  if n.op == "call_function"}
        want = ({"nndsl.layer_norm", "nndsl.matmul", "nndsl.attention", "nndsl.rms_norm", "nndsl.softmax",
                 "nndsl.log_softmax", "nndsl.cross_entropy"} if fn is _block else {"nndsl.conv2d"})
        assert want <= called, f"{fn.__name__}: ops missing from the graph: {sorted(want - called)}"
        tol = dot_tol(torch.float32, device)
        assert_close(f"{fn.__name__} loss", loss, loss_eager, tol)
        for i, (g, ge) in enumerate(zip(grads, grads_eager)):
            assert_close(f"{fn.__name__} grad {i}", g, ge, tol)


def test_dropout_reaches_the_launchers(monkeypatch):
    """dropout_p > 0 and the seed go to the forward and the backward launchers (the same seed),
    and are left out at p = 0 (launchers without dropout keep working)."""
    seen = []

    def spy(real):
        def launch(*args, **kwargs):
            seen.append((real.__name__, kwargs.pop("dropout_p", None), kwargs.pop("seed", None)))
            return real(*args, **kwargs)
        return launch

    for mod, names in ((_mm, ("matmul_forward", "matmul_backward")), (_at, ("_attention_fwd", "_attention_bwd"))):
        for n in names:
            monkeypatch.setattr(mod, n, spy(getattr(mod, n)))
    a, b = _leaf(3, 17, device="cpu"), _leaf(17, 5, device="cpu")
    L.matmul(a, b, activation="relu", dropout_p=0.25, seed=1234).sum().backward()
    q, k, v = (_leaf(1, 1, 5, 16, device="cpu") for _ in range(3))
    L.attention(q, k, v, dropout_p=0.5, seed=77).sum().backward()
    L.matmul(a, b).sum().backward()
    assert seen == [("matmul_forward", 0.25, 1234), ("matmul_backward", 0.25, 1234),
                    ("_attention_fwd", 0.5, 77), ("_attention_bwd", 0.5, 77),
                    ("matmul_forward", None, None), ("matmul_backward", None, None)], seen


def test_dropout_seed_is_drawn_from_torch_generator():
    torch.manual_seed(3)
    first = L._seed(0.1, None)
    torch.manual_seed(3)
    assert L._seed(0.1, None) == first, "the drawn seed must follow torch.manual_seed"
    assert L._seed(0.1, 5) == 5 and L._seed(0.0, None) == 0
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout_p must be in"):
            L.matmul(torch.randn(2, 3), torch.randn(3, 4), dropout_p=p)


def test_wrappers_fall_back_where_no_kernel_runs(monkeypatch):
    """CPU tensors without the interpreter: the family functions (their references) run, not the ops."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    called = []
    monkeypatch.setattr(torch.ops.nndsl, "matmul", lambda *a: called.append(a))
    a, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="dtype"):  # the family's own checks still apply
        L.matmul(a, b)
    a, b = a.float().requires_grad_(), b.float()
    y = L.matmul(a, b, activation="relu")
    assert not called
    assert_close("fallback", y, torch.relu(a.double() @ b.double()), TOL[torch.float32])
    y.sum().backward()
    assert a.grad is not None


def test_wrappers_validate_like_the_families():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="dim must be"):
        L.softmax(x, 2)
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.cross_entropy(x, torch.zeros(3, dtype=torch.int64), reduction="avg")
    with pytest.raises(ValueError, match="outside"):
        L.cross_entropy(x, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="channel mismatch"):
        L.conv2d(torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="weight must have shape"):
        L.layer_norm(x, torch.randn(5))
    with pytest.raises(ValueError, match="causal"):
        L.attention(torch.randn(1, 1, 4, 16), torch.randn(1, 1, 5, 16), torch.randn(1, 1, 5, 16), causal=True)


# ---- CUDA: Inductor and CUDA graphs over a bf16 training step -------------------------------
@pytest.mark.cuda
def test_cuda_inductor_bf16_block():
    params, target = _block_inputs("cuda", torch.bfloat16)
    args = (*params, target)
    torch._dynamo.reset()
    compiled = torch.compile(_block, fullgraph=True)
    loss, grads = _grads(compiled, args)
    args64 = [a.detach().double().requires_grad_() if a.is_floating_point() else a for a in args]
    loss64, grads64 = _grads(_block_reference, args64)
    # bf16 through six kernels in a row, each rounding its output to bf16 (more in the backward)
    assert_close("loss", loss, loss64, 2 * TOL[torch.bfloat16])
    for i, (g, g64) in enumerate(zip(grads, grads64)):
        assert_close(f"grad {i}", g, g64, 4 * TOL[torch.bfloat16])


def _block_reference(x, w1, b1, w2, ln_w, q_w, target):
    """_block in plain PyTorch (float64 in the CUDA tests)."""
    h = K.layer_norm_reference(x, ln_w)
    qkv = (h @ q_w).view(x.shape[0], x.shape[1], 3, 2, 16).permute(2, 0, 3, 1, 4)
    a = K.attention_reference(qkv[0], qkv[1], qkv[2], causal=True).transpose(1, 2).reshape(h.shape)
    h = K.matmul_reference(K.rms_norm_reference(a), w1, b1, "gelu")
    y = h @ w2 + x
    p = torch.softmax(y, -1) + torch.log_softmax(y, -1).exp()
    return K.cross_entropy_reference(y + p, target)


@pytest.mark.cuda
def test_cuda_graph_captures_a_training_step():
    """Forward and backward of _block captured once, replayed on new inputs copied into the static
    buffers: the same loss and gradients as eager calls on those inputs."""
    params, target = _block_inputs("cuda", torch.bfloat16)
    static = [p.detach().clone().requires_grad_() for p in params]

    def step():
        loss = _block(*static, target)
        return (loss, *torch.autograd.grad(loss, static))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: autotuning and allocations outside the capture
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step()
    for _ in range(2):
        fresh, _ = _block_inputs("cuda", torch.bfloat16)
        with torch.no_grad():
            for s, f in zip(static, fresh):
                s.copy_(f)
        graph.replay()
        torch.cuda.synchronize()
        want = step()
        for i, (got, w) in enumerate(zip(outs, want)):
            assert torch.isfinite(got).all(), f"output {i}: non-finite after replay"
            assert_close(f"replayed output {i}", got, w, 1e-6)
