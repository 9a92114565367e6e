"""Every kernel family as torch.library custom ops (namespace ``nndsl``), for torch.compile and CUDA graphs.

Each family is a pair of functional ops: the forward, which also returns what its backward
needs (the matmul epilogue's act'(z), attention's log-sum-exp, the norms' row statistics), and
the backward, which calls the family's backward launcher. ``register_fake`` gives both their
output shapes, dtypes and strides, so torch.compile traces them without running a kernel;
``register_autograd`` puts the backward op in the backward graph. To Dynamo and Inductor the ops
are opaque calls: no graph break and no fallback around them, and a CUDA graph can capture a
whole step (the launchers allocate through the caching allocator and never synchronize; the
autotuners must have run once before capture).

The public wrappers at the bottom take the family functions' arguments and validate them with
the family's own checks; they call the ops where the kernels run (CUDA tensors, or the CPU
under ``TRITON_INTERPRET=1``, in float32 only: the interpreter has no bf16) and the family's
PyTorch reference elsewhere.
Under ``torch.autocast`` the ops and the wrappers cast their inputs: matmul, attention and
conv2d to the autocast dtype, the norms, softmax and cross-entropy to float32 (``_autocast.py``).
Dropout seeds are drawn here, outside the ops, so the ops stay functional. The seed is a
``SymInt``: ``torch.compile(fullgraph=True)`` traces the draw (``randint(...).item()``) into the
graph as an unbacked integer, so every compiled step draws a fresh seed from torch's generator;
without ``fullgraph``, Dynamo breaks the graph at the ``.item()`` unless
``torch._dynamo.config.capture_scalar_outputs`` is set. An op cannot return None: an output
nobody asked for is an empty tensor.

Ops (schemas as registered below):
  nndsl::matmul(a, b, bias?, activation, residual?, dropout_p, seed, save_grad) -> (y, act'(z))
  nndsl::matmul_backward(grad, a, b, s?, need_a, need_b, need_bias, dropout_p, seed) -> (da, db, dbias)
  nndsl::attention(q, k, v, causal, scale, dropout_p, seed) -> (out, lse)
  nndsl::attention_backward(do, q, k, v, out, lse, causal, scale, need_dq, need_dkdv, dropout_p, seed)
      -> (dq, dk, dv)
  nndsl::conv2d(x, weight, bias?, stride, padding, dilation, groups, activation, save) -> (y, z)
  nndsl::conv2d_backward(dy, x, weight, saved?, stride, padding, dilation, groups, activation,
                         need_dx, need_dw, need_db) -> (dx, dw, db)
  nndsl::cross_entropy(logits, target, ignore_index) -> (loss per row fp32, lse fp32)
  nndsl::cross_entropy_backward(logits, target, lse, grad_rows, ignore_index) -> dlogits
  nndsl::linear_cross_entropy(x, weight, target, bias?, ignore_index, reduction, chunk_rows, need_x,
                              need_weight, need_bias) -> (loss fp32, dx, dweight, dbias)
      (the gradients are computed in the forward; its backward only scales them: no backward op)
  nndsl::layer_norm(x, weight?, bias?, eps) -> (y, mean, rstd);  nndsl::rms_norm(x, weight?, eps) -> (y, rstd)
  nndsl::norm_backward(dy, x, weight?, mean?, rstd, need_dw, need_db) -> (dx, dw, db)
  nndsl::softmax(x, dim) -> y;  nndsl::log_softmax(x, dim) -> y;  nndsl::softmax_backward(y, dy, dim, log) -> dx
"""
from __future__ import annotations

import importlib

import torch
from torch.library import custom_op

from ._autocast import FP32, LOW
from ._autocast import register as _register_autocast
from ._autocast import wrap as _autocast
from ._common import check_float, check_same, use_triton

# The package binds the family names to their public functions: reach the modules by name.
_mm, _at, _cv, _ce, _lce, _nm, _sm = (
    importlib.import_module(f"{__package__}.{name}") for name in
    ("matmul", "attention", "conv2d", "cross_entropy", "linear_cross_entropy", "norms", "softmax"))


def _empty(like: torch.Tensor) -> torch.Tensor:
    """The stand-in for an output that was not asked for (an op cannot return None)."""
    return like.new_empty(0)


