"""Graph editing for passes: a users map, insertion at a position, erase, replace-all-uses,
cloning a region, fusing a set of nodes into one, and unfusing it again.

An ``Editor`` wraps one Graph and keeps its users map current through every edit, so a rewrite
asks "who reads this value?" in O(1). New nodes run their op's shape inference as they are made
(an inference failure here is a compiler bug and says which rewrite made it).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from ..errors import NndslLoweringError, Span
from ..ir.graph import Graph, Node, Region, Value
from ..ops import registry
from ..ops.meta import VIEW, kind


class Editor:
    def __init__(self, g: Graph):
        self.g = g
        self.erased: set[int] = set()  # id() of the nodes erased through this editor
        self._users: dict[int, list[Node]] = {}
        for n in g.nodes:
            for v in n.inputs:
                self._users.setdefault(v.id, []).append(n)

    # -- queries -------------------------------------------------------------------------------
    def users(self, v: Value) -> list[Node]:
        """The nodes reading ``v`` (a node reading it twice appears twice)."""
        return self._users.get(v.id, [])

    def n_uses(self, v: Value) -> int:
        """How many places read ``v``: node inputs plus graph outputs."""
        return len(self.users(v)) + sum(1 for o in self.g.outputs if o is v)

    def single_use(self, v: Value) -> bool:
        return self.n_uses(v) == 1

    def index(self, n: Node) -> int:
        return self.g.nodes.index(n)

    def between(self, first: Node, last: Node) -> list[Node]:
        """The nodes strictly after ``first`` and before ``last`` in graph order."""
        return self.g.nodes[self.index(first) + 1:self.index(last)]

    def escaping(self, nodes: Sequence[Node], root: Node) -> Optional[Node]:
        """The first of ``nodes`` (other than ``root``) whose value is read outside ``nodes``.

        Fusing such a node would lose a value someone else needs. Views, masks and parameter
        reads are exempt: they cost nothing and simply stay for their other readers.
        """
        inside = set(map(id, nodes))
        for n in nodes:
            if n is root or kind(n.op) == VIEW or n.op in ("causal_mask", "param"):
                continue
            for v in n.outputs:
                if any(o is v for o in self.g.outputs) or any(id(u) not in inside for u in self.users(v)):
                    return n
        return None

    # -- edits ---------------------------------------------------------------------------------
    def insert_before(self, anchor: Node, op: str, inputs: Sequence[Value], attrs: Optional[dict[str, Any]] = None,
                      *, span: Optional[Span] = None, scope: Optional[str] = None) -> Node:
        """A new node computing ``op`` placed right before ``anchor`` (span and scope default to its)."""
        attrs = dict(attrs or {})
        ctx = registry.InferCtx(op, [v.type for v in inputs], attrs, [v.name for v in inputs])
        try:
            out_types = registry.get(op).infer(ctx)
        except registry.InferError as e:
            raise NndslLoweringError(f"a rewrite built an ill-typed {op}: {e.message}", anchor.span) from None
        node = Node(op, list(inputs), attrs, [], anchor.span if span is None else span,
                    anchor.scope if scope is None else scope)
        node.outputs = [self.g.new_value(t) for t in out_types]
        for v in node.outputs:
            v.producer = node
        self.g.nodes.insert(self.index(anchor), node)
        for v in node.inputs:
            self._users.setdefault(v.id, []).append(node)
        return node

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Every reader of ``old`` (and the graph outputs) reads ``new``; ``new`` inherits old's name."""
        if old is new:
            return
        readers = self._users.pop(old.id, [])
        for n in dict.fromkeys(readers):  # each reader once, in order
            n.inputs = [new if v is old else v for v in n.inputs]
        self._users.setdefault(new.id, []).extend(readers)
        self.g.outputs = [new if v is old else v for v in self.g.outputs]
        if new.name is None:
            new.name = old.name

    def erase(self, n: Node) -> None:
        """Remove ``n``; its outputs must have no readers left."""
        for v in n.outputs:
            if self.n_uses(v):
                raise NndslLoweringError(f"cannot erase {n.op}: its output {v!r} is still read", n.span)
        self.g.nodes.remove(n)
        self.erased.add(id(n))
        for v in n.inputs:
            readers = self._users.get(v.id, [])
            if n in readers:
                readers.remove(n)

    def erase_dead(self, nodes: Iterable[Node]) -> None:
        """Erase those of ``nodes`` nobody reads any more, last first (so chains go in one call)."""
        alive = [n for n in dict.fromkeys(nodes) if id(n) not in self.erased]
        for n in sorted(alive, key=self.index, reverse=True):
            if not any(self.n_uses(v) for v in n.outputs):
                self.erase(n)

    # -- regions -------------------------------------------------------------------------------
    def clone_region(self, nodes: Sequence[Node], inputs: Sequence[Value], outputs: Sequence[Value]) -> Region:
        """A detached copy of ``nodes`` (in graph order) reading fresh placeholders for ``inputs``.

        A fused node inside ``nodes`` is expanded into the region it replaced, so a region only
        ever holds unfused ops.
        """
        vmap: dict[int, Value] = {}
        placeholders = []
        for v in inputs:
            p = self.g.new_value(v.type, v.name)
            vmap[v.id] = p
            placeholders.append(p)
        out_nodes: list[Node] = []
        for n in sorted(nodes, key=self.index):
            if n.region is not None:  # splice the sub-region in
                inner = {p.id: vmap.get(v.id, v) for p, v in zip(n.region.inputs, n.inputs)}
                res = _copy_nodes(self.g, n.region.nodes, inner, out_nodes)
                for o, ro in zip(n.outputs, n.region.outputs):
                    vmap[o.id] = res.get(ro.id, inner.get(ro.id, ro))
                continue
            vmap.update(_copy_nodes(self.g, [n], vmap, out_nodes))
        missing = [v for v in outputs if v.id not in vmap]
        if missing:
            raise NndslLoweringError(f"region output {missing[0]!r} is not computed by the region")
        known = {v.id for v in placeholders} | {v.id for n in out_nodes for v in n.outputs} | \
            {v.id for v in self.g.inputs}
        for n in out_nodes:  # a region reads its placeholders (and graph inputs) only: it must stay valid
            stray = [v for v in n.inputs if v.id not in known]
            if stray:
                raise NndslLoweringError(f"a region's {n.op} reads {stray[0]!r}, which is not among its inputs", n.span)
        return Region(placeholders, out_nodes, [vmap[v.id] for v in outputs])

    def fuse(self, root: Node, nodes: Sequence[Node], op: str, inputs: Sequence[Value], attrs: dict[str, Any]) -> Node:
        """Replace ``nodes`` (``root`` last, computing the result) by one ``op`` node reading ``inputs``.

        The new node sits where ``root`` was, keeps every source span of the nodes it covers and a
        clone of the sub-graph it replaced; the covered nodes nobody else reads are erased.
        """
        region = self.clone_region(nodes, inputs, root.outputs)
        new = self.insert_before(root, op, inputs, attrs)
        new.covers = tuple(dict.fromkeys(s for n in nodes for s in (n.covers or (n.span,)) if s is not None))
        new.region = region
        for old, v in zip(root.outputs, new.outputs):
            self.replace_all_uses(old, v)
        self.erase_dead(nodes)
        return new


