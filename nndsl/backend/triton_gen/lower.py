"""A fused region of IR ops -> the kernel IR (``kir``) of one generated kernel.

``LOWER`` is the table: one row per stdlib op a generated kernel computes, each building the op
from kernel-IR primitives (``gelu`` is ``0.5·x·(1 + erf(x/√2))``, ``mean`` is ``rsum(x) / C``).
Every primitive has a derivative row (``derivatives.py``), so every op here differentiates.
``supports(node, S)`` is the grouping pass's question: can a generated kernel with iteration
space ``S`` compute this node (op in the table, floating-point, a reduction over the last axis
only, scalars that are numbers or dims)?

Scalars: a number becomes a constant in the kernel; a number that depends on a symbolic dim
(``x / T``) becomes a run-time argument, so one kernel serves every size.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import sympy

from ...ir import dims as D
from ...ir.graph import Node, Region
from .kir import Builder, InputSlot, KernelSpec, KNode, OutputSlot

FLOATS = ("f32", "f16", "bf16", "f64")
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


class Ctx:
    """What a LOWER row gets: the builder, scalar handling and the dropout slots."""

    def __init__(self, b: Builder):
        self.b = b
        self.scalars: list[Any] = []  # sympy expressions over dims, one per run-time scalar slot
        self.dropouts: list[float] = []

    def scalar(self, v: Any) -> KNode:
        """A constant, or a run-time scalar slot when ``v`` depends on a symbolic dim."""
        if isinstance(v, sympy.Expr):
            if v.free_symbols:
                for i, s in enumerate(self.scalars):
                    if sympy.simplify(s - v) == 0:
                        return self.b.node("scalar", arg=i, row=True)
                self.scalars.append(v)
                return self.b.node("scalar", arg=len(self.scalars) - 1, row=True)
            v = float(v)
        return self.b.const(float(v))


def _gelu(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    if a.get("approximate", "none") == "tanh":
        inner = b.mul(b.const(_SQRT_2_PI), b.add(x, b.mul(b.const(0.044715), b.mul(x, b.mul(x, x)))))
        return b.mul(b.mul(b.const(0.5), x), b.add(b.const(1.0), b.f("tanh", inner)))
    return b.mul(b.mul(b.const(0.5), x), b.add(b.const(1.0), b.f("erf", b.mul(x, b.const(_SQRT1_2)))))


def _pow_s(c: Ctx, x: KNode, a: dict) -> KNode:
    s = c.scalar(a["value"])
    return c.b.f("powc", x, arg=s.arg) if s.op == "const" else c.b.f("pow", x, s)


def _dropout(c: Ctx, x: KNode, a: dict) -> KNode:
    c.dropouts.append(float(a["p"]))
    return c.b.mul(x, c.b.node("dropout", arg=len(c.dropouts) - 1, row=False))


def _relu(c: Ctx, x: KNode, a: dict) -> KNode:
    zero = c.b.const(0.0)
    return c.b.f("where", c.b.f("gt", x, zero), x, zero)


def _mean(c: Ctx, x: KNode, a: dict) -> KNode:
    return c.b.div(c.b.f("rsum", x), c.b.node("ncols", row=True))


def _min(c: Ctx, x: KNode, a: dict) -> KNode:
    return c.b.neg(c.b.f("rmax", c.b.neg(x)))


def _cast(c: Ctx, x: KNode, a: dict) -> KNode:
    return c.b.f("cast", x, arg=a["dtype"])


def _scalar_op(form: Callable[[Builder, KNode, KNode], KNode]):
    return lambda c, x, a: form(c.b, x, c.scalar(a["value"]))


def _cmp(op: str):
    """A comparison of two tensors, or of a tensor with the number attr ``value``."""
    def row(c: Ctx, x: KNode, *rest):
        *other, a = rest
        y = other[0] if other else c.scalar(a["value"])
        return c.b.f(op, x, y)
    return row


def _where(c: Ctx, cond: KNode, *rest) -> KNode:
    *tensors, a = rest
    it = iter(tensors)
    branches = [next(it) if a.get(k) is None else c.scalar(a[k]) for k in ("a", "b")]
    return c.b.f("where", cond, *branches)


def _clamp(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    if a.get("min") is not None:
        lo = c.scalar(a["min"])
        x = b.f("where", b.f("lt", x, lo), lo, x)
    if a.get("max") is not None:
        hi = c.scalar(a["max"])
        x = b.f("where", b.f("gt", x, hi), hi, x)
    return x


def _leaky_relu(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    return b.f("where", b.f("gt", x, b.const(0.0)), x, b.mul(x, b.const(float(a.get("slope", 0.01)))))


def _elu(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    neg = b.mul(b.const(float(a.get("alpha", 1.0))), b.sub(b.f("exp", x), b.const(1.0)))
    return b.f("where", b.f("gt", x, b.const(0.0)), x, neg)


def _softplus(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    beta, thr = b.const(float(a.get("beta", 1.0))), b.const(float(a.get("threshold", 20.0)))
    bx = b.mul(x, beta)
    soft = b.div(b.f("log", b.add(b.const(1.0), b.f("exp", bx))), beta)
    return b.f("where", b.f("gt", bx, thr), x, soft)


def _hardswish(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    r6 = b.f("where", b.f("lt", x, b.const(-3.0)), b.const(0.0),
             b.f("where", b.f("le", x, b.const(3.0)), b.add(x, b.const(3.0)), b.const(6.0)))
    return b.div(b.mul(x, r6), b.const(6.0))


def _var(c: Ctx, x: KNode, a: dict) -> KNode:
    b = c.b
    n = b.node("ncols", row=True)
    d = b.sub(x, b.div(b.f("rsum", x), n))
    return b.div(b.f("rsum", b.mul(d, d)), b.sub(n, b.const(float(a.get("correction", 1)))))


def _layernorm(c: Ctx, x: KNode, *rest) -> KNode:
    *wb, a = rest
    b = c.b
    n = b.node("ncols", row=True)
    d = b.sub(x, b.div(b.f("rsum", x), n))
    var = b.div(b.f("rsum", b.mul(d, d)), n)
    y = b.mul(d, b.f("rsqrt", b.add(var, b.const(float(a.get("eps", 1e-5))))))
    if wb:
        y = b.mul(y, wb[0])
    if len(wb) > 1:
        y = b.add(y, wb[1])
    return y


def _rmsnorm(c: Ctx, x: KNode, *rest) -> KNode:
    *w, a = rest
    b = c.b
    ms = b.div(b.f("rsum", b.mul(x, x)), b.node("ncols", row=True))
    y = b.mul(x, b.f("rsqrt", b.add(ms, b.const(float(a.get("eps", 1e-6))))))
    return b.mul(y, w[0]) if w else y


def _softmax(c: Ctx, x: KNode, a: dict, log: bool = False) -> KNode:
    b = c.b
    z = b.sub(x, b.f("rmax", x))
    e = b.f("exp", z)
    s = b.f("rsum", e)
    return b.sub(z, b.f("log", s)) if log else b.div(e, s)


# stdlib op -> how a generated kernel computes it: (ctx, operand kernel values..., attrs) -> value
LOWER: dict[str, Callable[..., KNode]] = {
    "add": lambda c, x, y, a: c.b.add(x, y),
    "sub": lambda c, x, y, a: c.b.sub(x, y),
    "mul": lambda c, x, y, a: c.b.mul(x, y),
    "div": lambda c, x, y, a: c.b.div(x, y),
    "pow": lambda c, x, y, a: c.b.f("pow", x, y),
    "maximum": lambda c, x, y, a: c.b.f("maximum", x, y),
    "minimum": lambda c, x, y, a: c.b.f("minimum", x, y),
    "add_s": _scalar_op(lambda b, x, s: b.add(x, s)),
    "sub_s": _scalar_op(lambda b, x, s: b.sub(x, s)),
    "mul_s": _scalar_op(lambda b, x, s: b.mul(x, s)),
    "div_s": _scalar_op(lambda b, x, s: b.div(x, s)),
    "rsub_s": _scalar_op(lambda b, x, s: b.sub(s, x)),
    "rdiv_s": _scalar_op(lambda b, x, s: b.div(s, x)),
    "pow_s": _pow_s,
    "neg": lambda c, x, a: c.b.neg(x),
    "relu": _relu,
    "silu": lambda c, x, a: c.b.mul(x, c.b.f("sigmoid", x)),
    "sigmoid": lambda c, x, a: c.b.f("sigmoid", x),
    "tanh": lambda c, x, a: c.b.f("tanh", x),
    "exp": lambda c, x, a: c.b.f("exp", x),
    "log": lambda c, x, a: c.b.f("log", x),
    "sqrt": lambda c, x, a: c.b.f("sqrt", x),
    "rsqrt": lambda c, x, a: c.b.f("rsqrt", x),
    "abs": lambda c, x, a: c.b.f("abs", x),
    "gelu": _gelu,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "softplus": _softplus,
    "hardswish": _hardswish,
    "sin": lambda c, x, a: c.b.f("sin", x),
    "cos": lambda c, x, a: c.b.f("cos", x),
    "clamp": _clamp,
    "where": _where,
    **{cmp: _cmp(cmp) for cmp in ("gt", "ge", "lt", "le", "eq", "ne")},
    "cast": _cast,
    "dropout": _dropout,
    # reductions over the last axis
    "sum": lambda c, x, a: c.b.f("rsum", x),
    "mean": _mean,
    "max": lambda c, x, a: c.b.f("rmax", x),
    "min": _min,
    "var": _var,
    "std": lambda c, x, a: c.b.f("sqrt", _var(c, x, a)),
    # over the last axis (the regions of the row kernels a generated kernel takes over hold these)
    "layernorm": _layernorm,
    "rmsnorm": _rmsnorm,
    "softmax": _softmax,
    "log_softmax": lambda c, x, a: _softmax(c, x, a, log=True),
}
REDUCE_OPS = ("sum", "mean", "max", "min", "var", "std")
# hand-written row kernels (passes.claim) a generated kernel may take over, with the chain before or
# after them: their output has the input's shape, computed from reductions over the last axis
ROW_OPS = ("layernorm_kernel", "rmsnorm_kernel", "softmax_kernel", "log_softmax_kernel",
           "layernorm", "rmsnorm", "softmax", "log_softmax")
COMPARISONS = ("gt", "ge", "lt", "le", "eq", "ne")


# ---------------------------------------------------------------------------------- membership
def reduces_last_axis(node: Node) -> bool:
    """A reduction over exactly the last axis of its (rank >= 1) input."""
    t = node.inputs[0].type
    dims = node.attrs.get("dims")
    if t.rank == 0:
        return False
    if dims is None:
        return t.rank == 1
    dims = [dims] if isinstance(dims, int) else list(dims)
    return len(dims) == 1 and dims[0] % t.rank == t.rank - 1


def supports(node: Node) -> Optional[str]:
    """None when a generated kernel computes ``node``; else why not (for --explain)."""
    if node.op not in LOWER and node.op not in ROW_OPS:
        return f"{node.op} has no generated-kernel row"
    ins, outs = [v.type.dtype for v in node.inputs], [v.type.dtype for v in node.outputs]
    if node.op in COMPARISONS:
        ins, outs = ins, ["f32" if d == "bool" else d for d in outs]
    elif node.op == "where" and ins and ins[0] == "bool":
        ins = ins[1:]
    elif node.op == "cast" and ins and ins[0] == "bool":
        ins = ins[1:]
    bad = [d for d in ins + outs if d not in FLOATS]
    if bad:
        return f"{bad[0]} values"
    if node.op in ROW_OPS and node.inputs[0].type.rank == 0:
        return "a scalar input"
    if node.op in ("softmax", "log_softmax") and node.attrs.get("dim", -1) % node.inputs[0].type.rank != \
            node.inputs[0].type.rank - 1:
        return f"{node.op} over an axis other than the last"
    if node.op in REDUCE_OPS and not reduces_last_axis(node):
        return f"{node.op} over an axis other than the last"
    if node.op == "cast" and node.attrs.get("dtype") not in FLOATS:
        return "cast to a non-float dtype"
    for key in ("value", "a", "b", "min", "max"):
        v = node.attrs.get(key)
        if v is None or key != "value" and node.op not in ("where", "clamp"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, sympy.Expr)):
            return "a scalar that is not a number"
        if not isinstance(v, sympy.Expr) and not math.isfinite(float(v)):
            return "a non-finite scalar"
    if node.op == "dropout" and not 0.0 <= float(node.attrs.get("p", 0.0)) < 1.0:
        return "dropout with p = 1"
    return None


# ------------------------------------------------------------------------------------- lowering
def lower_region(region: Region, S: Sequence, name: str = "generated") -> tuple[KernelSpec, list]:
    """The kernel spec computing ``region`` over iteration space ``S``, and the run-time scalars
    (sympy expressions over dims, in slot order) the call passes."""
    S = tuple(S)
    rowshape = S[:-1]
    b = Builder()
    c = Ctx(b)
    slots: list[InputSlot] = []
    slot_of: dict[tuple[int, bool], int] = {}
    placeholder = {p.id: i for i, p in enumerate(region.inputs)}
    vals: dict[int, KNode] = {}
    compute = "f64" if any(v.type.dtype == "f64" for v in region.inputs) or any(
        v.type.dtype == "f64" for n in region.nodes for v in n.outputs) else "f32"

    def operand(v, rowvec: bool) -> KNode:
        if v.id in vals:
            return vals[v.id]
        i = placeholder[v.id]
        key = (i, rowvec)
        if key not in slot_of:
            shape = tuple(v.type.shape) + ((1,) if rowvec else ())
            row = len(shape) == 0 or D.equal(shape[-1], 1)
            slot_of[key] = len(slots)
            slots.append(InputSlot(i, v.type.dtype, rowvec, row))
        s = slots[slot_of[key]]
        return b.load(slot_of[key], s.row)

    for n in region.nodes:
        if n.op == "param":
            raise ValueError("a generated region reads parameters through its inputs")
        out_shape = tuple(n.outputs[0].type.shape)
        rowvec = len(S) > 0 and _same(out_shape, rowshape) and not _same(out_shape, S)
        if n.op in REDUCE_OPS or n.op in ROW_OPS:
            rowvec = False  # a reduction reads a full value
        args = [operand(v, rowvec) for v in n.inputs]
        vals[n.outputs[0].id] = LOWER[n.op](c, *args, n.attrs)

    outs = []
    for v in region.outputs:
        k = vals[v.id] if v.id in vals else operand(v, False)
        shape = tuple(v.type.shape)
        full = _same(shape, S)
        outs.append(OutputSlot(k, v.type.dtype, full, full or not _same(shape, rowshape)))
    spec = KernelSpec(tuple(slots), tuple(outs), len(c.scalars), tuple(c.dropouts), compute, name)
    return spec, list(c.scalars)


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(D.equal(x, y) for x, y in zip(a, b))
