"""The PyTorch reference backend: IR Graph -> torch.nn.Module.

* parameters and buffers are registered on a tree of sub-modules that mirrors their dotted
  names (``blocks.3.attn.qkv.weight``; numeric components become ``nn.ModuleList`` entries),
  so ``state_dict`` keys read like the source, and are initialized as PyTorch initializes
  the same layer (``backend.init``);
* ``forward`` is generated Python source — one line per IR node, each op's ``emit`` — compiled
  once into a method of a per-model subclass, so a call runs straight-line torch code with no
  graph interpretation (and ``torch.compile`` sees ordinary Python).
"""
from __future__ import annotations

import keyword
import linecache
import re
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NndslLoweringError
from ..ir import dims as D
from ..ir.graph import Graph, Node, Value
from ..ir.types import DTYPES
from ..ops import registry
from . import init as initializers
from . import rt


class Scope(nn.Module):
    """A plain container for the parameters of one scope (``attn``, ``qkv``)."""

    def forward(self, *args):  # pragma: no cover - containers are never called
        raise RuntimeError("an nndsl parameter scope is not callable")


class NndslModule(nn.Module):
    """Base class of every compiled model; ``forward`` is generated per model."""

    graph: Graph
    input_names: list[str]
    output_is_probs: bool
    nndsl_meta: dict

    def extra_repr(self) -> str:
        ins = ", ".join(f"{v.name}: {v.type}" for v in self.graph.inputs)
        outs = ", ".join(str(v.type) for v in self.graph.outputs)
        return f"{self.graph.name}({ins}) -> {outs}"


_RESERVED = set(dir(nn.Module)) | {"graph", "input_names", "output_is_probs", "nndsl_meta"}


def _build_tree(root: nn.Module, g: Graph) -> None:
    """Create the sub-module tree for every declared parameter and buffer, then initialize them."""
    tree: dict[str, Any] = {}
    for p in g.params.values():
        parts = p.name.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise NndslLoweringError(f"parameter '{p.name}' nests under another parameter", p.span)
        node[parts[-1]] = p

    def materialize(mod: nn.Module, sub: dict[str, Any], prefix: str) -> None:
        for key, val in sub.items():
            full = f"{prefix}{key}"
            if key in _RESERVED and not key.isdigit():
                span = val.span if not isinstance(val, dict) else None
                raise NndslLoweringError(f"'{key}' (in '{full}') is reserved by torch.nn.Module; "
                                         "choose another name= for this layer", span)
            if isinstance(val, dict):
                keys = list(val.keys())
                if keys and all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
                    child: nn.Module = nn.ModuleList([Scope() for _ in keys])
                    for k in keys:
                        materialize(child[int(k)], val[k], f"{full}.{k}.")
                else:
                    child = Scope()
                    materialize(child, val, f"{full}.")
                if isinstance(mod, nn.ModuleList):
                    raise NndslLoweringError(f"unexpected scope layout at '{full}'")
                mod.add_module(key, child)
            else:
                t = torch.empty(val.shape, dtype=DTYPES[val.dtype])
                initializers.initialize(t, val.init, val.init_args)
                if val.buffer:
                    mod.register_buffer(key, t)
                else:
                    mod.register_parameter(key, nn.Parameter(t))

    materialize(root, tree, "")


def _attr_path(name: str) -> str:
    """'blocks.3.attn.qkv.weight' -> 'self.blocks[3].attn.qkv.weight'."""
    out = "self"
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


class _Names:
    """Python variable names for IR values: the source name when there is one, made unique."""

    def __init__(self, reserved: set[str]):
        self.taken = set(reserved)
        self.of: dict[int, str] = {}

    def name(self, v: Value) -> str:
        if v.id in self.of:
            return self.of[v.id]
        base = v.name if v.name and v.name.isidentifier() and not keyword.iskeyword(v.name) else "t"
        base = re.sub(r"_\d+$", "", base) or "t"
        cand = base if base not in self.taken else f"{base}_{v.id}"
        while cand in self.taken:
            cand += "_"
        self.taken.add(cand)
        self.of[v.id] = cand
        return cand


