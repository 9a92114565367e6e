"""Group: chains of pointwise ops, and row reductions with what feeds and follows them, become one
generated Triton kernel each (``generated`` nodes; ``backend.triton_gen`` writes the kernels).

A group has an iteration space ``S``:

* a **pointwise group** — every member computes a value of shape ``S`` from inputs that broadcast
  to it;
* a **row group** — reductions over the last axis of ``S`` (sum, mean, max, min), the pointwise
  chains that feed them (shape ``S``), and the ops after them over row values (``S[:-1] + [1]``,
  or ``S[:-1]`` for a non-keepdim reduction) and over full values again (``x * rsqrt(mean(x²) + ε)``).

Nodes join in graph order: a node joins the groups of its operands' producers when the shapes line
up as above and the merge closes no cycle (a path leaving the group and coming back). A group of
two ops or more becomes one ``generated`` node keeping its region and every source span; its
outputs are the members' values read outside it. Ops a generated kernel cannot compute (no row in
``triton_gen.lower.LOWER``, integer values, a reduction over another axis) stay where they are,
and ``graph.fusion_log`` says why for those next to a group. Dropout may join: the kernel draws
the same Philox bits as every other nndsl kernel; batchnorm and other stateful ops never do.

Runs in the Triton pipeline after the pattern fusions (``fuse_epilogues``, ``fuse_loss``,
``claim``): what they take, a hand-written kernel runs. ``NNDSL_GENERATED=0`` turns it off.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import os

from ..backend.triton_gen import lower
from ..ir import dims as D
from ..ir.graph import FusionNote, Graph, Node
from ..ops.meta import POINTWISE, RANDOM, REDUCTION, TRAINING, effects, kind
from .driver import take_fusion
from .rewrite import Editor
from .result import PassResult

MIN_OPS = 2  # a lone op gains nothing from a kernel of its own


@dataclass(eq=False)
class _Group:
    S: tuple
    members: list = field(default_factory=list)
    reduces: bool = False


def _same(a, b) -> bool:
    return len(a) == len(b) and all(D.equal(x, y) for x, y in zip(a, b))


def _shape(v) -> tuple:
    return tuple(v.type.shape)


def _candidate(n: Node) -> bool:
    k = kind(n.op)
    if (k not in (POINTWISE, REDUCTION) and n.op not in lower.ROW_OPS) or lower.supports(n) is not None:
        return False
    eff = effects(n)
    return eff == frozenset({"pure"}) or (n.op == "dropout" and eff <= {RANDOM, TRAINING})


def _joins(G: _Group, n: Node, v) -> bool:
    """May ``n``, reading ``v`` (a value of group G), join G?"""
    S = G.S
    if n.op in lower.REDUCE_OPS:
        return _same(_shape(v), S)
    if n.op in lower.ROW_OPS:  # a norm or softmax over the last axis takes G's value as its input
        return v is n.inputs[0] and _same(_shape(v), S)
    out = _shape(n.outputs[0])
    if n.op == "dropout" and not _same(out, S):
        return False  # the kernel draws dropout bits per element of S only
    if _same(out, S):
        return _same(_shape(v), S) or (G.reduces and len(S) > 0 and _same(_shape(v), S[:-1] + (1,)))
    if not G.reduces or not S:
        return False
    for row in (S[:-1] + (1,), S[:-1]):
        if _same(out, row):
            return _same(_shape(v), row)
    return False


def _broadcasts(small: tuple, big: tuple) -> bool:
    """``small`` broadcasts to ``big`` (right-aligned, each dim equal or 1)."""
    if len(small) > len(big):
        return False
    return all(D.equal(a, b) or D.equal(a, 1) for a, b in zip(reversed(small), reversed(big)))


def _absorbs(G: _Group, n: Node, mine: _Group, users: dict, outputs: set) -> bool:
    """May ``n`` take in G, a pointwise group over a smaller space that broadcasts to n's (``y * 1.5``
    with y [N] feeding ``x + ...`` over [B, T, N])? Only when nothing else reads G's values: the
    kernel recomputes them per element of the larger space and stores none of them."""
    if red_op(n) or G.reduces or any(m.op == "dropout" for m in G.members):
        return False
    out = _shape(n.outputs[0])
    if _same(G.S, out) or not _broadcasts(G.S, out):
        return False
    inside = set(map(id, G.members)) | set(map(id, mine.members)) | {id(n)}
    return all(v.id not in outputs and all(id(u) in inside for u in users.get(v.id, ()))
               for m in G.members for v in m.outputs)


def red_op(n: Node) -> bool:
    return n.op in lower.REDUCE_OPS or n.op in lower.ROW_OPS


def _cycle(nodes: list, pos: dict, members: list) -> bool:
    """True when some path leaves ``members`` and comes back to one of them."""
    inside = set(map(id, members))
    lo, hi = min(pos[id(m)] for m in members), max(pos[id(m)] for m in members)
    tainted: set[int] = set()
    for x in nodes[lo + 1:hi]:
        if id(x) in inside:
            continue
        if any(v.producer is not None and (id(v.producer) in inside or id(v.producer) in tainted) for v in x.inputs):
            tainted.add(id(x))
    return any(v.producer is not None and id(v.producer) in tainted for m in members for v in m.inputs)


def _form_groups(g: Graph) -> list[_Group]:
    nodes = list(g.nodes)
    pos = {id(n): i for i, n in enumerate(nodes)}
    group_of: dict[int, _Group] = {}
    users = g.users()
    outputs = {v.id for v in g.outputs}
    for n in nodes:
        if not _candidate(n):
            continue
        red = n.op in lower.REDUCE_OPS or n.op in lower.ROW_OPS
        mine = _Group(_shape(n.inputs[0]) if red else _shape(n.outputs[0]), [n], red)
        for v in n.inputs:
            G = group_of.get(id(v.producer)) if v.producer is not None else None
            if G is None or G is mine:
                continue
            if _joins(G, n, v):
                space = G.S  # n joins G's space
            elif _absorbs(G, n, mine, users, outputs):
                space = mine.S  # G is recomputed over n's (larger) space
            else:
                continue
            if mine.members != [n] and not _same(space, mine.S):
                continue  # n already joined a group over another space
            merged = G.members + [m for m in mine.members if m is not n] + [n]
            if _cycle(nodes, pos, merged):
                continue
            G.members = sorted(merged, key=lambda m: pos[id(m)])
            G.reduces = G.reduces or mine.reduces
            G.S = space
            for m in G.members:
                group_of[id(m)] = G
            mine = G
        if mine.members == [n]:
            group_of[id(n)] = mine
    seen, out = set(), []
    for n in nodes:
        G = group_of.get(id(n))
        if G is not None and id(G) not in seen:
            seen.add(id(G))
            out.append(G)
    return out


def _name(members: list) -> str:
    ops = list(dict.fromkeys(m.op for m in members))
    return "_".join(ops[:4]) + ("_etc" if len(ops) > 4 else "")


def _fuse(ed: Editor, G: _Group) -> Node:
    members = G.members
    inside = set(map(id, members))
    inputs = list(dict.fromkeys(v for m in members for v in m.inputs
                                if v.producer is None or id(v.producer) not in inside))
    outputs = [v for m in members for v in m.outputs
               if any(id(u) not in inside for u in ed.users(v)) or any(o is v for o in ed.g.outputs)]
    from ..backend.triton_gen import op  # imports Triton: only when a group forms

    region = ed.clone_region(members, inputs, outputs)
    spec, scalars = lower.lower_region(region, G.S, _name(members))
    key = op.register(spec)
    p = max((float(m.attrs.get("p", 0.0)) for m in members if m.op == "dropout"), default=0.0)
    attrs = {"kernel": key, "scalars": tuple(scalars), "types": tuple(v.type for v in outputs),
             "ops": tuple(m.op for m in members), "dropout": p}
    last = members[-1]
    new = ed.insert_before(last, "generated", inputs, attrs)
    new.covers = tuple(dict.fromkeys(s for m in members for s in (m.covers or (m.span,)) if s is not None))
    new.region = region
    for old, v in zip(outputs, new.outputs):
        ed.replace_all_uses(old, v)
    ed.erase_dead(members)
    return new


def _notes(g: Graph) -> None:
    """Why a pointwise or reduction op next to another one stayed out of generated kernels."""
    users = g.users()
    for n in g.nodes:
        if kind(n.op) not in (POINTWISE, REDUCTION):
            continue
        why = lower.supports(n)
        if why is None:
            continue
        near = any(v.producer is not None and _candidate(v.producer) for v in n.inputs) or \
            any(_candidate(u) for v in n.outputs for u in users.get(v.id, ()))
        if near:
            g.fusion_log.append(FusionNote((n.span,) if n.span else (), f"group: {n.op} into a generated kernel", why))


def _toposort(g: Graph) -> None:
    """Order the nodes so every value is made before it is read, else keeping their order (a node
    read by one placed before a generated node moves after it)."""
    producer = {v.id: i for i, n in enumerate(g.nodes) for v in n.outputs}
    waits = [0] * len(g.nodes)
    readers: dict[int, list[int]] = {}
    for i, n in enumerate(g.nodes):
        deps = {producer[v.id] for v in n.inputs if v.id in producer}
        waits[i] = len(deps)
        for d in deps:
            readers.setdefault(d, []).append(i)
    ready = [i for i, w in enumerate(waits) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(g.nodes[i])
        for r in readers.get(i, ()):
            waits[r] -= 1
            if waits[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(g.nodes):
        raise AssertionError("group: a merge closed a cycle")
    g.nodes = order


def group(g: Graph) -> PassResult:
    """Pointwise chains and last-axis reductions -> ``generated`` kernel nodes."""
    if os.environ.get("NNDSL_GENERATED", "1").strip().lower() in ("0", "false", "no"):
        return PassResult(g, False)
    # a group of two ops or more; a hand-written row kernel alone stays itself
    groups = [G for G in _form_groups(g) if len(G.members) >= MIN_OPS]
    _notes(g)
    if not groups:
        return PassResult(g, False)
    groups = [G for G in groups if take_fusion()]  # each kernel is one fusion of NNDSL_MAX_FUSIONS' budget
    if not groups:
        return PassResult(g, False)
    ed = Editor(g)
    for G in groups:
        _fuse(ed, G)
    _toposort(g)
    return PassResult(g, True)
