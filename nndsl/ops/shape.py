"""Shape ops: reshape, flatten, permute, transpose, unsqueeze, squeeze, concat, split.

Sizes may be symbolic (``B``, ``T``); sympy decides whether two element counts are equal.
``split`` is the one multi-output op here: its emit is a tuple expression (``torch.split``).
"""
from __future__ import annotations

import sympy

from ..ir import dims as D
from ..ir.types import TensorType
from .core import same_dtype, whole_div
from .registry import EmitCtx, InferCtx, op


@op("reshape", emit=lambda e: f"{e.ins[0]}.reshape({e.dims(e.attrs['shape'])})")
def _reshape(c: InferCtx) -> TensorType:
    """x.reshape(shape); attr ``shape`` is a list of dims where one entry may be -1."""
    t = c.types[0]
    shape = list(c.attrs["shape"])
    free = [i for i, d in enumerate(shape) if isinstance(d, int) and d == -1]
    if len(free) > 1:
        raise c.error(f"reshape: at most one -1 is allowed, got {D.shape_str(shape)}")
    for d in shape:
        if isinstance(d, int) and (d < -1 or d == 0):
            raise c.error(f"reshape: bad size {d} in {D.shape_str(shape)}")
    numel = D.product(t.shape)
    known = D.product(d for i, d in enumerate(shape) if i not in free)
    if free:
        rest = whole_div(numel, known)
        if rest is None:
            raise c.error(f"reshape: cannot reshape {c.describe(0)} to {D.shape_str(shape)}: "
                          f"{D.dim_str(numel)} elements do not split into {D.dim_str(known)} * a whole number")
        shape[free[0]] = rest
    elif not D.equal(numel, known):
        raise c.error(f"reshape: cannot reshape {c.describe(0)} ({D.dim_str(numel)} elements) "
                      f"to {D.shape_str(shape)} ({D.dim_str(known)} elements)")
    return t.with_shape(shape)


@op("flatten", emit=lambda e: f"torch.flatten({e.ins[0]}, {e.lit(e.attrs['start'])}, {e.lit(e.attrs['end'])})")
def _flatten(c: InferCtx) -> TensorType:
    """Merge axes start..end (inclusive; attrs ``start``, ``end``) into one."""
    t = c.types[0]
    if t.rank == 0:
        return t.with_shape([1])
    s = c.axis(c.attrs.get("start", 1), t.rank)
    e = c.axis(c.attrs.get("end", -1), t.rank)
    if s > e:
        raise c.error(f"flatten: start dim {c.attrs['start']} comes after end dim {c.attrs['end']} "
                      f"for {c.describe(0)}")
    return t.with_shape(list(t.shape[:s]) + [D.product(t.shape[s:e + 1])] + list(t.shape[e + 1:]))


@op("permute", emit=lambda e: f"{e.ins[0]}.permute{e.dims(e.attrs['dims'])}")
def _permute(c: InferCtx) -> TensorType:
    """Reorder the axes: attr ``dims`` lists every axis once."""
    t = c.types[0]
    dims = list(c.attrs["dims"])
    if len(dims) != t.rank:
        raise c.error(f"permute: {len(dims)} dims given for {c.describe(0)} (rank {t.rank})")
    norm = [c.axis(d, t.rank) for d in dims]
    if sorted(norm) != list(range(t.rank)):
        raise c.error(f"permute: {list(dims)} is not a permutation of the {t.rank} axes of {c.describe(0)}")
    return t.with_shape([t.shape[i] for i in norm])


