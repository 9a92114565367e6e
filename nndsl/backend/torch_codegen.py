"""IR Graph -> torch.nn.Module: the parameter tree, then a generated ``forward`` compiled once.

* ``module_tree`` registers parameters and buffers on sub-modules named like the source, so
  ``state_dict`` keys read ``blocks.3.attn.qkv.weight``, initialized as PyTorch would;
* ``emit`` writes ``forward`` from the IR alone (generated identifiers, values freed after their
  last use, parameters read once per call), ``safety`` checks it, and it is compiled into a
  method of a per-model subclass: a call runs straight-line torch code with no graph
  interpretation, and ``torch.compile`` sees ordinary Python.

The generated code runs with a namespace of its own: ``torch``, ``F``, ``rt``, the constants
table ``K`` and ``kern`` (``nndsl.kernels``, bound only when used).
"""
from __future__ import annotations

import itertools
import linecache
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Span
from ..ir.graph import Graph
from . import rt
from .emit import Forward, generate_forward
from .module_tree import build_tree

# instance attributes of every compiled model (a top-level layer may not take these names)
MODEL_ATTRS = frozenset({"graph", "input_names", "output_is_probs", "nndsl_meta", "nndsl_line_spans",
                         "_nndsl_slots"})
_counter = itertools.count(1)


class NndslModule(nn.Module):
    """Base class of every compiled model; ``forward`` is generated per model."""

    graph: Graph
    input_names: list[str]
    output_is_probs: bool
    nndsl_meta: dict
    nndsl_line_spans: list[Optional[Span]]  # line of the generated forward - 1 -> the source span it computes

    def extra_repr(self) -> str:
        ins = ", ".join(f"{v.name}: {v.type}" for v in self.graph.inputs)
        outs = ", ".join(str(v.type) for v in self.graph.outputs)
        return f"{self.graph.name}({ins}) -> {outs}"


def ends_in_probs(g: Graph) -> bool:
    """Whether the model's first output is probabilities (a trailing softmax or sigmoid).

    The compiler decides this on the elaborated graph, before any pass may rewrite the softmax.
    """
    last = g.outputs[0].producer if g.outputs else None
    return bool(last is not None and last.op in ("softmax", "sigmoid"))


def _compile_forward(fwd: Forward) -> Any:
    """Execute the checked source in a namespace of its own; returns the ``forward`` function."""
    filename = f"<nndsl-forward-{next(_counter)}>"
    # keep the source visible to tracebacks and inspect
    linecache.cache[filename] = (len(fwd.source), None, fwd.source.splitlines(True), filename)
    # full builtins: torch.compile evaluates its guards in this namespace (safety.check limits
    # the source to float/int/min/max/abs)
    namespace: dict[str, Any] = {"torch": torch, "F": F, "rt": rt, "K": fwd.consts}
    if "kern" in fwd.source:  # only a kernel lowering names it; importing triton is not free
        from .. import kernels

        namespace["kern"] = kernels
    exec(compile(fwd.source, filename, "exec"), namespace)  # noqa: S102 - source checked by safety.check
    return namespace["forward"]


def lower(g: Graph, meta: Optional[dict] = None, *, output_is_probs: Optional[bool] = None,
          backend: str = "torch") -> tuple[NndslModule, str]:
    """Build the module for ``g``; returns it and the generated forward source.

    ``output_is_probs``: decided by the caller before the passes ran (``ends_in_probs``); when
    None it is read from ``g``.
    """
    fwd = generate_forward(g, backend)
    cls = type("NndslModel", (NndslModule,), {"forward": _compile_forward(fwd)})
    module = cls()
    slots = build_tree(module, g, MODEL_ATTRS)
    # set through __dict__: plain data, whatever the layers under the root are called
    module.__dict__.update(
        graph=g, input_names=[v.name for v in g.inputs], nndsl_meta=dict(meta or {}),
        output_is_probs=ends_in_probs(g) if output_is_probs is None else bool(output_is_probs),
        nndsl_line_spans=fwd.line_spans, _nndsl_slots=slots)
    return module, fwd.source
