"""Fuse epilogues: linear/matmul + bias + activation [+ dropout] [+ residual add] -> one fused matmul;
conv2d + bias + activation -> one fused conv.

The rules grow a fused node one stage at a time, in the order the kernel applies them (bias,
activation, dropout, residual): ``gelu(linear(x))`` becomes ``fused_linear(activation=gelu)``, a
dropout of that becomes ``fused_linear(activation=gelu, dropout=p)``, and so on. A stage joins
only when the value before it has no other reader ("pre-activation value used elsewhere") and,
for the residual add, when no other random op runs in between (dropout is never reordered).
Runs after ``raise``, before ``claim``; the kernels take f32/f16/bf16, not f64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ir import dims as D
from ..ir.graph import Graph, Node, Value
from ..ops.fused import CONV_ACTIVATIONS
from ..ops.meta import RANDOM, effects
from .driver import apply_rules
from .pattern import O, Reject, Rule, V
from .result import PassResult

ACTS = "relu|gelu|silu|sigmoid|tanh"
BASES = "linear|matmul|fused_linear|fused_matmul"
_WORDS = {2: "two", 3: "three", 4: "four"}


@dataclass
class Epilogue:
    """What a (possibly already fused) matmul node computes, stage by stage."""

    op: str  # fused_linear or fused_matmul
    operands: list[Value]
    bias: Optional[Value] = None
    activation: str = "none"
    dropout: float = 0.0
    residual: Optional[Value] = None

    @classmethod
    def of(cls, n: Node) -> "Epilogue":
        if n.op in ("linear", "matmul"):
            return cls("fused_" + n.op, list(n.inputs[:2]), n.inputs[2] if len(n.inputs) > 2 else None)
        a = n.attrs
        return cls(n.op, list(n.inputs[:2]), n.inputs[2] if a.get("bias") else None, a.get("activation", "none"),
                   float(a.get("dropout", 0.0)), n.inputs[-1] if a.get("residual") else None)

    @property
    def last_stage(self) -> str:
        if self.residual is not None:
            return "residual add"
        if self.dropout > 0:
            return "dropout"
        return self.activation if self.activation != "none" else self.op[len("fused_"):]

    def build(self, ed, m):
        """Replace the match by the fused node, if the kernel takes its operands."""
        x = self.operands[0]
        if x.type.dtype == "f64":
            return Reject("fp64 input")
        if self.op == "fused_matmul" and min(v.type.rank for v in self.operands) < 2:
            return Reject("a matmul of a vector (the kernel takes [..., M, K] @ [..., K, N])")
        ins = self.operands + [v for v in (self.bias, self.residual) if v is not None]
        attrs = {"activation": self.activation, "dropout": self.dropout, "bias": self.bias is not None,
                 "residual": self.residual is not None}
        return ed.fuse(m.root, m.nodes, self.op, ins, attrs).out


def _uses(ed, v: Value) -> str:
    n = ed.n_uses(v)
    return _WORDS.get(n, str(n))


def _activation(ed, m):
    ep = Epilogue.of(m.node("z"))
    if ep.activation != "none" or ep.dropout > 0 or ep.residual is not None:
        return Reject(f"the fused epilogue already ends in {ep.last_stage}")
    if not ed.single_use(m["z"]):
        return Reject("pre-activation value used elsewhere")
    act = m.root.op
    if act == "gelu" and m.root.attrs.get("approximate", "none") == "tanh":
        act = "gelu_tanh"
    ep.activation = act
    return ep.build(ed, m)


def _bias(ed, m):
    ep, b = Epilogue.of(m.node("z")), m["bias"]
    out = m["z"].type
    if ep.bias is not None or ep.activation != "none" or ep.dropout > 0 or ep.residual is not None:
        return None
    if b.type.rank != 1 or out.rank < 2 or b.type.dtype != out.dtype or not D.equal(b.type.shape[0], out.shape[-1]) \
            or not ed.single_use(m["z"]):
        return None
    ep.bias = b
    return ep.build(ed, m)


def _dropout(ed, m):
    ep = Epilogue.of(m.node("z"))
    if ep.dropout > 0 or ep.residual is not None:
        return Reject(f"dropout after the {ep.last_stage}")
    if not ed.single_use(m["z"]):
        return Reject(f"{ep.last_stage} output has {_uses(ed, m['z'])} users")
    ep.dropout = float(m.root.attrs["p"])
    return ep.build(ed, m)


def _residual(ed, m):
    z, r = m["z"], m["r"]
    ep = Epilogue.of(z.producer)
    if ep.residual is not None:
        return Reject("the fused epilogue already has a residual add")
    if not r.type.same_as(z.type):
        return Reject(f"the added value {r.type} is broadcast to {z.type}")
    if not ed.single_use(z):
        return Reject(f"{ep.last_stage} output has {_uses(ed, z)} users")
    if ep.dropout > 0 and any(RANDOM in effects(n) for n in ed.between(z.producer, m.root)):
        return Reject("another random op runs between the dropout and the residual add")
    ep.residual = r
    return ep.build(ed, m)


def _conv(ed, m):
    z, act = m["z"], m.root.op
    conv = z.producer
    if act == "gelu" and m.root.attrs.get("approximate", "none") != "none":
        return Reject("gelu(approximate='tanh') has no conv kernel")
    if act not in CONV_ACTIVATIONS:
        return None
    if z.type.dtype == "f64":
        return Reject("fp64 input")
    if m["x"].type.rank != 4:
        return Reject(f"an unbatched conv2d input {m['x'].type} (the kernel takes [B, C, H, W])")
    if not ed.single_use(z):
        return Reject("pre-activation value used elsewhere")
    attrs = {k: conv.attrs[k] for k in ("stride", "padding", "dilation", "groups") if k in conv.attrs}
    return ed.fuse(m.root, m.nodes, "fused_conv2d", list(conv.inputs), {**attrs, "activation": act}).out


RULES = [
    # matmul (or linear without bias) + bias vector -> fused matmul with bias
    Rule("matmul + bias", O.add(O(BASES).named("z"), V("bias")), _bias),
    # linear/matmul [+ bias] + activation -> fused matmul with the activation
    Rule("linear + activation", O(ACTS, O(BASES).named("z")), _activation),
    # linear/matmul [+ bias + activation] + dropout -> fused matmul with dropout
    Rule("linear + dropout", O.dropout(O(BASES).named("z")), _dropout),
    # linear/matmul [+ bias + activation + dropout] + residual -> fused matmul with the residual add
    Rule("linear + residual add", O.add(O(BASES).named("z"), V("r")), _residual),
    # conv2d + bias + activation -> fused conv
    Rule("conv2d + activation", O(ACTS, O.conv2d(V("x"), V("w"), V("b", optional=True)).named("z")), _conv),
]


def fuse_epilogues(g: Graph) -> PassResult:
    """Fold the epilogues of matmuls and convolutions into them; after raise, before claim."""
    return PassResult(g, apply_rules(g, RULES, "fuse_epilogues"))
