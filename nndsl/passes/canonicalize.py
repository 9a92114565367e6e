"""Canonicalize: one spelling for each computation, bit-exact (no reassociation, no new rounding).

Axes become negative (``softmax(x, dim=2)`` on a rank-3 x is ``dim=-1``; a transpose lists its
axes as (smaller, larger)), identities vanish (``x * 1``, ``x / 1``, ``x - 0``, ``x ** 1``, a cast
to the same dtype, a reshape to the same shape, ``--x``, a transpose undone by the same
transpose). Later passes then match one form. Runs after ``dce``, before ``cse``.

Tables built from sizes alone (``rope_angles``, whose input only says which device and precision)
read one witness: each reads the input of the first such table of the same dtype, so ``cse`` then
builds the table once for the whole model instead of once per rotary call.
"""
from __future__ import annotations

from typing import Optional

from ..ir import dims as D
from ..ir.graph import Graph, Value
from .driver import apply_rules
from .pattern import O, Rule, V, num_eq
from .result import PassResult


def _same_type(ed, m) -> Optional[Value]:
    """The captured ``x`` when it has exactly the root's type (an identity), else None."""
    x = m["x"]
    return x if x.type.same_as(m.root.outputs[0].type) else None


def _neg_axis(d: int, rank: int) -> int:
    return d - rank if d >= 0 else d


def _softmax_dim(ed, m):
    n = m.root
    return ed.insert_before(n, n.op, n.inputs, {**n.attrs, "dim": _neg_axis(n.attrs["dim"], n.inputs[0].type.rank)}).out


def _reduce_dims(ed, m):
    n = m.root
    rank = n.inputs[0].type.rank
    dims = tuple(sorted(_neg_axis(d, rank) for d in n.attrs["dims"]))
    return ed.insert_before(n, n.op, n.inputs, {**n.attrs, "dims": dims}).out


def _transpose_axes(ed, m):
    n = m.root
    rank = n.inputs[0].type.rank
    a, b = sorted((_neg_axis(n.attrs["a"], rank), _neg_axis(n.attrs["b"], rank)))
    if a == b:
        return m["x"]
    return ed.insert_before(n, "transpose", n.inputs, {"a": a, "b": b}).out


def _transpose_twice(ed, m):
    inner, outer = m.node("t").attrs, m.root.attrs
    return m["x"] if (inner["a"], inner["b"]) == (outer["a"], outer["b"]) else None


def _reshape_noop(ed, m):
    t, x = m.root.outputs[0].type, m["x"].type
    return m["x"] if t.rank == x.rank and all(D.equal(a, b) for a, b in zip(t.shape, x.shape)) else None


def _nonneg_axes(dims) -> bool:
    return dims is not None and any(d >= 0 for d in ([dims] if isinstance(dims, int) else dims))



RULES = [
    # softmax / log_softmax over a non-negative axis -> the same axis counted from the end
    Rule("softmax axis", O("softmax|log_softmax", V(), dim=lambda d: d >= 0), _softmax_dim, fusion=False),
    # reductions over non-negative axes -> the same axes counted from the end, sorted
    Rule("reduction axes", O("sum|mean|max|min", V(), dims=_nonneg_axes), _reduce_dims, fusion=False),
    # transpose(x, a, b) -> negative axes, smaller first; transpose(x, a, a) -> x
    Rule("transpose axes", O.transpose(V("x")).where(
        lambda v: (lambda t: t.attrs["a"] >= 0 or t.attrs["b"] >= 0 or t.attrs["a"] > t.attrs["b"])(v.producer)),
        _transpose_axes, fusion=False),
    # transpose(transpose(x, a, b), a, b) -> x
    Rule("transpose twice", O.transpose(O.transpose(V("x")).named("t")), _transpose_twice, fusion=False),
    # x * 1, x / 1, x ** 1, x - 0 -> x (when the type is unchanged)
    Rule("mul by one", O("mul_s|div_s|pow_s", V("x"), value=num_eq(1)), _same_type, fusion=False),
    Rule("minus zero", O.sub_s(V("x"), value=num_eq(0)), _same_type, fusion=False),
    # --x -> x
    Rule("double negation", O.neg(O.neg(V("x"))), _same_type, fusion=False),
    # cast to the dtype it has, reshape to the shape it has -> x
    Rule("no-op cast", O.cast(V("x")), _same_type, fusion=False),
    Rule("no-op reshape", O("reshape|flatten", V("x")), _reshape_noop, fusion=False),
]


def _one_witness(g: Graph) -> bool:
    """Every rope_angles table reads the input of the first table of its input's dtype."""
    first: dict[str, Value] = {}
    changed = False
    for n in g.nodes:
        if n.op != "rope_angles":
            continue
        x = n.inputs[0]
        w = first.setdefault(x.type.dtype, x)
        if w is not x:
            n.inputs = [w]
            changed = True
    return changed


def canonicalize(g: Graph) -> PassResult:
    """Rewrite to canonical, bit-identical spellings; runs before cse and raise."""
    changed = apply_rules(g, RULES, "canonicalize")
    return PassResult(g, _one_witness(g) or changed)
