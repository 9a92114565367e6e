"""The IR: an SSA graph of typed tensor ops.

* ``Value``  — one SSA tensor value with a ``TensorType``; produced once, by one node or as a graph input.
* ``Node``   — an op applied to values, with constant ``attrs``; it keeps the source ``span`` that
               caused it and the parameter ``scope`` it was built in (``blocks.3.attn``).
* ``Param``  — a declared parameter or buffer (shape, dtype, how to initialize); a ``param`` node
               reads it into the graph, so parameters are explicit SSA values.
* ``Graph``  — inputs, nodes in topological order, outputs, declared params, the symbolic dims and
               the bound hyperparameters.

Passes (``nndsl.passes``) are functions ``Graph -> Graph``; ``verify`` checks the invariants.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from ..errors import Span
from .types import TensorType


@dataclass(eq=False)
class Value:
    id: int
    type: TensorType
    name: Optional[str] = None  # the source name bound to it, if any (for printing and codegen)
    producer: Optional["Node"] = None  # None for graph inputs

    def __repr__(self) -> str:
        return f"%{self.id}"


@dataclass(eq=False)
class Node:
    op: str
    inputs: list[Value]
    attrs: dict[str, Any]
    outputs: list[Value]
    span: Optional[Span] = None
    scope: str = ""
    # set on a fused/kernel node only: every source span it covers, and the sub-graph it replaced
    covers: tuple = ()
    region: Optional["Region"] = None

    @property
    def out(self) -> Value:
        assert len(self.outputs) == 1, f"{self.op} has {len(self.outputs)} outputs"
        return self.outputs[0]


@dataclass(eq=False)
class Region:
    """The sub-graph a fused node replaced, detached from the graph.

    ``inputs`` are placeholder values standing, in order, for the fused node's inputs; ``nodes``
    compute ``outputs`` (one per output of the fused node) from them. Kept for ``--explain``,
    for a backward written as the unfused ops, and for unfusing (``passes.rewrite.unfuse``).
    """

    inputs: list[Value]
    nodes: list[Node]
    outputs: list[Value]

    def ops(self) -> list[str]:
        return [n.op for n in self.nodes if n.op != "param"]


class FusionNote(NamedTuple):
    """A candidate a pass saw but left alone: where, what, and why (``--explain`` prints these)."""

    spans: tuple  # of Span: the source the candidate covers
    candidate: str  # "fuse_epilogues: linear + residual add"
    reason: str  # "dropout output has two users"


@dataclass
class Param:
    name: str  # dotted path: blocks.3.attn.qkv.weight
    shape: tuple[int, ...]
    dtype: str = "f32"
    init: str = "zeros"  # an initializer name from backend.init
    init_args: dict[str, Any] = field(default_factory=dict)
    buffer: bool = False  # True: a buffer (batchnorm running stats), not trained
    span: Optional[Span] = None

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)

    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    params: dict[str, Param] = field(default_factory=dict)
    symbols: list[str] = field(default_factory=list)  # symbolic dims of the inputs, in order
    hyperparams: dict[str, Any] = field(default_factory=dict)
    scope_kinds: dict[str, str] = field(default_factory=dict)  # scope of a block instance -> block name
    file: str = "<string>"
    fusion_log: list[FusionNote] = field(default_factory=list)  # candidates that did not fuse, and why
    _ids: Any = field(default_factory=lambda: itertools.count(), repr=False)

    # -- construction -------------------------------------------------------------------------
    def new_value(self, type: TensorType, name: Optional[str] = None) -> Value:
        return Value(next(self._ids), type, name)

    def add_input(self, name: str, type: TensorType) -> Value:
        v = self.new_value(type, name)
        self.inputs.append(v)
        return v

    def add_node(
        self,
        op: str,
        inputs: list[Value],
        attrs: dict[str, Any],
        out_types: list[TensorType],
        span: Optional[Span] = None,
        scope: str = "",
    ) -> Node:
        node = Node(op, list(inputs), dict(attrs), [], span, scope)
        node.outputs = [self.new_value(t) for t in out_types]
        for v in node.outputs:
            v.producer = node
        self.nodes.append(node)
        return node

    # -- queries -----------------------------------------------------------------------------
    def users(self) -> dict[int, list[Node]]:
        """Value id -> the nodes that read it."""
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v.id, []).append(n)
        return out

    def param_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "param"]

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.params.values() if not (trainable_only and p.buffer))

    def replace_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` (and the graph outputs) read ``new``."""
        for n in self.nodes:
            n.inputs = [new if v is old else v for v in n.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)
