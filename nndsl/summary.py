"""A Keras-style summary of a compiled graph (``nndsl check``): each layer, its output shape,
its parameter count, and the totals.

A "layer" is a top-level instance scope (``conv2d``, ``blocks.3``, ``lm_head``); ops at the
model's own scope (``relu``, ``+``, ``reshape``) are rows of their own.
"""
from __future__ import annotations

from .ir import dims as D
from .ir.graph import Graph, Node


def _layer_key(scope: str) -> str:
    parts = scope.split(".")
    if len(parts) >= 2 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


def rows(g: Graph) -> list[tuple[str, str, str, int]]:
    """(layer name, kind, output shape, parameter count) per layer, in program order."""
    out: list[list] = []
    params_of: dict[str, int] = {}
    for p in g.params.values():
        if not p.buffer:
            params_of[p.name] = p.numel()
    prev_key = None
    for n in g.nodes:
        if n.op == "param":
            continue
        key = _layer_key(n.scope) if n.scope else None
        shape = " , ".join(str(v.type) for v in n.outputs)
        if key is not None and key == prev_key:
            out[-1][2] = shape
            out[-1][4].append(n)
            continue
        kind = n.op
        out.append([key or n.op, kind, shape, 0, [n]])
        prev_key = key
    # parameters belong to the layer whose scope holds them
    result = []
    for name, kind, shape, _, nodes in out:
        scoped = nodes[0].scope != ""
        count = 0
        if scoped:
            count = sum(c for pname, c in params_of.items() if pname == name or pname.startswith(name + "."))
            ops = [n.op for n in nodes]
            kind = g.scope_kinds.get(name) or (ops[0] if len(set(ops)) == 1 else "block")
        result.append((name, kind, shape, count))
    return result


def summarize(g: Graph) -> str:
    table = rows(g)
    head = ("Layer", "Kind", "Output shape", "Params")
    cols = [max(len(str(r[i])) for r in table + [head]) for i in range(4)]
    fmt = lambda r: f"{r[0]:<{cols[0]}}  {r[1]:<{cols[1]}}  {r[2]:<{cols[2]}}  {r[3]:>{cols[3]},}" \
        if isinstance(r[3], int) else f"{r[0]:<{cols[0]}}  {r[1]:<{cols[1]}}  {r[2]:<{cols[2]}}  {r[3]:>{cols[3]}}"
    width = sum(cols) + 6
    ins = ", ".join(f"{v.name}: {v.type}" for v in g.inputs)
    lines = [f'Model "{g.name}"({ins})', "=" * width, fmt(head), "-" * width]
    lines += [fmt(r) for r in table]
    total = g.num_parameters()
    buffers = sum(p.numel() for p in g.params.values() if p.buffer)
    lines += ["=" * width, f"Total params: {total:,}"]
    if buffers:
        lines.append(f"Buffers (not trained): {buffers:,}")
    if g.symbols:
        lines.append("Symbolic dims: " + ", ".join(g.symbols))
    if g.hyperparams:
        lines.append("Hyperparameters: " + ", ".join(f"{k}={v!r}" for k, v in g.hyperparams.items()))
    return "\n".join(lines)
