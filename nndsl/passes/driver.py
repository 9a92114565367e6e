"""The fixpoint driver: apply a table of rules until none applies, within a fusion budget.

Nodes are visited in graph order and each rule's pattern is tried at each node's output; the
first match whose rewrite returns a value wins, the root's uses move to that value, and matched
nodes nobody reads any more are erased. Rounds repeat until a round changes nothing.

* The fusion budget caps how many fusion rules apply over one ``run_passes`` (``NNDSL_MAX_FUSIONS``
  or ``run_passes(max_fusions=)``): bisecting it finds the one fusion that breaks a result.
* A rule whose every match was rejected (``Reject(reason)``) at a node that still stands when the
  pass ends is recorded in ``graph.fusion_log`` as ``FusionNote(spans, "<pass>: <rule>", reason)``.
* A rule table that never settles (a rule undoing another) fails with an error naming the pass,
  instead of looping.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator, Optional, Sequence

from ..errors import NndslLoweringError
from ..ir.graph import FusionNote, Graph, Node, Value
from .pattern import Match, Reject, Rule
from .rewrite import Editor

_budget: contextvars.ContextVar[Optional[list[int]]] = contextvars.ContextVar("nndsl_fusion_budget", default=None)


def env_budget() -> Optional[int]:
    """``NNDSL_MAX_FUSIONS`` as an int, or None when unset."""
    raw = os.environ.get("NNDSL_MAX_FUSIONS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise NndslLoweringError(f"NNDSL_MAX_FUSIONS must be a whole number, got {raw!r}") from None
    if n < 0:
        raise NndslLoweringError(f"NNDSL_MAX_FUSIONS must be >= 0, got {n}")
    return n


@contextlib.contextmanager
def fusion_budget(n: Optional[int]) -> Iterator[None]:
    """Allow at most ``n`` fusion-rule applications inside the block (None: unlimited)."""
    token = _budget.set(None if n is None else [n])
    try:
        yield
    finally:
        _budget.reset(token)


def _allowed(rule: Rule) -> bool:
    """False when ``rule`` is a fusion and the budget is spent."""
    left = _budget.get()
    return not rule.fusion or left is None or left[0] > 0


def _spend(rule: Rule) -> None:
    left = _budget.get()
    if rule.fusion and left is not None:
        left[0] -= 1


def take_fusion() -> bool:
    """For a pass that fuses outside the rule tables (``group``): spend one fusion of the budget;
    False when it is spent."""
    left = _budget.get()
    if left is None:
        return True
    if left[0] <= 0:
        return False
    left[0] -= 1
    return True


def _spans(m: Match) -> tuple:
    return tuple(dict.fromkeys(s for n in m.nodes for s in (n.covers or (n.span,)) if s is not None))


def _try(ed: Editor, rule: Rule, node: Node) -> tuple[Optional[tuple[Value, Match]], Optional[tuple[Match, Reject]]]:
    """Apply ``rule`` at ``node``: ((the replacement value, its match) or None, the first rejection seen).

    A rewrite edits the graph only when it returns a value (None and Reject leave it untouched).
    """
    rejected = None
    for m in rule.pattern.match(node.outputs[0]):
        r = rule.rewrite(ed, m)
        if isinstance(r, Reject):
            rejected = rejected or (m, r)
        elif r is not None:
            return (r, m), None
        # None: this binding does not apply; a commutative op may match the other way round
    return None, rejected


def apply_rules(g: Graph, rules: Sequence[Rule], pass_name: str, *, max_rounds: int = 100) -> bool:
    """Rewrite ``g`` in place with ``rules`` until nothing applies; True when anything changed."""
    ed = Editor(g)
    changed = False
    rejects: dict[tuple[int, str], tuple[Node, Match, Reject, Rule]] = {}
    for _ in range(max_rounds):
        progress = False
        for node in list(g.nodes):
            if id(node) in ed.erased or len(node.outputs) != 1:
                continue
            for rule in rules:
                if not _allowed(rule):
                    continue
                new, rejected = _try(ed, rule, node)
                if new is None:
                    if rejected is not None:
                        rejects.setdefault((id(node), rule.name), (node, *rejected, rule))
                    continue
                _spend(rule)
                value, m = new
                ed.replace_all_uses(node.outputs[0], value)
                ed.erase_dead(m.nodes)
                progress = changed = True
                break
        if not progress:
            return _finish(g, ed, rejects, pass_name, changed)
    raise NndslLoweringError(f"pass {pass_name}: its rules did not reach a fixpoint in {max_rounds} rounds "
                             "(a rule undoes another)")


def _finish(g: Graph, ed: Editor, rejects: dict, pass_name: str, changed: bool) -> bool:
    for node, m, rej, rule in rejects.values():
        if id(node) not in ed.erased and node in g.nodes:
            g.fusion_log.append(FusionNote(_spans(m), f"{pass_name}: {rule.name}", rej.reason))
    return changed
