"""Neural-network ops: linear, convolutions, pooling, embeddings, normalizations (attention: ``ops.attention``).

Weights are ordinary inputs (the builtins pass ``param`` values). Optional inputs are trailing
and simply left out: ``linear`` takes ``[x, w]`` or ``[x, w, b]``; ``conv*d`` the same;
``layernorm`` ``[x]``, ``[x, w]`` or ``[x, w, b]``; ``rmsnorm`` ``[x]`` or ``[x, w]``.
Output sizes of convolutions and pools use floor division on (possibly symbolic) dims.
"""
from __future__ import annotations

from ..ir import dims as D
from ..ir.types import INT_DTYPES, TensorType
from .core import same_dtype
from .registry import EmitCtx, InferCtx, op


def expect_shape(c: InferCtx, i: int, shape: tuple, what: str) -> None:
    t = c.types[i]
    if t.rank != len(shape) or not all(D.equal(a, b) for a, b in zip(t.shape, shape)):
        raise c.error(f"{c.op}: {what} must have shape {D.shape_str(shape)}, got {c.describe(i)}")


def opt_input(e: EmitCtx, i: int) -> str:
    return e.ins[i] if i < len(e.ins) else "None"


# ---------------------------------------------------------------------------------------- linear
@op("linear", emit=lambda e: f"F.linear({e.ins[0]}, {e.ins[1]}, {opt_input(e, 2)})")
def _linear(c: InferCtx) -> TensorType:
    """x [..., in] @ w[out, in]^T (+ b[out]) -> [..., out]."""
    x = c.types[0]
    w = c.expect_rank(1, 2, what="weight")
    if x.rank == 0:
        raise c.error(f"linear expects a tensor with at least one axis, got {c.describe(0)}")
    c.expect_float(0)
    dtype = same_dtype(c)
    if not D.equal(x.shape[-1], w.shape[1]):
        raise c.error(f"linear expects last dim {D.dim_str(w.shape[1])}, got {D.dim_str(x.shape[-1])} "
                      f"({c.describe(0)})")
    if len(c.types) > 2:
        expect_shape(c, 2, (w.shape[0],), "the bias")
    return TensorType(list(x.shape[:-1]) + [w.shape[0]], dtype)


# ------------------------------------------------------------------------- convolution, pooling
def spatial_rank(c: InferCtx) -> int:
    return int(c.op[-2])


def ntuple(v, nd: int) -> tuple:
    """An int or a list of ints as an nd-tuple (attrs may hold either)."""
    return (v,) * nd if isinstance(v, int) else tuple(v)


def int_tuple(c: InferCtx, key: str, nd: int, default) -> tuple:
    v = c.attrs.get(key, default)
    v = ntuple(v, nd) if isinstance(v, (int, list, tuple)) else v
    if not isinstance(v, tuple) or len(v) != nd or not all(isinstance(a, int) for a in v):
        raise c.error(f"{c.op}: {key} must be an int or {nd} ints, got {c.attrs.get(key)!r}")
    return v


def _out_size(c: InferCtx, axis: int, n, k: int, s: int, p: int, d: int):
    """floor((n + 2p - d(k-1) - 1) / s) + 1, the size PyTorch gives."""
    if s <= 0 or p < 0 or d <= 0:
        raise c.error(f"{c.op}: stride and dilation must be positive and padding non-negative")
    out = D.floordiv(D.norm(n + 2 * p - d * (k - 1) - 1), s)
    out = out + 1 if isinstance(out, int) else D.norm(out + 1)
    if isinstance(out, int) and out < 1:
        raise c.error(f"{c.op}: input too small: dim {axis} of {c.describe(0)} is {D.dim_str(n)}, which gives "
                      f"an output of size {out} (kernel {k}, stride {s}, padding {p}, dilation {d})")
    return out


def _conv_emit(e: EmitCtx) -> str:
    a, nd = e.attrs, int(e.node.op[-2])
    fn = {"conv1d": "F.conv1d", "conv2d": "F.conv2d"}[e.node.op]
    return (f"{fn}({e.ins[0]}, {e.ins[1]}, {opt_input(e, 2)}, stride={e.lit(ntuple(a.get('stride', 1), nd))}, "
            f"padding={e.lit(ntuple(a.get('padding', 0), nd))}, dilation={e.lit(ntuple(a.get('dilation', 1), nd))}, "
            f"groups={e.lit(a.get('groups', 1))})")


def _conv_infer(c: InferCtx) -> TensorType:
    """x [B, Cin, *spatial] (or unbatched) * w [Cout, Cin/groups, *kernel] (+ b [Cout])."""
    nd = spatial_rank(c)
    x = c.expect_rank(0, nd + 2, nd + 1)
    w = c.expect_rank(1, nd + 2, what="weight")
    c.expect_float(0)
    dtype = same_dtype(c)
    stride, padding, dilation = (int_tuple(c, k, nd, dv) for k, dv in (("stride", 1), ("padding", 0), ("dilation", 1)))
    groups = c.attrs.get("groups", 1)
    cin = x.shape[-nd - 1]
    if not D.equal(cin, D.norm(w.shape[1] * groups)):
        raise c.error(f"{c.op} expects {D.dim_str(w.shape[1] * groups)} input channels (dim {x.rank - nd - 1}), "
                      f"got {D.dim_str(cin)} ({c.describe(0)})")
    if len(c.types) > 2:
        expect_shape(c, 2, (w.shape[0],), "the bias")
    spatial = [_out_size(c, x.rank - nd + i, x.shape[x.rank - nd + i], w.shape[2 + i], stride[i], padding[i],
                         dilation[i]) for i in range(nd)]
    return TensorType(list(x.shape[:-nd - 1]) + [w.shape[0]] + spatial, dtype)


