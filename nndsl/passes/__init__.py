"""IR passes: each is a function ``Graph -> PassResult``; one ordered list per backend.

A pass's docstring says what must run before or after it. ``run_passes`` verifies the graph
after every pass when asked (tests do), and a failing pass is reported by name together with
the passes that ran before it. The fusion budget (``max_fusions`` or ``NNDSL_MAX_FUSIONS``) caps
how many fusions all passes of one run apply together, to bisect a fusion that breaks a result.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..errors import NndslError, NndslLoweringError
from ..ir.graph import Graph
from .canonicalize import canonicalize
from .claim import claim
from .cse import cse
from .dce import dead_code_elimination
from .driver import env_budget, fusion_budget
from .fuse_epilogues import fuse_epilogues
from .fuse_loss import fuse_loss
from .group import group
from .raising import raise_stdlib
from .result import Pass, PassResult

__all__ = ["PassResult", "Pass", "PIPELINES", "run_passes", "pass_name", "dead_code_elimination", "canonicalize",
           "cse", "raise_stdlib", "fuse_epilogues", "fuse_loss", "claim", "group"]

# One ordered list of passes per backend.
PIPELINES: dict[str, list[Pass]] = {
    # the PyTorch reference backend: structural clean-up only
    "torch": [dead_code_elimination],
    # the Triton backend: clean up, put one spelling on everything, raise hand-written math to stdlib
    # ops, fuse matmul/conv epilogues, fuse the loss (objective graphs) with the projection before it,
    # hand what a kernel takes to that kernel, generate kernels for the pointwise and row-reduction
    # chains left between them, drop what is left over
    "triton": [dead_code_elimination, canonicalize, cse, raise_stdlib, fuse_epilogues, fuse_loss, claim, group,
               dead_code_elimination],
}

_SHORT = {"dead_code_elimination": "dce", "raise_stdlib": "raise"}


def pass_name(p: Pass) -> str:
    """The short name of a pass, as ``--dump-ir`` takes it: dce, canonicalize, cse, raise, ..."""
    return _SHORT.get(p.__name__, p.__name__)


def run_passes(g: Graph, backend: str = "torch", *, verify: bool = False, max_fusions: Optional[int] = None,
               after: Optional[Callable[[str, Graph], None]] = None) -> Graph:
    """Run the backend's pipeline over ``g``; with ``verify`` check the IR after each pass.

    ``after(name, graph)`` is called after each pass (``nndsl compile --dump-ir``).
    """
    from ..ir.verify import verify as verify_graph

    if backend not in PIPELINES:
        raise NndslLoweringError(f"no pass pipeline for backend '{backend}' (known: {', '.join(PIPELINES)})")
    ran: list[str] = []
    budget = max_fusions if max_fusions is not None else env_budget()
    with fusion_budget(budget):
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
            if after is not None:
                after(pass_name(p), g)
    return g
