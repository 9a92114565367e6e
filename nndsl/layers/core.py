"""Stateless builtins: shape manipulation, activations, reductions, pooling, casts.

Each builtin checks its arguments (errors located at the call by ``b.error``) and adds IR
ops through the Builder; shape checking proper happens in the ops' inference.
"""
from __future__ import annotations

from typing import Any

from ..errors import NndslTypeError
from ..ir import dims as D
from ..ir.builder import Builder
from ..ir.graph import Value
from ..ops.core import whole_div
from .registry import builtin


def reduce_dims(b: Builder, fn: str, dim: Any) -> Any:
    """A reduction's ``dim`` argument: none, an int or a list of ints."""
    if dim is None or (isinstance(dim, int) and not isinstance(dim, bool)):
        return dim
    if isinstance(dim, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in dim):
        return tuple(dim)
    raise b.error(f"{fn}'s argument 'dim' must be none, an int or a list of ints, got {dim!r}",
                  (f"{fn}(a, b) of two tensors is elementwise; against a number use "
                  f"clamp(x, {'min' if fn == 'max' else 'max'}=...)") if fn in ("max", "min") else None,
                  NndslTypeError)


# ------------------------------------------------------------------------------------------ shape
@builtin("flatten", "x: tensor, start: int = 1, end: int = -1")
def flatten(b: Builder, x, start, end):
    """Merge axes start..end (inclusive) into one: f32[B, 64, 7, 7] -> f32[B, 3136]."""
    return b.op("flatten", [x], {"start": start, "end": end})


@builtin("reshape", "x: tensor, shape: dims")
def reshape(b: Builder, x, shape):
    """View x with a new shape (same element count); one entry may be -1."""
    return b.op("reshape", [x], {"shape": tuple(shape)})


@builtin("transpose", "x: tensor, a: int, b: int")
def transpose(bld: Builder, x, a, b):
    """Swap axes a and b."""
    return bld.op("transpose", [x], {"a": a, "b": b})


@builtin("permute", "x: tensor, dims: ints")
def permute(b: Builder, x, dims):
    """Reorder axes: permute(x, [0, 2, 1])."""
    return b.op("permute", [x], {"dims": (dims,) if isinstance(dims, int) else tuple(dims)})


@builtin("unsqueeze", "x: tensor, dim: int")
def unsqueeze(b: Builder, x, dim):
    """Insert a size-1 axis at dim."""
    return b.op("unsqueeze", [x], {"dim": dim})


@builtin("squeeze", "x: tensor, dim: any = none")
def squeeze(b: Builder, x, dim):
    """Remove size-1 axes: dim (an int or a list), or every axis of static size 1 when omitted."""
    return b.op("squeeze", [x], {"dim": reduce_dims(b, "squeeze", dim)})


def _tensors(b: Builder, fn: str, xs: list) -> list:
    out: list = []
    for v in xs:
        if isinstance(v, Value):
            out.append(v)
        elif isinstance(v, (list, tuple)) and all(isinstance(t, Value) for t in v):
            out.extend(v)
        else:
            raise b.error(f"{fn} expects tensors (or a list of tensors), got {v!r}", cls=NndslTypeError)
    if not out:
        raise b.error(f"{fn} needs at least one tensor", cls=NndslTypeError)
    return out


@builtin("concat", "*xs: any, dim: int = 0")
def concat(b: Builder, xs, dim):
    """Join tensors along dim: concat(a, b, dim=1) or concat([a, b], dim=1)."""
    return b.op("concat", _tensors(b, "concat", xs), {"dim": dim})


@builtin("cat", "*xs: any, dim: int = 0")
def cat(b: Builder, xs, dim):
    """Alias of concat."""
    return b.op("concat", _tensors(b, "cat", xs), {"dim": dim})


@builtin("split", "x: tensor, parts: ints, dim: int = -1")
def split(b: Builder, x, parts, dim):
    """split(x, 3) cuts dim into 3 equal parts; split(x, [2, 5]) into pieces of those sizes."""
    if isinstance(parts, int):
        if parts <= 0:
            raise b.error(f"split: the number of parts must be positive, got {parts}", cls=NndslTypeError)
        if not -x.type.rank <= dim < x.type.rank:
            raise b.error(f"split: dim {dim} is out of range for {_desc(x)}")
        n = x.type.shape[dim]
        size = whole_div(n, parts)
        if size is None:
            raise b.error(f"split: dim {dim} of {_desc(x)} ({D.dim_str(n)}) does not split into {parts} equal parts")
        sizes = (size,) * parts
    else:
        sizes = tuple(parts)
    return b.op("split", [x], {"sizes": sizes, "dim": dim})


def _desc(v: Value) -> str:
    return f"{v.name}: {v.type}" if v.name else str(v.type)


@builtin("cast", "x: tensor, dtype: str")
def cast(b: Builder, x, dtype):
    """Convert to dtype: "f32", "f16", "bf16", "f64", "i64", "i32" or "bool"."""
    return b.op("cast", [x], {"dtype": dtype})


