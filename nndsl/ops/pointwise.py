"""Pointwise activations, softmax, reductions, dropout and the causal mask.

Unary ops keep their input's type; most need a floating-point input (``relu`` and ``abs``
also take ints; ``sigmoid``, ``tanh``, ``exp``, ``log``, ``sqrt`` turn ints and bools into f32). Reductions take attr ``dims`` (a tuple of axes, or None for all of them)
and ``keepdim``; ``max``/``min`` return the values only (``torch.amax``/``torch.amin``).
"""
from __future__ import annotations

from ..ir.types import TensorType
from .registry import EmitCtx, InferCtx, op

# op -> the function it lowers to (called on the single input)
_UNARY = {
    "relu": "F.relu", "silu": "F.silu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
    "exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt", "abs": "torch.abs",
}
_INT_OK = ("relu", "abs")  # int in, int out (not bool)
_PROMOTES = ("sigmoid", "tanh", "exp", "log", "sqrt")  # int or bool in, f32 out (PyTorch's promotion)


def _unary_infer(c: InferCtx) -> TensorType:
    """Elementwise function; the output has the input's type (f32 for an int or bool input of
    sigmoid/tanh/exp/log/sqrt, as PyTorch computes them)."""
    t = c.types[0]
    if c.op in _PROMOTES and not t.is_float:
        return t.with_dtype("f32")
    if c.op not in _INT_OK:
        c.expect_float(0)
    elif t.dtype == "bool":
        raise c.type_error(f"{c.op} is not defined on bool tensors ({c.describe(0)})")
    return t


for _name, _fn in _UNARY.items():
    op(_name, emit=lambda e, f=_fn: f"{f}({e.ins[0]})")(_unary_infer)


def _gelu_emit(e: EmitCtx) -> str:
    approx = e.attrs.get("approximate", "none")
    return f"F.gelu({e.ins[0]})" if approx == "none" else f"F.gelu({e.ins[0]}, approximate={e.lit(approx)})"


@op("gelu", emit=_gelu_emit)
def _gelu(c: InferCtx) -> TensorType:
    """GELU; attr ``approximate`` is 'none' (erf) or 'tanh'."""
    if c.attrs.get("approximate", "none") not in ("none", "tanh"):
        raise c.error(f"gelu: approximate must be 'none' or 'tanh', got {c.attrs['approximate']!r}")
    return c.expect_float(0)


def _softmax_infer(c: InferCtx) -> TensorType:
    """Softmax (or log-softmax) along attr ``dim``."""
    t = c.expect_float(0)
    if t.rank == 0:
        raise c.error(f"{c.op} needs a tensor with at least one axis, got {c.describe(0)}")
    c.axis(c.attrs.get("dim", -1), t.rank)
    return t


op("softmax", emit=lambda e: f"torch.softmax({e.ins[0]}, dim={e.lit(e.attrs['dim'])})")(_softmax_infer)
op("log_softmax", emit=lambda e: f"torch.log_softmax({e.ins[0]}, dim={e.lit(e.attrs['dim'])})")(_softmax_infer)


# ------------------------------------------------------------------------------------ reductions
_REDUCE = {"sum": "torch.sum", "mean": "torch.mean", "max": "torch.amax", "min": "torch.amin"}


def reduce_axes(c: InferCtx) -> list[int]:
    t = c.types[0]
    dims = c.attrs.get("dims")
    if dims is None:
        return list(range(t.rank))
    dims = [dims] if isinstance(dims, int) else list(dims)
    axes = [c.axis(d, t.rank) for d in dims]
    if len(set(axes)) != len(axes):
        raise c.error(f"{c.op}: dim {list(dims)} names an axis twice")
    return sorted(axes)


def _reduce_infer(c: InferCtx) -> TensorType:
    """Reduce over attr ``dims`` (None: every axis), keeping them as size 1 when attr ``keepdim``."""
    t = c.types[0]
    if c.op == "mean":
        c.expect_float(0)
    axes = reduce_axes(c)
    keep = bool(c.attrs.get("keepdim", False))
    shape = [1 if i in axes else n for i, n in enumerate(t.shape)] if keep else \
        [n for i, n in enumerate(t.shape) if i not in axes]
    dtype = "i64" if (c.op == "sum" and t.dtype in ("bool", "i32")) else t.dtype
    return TensorType(shape, dtype)


def _reduce_emit(e: EmitCtx) -> str:
    t = e.node.inputs[0].type
    c = InferCtx(e.node.op, [t], e.attrs)
    axes = reduce_axes(c)
    keep = bool(e.attrs.get("keepdim", False))
    fn = _REDUCE[e.node.op]
    if not axes:
        return e.ins[0]
    if len(axes) == t.rank and not keep and e.node.op in ("sum", "mean"):
        return f"{fn}({e.ins[0]})"
    return f"{fn}({e.ins[0]}, dim={e.dims(axes)}, keepdim={e.lit(keep)})"


for _name in _REDUCE:
    op(_name, emit=_reduce_emit)(_reduce_infer)


# --------------------------------------------------------------------------------------- dropout
@op("dropout", emit=lambda e: f"F.dropout({e.ins[0]}, {e.lit(float(e.attrs['p']))}, self.training)")
def _dropout(c: InferCtx) -> TensorType:
    """Dropout with probability attr ``p`` while training; identity in eval mode."""
    p = c.attrs.get("p")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise c.error(f"dropout: p must be a probability in [0, 1], got {p!r}")
    return c.expect_float(0)


# ---------------------------------------------------------------------------------- causal mask
def _causal_emit(e: EmitCtx) -> str:
    dt = {"f32": "torch.float32", "f16": "torch.float16", "bf16": "torch.bfloat16", "f64": "torch.float64"}
    return f"rt.causal_mask({e.dim(e.attrs['T'])}, {e.ins[0]}.device, {dt[e.attrs.get('dtype', 'f32')]})"


@op("causal_mask", emit=_causal_emit)
def _causal_mask(c: InferCtx) -> TensorType:
    """[T, T] additive mask: 0 on and below the diagonal, -inf above; attr ``T`` (a dim),
    attr ``dtype`` (default f32). The one input only says which device the mask lives on."""
    T = c.attrs["T"]
    if isinstance(T, int) and T <= 0:
        raise c.error(f"causal_mask: size must be positive, got {T}")
    dtype = c.attrs.get("dtype", "f32")
    if dtype not in ("f32", "f16", "bf16", "f64"):
        raise c.type_error(f"causal_mask: dtype must be floating-point, got {dtype!r}")
    return TensorType((T, T), dtype)

