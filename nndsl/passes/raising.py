"""Raise: hand-written spellings of standard ops -> the stdlib op, so ``claim`` finds its kernel.

* attention: ``softmax(q @ kᵀ * s [+ causal_mask(T)]) @ v`` with the scale on q, on k (before or
  after the transpose) or on the scores, as a multiply or a division (``/ sqrt(hd)``), or absent;
* softmax ``exp(z) / sum(exp(z))`` and log_softmax ``z - log(sum(exp(z)))``, with or without the
  max subtracted first (both are shift-invariant, so ``softmax(x - max(x))`` is ``softmax(x)``);
* layernorm ``(x - mean(x)) / sqrt(mean((x - mean(x))²) + eps)`` and rmsnorm
  ``x / sqrt(mean(x²) + eps)`` (or times ``1 / sqrt(...)``), then ``* w`` and ``+ b`` folded in.

Each raised node keeps the spans and the sub-graph it replaced. Runs after ``cse`` (a value
spelled twice must be one value) and ``canonicalize`` (axes are negative), before ``claim``.
"""
from __future__ import annotations

from typing import Optional

import sympy

from ..ir import dims as D
from ..ir.graph import Graph, Node, Value
from ..ops import registry
from .driver import apply_rules
from .pattern import O, OneOf, Reject, Rule, V, num_eq
from .result import PassResult


def _num(v) -> bool:
    return isinstance(v, (int, float, sympy.Expr)) and not isinstance(v, bool)



def _fuse(ed, m, op: str, inputs: list[Value], attrs: dict):
    """Replace the match by ``op``, unless an inner value is read elsewhere (then say so)."""
    esc = ed.escaping(m.nodes, m.root)
    if esc is not None:
        return Reject(f"the {esc.op} value inside it is used elsewhere")
    ctx = registry.InferCtx(op, [v.type for v in inputs], attrs)
    try:
        (t,) = registry.get(op).infer(ctx)
    except registry.InferError as e:
        return Reject(f"{op} does not take these inputs: {e.message}")
    if not t.same_as(m.root.outputs[0].type):
        return None
    return ed.fuse(m.root, m.nodes, op, inputs, attrs).out


# ------------------------------------------------------------------------------ softmax family
def _single_axis(dims) -> bool:
    return dims is not None and len(dims) == 1


def _softmax(ed, m):
    return _fuse(ed, m, "softmax", [m["z"]], {"dim": m.node("s").attrs["dims"][0]})


def _log_softmax(ed, m):
    return _fuse(ed, m, "log_softmax", [m["z"]], {"dim": m.node("s").attrs["dims"][0]})


def _drop_shift(ed, m):
    """softmax(x - max(x, dim)) -> softmax(x, dim): the shift cancels out."""
    if list(m.node("mx").attrs["dims"]) != [m.root.attrs["dim"]] or ed.escaping(m.nodes, m.root):
        return None
    return ed.fuse(m.root, m.nodes, m.root.op, [m["x"]], dict(m.root.attrs)).out


# ------------------------------------------------------------------------------------ norms
def _square(name: str):
    return OneOf(O.mul(V(name), V(name)), O.pow_s(V(name), value=num_eq(2)))


def _rsqrt_of(mean_sq):
    """sqrt(mean_sq + eps), the eps node captured as ``ve``."""
    return O.sqrt(O.add_s(mean_sq, value=_num).named("ve"))


_LAST = dict(dims=[-1], keepdim=True)
_XC = O.sub(V("x"), O.mean(V("x"), **_LAST)).named("xc")
_LN_DEN = _rsqrt_of(O.mean(_square("xc"), **_LAST))
_RMS_DEN = _rsqrt_of(O.mean(_square("x"), **_LAST))


def _eps(m) -> Optional[float]:
    v = m.node("ve").attrs["value"]
    try:
        return float(v)
    except TypeError:
        return None


def _norm(op: str):
    def rewrite(ed, m):
        eps = _eps(m)
        return None if eps is None else _fuse(ed, m, op, [m["x"]], {"eps": eps})

    return rewrite


def _affine(op: str):
    """norm(x, ...) * w or + b -> norm(x, ..., w|b) when w/b is a [D] vector of x's dtype."""

    def rewrite(ed, m):
        x, p = m["x"], m["p"]
        if p.type.rank != 1 or not D.equal(p.type.shape[0], x.type.shape[-1]) or p.type.dtype != x.type.dtype:
            return None
        return _fuse(ed, m, op, list(m.node("n").inputs) + [p], dict(m.node("n").attrs))

    return rewrite


# -------------------------------------------------------------------------------------- attention
def _peel_scale(ed, v: Value, nodes: list[Node], interior: bool = False) -> tuple[Value, object]:
    """Strip ``* c`` / ``/ c`` from ``v``: (the base value, the product of the factors).

    On q and k only single-use scales are taken (a shared ``q * c`` simply stays the query); on the
    scores (``interior``) every scale is, and ``_fuse`` refuses if one is read elsewhere.
    """
    f = sympy.Integer(1)
    while v.producer is not None and v.producer.op in ("mul_s", "div_s") and (interior or ed.single_use(v)) \
            and v.type.is_float:
        c = sympy.sympify(v.producer.attrs["value"])
        f = f * c if v.producer.op == "mul_s" else f / c
        nodes.append(v.producer)
        v = v.producer.inputs[0]
    return v, f


