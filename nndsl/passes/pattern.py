"""A declarative pattern matcher over the IR, and the rule tables built from it.

A pattern is a tree that reads like the math it matches::

    O.add(O.dropout(O.linear(V("x"), V("w"), V("b", optional=True))), V("r"))

* ``V("x")`` matches any value and captures it as ``x``; the same name twice must be the same value.
* ``O.<op>(*args, **attrs)`` (or ``O("relu|gelu", ...)`` for alternatives) matches a value produced
  by that op (``O.<op>()`` with no argument patterns takes any inputs); keyword arguments
  constrain attrs (a value, or a predicate on the attr's value).
  ``add``, ``mul``, ``maximum`` and ``minimum`` are commutative: both operand orders are tried.
* ``OneOf(p1, p2)`` matches either alternative.
* ``optional=True`` on a trailing argument lets it be absent (``linear`` with or without bias).
* ``.named("s")`` captures the value an ``O`` matched; ``.where(pred)`` adds a guard on it
  (``single_use`` needs the editor and is checked by rewrites: ``m.single_use("s")``).

``Rule(name, pattern, rewrite)`` pairs a pattern with a rewrite ``(editor, match) -> Value | Reject | None``:
a Value replaces the root's output, ``None`` means "does not apply", ``Reject(reason)`` means "does
not apply, and say why" (logged in ``graph.fusion_log``). Rules live in tables, one comment each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

from ..ir.graph import Node, Value

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum"})


class Pat:
    """Base of pattern nodes."""

    name: Optional[str] = None
    optional: bool = False
    guards: tuple = ()

    def named(self, name: str) -> "Pat":
        self.name = name
        return self

    def where(self, *preds: Callable[[Value], bool]) -> "Pat":
        self.guards = self.guards + preds
        return self

    def match(self, v: Value) -> Iterator["Match"]:
        """Every way this pattern matches value ``v`` (commutative ops may match in two orders)."""
        for env, nodes in _match(self, v, {}, ()):
            yield Match(v.producer, env, list(nodes))


class V(Pat):
    """Any value, captured under ``name`` (``V()`` matches without capturing)."""

    def __init__(self, name: Optional[str] = None, *, optional: bool = False, where: Callable[[Value], bool] = None):
        self.name, self.optional = name, optional
        self.guards = (where,) if where else ()


class _Op(Pat):
    def __init__(self, ops: str, args: tuple, attrs: dict[str, Any]):
        self.ops = frozenset(ops.split("|"))
        self.args, self.attrs = args, attrs
        self.name, self.guards = None, ()
        self.required = sum(1 for a in args if not a.optional)


class OneOf(Pat):
    """The first of several alternative patterns that matches (``x * x`` or ``x ** 2``)."""

    def __init__(self, *alts: Pat):
        self.alts = alts
        self.name, self.guards = None, ()


class _OpFactory:
    """``O.linear(...)`` and ``O("relu|gelu", ...)`` build op patterns."""

    def __call__(self, ops: str, *args: Pat, **attrs: Any) -> _Op:
        return _Op(ops, args, attrs)

    def __getattr__(self, op: str) -> Callable[..., _Op]:
        return lambda *args, **attrs: _Op(op, args, attrs)


O = _OpFactory()


@dataclass
class Match:
    root: Node  # the node whose output the pattern matched
    vals: dict[str, Value]  # captures
    nodes: list[Node] = field(default_factory=list)  # every node an O matched, root included

    def __getitem__(self, name: str) -> Value:
        return self.vals[name]

    def get(self, name: str) -> Optional[Value]:
        return self.vals.get(name)

    def node(self, name: str) -> Node:
        return self.vals[name].producer

    def take(self, *nodes: Node) -> None:
        """Add nodes a rewrite found by hand (beyond the pattern) to the matched set."""
        for n in nodes:
            if n not in self.nodes:
                self.nodes.append(n)


@dataclass
class Reject:
    """A rewrite's "no, because ...": the driver records it in ``graph.fusion_log``."""

    reason: str


Rewrite = Callable[[Any, Match], Union[Value, Reject, None]]


@dataclass
class Rule:
    name: str  # what the rule does, as the fusion log names the candidate ("linear + gelu")
    pattern: Pat
    rewrite: Rewrite
    fusion: bool = True  # counts against the fusion budget (NNDSL_MAX_FUSIONS)


def num_eq(value):
    """An attr predicate: a number equal to ``value`` (not a bool: True == 1 in Python)."""
    return lambda v: not isinstance(v, bool) and isinstance(v, (int, float)) and v == value


def _attr_ok(want: Any, got: Any) -> bool:
    if callable(want):
        return bool(want(got))
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return list(want) == list(got)
    return want == got


def _bind(name: Optional[str], v: Value, env: dict) -> Optional[dict]:
    if name is None:
        return env
    if name in env:
        return env if env[name] is v else None
    return {**env, name: v}


def _match(p: Pat, v: Value, env: dict, nodes: tuple) -> Iterator[tuple[dict, tuple]]:
    if not isinstance(p, _Op) and not all(g(v) for g in p.guards):
        return
    if isinstance(p, V):
        env2 = _bind(p.name, v, env)
        if env2 is not None:
            yield env2, nodes
        return
    if isinstance(p, OneOf):
        for alt in p.alts:
            for env2, nodes2 in _match(alt, v, env, nodes):
                env3 = _bind(p.name, v, env2)
                if env3 is not None:
                    yield env3, nodes2
        return
    assert isinstance(p, _Op)
    n = v.producer
    if n is None or n.op not in p.ops or len(n.outputs) != 1:
        return
    if not all(k in n.attrs or want is None for k, want in p.attrs.items()):
        return
    if not all(_attr_ok(want, n.attrs.get(k)) for k, want in p.attrs.items()):
        return
    if p.args and not p.required <= len(n.inputs) <= len(p.args):
        return
    if not all(g(v) for g in p.guards):
        return
    env = _bind(p.name, v, env)
    if env is None:
        return
    nodes = nodes if n in nodes else nodes + (n,)
    orders = [n.inputs]
    if n.op in COMMUTATIVE and len(n.inputs) == 2 and n.inputs[0] is not n.inputs[1]:
        orders.append(n.inputs[::-1])
    if not p.args:  # O.op() with no argument patterns: any inputs
        yield env, nodes
        return
    for ins in orders:
        yield from _match_args(p.args, list(ins), env, nodes)


def _match_args(pats: tuple, ins: list, env: dict, nodes: tuple) -> Iterator[tuple[dict, tuple]]:
    if not pats:
        if not ins:
            yield env, nodes
        return
    if not ins:  # only optional patterns may be left
        if all(p.optional for p in pats):
            yield env, nodes
        return
    for env2, nodes2 in _match(pats[0], ins[0], env, nodes):
        yield from _match_args(pats[1:], ins[1:], env2, nodes2)
