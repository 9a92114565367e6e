"""The IR verifier: checks a Graph's invariants; runs after elaboration and between passes.

Invariants (each violation raises ``NndslLoweringError`` naming the node, its op and the rule):
* every value is defined once (a graph input or one node's output) and before it is read;
* every node's op is registered (``param`` is special: it reads a declared parameter);
* a ``param`` node names a declared parameter and has exactly its type;
* re-running an op's shape inference on its input types reproduces its output types;
* the graph's outputs are defined;
* every symbolic dim in a type is one of ``graph.symbols``.
"""
from __future__ import annotations

from typing import Optional

from ..errors import NndslLoweringError
from ..ops import load_all, registry
from . import dims as D
from .graph import Graph, Node, Value
from .types import TensorType


def verify(g: Graph) -> None:
    """Raise NndslLoweringError if ``g`` breaks an invariant; return None otherwise."""
    defined: dict[int, Value] = {}
    symbols = set(g.symbols)

    def fail(msg: str, node: Optional[Node] = None, i: int = -1) -> NndslLoweringError:
        where = f"node {i} `{_node_text(node)}`: " if node is not None else ""
        return NndslLoweringError(f"IR verification of {g.name} failed: {where}{msg}",
                                  node.span if node is not None else None)

    def check_type(v: Value, node: Optional[Node], i: int) -> None:
        if not isinstance(v.type, TensorType):
            raise fail(f"value {v!r} has no tensor type ({v.type!r})", node, i)
        for d in v.type.shape:
            unknown = D.free_symbols(d) - symbols
            if unknown:
                raise fail(f"the type {v.type} of {v!r} uses symbol(s) {', '.join(sorted(unknown))} "
                           f"not in graph.symbols {g.symbols}", node, i)

    def define(v: Value, node: Optional[Node], i: int) -> None:
        if v.id in defined:
            raise fail(f"value {v!r} is defined twice", node, i)
        defined[v.id] = v
        check_type(v, node, i)

    for v in g.inputs:
        define(v, None, -1)
    load_all()  # every op family registered
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            if defined.get(v.id) is not v:
                raise fail(f"input {v!r} is used before it is defined", n, i)
        if n.op == "param":
            _check_param(g, n, i, fail)
        else:
            _check_inference(n, i, fail)
        for v in n.outputs:
            define(v, n, i)
    for v in g.outputs:
        if defined.get(v.id) is not v:
            raise fail(f"graph output {v!r} is not defined by any input or node")


def _check_param(g: Graph, n: Node, i: int, fail) -> None:
    name = n.attrs.get("name")
    if n.inputs:
        raise fail("a param node takes no inputs", n, i)
    if name not in g.params:
        raise fail(f"param node reads '{name}', which is not a declared parameter", n, i)
    if len(n.outputs) != 1:
        raise fail(f"a param node has one output, this one has {len(n.outputs)}", n, i)
    declared = g.params[name].type
    if not n.outputs[0].type.same_as(declared):
        raise fail(f"param node's type {n.outputs[0].type} differs from the declared {declared} of '{name}'", n, i)


def _check_inference(n: Node, i: int, fail) -> None:
    try:
        opdef = registry.get(n.op)
    except KeyError:
        raise fail(f"op '{n.op}' is not registered", n, i) from None
    ctx = registry.InferCtx(n.op, [v.type for v in n.inputs], dict(n.attrs), [v.name for v in n.inputs])
    try:
        out = opdef.infer(ctx)
    except registry.InferError as e:
        raise fail(f"{n.op}'s shape inference rejects its inputs: {e.message}", n, i) from None
    got = [v.type for v in n.outputs]
    if len(out) != len(got) or not all(a.same_as(b) for a, b in zip(out, got)):
        raise fail(f"{n.op}'s shape inference gives ({', '.join(map(str, out))}) but the node's outputs are "
                   f"({', '.join(map(str, got))})", n, i)


def _node_text(n: Node) -> str:
    """'%5 = add(%3, %4) [blocks.0.attn]' — a node as error messages name it."""
    outs = ", ".join(repr(v) for v in n.outputs) or "()"
    scope = f" [{n.scope}]" if n.scope else ""
    return f"{outs} = {n.op}({', '.join(repr(v) for v in n.inputs)}){scope}"
