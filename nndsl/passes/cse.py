"""Common-subexpression elimination over pure ops.

Two nodes with the same op, the same inputs (either order for a commutative op) and equal attrs
compute the same value: the later one is dropped and its readers read the earlier one. Only pure
ops merge (``ops.meta``): two dropouts, two batchnorms, two attentions with dropout never do.
Runs after ``canonicalize`` (which puts axes in one form, so more nodes compare equal) and
before ``raise`` (whose patterns expect a value computed twice to be one value).
"""
from __future__ import annotations

from typing import Any

from ..ir.graph import Graph, Node
from ..ops.meta import is_pure
from .pattern import COMMUTATIVE
from .result import PassResult
from .rewrite import Editor


def _freeze(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__,) + tuple(_freeze(v) for v in x)
    return (type(x).__name__, repr(x))


def _key(n: Node) -> tuple:
    ids = [v.id for v in n.inputs]
    if n.op in COMMUTATIVE:
        ids.sort()
    return n.op, tuple(ids), _freeze(n.attrs)


def cse(g: Graph) -> PassResult:
    """Merge pure nodes that compute the same thing (the first one stays)."""
    ed = Editor(g)
    seen: dict[tuple, Node] = {}
    changed = False
    for n in list(g.nodes):
        if not is_pure(n):
            continue
        key = _key(n)
        first = seen.get(key)
        if first is None:
            seen[key] = n
            continue
        for old, new in zip(n.outputs, first.outputs):
            ed.replace_all_uses(old, new)
        ed.erase(n)
        changed = True
    return PassResult(g, changed)
