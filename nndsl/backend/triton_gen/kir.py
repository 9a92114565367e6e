"""Kernel IR: the expression DAG one generated kernel computes, and the spec that describes it.

A generated kernel walks an *iteration space* ``S`` (the shape of the region it replaces), seen as
``[R, C]``: ``C`` the last axis, ``R`` the product of the others. Every kernel value is either

* **full** — one number per element ``(r, c)``; or
* **row** — one number per row ``r`` (a reduction over the last axis, what is computed from row
  values only, an input whose last axis is 1, a constant).

Nodes (``KNode``) are interned by a ``Builder``, so building the same expression twice gives the
same node: the DAG is its own common-subexpression table. The ops (``PRIMS``) are few and each
has a Triton spelling (``source.py``), a PyTorch spelling (``reference.py``) and a derivative row
(``derivatives.py``); every pointwise op of the stdlib lowers to them (``lower.py``).

A ``KernelSpec`` is everything a kernel needs and nothing about sizes: the input slots (which
region input, its dtype, how it lines up with ``S``), the outputs, the number of run-time scalars
(dim-dependent numbers such as ``1/T``), the dropout probabilities, the compute dtype. Its
``signature()`` is canonical text: the cache key (``cache.py``) and the registry key hash it, so
identical regions — the six blocks of a GPT — share one kernel.
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Optional

# op -> arity; "leaf" ops take their meaning from ``arg``
PRIMS: dict[str, int] = {
    # leaves
    "load": 0,        # arg: input slot
    "const": 0,       # arg: a finite float
    "scalar": 0,      # arg: run-time scalar slot (a dim-dependent number)
    "ncols": 0,       # C, the length of a row (for means)
    "dropout": 0,     # arg: (dropout slot): 1/(1-p) where the element survives, 0 where it is dropped
    # arithmetic
    "add": 2, "sub": 2, "mul": 2, "div": 2, "neg": 1,
    "maximum": 2, "minimum": 2, "pow": 2,
    "powc": 1,        # arg: a constant exponent
    "cast": 1,        # arg: a dtype name: round to it, compute on
    # functions
    "exp": 1, "log": 1, "sqrt": 1, "rsqrt": 1, "sigmoid": 1, "tanh": 1, "erf": 1, "abs": 1, "sign": 1,
    "sin": 1, "cos": 1,
    # comparisons (bool values) and selection
    "gt": 2, "ge": 2, "lt": 2, "le": 2, "eq": 2, "ne": 2, "where": 3,
    # reductions over the last axis: full -> row
    "rsum": 1, "rmax": 1,
}
BOOL_OPS = ("gt", "ge", "lt", "le", "eq", "ne")
REDUCTIONS = ("rsum", "rmax")
LEAVES = tuple(op for op, n in PRIMS.items() if n == 0)


@dataclass(frozen=True, eq=False)
class KNode:
    op: str
    args: tuple = ()
    arg: Any = None
    row: bool = False  # True: one value per row (or a constant); False: one per element

    def __repr__(self) -> str:
        a = "" if self.arg is None else f"[{self.arg}]"
        return f"{self.op}{a}({', '.join(map(repr, self.args))})"


class Builder:
    """Makes interned KNodes (same op, args and arg -> the same node) with light folding."""

    def __init__(self):
        self._memo: dict[tuple, KNode] = {}

    def node(self, op: str, *args: KNode, arg: Any = None, row: Optional[bool] = None) -> KNode:
        if op not in PRIMS:
            raise KeyError(f"kernel IR has no op {op!r}")
        if len(args) != PRIMS[op]:
            raise ValueError(f"{op} takes {PRIMS[op]} operands, got {len(args)}")
        if row is None:
            row = True if op in REDUCTIONS else all(a.row for a in args)
        key = (op, tuple(id(a) for a in args), _hashable(arg), row)
        n = self._memo.get(key)
        if n is None:
            n = self._memo[key] = KNode(op, tuple(args), arg, row)
        return n

    # -- leaves --------------------------------------------------------------------------------
    def const(self, v: float) -> KNode:
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"a kernel constant must be finite, got {v}")
        return self.node("const", arg=v, row=True)

    def load(self, slot: int, row: bool) -> KNode:
        return self.node("load", arg=slot, row=row)

    # -- arithmetic with the obvious identities folded -------------------------------------------
    def add(self, a: KNode, b: KNode) -> KNode:
        if _is(a, 0.0):
            return b
        if _is(b, 0.0):
            return a
        return self.node("add", a, b)

    def sub(self, a: KNode, b: KNode) -> KNode:
        return a if _is(b, 0.0) else self.node("sub", a, b)

    def mul(self, a: KNode, b: KNode) -> KNode:
        if _is(a, 1.0):
            return b
        if _is(b, 1.0):
            return a
        return self.node("mul", a, b)

    def div(self, a: KNode, b: KNode) -> KNode:
        return a if _is(b, 1.0) else self.node("div", a, b)

    def neg(self, a: KNode) -> KNode:
        return self.node("neg", a)

    def f(self, op: str, *args: KNode, arg: Any = None) -> KNode:
        return self.node(op, *args, arg=arg)


def _is(n: KNode, v: float) -> bool:
    return n.op == "const" and n.arg == v


def _hashable(arg: Any) -> Any:
    return tuple(arg) if isinstance(arg, list) else arg


def is_bool(n: KNode, spec: "KernelSpec") -> bool:
    """A bool value: a comparison, or the load of a bool input."""
    return n.op in BOOL_OPS or (n.op == "load" and spec.inputs[n.arg].dtype == "bool")


def topo(outputs) -> list[KNode]:
    """Every node the outputs depend on, operands before users."""
    seen: set[int] = set()
    order: list[KNode] = []
    stack = [(n, False) for n in reversed(list(outputs))]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        stack.extend((a, False) for a in reversed(n.args) if id(a) not in seen)
    return order


# ------------------------------------------------------------------------------------------ specs
@dataclass(frozen=True)
class InputSlot:
    src: int  # which input of the fused node
    dtype: str  # f32 f16 bf16 f64
    rowvec: bool = False  # lines up with S[:-1] (a value used beside non-keepdim row values): x[..., None]
    row: bool = False  # its last axis (after lining up) is 1: loaded once per row


@dataclass(frozen=True)
class OutputSlot:
    node: KNode
    dtype: str
    full: bool = True  # stored per element (shape S); else once per row
    keepdim: bool = True  # a row output: shape S[:-1] + [1] (True) or S[:-1] (False)


@dataclass(frozen=True)
class KernelSpec:
    inputs: tuple  # of InputSlot
    outputs: tuple  # of OutputSlot
    n_scalars: int = 0
    dropouts: tuple = ()  # p of each dropout slot
    compute: str = "f32"  # f32, or f64 when an input is f64
    name: str = "generated"  # a readable stem for the kernel's name (the ops it covers)

    # derived once per spec (a spec is immutable; launches read these on every call)
    @functools.cached_property
    def _nodes(self) -> list[KNode]:
        return topo(o.node for o in self.outputs)

    @functools.cached_property
    def has_reduction(self) -> bool:
        return any(n.op in REDUCTIONS for n in self._nodes)

    def nodes(self) -> list[KNode]:
        return self._nodes

    @functools.cached_property
    def _signature(self) -> str:
        idx: dict[int, int] = {}
        lines = [f"compute {self.compute}", f"scalars {self.n_scalars}",
                 f"dropouts {' '.join(repr(float(p)) for p in self.dropouts)}"]
        lines += [f"in {s.src} {s.dtype} rowvec={int(s.rowvec)} row={int(s.row)}" for s in self.inputs]
        for i, n in enumerate(self.nodes()):
            idx[id(n)] = i
            arg = "" if n.arg is None else f" {n.arg!r}"
            lines.append(f"%{i} = {n.op}{arg} row={int(n.row)} ({' '.join(f'%{idx[id(a)]}' for a in n.args)})")
        lines += [f"out %{idx[id(o.node)]} {o.dtype} full={int(o.full)} keepdim={int(o.keepdim)}"
                  for o in self.outputs]
        return "\n".join(lines)

    def signature(self) -> str:
        """Canonical text of the kernel: equal for equal kernels, whatever node identities."""
        return self._signature

    @functools.cached_property
    def _key(self) -> str:
        return f"{self.name}_{hashlib.sha256(self._signature.encode()).hexdigest()[:16]}"

    def key(self) -> str:
        """A short stable name: readable stem + hash of the signature."""
        return self._key