for _n in ("conv1d", "conv2d"):
    op(_n, emit=_conv_emit)(_conv_infer)


def _pool_emit(e: EmitCtx) -> str:
    a, nd = e.attrs, int(e.node.op[-2])
    fn = {"maxpool1d": "max_pool1d", "maxpool2d": "max_pool2d", "avgpool1d": "avg_pool1d",
          "avgpool2d": "avg_pool2d"}[e.node.op]
    k = ntuple(a["kernel"], nd)
    return f"F.{fn}({e.ins[0]}, {e.lit(k)}, {e.lit(ntuple(a.get('stride', k), nd))}, {e.lit(ntuple(a.get('padding', 0), nd))})"


def _pool_infer(c: InferCtx) -> TensorType:
    """Max/average pooling over the last 1 or 2 axes (attrs kernel, stride, padding; floor mode)."""
    nd = spatial_rank(c)
    x = c.expect_rank(0, nd + 2, nd + 1)
    c.expect_float(0)  # PyTorch pools some integer dtypes on some devices only
    kernel = int_tuple(c, "kernel", nd, None)
    stride = int_tuple(c, "stride", nd, kernel)
    padding = int_tuple(c, "padding", nd, 0)
    for k, p in zip(kernel, padding):
        if k <= 0 or p > k // 2:
            raise c.error(f"{c.op}: padding must be at most half the kernel size (kernel {kernel}, padding {padding})")
    spatial = [_out_size(c, x.rank - nd + i, x.shape[x.rank - nd + i], kernel[i], stride[i], padding[i], 1)
               for i in range(nd)]
    return x.with_shape(list(x.shape[:-nd]) + spatial)


for _n in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
    op(_n, emit=_pool_emit)(_pool_infer)


# ------------------------------------------------------------------------------------ embeddings
@op("embedding", emit=lambda e: f"F.embedding({e.ins[0]}, {e.ins[1]})")
def _embedding(c: InferCtx) -> TensorType:
    """Rows of w [num, dim] picked by the int tensor idx [...] -> [..., dim]."""
    idx = c.types[0]
    w = c.expect_rank(1, 2, what="weight")
    if idx.dtype not in INT_DTYPES:
        raise c.type_error(f"embedding expects an integer index tensor (i64 or i32), got {c.describe(0)}",
                           "cast(idx, \"i64\") converts it")
    return TensorType(list(idx.shape) + [w.shape[1]], w.dtype)


@op("pos_embedding", emit=lambda e: f"rt.pos_rows({e.ins[1]}, {e.ins[0]}.shape[{e.lit(e.attrs.get('axis', 1))}])")
def _pos_embedding(c: InferCtx) -> TensorType:
    """The first T rows of w [max_len, dim], T = x.shape[axis] (attr ``axis``, default 1) -> [T, dim].
    A static T is checked here, a symbolic one at run time (rt.pos_rows)."""
    x = c.types[0]
    w = c.expect_rank(1, 2, what="weight")
    ax = c.axis(c.attrs.get("axis", 1), x.rank)
    T = x.shape[ax]
    if isinstance(T, int) and T > w.shape[0]:
        raise c.error(f"pos_embedding: sequence length {T} (dim {ax} of {c.describe(0)}) exceeds "
                      f"max_len {w.shape[0]}")
    return TensorType((T, w.shape[1]), w.dtype)


# -------------------------------------------------------------------------------- normalizations
def _norm_emit(e: EmitCtx) -> str:
    last = e.dim(e.node.inputs[0].type.shape[-1])
    eps = e.lit(float(e.attrs.get("eps", 1e-5)))
    if e.node.op == "layernorm":
        return f"F.layer_norm({e.ins[0]}, ({last},), {opt_input(e, 1)}, {opt_input(e, 2)}, {eps})"
    return f"F.rms_norm({e.ins[0]}, ({last},), {opt_input(e, 1)}, {eps})"


def _norm_infer(c: InferCtx) -> TensorType:
    """layernorm / rmsnorm over the last axis, with optional weight [D] (and bias [D] for layernorm)."""
    x = c.expect_float(0)
    if x.rank == 0:
        raise c.error(f"{c.op} expects a tensor with at least one axis, got {c.describe(0)}")
    if len(c.types) > (3 if c.op == "layernorm" else 2):
        raise c.error(f"{c.op}: too many inputs")
    same_dtype(c)
    for i in range(1, len(c.types)):
        expect_shape(c, i, (x.shape[-1],), "the weight" if i == 1 else "the bias")
    return x


for _n in ("layernorm", "rmsnorm"):
    op(_n, emit=_norm_emit)(_norm_infer)


def _bn_emit(e: EmitCtx) -> str:
    x, w, b, rm, rv = e.ins[:5]
    nbt = opt_input(e, 5)
    return (f"rt.batch_norm({x}, {rm}, {rv}, {w}, {b}, {nbt}, self.training, "
            f"{e.lit(float(e.attrs.get('momentum', 0.1)))}, {e.lit(float(e.attrs.get('eps', 1e-5)))})")


@op("batchnorm", emit=_bn_emit)
def _batchnorm(c: InferCtx) -> TensorType:
    """x [B, C, ...] with weight, bias, running_mean, running_var [C] (+ num_batches_tracked [])."""
    x = c.expect_rank(0, 2, 3, 4, 5)
    c.expect_float(0)
    if len(c.types) not in (5, 6):
        raise c.error("batchnorm takes x, weight, bias, running_mean, running_var (, num_batches_tracked)")
    same_dtype(c, 0, 1, 2, 3, 4)
    for i, what in enumerate(("the weight", "the bias", "running_mean", "running_var"), 1):
        expect_shape(c, i, (x.shape[1],), what)
    return x