# ------------------------------------------------------------------------------------ pointwise
def _unary(name: str, doc: str):
    def fn(b: Builder, x):
        return b.op(name, [x])

    fn.__doc__ = doc
    builtin(name, "x: tensor")(fn)


for _n, _doc in (("relu", "max(x, 0)"), ("silu", "x * sigmoid(x)"), ("sigmoid", "1 / (1 + exp(-x))"),
                 ("tanh", "hyperbolic tangent"), ("exp", "e ** x"), ("log", "natural log"),
                 ("sqrt", "square root"), ("abs", "absolute value")):
    _unary(_n, _doc)


@builtin("gelu", "x: tensor, approximate: str = 'none'")
def gelu(b: Builder, x, approximate):
    """GELU (approximate='none' exact erf form, or 'tanh')."""
    return b.op("gelu", [x], {"approximate": approximate})


@builtin("softmax", "x: tensor, dim: int = -1")
def softmax(b: Builder, x, dim):
    """Softmax along dim."""
    return b.op("softmax", [x], {"dim": dim})


@builtin("log_softmax", "x: tensor, dim: int = -1")
def log_softmax(b: Builder, x, dim):
    """Log of softmax along dim (numerically stable)."""
    return b.op("log_softmax", [x], {"dim": dim})


@builtin("maximum", "a: tensor, b: tensor")
def maximum(bld: Builder, a, b):
    """Elementwise maximum of two tensors (broadcasting)."""
    return bld.op("maximum", [a, b])


@builtin("minimum", "a: tensor, b: tensor")
def minimum(bld: Builder, a, b):
    """Elementwise minimum of two tensors (broadcasting)."""
    return bld.op("minimum", [a, b])


def _reduction(name: str, doc: str):
    def fn(b: Builder, x, dim, keepdim):
        if isinstance(dim, Value) and name in ("max", "min"):  # max(a, b): elementwise, as torch.max(a, b)
            return b.op(f"{name}imum", [x, dim])
        dims = reduce_dims(b, name, dim)
        return b.op(name, [x], {"dims": (dims,) if isinstance(dims, int) else dims, "keepdim": keepdim})

    fn.__doc__ = doc
    builtin(name, "x: tensor, dim: any = none, keepdim: bool = false")(fn)


for _n, _doc in (("sum", "Sum over dim (none: all axes)."), ("mean", "Mean over dim (none: all axes)."),
                 ("max", "Largest value over dim (values only); max(a, b) of two tensors is elementwise."),
                 ("min", "Smallest value over dim (values only); min(a, b) of two tensors is elementwise.")):
    _reduction(_n, _doc)


@builtin("dropout", "x: tensor, p: float = 0.5")
def dropout(b: Builder, x, p):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p)); identity otherwise."""
    if not 0.0 <= p <= 1.0:
        raise b.error(f"dropout: p must be in [0, 1], got {p}", cls=NndslTypeError)
    if p == 0.0:
        return x
    return b.op("dropout", [x], {"p": p})


# ----------------------------------------------------------------------------------- causal mask
@builtin("causal_mask", "T: dim")
def causal_mask(b: Builder, T):
    """f32[T, T]: 0 on and below the diagonal, -inf above; add it to attention scores."""
    if not b.graph.inputs:
        raise b.error("causal_mask needs the model to have an input (it takes the device from it)")
    return b.op("causal_mask", [b.graph.inputs[0]], {"T": T, "dtype": "f32"})


# ---------------------------------------------------------------------------------------- pooling
def _pool(name: str):
    nd = int(name[-2])

    def fn(b: Builder, x, kernel, stride, padding):
        def tup(key, v):
            t = (v,) * nd if isinstance(v, int) else tuple(v)
            if len(t) != nd:
                raise b.error(f"{name}: {key} must be an int or {nd} ints, got {list(t)}", cls=NndslTypeError)
            return t

        k = tup("kernel", kernel)
        return b.op(name, [x], {"kernel": k, "stride": k if stride is None else tup("stride", stride),
                                "padding": tup("padding", padding)})

    fn.__doc__ = f"{name[:3]} pooling over the last {name[-2]} axes; stride defaults to the kernel size."
    builtin(name, "x: tensor, kernel: ints, stride: ints = none, padding: ints = 0")(fn)


for _n in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
    _pool(_n)


@builtin("logmel", "x: tensor, sample_rate: int = 16000, n_fft: int = 512, hop: int = 160, n_mels: int = 40")
def logmel(b: Builder, x, sample_rate, n_fft, hop, n_mels):
    """Log-mel spectrogram: waveform [B, N] -> [B, n_mels, N // hop + 1]."""
    return b.op("logmel", [x], {"sample_rate": sample_rate, "n_fft": n_fft, "hop": hop, "n_mels": n_mels})
