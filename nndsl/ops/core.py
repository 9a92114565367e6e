"""Core-language ops: tensor arithmetic, matmul, indexing, casts, and the ``param`` placeholder.

These are the ops the elaborator emits for expressions (``a + b``, ``x * 0.5``, ``q @ k``,
``x[:, -1]``). Dtype rules are deliberately small:

* tensor op tensor: both sides must have the same dtype (``cast`` one of them otherwise);
  ``div`` of two int or bool tensors gives f32 (true division); ``sub``/``pow``/``neg`` refuse
  bool; ``matmul`` takes floating-point tensors only (CUDA has no integer matmul).
* tensor op scalar: a float tensor keeps its dtype; an int/bool tensor becomes f32 when the
  scalar is a float or the op divides (PyTorch's promotion), else stays int (bool -> i64);
  an int or bool tensor to a negative int power is refused (PyTorch raises at run time).
"""
from __future__ import annotations

from typing import Any

import sympy

from ..ir import dims as D
from ..ir.types import DTYPES, FLOAT_DTYPES, TensorType
from .registry import EmitCtx, InferCtx, InferError, op


# ---------------------------------------------------------------------------------------- helpers
def _is_float_scalar(v: Any) -> bool:
    if isinstance(v, float):
        return True
    return isinstance(v, sympy.Expr) and not v.is_integer


def same_dtype(c: InferCtx, *idx: int) -> str:
    """The common dtype of inputs ``idx`` (all of them by default); a type error when they differ."""
    idx = idx or tuple(range(len(c.types)))
    first = c.types[idx[0]].dtype
    for i in idx[1:]:
        if c.types[i].dtype != first:
            raise c.type_error(
                f"{c.op}: dtypes differ: {c.describe(idx[0])} and {c.describe(i)}",
                f"cast one side, e.g. cast(x, \"{first}\")")
    return first


def whole_div(a, b):
    """a / b as a dim when provably a whole number, else None."""
    e = sympy.simplify(sympy.sympify(a) / sympy.sympify(b))
    if e.is_Integer:
        return int(e)
    if e.is_number or not e.is_integer:
        return None
    return D.norm(e)


def is_dim(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, sympy.Expr)


# ---------------------------------------------------------------------------------- binary ops
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _binary_infer(c: InferCtx) -> TensorType:
    """Elementwise op of two tensors with NumPy broadcasting; both must share a dtype."""
    a, b = c.types
    dtype = same_dtype(c)
    if dtype == "bool" and c.op in ("sub", "pow"):
        raise c.type_error(f"{c.op} is not defined on bool tensors ({c.describe(0)})")
    if c.op == "div" and dtype not in ("f32", "f16", "bf16", "f64"):
        dtype = "f32"  # true division of ints
    return TensorType(c.broadcast(a, b), dtype)


for _name, _sym in _BINARY.items():
    op(_name, emit=lambda e, s=_sym: f"{e.ins[0]} {s} {e.ins[1]}")(_binary_infer)

op("maximum", emit=lambda e: f"torch.maximum({e.args})")(_binary_infer)
op("minimum", emit=lambda e: f"torch.minimum({e.args})")(_binary_infer)


# ---------------------------------------------------------------------------------- scalar ops
_SCALAR = {  # op -> how the expression reads, x and s being the operands
    "add_s": "{x} + {s}", "sub_s": "{x} - {s}", "mul_s": "{x} * {s}", "div_s": "{x} / {s}",
    "pow_s": "{x} ** {s}", "rsub_s": "{s} - {x}", "rdiv_s": "{s} / {x}",
}


def _scalar_lit(e: EmitCtx) -> str:
    """The scalar operand: a number or an expression over dims (never a bool or other value)."""
    v = e.attrs["value"]
    if isinstance(v, bool) or not (isinstance(v, (int, float)) or isinstance(v, sympy.Expr)):
        raise TypeError(f"the scalar must be a number, got {type(v).__name__}")
    code = e.lit(v)
    return f"({code})" if code.startswith("-") else code  # -1 ** 2 is not (-1) ** 2