def _or_empty(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return t if t is not None else _empty(like)


def _dropout(p: float, seed: int) -> dict:
    """Dropout keywords for a launcher: none at p = 0, so launchers without dropout serve too."""
    return {} if p == 0.0 else {"dropout_p": p, "seed": seed}


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------------------------
# matmul: act(a @ b + bias) [dropout] + residual
# ----------------------------------------------------------------------------------------------
@custom_op("nndsl::matmul", mutates_args=(), schema="(Tensor a, Tensor b, Tensor? bias, str activation, "
           "Tensor? residual, float dropout_p, SymInt seed, bool save_grad) -> (Tensor, Tensor)")
def _matmul(a, b, bias, activation, residual, dropout_p, seed, save_grad):
    y, s = _mm.matmul_forward(a, b, bias, activation, residual, save_grad=save_grad, **_dropout(dropout_p, seed))
    return y, _or_empty(s, a)


@_matmul.register_fake
def _(a, b, bias, activation, residual, dropout_p, seed, save_grad):
    y = a.new_empty((*torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1]))
    return y, (torch.empty_like(y) if save_grad and activation != "none" else _empty(a))


@custom_op("nndsl::matmul_backward", mutates_args=(), schema="(Tensor grad, Tensor a, Tensor b, Tensor? s, "
           "bool need_a, bool need_b, bool need_bias, float dropout_p, SymInt seed) -> (Tensor, Tensor, Tensor)")
def _matmul_backward(grad, a, b, s, need_a, need_b, need_bias, dropout_p, seed):
    da, db, dbias = _mm.matmul_backward(grad, a, b, s, need_a=need_a, need_b=need_b, need_bias=need_bias,
                                        **_dropout(dropout_p, seed))
    return _or_empty(da, a), _or_empty(db, a), _or_empty(dbias, a)


@_matmul_backward.register_fake
def _(grad, a, b, s, need_a, need_b, need_bias, dropout_p, seed):
    return (a.new_empty(a.shape) if need_a else _empty(a), _mm.grad_like(b) if need_b else _empty(a),
            a.new_empty((b.shape[-1],)) if need_bias else _empty(a))


def _matmul_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    a, b, _, activation, _, dropout_p, seed, _ = inputs
    ctx.save_for_backward(a, b, output[1])
    ctx.conf = (activation != "none", dropout_p, seed)


def _matmul_grad(ctx, dy, _ds):
    a, b, s = ctx.saved_tensors
    has_act, dropout_p, seed = ctx.conf
    need_a, need_b, need_bias, _, need_res = ctx.needs_input_grad[:5]
    da, db, dbias = torch.ops.nndsl.matmul_backward(dy, a, b, s if has_act else None, need_a, need_b,
                                                    need_bias, dropout_p, seed)
    return (da if need_a else None, db if need_b else None, dbias if need_bias else None, None,
            dy if need_res else None, None, None, None)


_matmul.register_autograd(_matmul_grad, setup_context=_matmul_setup)


# ----------------------------------------------------------------------------------------------
# attention: softmax(q kᵀ · scale [+ causal mask]) [dropout] v
# ----------------------------------------------------------------------------------------------
@custom_op("nndsl::attention", mutates_args=(), schema="(Tensor q, Tensor k, Tensor v, bool causal, "
           "float scale, float dropout_p, SymInt seed) -> (Tensor, Tensor)")
def _attention(q, k, v, causal, scale, dropout_p, seed):
    with _at._device_of(q):
        return _at._attention_fwd(q, k, v, causal, scale, **_dropout(dropout_p, seed))


@_attention.register_fake
def _(q, k, v, causal, scale, dropout_p, seed):
    b, h, tq, _ = q.shape
    return (_at.dense_like(q),
            q.new_empty((b * h, tq), dtype=torch.float32))


@custom_op("nndsl::attention_backward", mutates_args=(), schema="(Tensor do, Tensor q, Tensor k, Tensor v, "
           "Tensor out, Tensor lse, bool causal, float scale, bool need_dq, bool need_dkdv, float dropout_p, "
           "SymInt seed) -> (Tensor, Tensor, Tensor)")
def _attention_backward(do, q, k, v, out, lse, causal, scale, need_dq, need_dkdv, dropout_p, seed):
    with _at._device_of(q):
        dq, dk, dv = _at._attention_bwd(do, q, k, v, out, lse, causal, scale, need_dq=need_dq,
                                        need_dkdv=need_dkdv, **_dropout(dropout_p, seed))
    return _or_empty(dq, q), _or_empty(dk, q), _or_empty(dv, q)


