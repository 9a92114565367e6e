"""Builder: the one way to add ops and parameters to a Graph during elaboration.

It tracks the parameter scope (``blocks.3.attn``), hands out unique instance names
inside a scope (``linear``, ``linear_1``...), runs each op's shape inference as the
node is created, and reports inference failures at the current source span.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Sequence, Union

from ..errors import NndslError, NndslNameError, NndslShapeError, Span
from ..ops import registry
from .graph import Graph, Param, Value
from .types import TensorType


class Builder:
    def __init__(self, graph: Graph):
        self.graph = graph
        self._scope: list[str] = []
        self._counters: dict[str, dict[str, int]] = {}
        self._used: dict[str, set[str]] = {}  # instance names taken in each scope
        self._span: list[Optional[Span]] = [None]

    # -- source positions ------------------------------------------------------------------
    @property
    def span(self) -> Optional[Span]:
        return self._span[-1]

    @contextlib.contextmanager
    def at(self, span: Optional[Span]) -> Iterator[None]:
        """Locate errors and new nodes at ``span`` while inside the block."""
        self._span.append(span if span is not None else self.span)
        try:
            yield
        finally:
            self._span.pop()

    def error(self, message: str, hint: Optional[str] = None, cls: type = NndslShapeError) -> NndslError:
        return cls(message, self.span, hint)

    # -- scopes ----------------------------------------------------------------------------
    @property
    def scope(self) -> str:
        return ".".join(self._scope)

    def unique_name(self, base: str) -> str:
        """``base`` the first time in this scope, then ``base_1``, ``base_2``... (skipping claimed names)."""
        counts = self._counters.setdefault(self.scope, {})
        used = self._used.setdefault(self.scope, set())
        n = counts.get(base, 0)
        name = base if n == 0 else f"{base}_{n}"
        while name in used:
            n += 1
            name = f"{base}_{n}"
        counts[base] = n + 1
        used.add(name)
        return name

    def claim_name(self, name: str) -> str:
        """An explicit instance name (``name="attn"``); an error when already used in this scope."""
        used = self._used.setdefault(self.scope, set())
        if name in used:
            raise self.error(f"the name '{name}' is already used in scope '{self.scope or '<model>'}'",
                             cls=NndslNameError)
        used.add(name)
        return name

    @contextlib.contextmanager
    def child(self, name: str) -> Iterator[None]:
        """Enter the parameter scope ``name`` (a path component, e.g. 'attn' or '3')."""
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    # -- graph construction ----------------------------------------------------------------
    def op(self, name: str, inputs: Sequence[Value], attrs: Optional[dict[str, Any]] = None
           ) -> Union[Value, tuple[Value, ...]]:
        """Add op ``name``; returns its output (a tuple when it has several)."""
        attrs = dict(attrs or {})
        opdef = registry.get(name)
        ctx = registry.InferCtx(name, [v.type for v in inputs], attrs, [v.name for v in inputs])
        try:
            out_types = opdef.infer(ctx)
        except registry.InferError as e:
            raise e.kind(e.message, self.span, e.hint) from None
        node = self.graph.add_node(name, list(inputs), attrs, out_types, self.span, self.scope)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)

    def param(self, name: str, shape: Sequence[int], *, init: str, init_args: Optional[dict] = None,
              dtype: str = "f32", buffer: bool = False) -> Value:
        """Declare parameter ``<scope>.<name>`` and return the value that reads it."""
        full = f"{self.scope}.{name}" if self.scope else name
        if full in self.graph.params:
            raise self.error(f"parameter '{full}' is declared twice", cls=NndslNameError)
        for d in shape:
            if not isinstance(d, int):
                raise self.error(
                    f"parameter '{full}' needs a fixed size, but its shape depends on {d} "
                    "(a parameter's shape cannot use a symbolic dim such as a batch size)")
        p = Param(full, tuple(int(d) for d in shape), dtype, init, dict(init_args or {}), buffer, self.span)
        self.graph.params[full] = p
        node = self.graph.add_node("param", [], {"name": full}, [TensorType(p.shape, dtype)],
                                   self.span, self.scope)
        return node.outputs[0]
