"""Instance naming rules (they decide the state_dict keys).

* A stateful call (a block, or a builtin registered ``stateful=True``) opens a child scope named
  by its ``name=`` argument, else ``snake_case(callee)`` made unique in the current scope by a
  counter: ``linear``, ``linear_1``, ``causal_self_attention``.
* ``repeat N as blocks`` unrolls in scopes ``blocks.0`` ... ``blocks.<N-1>`` (``repeat``,
  ``repeat_1``... without ``as``). When the body holds exactly one stateful call and no nested
  repeat (decided statically, from the AST), that call's instance IS ``blocks.<i>``.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

from ..frontend import ast


def snake_case(name: str) -> str:
    """CausalSelfAttention -> causal_self_attention, MLP -> mlp, GPT2Block -> gpt2_block."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def callee_name(call: ast.Call) -> Optional[str]:
    """``f`` for ``f(...)`` and for the method call ``x.f(...)``; None for anything else."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def single_stateful_call(body: list, is_stateful: Callable[[str], bool]) -> Optional[ast.Call]:
    """The body's only stateful call, if it has exactly one and no nested repeat."""
    nodes = [n for s in body for n in ast.walk(s)]
    if any(isinstance(n, ast.Repeat) for n in nodes):
        return None
    found = [n for n in nodes if isinstance(n, ast.Call)
             and (name := callee_name(n)) is not None and is_stateful(name)]
    return found[0] if len(found) == 1 else None