def _scalar_infer(c: InferCtx) -> TensorType:
    """Tensor op scalar (attr ``value``: an int, a float or a dim)."""
    (t,) = c.types
    v = c.attrs.get("value")
    if not (isinstance(v, (int, float)) or isinstance(v, sympy.Expr)) or isinstance(v, bool):
        raise c.type_error(f"{c.op}: the scalar must be a number, got {v!r}")
    if t.is_float:
        return t
    if t.dtype == "bool" and c.op in ("sub_s", "rsub_s"):
        raise c.type_error(f"{c.op} is not defined on bool tensors ({c.describe(0)})")
    if c.op == "pow_s" and not _is_float_scalar(v) and not (isinstance(v, sympy.Expr) or v >= 0):
        raise c.type_error(f"an integer tensor to a negative integer power is not defined ({c.describe(0)} ** {v})",
                           "cast it to a float first, or use a float exponent")
    if _is_float_scalar(v) or c.op in ("div_s", "rdiv_s"):
        return t.with_dtype("f32")
    return t.with_dtype("i64") if t.dtype == "bool" else t


for _name, _form in _SCALAR.items():
    op(_name, emit=lambda e, f=_form: f.format(x=e.ins[0], s=_scalar_lit(e)))(_scalar_infer)


@op("neg", emit=lambda e: f"-{e.ins[0]}")
def _neg(c: InferCtx) -> TensorType:
    """-x."""
    if c.types[0].dtype == "bool":
        raise c.type_error(f"neg is not defined on bool tensors ({c.describe(0)})")
    return c.types[0]


# ---------------------------------------------------------------------------------------- matmul
@op("matmul", emit=lambda e: f"{e.ins[0]} @ {e.ins[1]}")
def _matmul(c: InferCtx) -> TensorType:
    """torch.matmul: 1-D operands are promoted and the added axis removed; batch dims broadcast."""
    a, b = c.types
    if a.rank == 0 or b.rank == 0:
        raise c.error(f"matmul needs tensors of rank >= 1, got {c.describe(0)} @ {c.describe(1)}")
    dtype = same_dtype(c)
    if dtype not in FLOAT_DTYPES:
        raise c.type_error(f"matmul needs floating-point tensors, got {c.describe(0)} @ {c.describe(1)}",
                           "PyTorch has no integer matmul on CUDA; cast(x, \"f32\") first")
    sa = list(a.shape) if a.rank > 1 else [1] + list(a.shape)
    sb = list(b.shape) if b.rank > 1 else list(b.shape) + [1]
    if not D.equal(sa[-1], sb[-2]):
        raise c.error(f"matmul: inner dims do not match ({D.dim_str(sa[-1])} vs {D.dim_str(sb[-2])}) "
                      f"in {c.describe(0)} @ {c.describe(1)}")
    try:
        batch = c.broadcast(TensorType(sa[:-2], dtype), TensorType(sb[:-2], dtype))
    except InferError:
        raise c.error(f"matmul: batch dims do not broadcast in {c.describe(0)} @ {c.describe(1)}") from None
    out = list(batch) + ([sa[-2]] if a.rank > 1 else []) + ([sb[-1]] if b.rank > 1 else [])
    return TensorType(out, dtype)


# -------------------------------------------------------------------------------------- getitem
def _is_slice(it: Any) -> bool:
    return isinstance(it, tuple) and len(it) == 4 and it[0] == "slice"


def _slice_len(c: InferCtx, n, start, stop, step, axis: int):
    """Length of ``n[start:stop:step]`` as PyTorch gives it: bounds wrap once when negative, then
    clamp to [0, n]; an empty range has length 0. Exact for static sizes; for a symbolic size the
    clamps are ``Min``/``Max`` expressions that sympy folds when it can (``x[:, 1:]`` on T: T - 1)."""
    if step is None:
        step = 1
    if not isinstance(step, int) or step <= 0:
        raise c.error(f"getitem: a slice step must be a positive int, got {D.dim_str(step)}")
    if all(isinstance(v, int) or v is None for v in (n, start, stop)):
        return len(range(n)[slice(start, stop, step)])
    if step == 1 and all(isinstance(v, int) or v is None for v in (start, stop)):
        # the common cases in a form sympy keeps small: x[:, -3:] on T is min(3, T), not T - max(0, T - 3)
        s, e = start, stop
        if (s is None or s >= 0) and (e is None or e >= 0):
            if e is None:
                return D.norm(sympy.Max(n - (s or 0), 0))
            return 0 if e <= (s or 0) else D.norm(sympy.Min(e, n) - sympy.Min(s or 0, n))
        if s is not None and s < 0 and (e is None or e < 0):
            return 0 if e is not None and e <= s else D.norm(sympy.Min(-s, n) - sympy.Min(-(e or 0), n))
    lo = _slice_bound(c, n, start, 0, axis)
    hi = _slice_bound(c, n, stop, n, axis)
    return D.norm(sympy.Max(0, sympy.floor((sympy.sympify(hi) - lo + step - 1) / step)))