@_attention_backward.register_fake
def _(do, q, k, v, out, lse, causal, scale, need_dq, need_dkdv, dropout_p, seed):
    like = lambda t, need: _at.dense_like(t) if need else _empty(q)  # noqa: E731
    return like(q, need_dq), like(k, need_dkdv), like(v, need_dkdv)


def _attention_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    q, k, v, causal, scale, dropout_p, seed = inputs
    ctx.save_for_backward(q, k, v, *output)
    ctx.conf = (causal, scale, dropout_p, seed)


def _attention_grad(ctx, do, _dlse):
    q, k, v, out, lse = ctx.saved_tensors
    causal, scale, dropout_p, seed = ctx.conf
    need_q, need_k, need_v = ctx.needs_input_grad[:3]
    dq, dk, dv = torch.ops.nndsl.attention_backward(do, q, k, v, out, lse, causal, scale, need_q,
                                                    need_k or need_v, dropout_p, seed)
    return dq if need_q else None, dk if need_k else None, dv if need_v else None, None, None, None, None


_attention.register_autograd(_attention_grad, setup_context=_attention_setup)


# ----------------------------------------------------------------------------------------------
# conv2d: act(conv2d(x, weight) + bias)
# ----------------------------------------------------------------------------------------------
def _conv_saves(activation: str) -> str | None:
    """What the backward of `activation` reads: "output" (y), "preact" (z) or None."""
    return _cv._ACTS[activation][1]


@custom_op("nndsl::conv2d", mutates_args=(), schema="(Tensor x, Tensor weight, Tensor? bias, int[2] stride, "
           "int[2] padding, int[2] dilation, int groups, str activation, bool save) -> (Tensor, Tensor)")
def _conv2d(x, weight, bias, stride, padding, dilation, groups, activation, save):
    y, z = _cv.conv2d_fwd(x, weight, bias, stride, padding, dilation, groups, activation,
                          save_preact=save and _conv_saves(activation) == "preact")
    return y, _or_empty(z, x)


@_conv2d.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, activation, save):
    ho, wo = _cv._check_args(x, weight, bias, stride, padding, dilation, groups, activation)[3]
    y = torch.empty((x.shape[0], weight.shape[0], ho, wo), device=x.device, dtype=x.dtype,
                    memory_format=_cv._memory_format(x))
    return y, (torch.empty_like(y) if save and _conv_saves(activation) == "preact" else _empty(x))


@custom_op("nndsl::conv2d_backward", mutates_args=(), schema="(Tensor dy, Tensor x, Tensor weight, "
           "Tensor? saved, int[2] stride, int[2] padding, int[2] dilation, int groups, str activation, "
           "bool need_dx, bool need_dw, bool need_db) -> (Tensor, Tensor, Tensor)")
def _conv2d_backward(dy, x, weight, saved, stride, padding, dilation, groups, activation,
                     need_dx, need_dw, need_db):
    dz, db = (dy, None) if _cv._ACTS[activation][0] == 0 and not need_db else \
        _cv.conv2d_bwd_dz(dy, saved, activation, need_db)
    conf = (stride, padding, dilation, groups)
    dx = (_cv.conv2d_bwd_dx(dz, weight, x.shape, *conf, out=torch.empty_like(x, memory_format=_cv._memory_format(x)))
          if need_dx else None)
    dw = _cv.conv2d_bwd_dw(dz, x, weight.shape, *conf) if need_dw else None
    return _or_empty(dx, x), _or_empty(dw, x), (db.to(dy.dtype) if need_db else _empty(x))


@_conv2d_backward.register_fake
def _(dy, x, weight, saved, stride, padding, dilation, groups, activation, need_dx, need_dw, need_db):
    return (torch.empty_like(x, memory_format=_cv._memory_format(x)) if need_dx else _empty(x),
            weight.new_empty(weight.shape) if need_dw else _empty(x),
            dy.new_empty((weight.shape[0],)) if need_db else _empty(x))


