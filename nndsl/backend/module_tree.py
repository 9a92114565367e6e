"""The sub-module tree that holds a compiled model's parameters and buffers.

Parameters are registered on a tree of sub-modules that mirrors their dotted names
(``blocks.3.attn.qkv.weight``; a scope whose keys are 0..n-1 becomes an ``nn.ModuleList``), so
``state_dict`` keys read like the source. Names are data here: entries go straight into the
``_modules``/``_parameters``/``_buffers`` dicts, so a layer may be called ``class``, ``to`` or
``forward`` (generated code never reads them as attributes). Only the names that ``nn.Module``
itself assigns on an instance (``training``, ...) are refused, with a located error.

``build_tree`` returns the slots ``rt.params`` reads: (owner dict, key) per parameter, in
``graph.params`` order.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..errors import NndslLoweringError, Span
from ..ir.graph import Graph, Param
from ..ir.types import DTYPES
from . import init as initializers


class Scope(nn.Module):
    """A plain container for the parameters of one scope (``attn``, ``qkv``)."""

    def forward(self, *args):  # pragma: no cover - containers are never called
        raise RuntimeError("an nndsl parameter scope is not callable")


# names nn.Module assigns on its instances at run time (``self.training = mode``): a child or a
# parameter under one of them would break ``.train()``/``.compile()``
MODULE_ATTRS = frozenset(vars(nn.Module())) | {"_compiled_call_impl"}


def _first_span(tree: Any) -> Optional[Span]:
    if isinstance(tree, Param):
        return tree.span
    for sub in tree.values():
        span = _first_span(sub)
        if span is not None:
            return span
    return None


def _nest(g: Graph) -> dict[str, Any]:
    """The dotted parameter names as a nested dict (leaves: Param)."""
    tree: dict[str, Any] = {}
    for p in g.params.values():
        parts = p.name.split(".")
        if any(not part for part in parts):
            raise NndslLoweringError(f"parameter name {p.name!r} has an empty component", p.span)
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise NndslLoweringError(f"parameter {p.name!r} nests under another parameter", p.span)
        if parts[-1] in node:
            raise NndslLoweringError(f"parameter {p.name!r} is declared twice or holds a scope", p.span)
        node[parts[-1]] = p
    return tree


def build_tree(root: nn.Module, g: Graph, reserved_at_root: frozenset = frozenset()) -> list[tuple[dict, str]]:
    """Create and initialize every declared parameter and buffer under ``root``; returns the slots."""
    slots: dict[str, tuple[dict, str]] = {}

    def materialize(mod: nn.Module, sub: dict[str, Any], prefix: str) -> None:
        for key, val in sub.items():
            full = f"{prefix}{key}"
            if key in MODULE_ATTRS or (mod is root and key in reserved_at_root):
                owner = "torch.nn.Module" if key in MODULE_ATTRS else "the compiled model"
                raise NndslLoweringError(f"'{key}' (in '{full}') is a name {owner} uses itself; "
                                         "choose another name= for this layer", _first_span(val))
            if isinstance(val, dict):
                keys = list(val)
                if all(k.isdigit() and isinstance(val[k], dict) for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
                    child: nn.Module = nn.ModuleList([Scope() for _ in keys])
                    for k in keys:
                        materialize(child[int(k)], val[k], f"{full}.{k}.")
                else:
                    child = Scope()
                    materialize(child, val, f"{full}.")
                mod._modules[key] = child
            else:
                t = torch.empty(val.shape, dtype=DTYPES[val.dtype])
                initializers.initialize(t, val.init, val.init_args)
                owner = mod._buffers if val.buffer else mod._parameters
                owner[key] = t if val.buffer else nn.Parameter(t)
                slots[val.name] = (owner, key)

    materialize(root, _nest(g), "")
    return [slots[name] for name in g.params]