def _scores(ed, s: Value, nodes: list[Node]) -> Optional[tuple[Value, Value, object]]:
    """``q' @ k'ᵀ`` with scales peeled off every side: (q, k, scale), or None when s is not that."""
    base, c = _peel_scale(ed, s, nodes, interior=True)
    mm = base.producer
    if mm is None or mm.op != "matmul":
        return None
    q, cq = _peel_scale(ed, mm.inputs[0], nodes)
    kt, ckt = _peel_scale(ed, mm.inputs[1], nodes)
    tn = kt.producer
    if tn is None or tn.op != "transpose" or kt.type.rank < 2 or \
            sorted(a % kt.type.rank for a in (tn.attrs["a"], tn.attrs["b"])) != [kt.type.rank - 2, kt.type.rank - 1]:
        return None
    k, ck = _peel_scale(ed, tn.inputs[0], nodes)
    nodes += [mm, tn]
    return q, k, c * cq * ckt * ck


def _scale_attr(scale, head_dim) -> object:
    """None for the default 1/sqrt(E), a float for a number, a Reject for a symbolic scale."""
    if sympy.simplify(sympy.sympify(scale) - 1 / sympy.sqrt(sympy.sympify(head_dim))) == 0:
        return None
    scale = sympy.sympify(scale)
    if scale.is_number:
        return float(scale)
    return Reject(f"the scale {scale} depends on a symbolic dim")


def _attention(ed, m):
    nodes: list[Node] = []
    s, causal, mask = m["s"], False, None
    sn = s.producer
    if sn is not None and sn.op == "add":
        for scores, other in (sn.inputs, sn.inputs[::-1]):
            if _scores(ed, scores, []) is not None:
                s, mask = scores, other
                break
        else:
            return None
        if mask.producer is None or mask.producer.op != "causal_mask":
            return Reject("mask is not causal")
        causal = True
        nodes += [sn, mask.producer]
    found = _scores(ed, s, nodes)
    if found is None:
        return None
    q, k, scale = found
    v = m["v"]
    if causal:
        T = mask.producer.attrs["T"]
        if q.type.rank < 2 or not (D.equal(T, q.type.shape[-2]) and D.equal(T, k.type.shape[-2])):
            return Reject(f"the causal mask is {D.dim_str(T)} x {D.dim_str(T)}, not the sequence length")
    scale = _scale_attr(scale, q.type.shape[-1])
    if isinstance(scale, Reject):
        return scale
    m.take(*nodes)
    esc = ed.escaping(m.nodes, m.root)
    if esc is not None:
        return Reject("the attention weights (softmax) are used elsewhere" if esc.op == "softmax"
                      else "the attention scores are used elsewhere")
    return _fuse(ed, m, "attention", [q, k, v], {"causal": causal, "scale": scale, "dropout": 0.0})


RULES = [
    # softmax(q @ kᵀ * s [+ causal mask]) @ v -> attention(q, k, v, causal, scale)
    Rule("attention", O.matmul(O.softmax(V("s"), dim=-1), V("v")), _attention),
    # exp(z) / sum(exp(z), dim) -> softmax(z, dim)
    Rule("softmax", O.div(O.exp(V("z")).named("e"), O.sum(V("e"), keepdim=True, dims=_single_axis).named("s")),
         _softmax),
    # z - log(sum(exp(z), dim)) -> log_softmax(z, dim)
    Rule("log_softmax", O.sub(V("z"), O.log(O.sum(O.exp(V("z")), keepdim=True, dims=_single_axis).named("s"))),
         _log_softmax),
    # softmax(x - max(x, dim), dim) -> softmax(x, dim); the same for log_softmax
    Rule("softmax shift", O("softmax|log_softmax", O.sub(V("x"), O.max(V("x"), keepdim=True).named("mx"))),
         _drop_shift),
    # (x - mean(x)) / sqrt(mean((x - mean(x))²) + eps) -> layernorm(x, eps)
    Rule("layernorm", O.div(_XC, _LN_DEN), _norm("layernorm")),
    # (x - mean(x)) * (1 / sqrt(mean((x - mean(x))²) + eps)) -> layernorm(x, eps)
    Rule("layernorm", O.mul(_XC, O.rdiv_s(_LN_DEN, value=num_eq(1))), _norm("layernorm")),
    # x / sqrt(mean(x²) + eps) -> rmsnorm(x, eps)
    Rule("rmsnorm", O.div(V("x"), _RMS_DEN), _norm("rmsnorm")),
    # x * (1 / sqrt(mean(x²) + eps)) -> rmsnorm(x, eps)
    Rule("rmsnorm", O.mul(V("x"), O.rdiv_s(_RMS_DEN, value=num_eq(1))), _norm("rmsnorm")),
    # layernorm(x) * w -> layernorm(x, w); rmsnorm(x) * w -> rmsnorm(x, w)
    Rule("layernorm weight", O.mul(O.layernorm(V("x")).named("n"), V("p")), _affine("layernorm")),
    Rule("rmsnorm weight", O.mul(O.rmsnorm(V("x")).named("n"), V("p")), _affine("rmsnorm")),
    # layernorm(x, w) + b -> layernorm(x, w, b)
    Rule("layernorm bias", O.add(O.layernorm(V("x"), V()).named("n"), V("p")), _affine("layernorm")),
]


def raise_stdlib(g: Graph) -> PassResult:
    """Replace hand-written spellings by the stdlib op; after cse, before fuse_epilogues and claim."""
    return PassResult(g, apply_rules(g, RULES, "raise"))