def _conv2d_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    x, weight, bias, stride, padding, dilation, groups, activation, _ = inputs
    saved = {"output": output[0], "preact": output[1], None: None}[_conv_saves(activation)]
    ctx.save_for_backward(x, weight, saved)
    ctx.conf = (stride, padding, dilation, groups, activation, bias is not None)


def _conv2d_grad(ctx, dy, _dz):
    x, weight, saved = ctx.saved_tensors
    stride, padding, dilation, groups, activation, has_bias = ctx.conf
    need_dx, need_dw, need_db = ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]
    dx, dw, db = torch.ops.nndsl.conv2d_backward(dy, x, weight, saved, stride, padding, dilation, groups,
                                                 activation, need_dx, need_dw, need_db)
    return (dx if need_dx else None, dw if need_dw else None, db if need_db else None) + (None,) * 6


_conv2d.register_autograd(_conv2d_grad, setup_context=_conv2d_setup)


# ----------------------------------------------------------------------------------------------
# cross_entropy: per-row loss and lse; the reduction is plain PyTorch in the wrapper
# ----------------------------------------------------------------------------------------------
@custom_op("nndsl::cross_entropy", mutates_args=(), schema="(Tensor logits, Tensor target, int ignore_index) "
           "-> (Tensor, Tensor)")
def _cross_entropy(logits, target, ignore_index):
    # validated here rather than in the wrapper: the check of target's values on the CPU would
    # be a data-dependent branch (a graph break) inside a compiled region
    _ce._check_args(logits, target, ignore_index, "none")
    return _ce.cross_entropy_fwd(logits, target, ignore_index)


@_cross_entropy.register_fake
def _(logits, target, ignore_index):
    rows = logits.numel() // logits.shape[-1]
    return logits.new_empty((rows,), dtype=torch.float32), logits.new_empty((rows,), dtype=torch.float32)


@custom_op("nndsl::cross_entropy_backward", mutates_args=(), schema="(Tensor logits, Tensor target, "
           "Tensor lse, Tensor grad_rows, int ignore_index) -> Tensor")
def _cross_entropy_backward(logits, target, lse, grad_rows, ignore_index):
    return _ce.cross_entropy_bwd(logits, target, lse, grad_rows, ignore_index)


@_cross_entropy_backward.register_fake
def _(logits, target, lse, grad_rows, ignore_index):
    return logits.new_empty(logits.shape)


def _cross_entropy_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    logits, target, ignore_index = inputs
    ctx.save_for_backward(logits, target, output[1])
    ctx.ignore_index = ignore_index


def _cross_entropy_grad(ctx, dloss, _dlse):
    logits, target, lse = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    return torch.ops.nndsl.cross_entropy_backward(logits, target, lse, dloss, ctx.ignore_index), None, None


_cross_entropy.register_autograd(_cross_entropy_grad, setup_context=_cross_entropy_setup)


# ----------------------------------------------------------------------------------------------
# linear_cross_entropy: the loss and, in the same pass over the chunks, the gradients it needs
# ----------------------------------------------------------------------------------------------
@custom_op("nndsl::linear_cross_entropy", mutates_args=(), schema="(Tensor x, Tensor weight, Tensor target, "
           "Tensor? bias, int ignore_index, str reduction, int chunk_rows, bool need_x, bool need_weight, "
           "bool need_bias) -> (Tensor, Tensor, Tensor, Tensor)")
def _linear_cross_entropy(x, weight, target, bias, ignore_index, reduction, chunk_rows, need_x, need_weight,
                          need_bias):
    loss, dx, dw, db = _lce.linear_cross_entropy_forward(
        x, weight, target, bias, ignore_index=ignore_index, reduction=reduction, chunk_rows=chunk_rows or None,
        need_x=need_x, need_weight=need_weight, need_bias=need_bias)
    return loss, _or_empty(dx, x), _or_empty(dw, x), _or_empty(db, x)


@_linear_cross_entropy.register_fake
def _(x, weight, target, bias, ignore_index, reduction, chunk_rows, need_x, need_weight, need_bias):
    return (x.new_empty((), dtype=torch.float32), x.new_empty(x.shape) if need_x else _empty(x),
            weight.new_empty(weight.shape) if need_weight else _empty(x),
            bias.new_empty(bias.shape) if need_bias and bias is not None else _empty(x))


def _linear_cross_entropy_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    ctx.save_for_backward(*output[1:])
    ctx.computed = inputs[7:10]  # need_x, need_weight, need_bias: which gradients the forward made


