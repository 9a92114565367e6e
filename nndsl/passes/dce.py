"""Dead-code elimination: drop nodes whose outputs nobody reads, and parameters no node reads.

Runs first and after any rewrite; needs nothing before it. (It keeps the semantics the torch
backend always had: an unread batchnorm is dropped with its running-stat update.)
"""
from __future__ import annotations

from ..ir.graph import Graph
from .result import PassResult


def dead_code_elimination(g: Graph) -> PassResult:
    """Drop nodes whose outputs nobody reads (and parameters no node reads any more)."""
    live: set[int] = {v.id for v in g.outputs}
    keep = []
    for n in reversed(g.nodes):
        if any(v.id in live for v in n.outputs):
            keep.append(n)
            live.update(v.id for v in n.inputs)
    keep.reverse()
    changed = len(keep) != len(g.nodes)
    if changed:
        g.nodes = keep
        used = {n.attrs["name"] for n in g.nodes if n.op == "param"}
        g.params = {k: p for k, p in g.params.items() if k in used}
    return PassResult(g, changed)