def _symbol_bindings(g: Graph, names: _Names) -> list[str]:
    """Lines binding each symbolic dim to the runtime size of the first input axis that is exactly it."""
    lines = []
    for sym in g.symbols:
        for v in g.inputs:
            hit = [i for i, d in enumerate(v.type.shape) if not D.is_static(d) and D.dim_str(d) == sym]
            if hit:
                lines.append(f"{sym} = {names.name(v)}.shape[{hit[0]}]")
                break
        else:
            raise NndslLoweringError(f"symbolic dim {sym} does not appear alone in any input shape")
    return lines


def generate_forward(g: Graph) -> str:
    """The Python source of ``forward`` for graph ``g``."""
    reserved = {"self", "torch", "F", "rt", "nn", "_check"} | set(g.symbols)
    names = _Names(reserved)
    args = [names.name(v) for v in g.inputs]
    body: list[str] = []
    for v in g.inputs:
        pattern = tuple(d if D.is_static(d) else None for d in v.type.shape)
        body.append(f"_check({names.name(v)!r}, {names.name(v)}, {pattern!r}, {str(v.type)!r})")
    body += _symbol_bindings(g, names)
    for n in g.nodes:
        body.append(_emit_node(n, names))
    rets = ", ".join(names.name(v) for v in g.outputs)
    body.append(f"return {rets}")
    src = f"def forward(self, {', '.join(args)}):\n" + "".join(f"    {line}\n" for line in body)
    return src


def _emit_node(n: Node, names: _Names) -> str:
    outs = [names.name(v) for v in n.outputs]
    if n.op == "param":
        expr = _attr_path(n.attrs["name"])
    else:
        opdef = registry.get(n.op)
        ctx = registry.EmitCtx(n, [names.name(v) for v in n.inputs], n.attrs)
        try:
            expr = opdef.emit(ctx)
        except NndslLoweringError:
            raise
        except Exception as e:  # an emit that cannot handle its attrs is a compiler bug; say where
            raise NndslLoweringError(f"cannot lower {n.op}: {e}", n.span) from e
    lhs = outs[0] if len(outs) == 1 else ", ".join(outs)
    comment = f"  # {n.span.file}:{n.span.line}" if n.span is not None else ""
    return f"{lhs} = {expr}{comment}"


def check_input(name: str, t: Any, pattern: tuple, type_str: str) -> None:
    """Runtime check of a model input against its declared type (cheap: one shape compare)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"input '{name}' must be a tensor of type {type_str}, got {type(t).__name__}")
    if t.dim() != len(pattern) or any(p is not None and p != s for p, s in zip(pattern, t.shape)):
        raise ValueError(f"input '{name}' must have shape {type_str}, got {list(t.shape)}")


_counter = [0]


def lower(g: Graph, meta: Optional[dict] = None) -> tuple[NndslModule, str]:
    """Build the module for ``g``; returns it and the generated forward source."""
    src = generate_forward(g)
    _counter[0] += 1
    filename = f"<nndsl:{g.name}:{_counter[0]}>"
    # keep the source visible to tracebacks and inspect
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace: dict[str, Any] = {"torch": torch, "F": F, "nn": nn, "rt": rt, "_check": check_input}
    exec(compile(src, filename, "exec"), namespace)
    cls = type(g.name if g.name.isidentifier() else "NndslModel", (NndslModule,), {"forward": namespace["forward"]})
    module = cls()
    _build_tree(module, g)
    module.graph = g
    module.input_names = [v.name for v in g.inputs]
    last = g.outputs[0].producer if g.outputs else None
    module.output_is_probs = bool(last is not None and last.op in ("softmax", "sigmoid"))
    module.nndsl_meta = dict(meta or {})
    return module, src