def _linear_cross_entropy_grad(ctx, dloss, _ddx, _ddw, _ddb):
    def scaled(t, need):  # out of place: a second backward (retain_graph) sees the same saved grads
        return t * dloss.to(t.dtype) if need else None

    dx, dw, db = ctx.saved_tensors
    made_x, made_w, made_b = ctx.computed
    need = ctx.needs_input_grad
    return (scaled(dx, need[0] and made_x), scaled(dw, need[1] and made_w), None,
            scaled(db, need[3] and made_b)) + (None,) * 6


_linear_cross_entropy.register_autograd(_linear_cross_entropy_grad, setup_context=_linear_cross_entropy_setup)


# ----------------------------------------------------------------------------------------------
# layer_norm / rms_norm: one backward op for both (mean is None for RMSNorm)
# ----------------------------------------------------------------------------------------------
def _stats_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.numel() // x.shape[-1] if x.shape[-1] else 0,), dtype=torch.float32)


@custom_op("nndsl::layer_norm", mutates_args=(), schema="(Tensor x, Tensor? weight, Tensor? bias, float eps) "
           "-> (Tensor, Tensor, Tensor)")
def _layer_norm(x, weight, bias, eps):
    return _nm.norm_fwd(x, weight, bias, eps, rms=False)


@_layer_norm.register_fake
def _(x, weight, bias, eps):
    return x.new_empty(x.shape), _stats_like(x), _stats_like(x)


@custom_op("nndsl::rms_norm", mutates_args=(), schema="(Tensor x, Tensor? weight, float eps) -> (Tensor, Tensor)")
def _rms_norm(x, weight, eps):
    y, _, rstd = _nm.norm_fwd(x, weight, None, eps, rms=True)
    return y, rstd


@_rms_norm.register_fake
def _(x, weight, eps):
    return x.new_empty(x.shape), _stats_like(x)


@custom_op("nndsl::norm_backward", mutates_args=(), schema="(Tensor dy, Tensor x, Tensor? weight, Tensor? mean, "
           "Tensor rstd, bool need_dw, bool need_db) -> (Tensor, Tensor, Tensor)")
def _norm_backward(dy, x, weight, mean, rstd, need_dw, need_db):
    dx, dw, db = _nm.norm_bwd(dy, x, weight, mean, rstd, need_dw=need_dw, need_db=need_db)
    return dx, _or_empty(dw, x), _or_empty(db, x)


@_norm_backward.register_fake
def _(dy, x, weight, mean, rstd, need_dw, need_db):
    d = x.shape[-1:]
    return (x.new_empty(x.shape), x.new_empty(d) if need_dw and weight is not None else _empty(x),
            x.new_empty(d) if need_db else _empty(x))


def _layer_norm_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    ctx.save_for_backward(inputs[0], inputs[1], output[1], output[2])


