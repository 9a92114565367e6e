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

import copy

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
                         "_nndsl_slots", "nndsl_backend", "nndsl_graphs", "nndsl_sources", "nndsl_lines",
                         "nndsl_objective", "nndsl_loss", "nndsl_objective_graphs", "nndsl_objective_sources",
                         "nndsl_objective_lines"})
BACKENDS = ("auto", "torch", "triton")
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


def _on_triton(self, args: tuple) -> bool:
    """The Triton function on CUDA inputs (``nndsl_backend == "auto"``), or where ``nndsl_backend``
    names it. The device is known only when the model is called, so the choice is made per call
    (one attribute read and one compare)."""
    b = self.nndsl_backend
    return b == "triton" or (b == "auto" and bool(args) and getattr(args[0], "is_cuda", False))


def _dispatch(self, *args):
    """``forward`` of a model lowered for several backends (see ``_on_triton``)."""
    return self._nndsl_forward_triton(*args) if _on_triton(self, args) else self._nndsl_forward_torch(*args)


def _dispatch_objective(self, *args):
    """``nndsl_objective(*inputs, y)``: the training loss, on the backend ``forward`` would run."""
    return self._nndsl_objective_triton(*args) if _on_triton(self, args) else self._nndsl_objective_torch(*args)


def _generate(graphs: dict[str, Graph], base: Graph) -> dict[str, Forward]:
    """The generated function per backend; each graph reads the parameters of ``base``, in order."""
    out = {}
    for name, g in graphs.items():
        if list(g.params) != list(base.params):  # the passes keep every parameter, in order
            g.params = dict(base.params)
        if name == "torch":
            g = _unfuse_generated(g)
        out[name] = generate_forward(g, name)
    return out


def _unfuse_generated(g: Graph) -> Graph:
    """The PyTorch backend runs the ops a generated kernel covers, not the kernel (a graph from the
    Triton pipeline lowered here — in tests — draws dropout masks from torch's RNG like the original)."""
    if not any(n.op == "generated" for n in g.nodes):
        return g
    from ..passes.rewrite import unfuse

    g = copy.deepcopy(g)
    for n in [n for n in g.nodes if n.op == "generated"]:
        unfuse(g, n)
    return g


def lower_backends(graphs: dict[str, Graph], meta: Optional[dict] = None, *, output_is_probs: bool,
                   backend: str, objectives: Optional[dict[str, Graph]] = None, loss: Any = None) -> NndslModule:
    """One module holding a generated forward per backend in ``graphs`` (``"torch"`` always),
    sharing one parameter tree built from the torch graph, so the state_dict is the same whatever
    the backend and a checkpoint of one loads into the other. ``backend`` ("auto" | "torch" |
    "triton") picks the forward per call (``_dispatch``); it can be changed on the module later.

    ``objectives`` (backend -> objective graph, ``nndsl.objective``; the same backends as
    ``graphs``) adds ``nndsl_objective(*inputs, y)``, the training loss ``loss`` (a ``LossSpec``),
    generated and dispatched per backend like ``forward``.
    """
    base = graphs["torch"]
    fwds = _generate(graphs, base)
    objs = _generate(objectives, base) if objectives else {}
    attrs: dict[str, Any] = {f"_nndsl_forward_{k}": _compile_forward(f) for k, f in fwds.items()}
    attrs["forward"] = _dispatch if len(fwds) > 1 else attrs["_nndsl_forward_torch"]
    if objs:
        attrs.update({f"_nndsl_objective_{k}": _compile_forward(f) for k, f in objs.items()})
        attrs["nndsl_objective"] = _dispatch_objective if len(objs) > 1 else attrs["_nndsl_objective_torch"]
    module = type("NndslModel", (NndslModule,), attrs)()
    slots = build_tree(module, base, MODEL_ATTRS)
    module.__dict__.update(
        graph=base, input_names=[v.name for v in base.inputs], nndsl_meta=dict(meta or {}),
        output_is_probs=bool(output_is_probs), nndsl_line_spans=fwds["torch"].line_spans, _nndsl_slots=slots,
        nndsl_backend=backend if len(fwds) > 1 else "torch", nndsl_graphs=dict(graphs),
        nndsl_sources={k: f.source for k, f in fwds.items()}, nndsl_lines={k: (f.line_spans, f.line_nodes) for k, f in fwds.items()},
        nndsl_loss=loss if objs else None, nndsl_objective_graphs=dict(objectives or {}),
        nndsl_objective_sources={k: f.source for k, f in objs.items()},
        nndsl_objective_lines={k: (f.line_spans, f.line_nodes) for k, f in objs.items()})
    return module


def lower(g: Graph, meta: Optional[dict] = None, *, output_is_probs: Optional[bool] = None
          ) -> tuple[NndslModule, str]:
    """The module for one graph on the PyTorch backend (``lower_backends`` with only ``"torch"``);
    returns it and the generated forward source.

    ``output_is_probs``: decided by the caller before the passes ran (``ends_in_probs``); when
    None it is read from ``g``.
    """
    probs = ends_in_probs(g) if output_is_probs is None else bool(output_is_probs)
    module = lower_backends({"torch": g}, meta, output_is_probs=probs, backend="torch")
    return module, module.nndsl_sources["torch"]
