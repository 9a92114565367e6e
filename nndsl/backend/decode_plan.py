"""Can a token model be decoded one position at a time? The check behind ``nndsl sample``'s KV cache.

A model ``idx: i64[B, T] -> f32[B, T, vocab]`` decodes incrementally when position ``t`` of every
value depends only on positions ``<= t`` through causal attention and on position ``t`` itself
otherwise. ``plan(graph)`` walks the PyTorch graph and proves this node by node from the types:
the sequence dim ``T`` (a symbol) must stay a whole axis of its own in every value (``T * D`` or
``T - 1`` means positions were merged or cut), no op may drop it (a reduction over positions), and
an op that works along an axis (``linear``, ``softmax``, ``split``...) must not work along ``T``'s.
Three ops read the position itself and are rewritten by ``backend.decode``: ``attention(...,
causal=true)`` (over the cache), ``pos_embedding`` and ``rope_angles`` (rows/angles from an offset).
Any other op that sees ``T`` — a convolution or a recurrence over time, non-causal attention — is
refused with its source line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import sympy

from ..errors import NndslLoweringError
from ..ir import dims as D
from ..ir.graph import Graph, Node
from ..ir.types import INT_DTYPES, TensorType

# ops whose output at a position reads only that position of each input (broadcasting aligns axes)
POSITIONWISE = frozenset({
    "abs", "add", "add_s", "cast", "clamp", "cos", "div", "div_s", "dropout", "elu", "eq", "exp", "ge", "gelu",
    "gt", "hardswish", "le", "leaky_relu", "log", "lt", "maximum", "minimum", "mul", "mul_s", "ne", "neg",
    "pow", "pow_s", "rdiv_s", "relu", "rsqrt", "rsub_s", "sigmoid", "silu", "sin", "softplus", "sqrt", "sub",
    "sub_s", "tanh", "where", "embedding", "one_hot", "batchnorm",  # batchnorm: running statistics in eval mode
    "transpose", "permute", "unsqueeze", "squeeze", "getitem"})  # layout: the axis moves, positions stay
# ops that work along their input's last axis
LAST_AXIS = frozenset({"linear", "layernorm", "rmsnorm", "layernorm_kernel", "rmsnorm_kernel", "softmax_kernel",
                       "log_softmax_kernel"})
# ops that work along the axes of an attribute
AXIS_ATTR = {"softmax": "dim", "log_softmax": "dim", "split": "dim", "concat": "dim", "mean": "dims", "sum": "dims",
             "max": "dims", "min": "dims", "var": "dims", "std": "dims"}
# ops that read the position: backend.decode gives them the offset of the new positions
POSITIONAL = frozenset({"attention", "pos_embedding", "rope_angles"})


@dataclass
class Plan:
    """What the decoder needs: the sequence dim's name, the causal attention nodes (in order, each
    gets one cache slot) and the longest sequence the positional tables allow (None: unbounded)."""

    seq: str
    attention: list[Node]
    max_len: Optional[int]


def plan(g: Graph) -> Plan:
    """The decoding plan of graph ``g``, or a located error naming the op that mixes positions."""
    T = _sequence_dim(g)
    attention, limits = [], []
    for n in g.nodes:
        if n.op == "param":
            continue
        reason = _mixes(n, T)
        if reason is not None:
            raise NndslLoweringError(f"cannot sample with a KV cache: {n.op} {reason}", n.span,
                                     "--no-cache samples without one (each token then recomputes the whole context)")
        if n.op == "attention" and _has(n.inputs[1].type, T):
            attention.append(n)
        if n.op == "pos_embedding" and reads_position(n, T):
            limits.append(n.inputs[1].type.shape[0])
    out = g.outputs[0].type if g.outputs else None
    if out is None or out.rank != 3 or _axes(out, T) != [1]:
        raise NndslLoweringError(f"sampling needs a model whose first output is [B, T, vocab] logits, got "
                                 f"{out if out is not None else 'no output'}")
    return Plan(T.name, attention, min(limits) if limits else None)


def reads_position(n: Node, T: sympy.Symbol) -> bool:
    """Whether a ``pos_embedding``/``rope_angles`` node indexes positions along the sequence dim."""
    if n.op == "pos_embedding":
        x = n.inputs[0].type
        return _is(x.shape[n.attrs.get("axis", 1) % x.rank], T)
    return _is(n.attrs.get("T"), T)


def _sequence_dim(g: Graph) -> sympy.Symbol:
    """``T`` of the one token input ``[B, T]`` (integer ids; the length a symbol)."""
    if len(g.inputs) != 1:
        raise NndslLoweringError(f"sampling needs a model with one input of token ids [B, T]; {g.name} takes "
                                 f"{len(g.inputs)}")
    t = g.inputs[0].type
    if t.dtype not in INT_DTYPES or t.rank != 2 or D.is_static(t.shape[1]) or not t.shape[1].is_Symbol:
        raise NndslLoweringError(f"sampling needs token ids [B, T] (an integer type, T a symbolic length) as the "
                                 f"model's input; '{g.inputs[0].name}' is {t}")
    return t.shape[1]


def _mixes(n: Node, T: sympy.Symbol) -> Optional[str]:
    """Why node ``n`` would mix positions, or None when it reads only what decoding allows."""
    ins = [v.type for v in n.inputs]
    outs = [v.type for v in n.outputs]
    for t in outs:
        if any(_mentions(d, T) and not _is(d, T) for d in t.shape) or len(_axes(t, T)) > 1:
            return f"gives {t}: positions merged, cut or crossed with each other"
    if n.op in POSITIONAL:
        return _positional(n, T, ins)
    if not any(_has(t, T) for t in ins):
        return "reads the sequence length" if _attr_mentions(n, T) else None
    if any(not _has(t, T) for t in outs):
        return f"reduces over the positions ({' '.join(map(str, ins))} -> {' '.join(map(str, outs))})"
    if _attr_mentions(n, T):
        return "reads the sequence length"
    if n.op in POSITIONWISE:
        return None
    if n.op in LAST_AXIS:
        return "works along the positions" if _axes(ins[0], T) == [ins[0].rank - 1] else None
    if n.op in AXIS_ATTR:
        return _along(n, T, ins)
    if n.op in ("reshape", "flatten"):
        before_in = D.product(ins[0].shape[:_axes(ins[0], T)[0]])
        before_out = D.product(outs[0].shape[:_axes(outs[0], T)[0]])
        return None if D.equal(before_in, before_out) else f"moves data across positions ({ins[0]} -> {outs[0]})"
    if n.op == "matmul":
        a, b = ins
        return None if not _has(b, T) and _axes(a, T) != [a.rank - 1] else "works along the positions"
    return f"combines positions ({' '.join(map(str, ins))} -> {' '.join(map(str, outs))}); only attention " \
           "with causal=true may"


def _positional(n: Node, T: sympy.Symbol, ins: list[TensorType]) -> Optional[str]:
    if n.op != "attention":
        return None
    q, k, v = ins[:3]
    if not (_has(k, T) or _has(v, T)):  # keys from elsewhere (a memory without positions)
        return "over a fixed memory, causal, reads the positions" if n.attrs.get("causal") and _has(q, T) else None
    if not n.attrs.get("causal"):
        return "without causal=true lets a position read later ones"
    if len(ins) > 3:
        return "with a mask: only attention(..., causal=true) without a mask decodes with a cache"
    if any(_axes(t, T) != [t.rank - 2] for t in (q, k, v)):
        return f"attends along an axis other than the positions ({q}, {k}, {v})"
    return None


def _along(n: Node, T: sympy.Symbol, ins: list[TensorType]) -> Optional[str]:
    """Softmax, split, concat and reductions: their axis must not be T's."""
    want = n.attrs.get(AXIS_ATTR[n.op])
    axes = [want] if isinstance(want, int) else (list(want) if want is not None else None)
    for t in ins:
        seq = _axes(t, T)
        if seq and (axes is None or any(a % t.rank == seq[0] for a in axes)):
            return "works along the positions"
    return None


def _axes(t: TensorType, T: sympy.Symbol) -> list[int]:
    return [i for i, d in enumerate(t.shape) if _is(d, T)]


def _has(t: TensorType, T: sympy.Symbol) -> bool:
    return any(_mentions(d, T) for d in t.shape)


def _is(d: Any, T: sympy.Symbol) -> bool:
    return not D.is_static(d) and d == T


def _mentions(d: Any, T: sympy.Symbol) -> bool:
    return isinstance(d, sympy.Basic) and T in d.free_symbols


def _attr_mentions(n: Node, T: sympy.Symbol) -> bool:
    """Whether an attribute other than a layout op's target shape computes with T."""
    if n.op in ("reshape", "getitem"):
        return False

    def walk(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return any(walk(x) for x in v)
        if isinstance(v, dict):
            return any(walk(x) for x in v.values())
        return _mentions(v, T)

    return walk(n.attrs)
