"""IR passes: each is a function ``Graph -> PassResult`` and they run in one ordered list.

A pass's docstring says what must run before or after it. ``run_passes`` verifies the graph
after every pass when asked (tests do), and a failing pass is reported by name together with
the passes that ran before it. Fusion passes and the Triton lowering plug in here by being
added to ``PIPELINES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import NndslError, NndslLoweringError
from ..ir.graph import Graph


@dataclass
class PassResult:
    graph: Graph
    changed: bool


Pass = Callable[[Graph], PassResult]


def dead_code_elimination(g: Graph) -> PassResult:
    """Drop nodes whose outputs nobody reads (and parameters no node reads any more).

    Runs first and after any rewrite; needs nothing before it.
    """
    live: set[int] = {v.id for v in g.outputs}
    keep = []
    for n in reversed(g.nodes):
        if any(v.id in live for v in n.outputs):
            keep.append(n)
            live.update(v.id for v in n.inputs)
    keep.reverse()
    changed = len(keep) != len(g.nodes)
    if changed:
        g.nodes = keep
        used = {n.attrs["name"] for n in g.nodes if n.op == "param"}
        g.params = {k: p for k, p in g.params.items() if k in used}
    return PassResult(g, changed)


# One ordered list of passes per backend.
PIPELINES: dict[str, list[Pass]] = {
    # the PyTorch reference backend: structural clean-up only
    "torch": [dead_code_elimination],
}


def run_passes(g: Graph, backend: str = "torch", *, verify: bool = False) -> Graph:
    """Run the backend's pipeline over ``g``; with ``verify`` check the IR after each pass."""
    from ..ir.verify import verify as verify_graph

    ran: list[str] = []
    for p in PIPELINES[backend]:
        try:
            g = p(g).graph
            if verify:
                verify_graph(g)
        except NndslError as e:
            if isinstance(e, NndslLoweringError) and "pass " in e.message:
                raise
            before = ", ".join(ran) or "none"
            raise NndslLoweringError(f"pass {p.__name__} failed (after: {before}): {e.message}", e.span) from e
        ran.append(p.__name__)
    return g