def _layer_norm_grad(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx, dw, db = torch.ops.nndsl.norm_backward(dy, x, weight, mean, rstd, need_w, need_b)
    return dx if need_x else None, dw if need_w else None, db if need_b else None, None


def _rms_norm_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    ctx.save_for_backward(inputs[0], inputs[1], output[1])


def _rms_norm_grad(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[:2]
    dx, dw, _ = torch.ops.nndsl.norm_backward(dy, x, weight, None, rstd, need_w, False)
    return dx if need_x else None, dw if need_w else None, None


_layer_norm.register_autograd(_layer_norm_grad, setup_context=_layer_norm_setup)
_rms_norm.register_autograd(_rms_norm_grad, setup_context=_rms_norm_setup)


# ----------------------------------------------------------------------------------------------
# softmax / log_softmax over any dim (the kernels take the last; other dims are moved there)
# ----------------------------------------------------------------------------------------------
def _softmax_forward(x, dim, log):
    return _sm.softmax_fwd(x.movedim(dim, -1), log).movedim(-1, dim)


def _softmax_fake(x, dim):
    return torch.empty_like(x.movedim(dim, -1), memory_format=torch.contiguous_format).movedim(-1, dim)


@custom_op("nndsl::softmax", mutates_args=(), schema="(Tensor x, int dim) -> Tensor")
def _softmax(x, dim):
    return _softmax_forward(x, dim, False)


@custom_op("nndsl::log_softmax", mutates_args=(), schema="(Tensor x, int dim) -> Tensor")
def _log_softmax(x, dim):
    return _softmax_forward(x, dim, True)


@custom_op("nndsl::softmax_backward", mutates_args=(), schema="(Tensor y, Tensor dy, int dim, bool log) -> Tensor")
def _softmax_backward(y, dy, dim, log):
    return _sm.softmax_bwd(y.movedim(dim, -1), dy.movedim(dim, -1), log).movedim(-1, dim)


@_softmax_backward.register_fake
def _(y, dy, dim, log):
    return _softmax_fake(y, dim)


def _softmax_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # unused outputs (s, lse, stats) get no zero-filled gradient
    ctx.save_for_backward(output)
    ctx.dim = inputs[1]


def _softmax_grad(log):
    def grad(ctx, dy):
        (y,) = ctx.saved_tensors
        return torch.ops.nndsl.softmax_backward(y, dy, ctx.dim, log), None
    return grad


for _op, _log in ((_softmax, False), (_log_softmax, True)):
    _op.register_fake(_softmax_fake)
    _op.register_autograd(_softmax_grad(_log), setup_context=_softmax_setup)


# ----------------------------------------------------------------------------------------------
# Public wrappers: the family functions' signatures, the ops where the kernels run
# ----------------------------------------------------------------------------------------------
def _seed(dropout_p: float, seed: int | None) -> int:
    """The dropout seed handed to an op: the caller's, or one drawn from torch's CPU generator."""
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if seed is not None or dropout_p == 0.0:
        return 0 if seed is None else int(seed)
    return int(torch.randint(0, 2**31 - 1, ()).item())


def _kernels_run(*tensors: torch.Tensor | None) -> bool:
    """The op (and its kernels) runs: on CUDA, or under the interpreter in float32 only (the
    interpreter computes with numpy, which has no bf16); elsewhere the family's reference does."""
    return use_triton(*tensors) and all(t is None or t.is_cuda or not t.is_floating_point()
                                        or t.dtype == torch.float32 for t in tensors)


@_autocast(LOW)
def matmul(a, b, bias=None, activation=None, residual=None, *, dropout_p: float = 0.0, seed: int | None = None):
    """act(a @ b + bias) [dropout] + residual through ``nndsl::matmul`` (see kernels.matmul.matmul)."""
    act = _mm._check_args(a, b, bias, activation, residual)
    seed = _seed(dropout_p, seed)
    if not _kernels_run(a, b, bias, residual):
        return _mm.matmul_reference(a, b, bias, act, residual, **_dropout(dropout_p, seed))
    save = _needs_grad(a, b, bias)
    return torch.ops.nndsl.matmul(a, b, bias, act, residual, float(dropout_p), seed, save)[0]


@_autocast(LOW)
def attention(q, k, v, causal: bool = False, scale: float | None = None, *, dropout_p: float = 0.0,
              seed: int | None = None):
    """softmax(q kᵀ · scale [+ causal mask]) [dropout] v through ``nndsl::attention`` (see kernels.attention)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(name, t, ndim=4)
    check_same("q", q, "k", k)
    check_same("q", q, "v", v)
    _at._check_shapes(q, k, v, causal)
    scale = _at._resolve_scale(scale, q.shape[-1])
    seed = _seed(dropout_p, seed)
    if not _kernels_run(q, k, v):
        return _at.attention_reference(q, k, v, causal, scale, **_dropout(dropout_p, seed))
    return torch.ops.nndsl.attention(q, k, v, bool(causal), float(scale), float(dropout_p), seed)[0]


@_autocast(LOW)
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """act(conv2d(x, weight, bias)) through ``nndsl::conv2d`` (see kernels.conv2d.conv2d)."""
    stride, padding, dilation, _ = _cv._check_args(x, weight, bias, stride, padding, dilation, groups, activation)
    if not _kernels_run(x, weight, bias):
        return _cv.conv2d_reference(x, weight, bias, stride, padding, dilation, groups, activation)
    act = "none" if activation is None else activation
    return torch.ops.nndsl.conv2d(x, weight, bias, list(stride), list(padding), list(dilation), groups, act,
                                  _needs_grad(x, weight, bias))[0]


@_autocast(FP32)
def cross_entropy(logits, target, ignore_index: int = -100, reduction: str = "mean"):
    """F.cross_entropy with classes last through ``nndsl::cross_entropy`` (see kernels.cross_entropy)."""
    if reduction not in _ce._REDUCTIONS:
        raise ValueError(f"reduction must be one of {_ce._REDUCTIONS}, got {reduction!r}")
    if not _kernels_run(logits, target):
        return _ce.cross_entropy_reference(logits, target, ignore_index, reduction)
    loss, _ = torch.ops.nndsl.cross_entropy(logits, target, ignore_index)
    if reduction == "none":
        return loss.view(target.shape).to(logits.dtype)
    if reduction == "sum":
        return loss.sum().to(logits.dtype)
    return (loss.sum() / (target != ignore_index).sum()).to(logits.dtype)  # 0 / 0 = nan, as in PyTorch


@_autocast(LOW)
def linear_cross_entropy(x, weight, target, bias=None, *, ignore_index: int = -100, reduction: str = "mean",
                         chunk_rows: int | None = None):
    """F.cross_entropy(F.linear(x, weight, bias), target) without the logits, through
    ``nndsl::linear_cross_entropy`` (see kernels.linear_cross_entropy): a 0-d fp32 loss."""
    # the interpreter's tl.dot has no bf16 (numpy): on the CPU low precision takes the reference path
    if not _kernels_run(x, weight, bias):
        return _lce.linear_cross_entropy(x, weight, target, bias, ignore_index=ignore_index, reduction=reduction,
                                         chunk_rows=chunk_rows)
    # validated inside the op (by its launcher): checking target's values on the CPU here would be a
    # data-dependent branch (a graph break) inside a compiled region
    need = [_needs_grad(t) for t in (x, weight, bias)]
    return torch.ops.nndsl.linear_cross_entropy(x, weight, target, bias, ignore_index, reduction, chunk_rows or 0,
                                                *need)[0]


@_autocast(FP32)
def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """F.layer_norm over the last dim through ``nndsl::layer_norm`` (see kernels.norms.layer_norm)."""
    _nm._check_args(x, weight, bias, rms=False)
    if not _kernels_run(x, weight, bias):
        return _nm.layer_norm_reference(x, weight, bias, eps)
    return torch.ops.nndsl.layer_norm(x, weight, bias, float(eps))[0]


@_autocast(FP32)
def rms_norm(x, weight=None, eps: float = 1e-6):
    """RMSNorm over the last dim through ``nndsl::rms_norm`` (see kernels.norms.rms_norm)."""
    _nm._check_args(x, weight, None, rms=True)
    if not _kernels_run(x, weight):
        return _nm.rms_norm_reference(x, weight, eps)
    return torch.ops.nndsl.rms_norm(x, weight, float(eps))[0]


def _softmax_call(op, reference, x, dim: int):
    check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim, got shape ()")
    if not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must be an int in [{-x.dim()}, {x.dim()}) for x of shape {tuple(x.shape)}, got {dim!r}")
    return op(x, dim % x.dim()) if _kernels_run(x) else reference(x, dim)


@_autocast(FP32)
def softmax(x, dim: int = -1):
    """torch.softmax(x, dim) through ``nndsl::softmax`` (see kernels.softmax.softmax)."""
    return _softmax_call(torch.ops.nndsl.softmax, _sm.softmax_reference, x, dim)


@_autocast(FP32)
def log_softmax(x, dim: int = -1):
    """torch.log_softmax(x, dim) through ``nndsl::log_softmax`` (see kernels.softmax.log_softmax)."""
    return _softmax_call(torch.ops.nndsl.log_softmax, _sm.log_softmax_reference, x, dim)


# Autocast: matmul, attention and conv2d in the autocast dtype; norms, softmax and the loss in fp32
# (the wrappers above apply the same policy; see _autocast.py)
for _name, _policy in (("matmul", LOW), ("attention", LOW), ("conv2d", LOW), ("linear_cross_entropy", LOW),
                       ("cross_entropy", FP32),
                       ("layer_norm", FP32), ("rms_norm", FP32), ("softmax", FP32), ("log_softmax", FP32)):
    _register_autocast(_name, _policy)


__all__ = ["attention", "conv2d", "cross_entropy", "layer_norm", "linear_cross_entropy", "log_softmax", "matmul",
           "rms_norm", "softmax"]