def _slice_bound(c: InferCtx, n, bound, default, axis: int):
    """A slice bound of dim ``n`` wrapped (when negative) and clamped to [0, n]."""
    if bound is None:
        return default
    b = sympy.sympify(bound)
    if b.is_negative:
        return sympy.Max(b + n, 0)
    if b.is_nonnegative:
        return sympy.Min(b, n)
    raise c.error(f"getitem: the sign of slice bound {D.dim_str(bound)} on dim {axis} is not known at compile "
                  "time, so where it starts is not either", "use a bound that is provably >= 0 or < 0")


def _expand_index(c: InferCtx, index: tuple, rank: int) -> list:
    """Replace '...' (or the implicit trailing one) by full slices."""
    consume = sum(1 for it in index if it is not None and not isinstance(it, str))
    ells = sum(1 for it in index if isinstance(it, str))
    if ells > 1:
        raise c.error("getitem: an index can hold at most one '...'")
    if consume > rank:
        raise c.error(f"getitem: {consume} indices for {c.describe(0)} (rank {rank})")
    full = ("slice", None, None, None)
    out: list = []
    for it in index:
        if isinstance(it, str):
            if it != "...":
                raise c.error(f"getitem: bad index item {it!r}")
            out += [full] * (rank - consume)
        else:
            out.append(it)
    if not ells:
        out += [full] * (rank - consume)
    return out


@op("getitem", emit=lambda e: _getitem_emit(e))
def _getitem(c: InferCtx) -> TensorType:
    """x[index]: items are ints/dims (drop the axis), None (new axis), '...', ('slice', start, stop, step)."""
    t = c.types[0]
    index = tuple(c.attrs["index"])
    out = []
    axis = 0
    for it in _expand_index(c, index, t.rank):
        if it is None:
            out.append(1)
            continue
        n = t.shape[axis]
        if _is_slice(it):
            out.append(_slice_len(c, n, it[1], it[2], it[3], axis))
        elif is_dim(it):
            if isinstance(it, int) and isinstance(n, int) and not -n <= it < n:
                raise c.error(f"getitem: index {it} is out of range for dim {axis} (size {n}) of {c.describe(0)}")
        else:
            raise c.error(f"getitem: bad index item {it!r}")
        axis += 1
    return t.with_shape(out)


def _getitem_emit(e: EmitCtx) -> str:
    def part(v) -> str:
        return "" if v is None else e.dim(v)

    items = []
    for it in e.attrs["index"]:
        if it is None:
            items.append("None")
        elif isinstance(it, str):
            items.append("...")
        elif _is_slice(it):
            s = f"{part(it[1])}:{part(it[2])}"
            items.append(s + (f":{part(it[3])}" if it[3] is not None else ""))
        else:
            items.append(e.dim(it))
    if not items:
        return f"{e.ins[0]}[()]"
    return f"{e.ins[0]}[{', '.join(items)}]"


# ------------------------------------------------------------------------------------ cast, param
_TORCH_DTYPE = {name: str(dt) for name, dt in DTYPES.items()}  # "f32" -> "torch.float32"


@op("cast", emit=lambda e: f"{e.ins[0]}.to({_TORCH_DTYPE[e.attrs['dtype']]})")
def _cast(c: InferCtx) -> TensorType:
    """x converted to attr ``dtype`` (an IR dtype name: f32 f16 bf16 f64 i64 i32 bool)."""
    dt = c.attrs.get("dtype")
    if dt not in DTYPES:
        raise c.type_error(f"cast: unknown dtype {dt!r}", "one of: " + ", ".join(DTYPES))
    return c.types[0].with_dtype(dt)


def _param_emit(e: EmitCtx) -> str:
    raise RuntimeError("param nodes are emitted by the backend itself (self.<path>)")


@op("param", emit=_param_emit)
def _param(c: InferCtx) -> TensorType:
    """Reads a declared parameter; Builder.param creates these nodes with their type directly."""
    raise c.error("param nodes are created by Builder.param, not through Builder.op")
