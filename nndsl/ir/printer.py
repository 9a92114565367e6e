"""Textual form of the IR (``nndsl compile --emit ir``)."""
from __future__ import annotations

from .dims import shape_str
from .graph import Graph, Node, Value


def _val(v: Value) -> str:
    return f"%{v.name}.{v.id}" if v.name else f"%{v.id}"


def _attr(x) -> str:
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_attr(a) for a in x) + "]"
    if isinstance(x, str):
        return repr(x)
    return str(x)


def print_node(n: Node) -> str:
    outs = ", ".join(f"{_val(v)}: {v.type}" for v in n.outputs)
    args = [_val(v) for v in n.inputs]
    args += [f"{k}={_attr(a)}" for k, a in sorted(n.attrs.items())]
    line = f"  {outs} = {n.op}({', '.join(args)})"
    where = f"{n.span.file}:{n.span.line}:{n.span.col}" if n.span else ""
    if n.scope:
        where = f"{where} [{n.scope}]" if where else f"[{n.scope}]"
    if n.covers:
        lines = sorted({(s.line, s.col) for s in n.covers})
        where += " covers " + ",".join(f"{ln}:{c}" for ln, c in lines)
    if where:
        line = f"{line:<88} # {where}"
    return line


def print_graph(g: Graph) -> str:
    ins = ", ".join(f"{_val(v)}: {v.type}" for v in g.inputs)
    outs = ", ".join(str(v.type) for v in g.outputs)
    lines = [f"graph {g.name}({ins}) -> ({outs}) {{"]
    if g.hyperparams:
        hp = ", ".join(f"{k}={v!r}" for k, v in g.hyperparams.items())
        lines.append(f"  # hyperparameters: {hp}")
    for p in g.params.values():
        kind = "buffer" if p.buffer else "param"
        init = p.init + (f"({', '.join(f'{k}={v}' for k, v in p.init_args.items())})" if p.init_args else "")
        lines.append(f"  {kind} {p.name}: {p.dtype}{shape_str(p.shape)} init={init}")
    for n in g.nodes:
        lines.append(print_node(n))
    lines.append(f"  return {', '.join(_val(v) for v in g.outputs)}")
    lines.append("}")
    return "\n".join(lines)