@op("transpose", emit=lambda e: f"{e.ins[0]}.transpose({e.lit(e.attrs['a'])}, {e.lit(e.attrs['b'])})")
def _transpose(c: InferCtx) -> TensorType:
    """Swap axes ``a`` and ``b``."""
    t = c.types[0]
    a, b = c.axis(c.attrs["a"], t.rank), c.axis(c.attrs["b"], t.rank)
    shape = list(t.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return t.with_shape(shape)


@op("unsqueeze", emit=lambda e: f"{e.ins[0]}.unsqueeze({e.lit(e.attrs['dim'])})")
def _unsqueeze(c: InferCtx) -> TensorType:
    """Insert a size-1 axis at ``dim`` (in range for the result's rank)."""
    t = c.types[0]
    d = c.axis(c.attrs["dim"], t.rank + 1)
    return t.with_shape(list(t.shape[:d]) + [1] + list(t.shape[d:]))


def _squeeze_axes(c: InferCtx) -> list[int]:
    t = c.types[0]
    d = c.attrs.get("dim")
    if d is None:
        return [i for i, n in enumerate(t.shape) if isinstance(n, int) and n == 1]
    dims = [d] if isinstance(d, int) else list(d)
    axes = sorted({c.axis(x, t.rank) for x in dims})
    for a in axes:
        if not D.equal(t.shape[a], 1):
            raise c.error(f"squeeze: dim {a} of {c.describe(0)} has size {D.dim_str(t.shape[a])}, not 1")
    return axes


def _squeeze_emit(e: EmitCtx) -> str:
    c = InferCtx(e.node.op, [v.type for v in e.node.inputs], e.attrs)
    axes = _squeeze_axes(c)
    return f"{e.ins[0]}.squeeze({e.dims(axes)})" if axes else e.ins[0]


@op("squeeze", emit=_squeeze_emit)
def _squeeze(c: InferCtx) -> TensorType:
    """Remove size-1 axes: attr ``dim`` (int, list, or None for every axis of static size 1)."""
    t = c.types[0]
    axes = _squeeze_axes(c)
    return t.with_shape([n for i, n in enumerate(t.shape) if i not in axes])


@op("concat", emit=lambda e: f"torch.cat([{e.args}], dim={e.lit(e.attrs['dim'])})")
def _concat(c: InferCtx) -> TensorType:
    """Join tensors along attr ``dim``; every other axis must match."""
    if not c.types:
        raise c.error("concat needs at least one tensor")
    first = c.types[0]
    dtype = same_dtype(c)
    d = c.axis(c.attrs.get("dim", 0), first.rank)
    total = first.shape[d]
    for i, t in enumerate(c.types[1:], 1):
        if t.rank != first.rank:
            raise c.error(f"concat: ranks differ: {c.describe(0)} and {c.describe(i)}")
        for ax in range(t.rank):
            if ax != d and not D.equal(t.shape[ax], first.shape[ax]):
                raise c.error(f"concat along dim {d}: dim {ax} differs "
                              f"({D.dim_str(first.shape[ax])} vs {D.dim_str(t.shape[ax])}) "
                              f"between {c.describe(0)} and {c.describe(i)}")
        total = D.norm(total + t.shape[d]) if not (isinstance(total, int) and isinstance(t.shape[d], int)) \
            else total + t.shape[d]
    return TensorType([total if ax == d else n for ax, n in enumerate(first.shape)], dtype)


def _split_emit(e: EmitCtx) -> str:
    sizes = list(e.attrs["sizes"])
    if len(sizes) == 1:
        return e.ins[0]
    return f"torch.split({e.ins[0]}, [{', '.join(e.dim(s) for s in sizes)}], dim={e.lit(e.attrs['dim'])})"


@op("split", emit=_split_emit)
def _split(c: InferCtx) -> list[TensorType]:
    """Cut x along attr ``dim`` into pieces of attr ``sizes`` (they must add up); one output per piece."""
    t = c.types[0]
    d = c.axis(c.attrs.get("dim", -1), t.rank)
    sizes = list(c.attrs["sizes"])
    if not sizes:
        raise c.error("split needs at least one piece")
    total = D.norm(sum(sympy.sympify(s) for s in sizes))
    if not D.equal(total, t.shape[d]):
        raise c.error(f"split: sizes {D.shape_str(sizes)} add up to {D.dim_str(total)}, "
                      f"but dim {d} of {c.describe(0)} is {D.dim_str(t.shape[d])}")
    return [t.with_shape([s if ax == d else n for ax, n in enumerate(t.shape)]) for s in sizes]