def _copy_nodes(g: Graph, nodes: Sequence[Node], vmap: dict[int, Value], into: list[Node]) -> dict[int, Value]:
    """Copy ``nodes`` reading through ``vmap``; appends the copies to ``into``; returns old -> new outputs."""
    out: dict[int, Value] = {}
    for n in nodes:
        ins = [out.get(v.id, vmap.get(v.id, v)) for v in n.inputs]
        c = Node(n.op, ins, dict(n.attrs), [], n.span, n.scope, n.covers, n.region)
        c.outputs = [g.new_value(v.type, v.name) for v in n.outputs]
        for o, v in zip(n.outputs, c.outputs):
            v.producer = c
            out[o.id] = v
        into.append(c)
    return out


def unfuse(g: Graph, node: Node) -> list[Node]:
    """Put the sub-graph a fused node replaced back in its place; returns the nodes inserted."""
    if node.region is None:
        raise NndslLoweringError(f"{node.op} is not a fused node (it keeps no region)", node.span)
    ed = Editor(g)
    at = ed.index(node)
    vmap = {p.id: v for p, v in zip(node.region.inputs, node.inputs)}
    new: list[Node] = []
    res = _copy_nodes(g, node.region.nodes, vmap, new)
    g.nodes[at:at] = new
    for n in new:
        for v in n.inputs:
            ed._users.setdefault(v.id, []).append(n)
    for old, ro in zip(node.outputs, node.region.outputs):
        ed.replace_all_uses(old, res.get(ro.id, vmap.get(ro.id, ro)))
    ed.erase(node)
    return new
