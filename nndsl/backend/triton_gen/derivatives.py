"""Derivative rows for the kernel IR, and the backward kernel built from them.

``GRAD`` has one row per primitive: given the builder, the node, its operands and the gradient
``g`` flowing into it, the row returns each operand's share (None: no gradient, as for the
condition of a ``where``). The rows follow PyTorch's own formulas where they make a choice
(``maximum`` splits a tie's gradient in half, ``amax`` spreads it evenly over the tied elements,
``pow`` is 0 where the exponent is 0).

``backward_spec(spec, present, need)`` builds the backward kernel of a forward spec: its inputs
are the forward's inputs followed by the output gradients that exist (``present``); it recomputes
the forward in registers (the forward nodes are shared, never saved) and returns the gradient
of every input slot in ``need``. A row value used by full values receives the *row sum* of its
shares (a reduction in the backward kernel); a full value fed by a row value receives it
broadcast. A primitive without a row raises ``NoDerivative``: the caller then falls back to
PyTorch autograd over the reference (``--explain`` says so).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

from .kir import Builder, InputSlot, KernelSpec, KNode, OutputSlot, topo

_2_SQRT_PI = 2.0 / math.sqrt(math.pi)


class NoDerivative(Exception):
    """A primitive of the region has no derivative row."""


def _where0(b: Builder, cond: KNode, g: KNode) -> KNode:
    return b.f("where", cond, g, b.const(0.0))


def _max_rows(b: Builder, n: KNode, g: KNode, larger: bool):
    """maximum (minimum): the larger (smaller) operand takes g; a tie splits it in half."""
    x, y = n.args
    half = b.mul(g, b.const(0.5))
    cmp_x = b.f("gt", x, y) if larger else b.f("gt", y, x)  # x wins
    cmp_y = b.f("gt", y, x) if larger else b.f("gt", x, y)
    tie = b.f("eq", x, y)
    return (b.f("where", tie, half, _where0(b, cmp_x, g)), b.f("where", tie, half, _where0(b, cmp_y, g)))


def _pow_rows(b: Builder, n: KNode, g: KNode):
    x, e = n.args
    zero = b.const(0.0)
    dx = b.f("where", b.f("eq", e, zero), zero, b.mul(g, b.mul(e, b.f("pow", x, b.sub(e, b.const(1.0))))))
    # d/de x^e = x^e·log x, 0 where x = 0 and e >= 0 (PyTorch's mask)
    dlog = b.mul(g, b.mul(n, b.f("log", x)))
    de = b.f("where", b.f("eq", x, zero), b.f("where", b.f("ge", e, zero), zero, dlog), dlog)
    return dx, de


def _powc_rows(b: Builder, n: KNode, g: KNode):
    (x,) = n.args
    e = float(n.arg)
    if e == 0.0:
        return (None,)
    if e == 1.0:
        return (g,)
    return (b.mul(g, b.mul(b.const(e), b.f("powc", x, arg=e - 1.0))),)


def _rmax_rows(b: Builder, n: KNode, g: KNode):
    (x,) = n.args
    hit = b.f("where", b.f("eq", x, n), b.const(1.0), b.const(0.0))
    return (b.div(b.mul(g, hit), b.f("rsum", hit)),)


# primitive -> its derivative row: (builder, node, g) -> one share per operand (None: none)
GRAD: dict[str, Callable[[Builder, KNode, KNode], tuple]] = {
    "add": lambda b, n, g: (g, g),
    "sub": lambda b, n, g: (g, b.neg(g)),
    "mul": lambda b, n, g: (b.mul(g, n.args[1]), b.mul(g, n.args[0])),
    "div": lambda b, n, g: (b.div(g, n.args[1]), b.neg(b.div(b.mul(g, n), n.args[1]))),
    "neg": lambda b, n, g: (b.neg(g),),
    "maximum": lambda b, n, g: _max_rows(b, n, g, True),
    "minimum": lambda b, n, g: _max_rows(b, n, g, False),
    "pow": _pow_rows,
    "powc": _powc_rows,
    # the gradient of a value held in a narrow dtype is held in that dtype too (PyTorch rounds it)
    "cast": lambda b, n, g: (b.f("cast", g, arg=n.arg),),
    "exp": lambda b, n, g: (b.mul(g, n),),
    "log": lambda b, n, g: (b.div(g, n.args[0]),),
    "sqrt": lambda b, n, g: (b.div(g, b.mul(b.const(2.0), n)),),
    "rsqrt": lambda b, n, g: (b.mul(g, b.mul(b.const(-0.5), b.div(n, n.args[0]))),),
    "sigmoid": lambda b, n, g: (b.mul(g, b.mul(n, b.sub(b.const(1.0), n))),),
    "tanh": lambda b, n, g: (b.mul(g, b.sub(b.const(1.0), b.mul(n, n))),),
    "erf": lambda b, n, g: (b.mul(g, b.mul(b.const(_2_SQRT_PI),
                                           b.f("exp", b.neg(b.mul(n.args[0], n.args[0]))))),),
    "abs": lambda b, n, g: (b.mul(g, b.f("sign", n.args[0])),),
    "sign": lambda b, n, g: (None,),
    "where": lambda b, n, g: (None, _where0(b, n.args[0], g), b.f("where", n.args[0], b.const(0.0), g)),
    "sin": lambda b, n, g: (b.mul(g, b.f("cos", n.args[0])),),
    "cos": lambda b, n, g: (b.neg(b.mul(g, b.f("sin", n.args[0]))),),
    **{cmp: (lambda b, n, g: (None, None)) for cmp in ("gt", "ge", "lt", "le", "eq", "ne")},
    "rsum": lambda b, n, g: (g,),
    "rmax": _rmax_rows,
}


def backward_spec(spec: KernelSpec, present: Sequence[bool], need: Sequence[bool]) -> KernelSpec:
    """The backward kernel of ``spec``: inputs = spec's inputs + the present output gradients;
    outputs = the gradient of each input slot in ``need``, full or row like the slot's load."""
    b = Builder()
    fwd = _rebuild(b, spec)  # the forward nodes in this builder (shared with the adjoints)
    slots = list(spec.inputs)
    adj: dict[int, KNode] = {}
    for j, (o, has) in enumerate(zip(spec.outputs, present)):
        if not has:
            continue
        node = fwd[id(o.node)]
        g = b.load(len(slots), not o.full)  # a row output's gradient has the row shape
        slots.append(InputSlot(-1 - j, o.dtype, not o.full and not o.keepdim, not o.full))
        _accumulate(b, adj, node, g)
    nodes = topo(fwd[id(o.node)] for o in spec.outputs)
    for n in reversed(nodes):
        g = adj.get(id(n))
        if g is None or not n.args:
            continue
        row = GRAD.get(n.op)
        if row is None:
            raise NoDerivative(n.op)
        for a, share in zip(n.args, row(b, n, g)):
            if share is not None:
                _accumulate(b, adj, a, share)
    outs = []
    loads = {n.arg: n for n in nodes if n.op == "load"}
    for i, (s, want) in enumerate(zip(spec.inputs, need)):
        if not want:
            continue
        ld = loads.get(i)
        g = adj.get(id(ld)) if ld is not None else None
        outs.append(OutputSlot(g if g is not None else b.const(0.0), spec.compute, not s.row, True))
    return KernelSpec(tuple(slots), tuple(outs), spec.n_scalars, spec.dropouts, spec.compute,
                      f"{spec.name}_bwd")


def _accumulate(b: Builder, adj: dict, node: KNode, share: KNode) -> None:
    """adj[node] += share, summing a full share over the row when the node is a row value."""
    if node.row and not share.row:
        share = b.f("rsum", share)
    prev = adj.get(id(node))
    adj[id(node)] = share if prev is None else b.add(prev, share)


def _rebuild(b: Builder, spec: KernelSpec) -> dict[int, KNode]:
    """Copy the forward DAG into builder ``b``; old node id -> new node."""
    m: dict[int, KNode] = {}
    for n in spec.nodes():
        m[id(n)] = b.node(n.op, *(m[id(a)] for a in n.args), arg=n.arg, row=n.row)
    return m


def differentiable(spec: KernelSpec) -> Optional[str]:
    """None when every primitive of ``spec`` has a derivative row, else the first one without."""
    for n in spec.nodes():
        if n.args and n.op not in GRAD:
            return n.op
    return None
