"""Incremental decoding with a KV cache: a ``step`` function generated from a token model's IR.

``Decoder(module)`` checks the model's PyTorch graph (``decode_plan.plan``) and generates

    def step(self, cache, pos, v0):        # v0: the new token ids [B, n] at positions pos..pos+n-1
        d0 = v0.shape[0]
        d1 = v0.shape[1]                   # T is the number of *new* positions
        (p0, p1, ...) = rt.params(self)
        v1 = F.embedding(v0, p0)
        v2 = kv.pos_rows(p1, pos, d1)      # pos_embedding: rows pos..pos+n-1
        ...
        v16 = kv.attend(cache, 0, v11, v13, v15, None, False)   # causal attention over the cache
        ...
        return v29

Every other line is the op's own PyTorch lowering (``registry.emitter(op, "torch")``, the lines
``safety.check`` accepts in the model's forward); the three rewritten ones are fixed templates over
generated names and numbers, so no text of the .nn file reaches the source here either.
A prompt of n tokens is one call with n positions; each new token is one call with one position:
the attention inputs hold one query, and the keys and values of earlier positions come from the
cache. ``Decoder.step(ids, pos)`` runs it; ``Decoder.reset()`` empties the cache.
"""
from __future__ import annotations

import itertools
import linecache
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..errors import NndslDataError
from ..ir.graph import Graph, Node
from . import emit, rt
from .decode_plan import Plan, plan, reads_position

_counter = itertools.count(1)


class KVCache:
    """The keys and values of every position decoded so far, one (k, v) pair per causal attention node."""

    def __init__(self, slots: int):
        self.entries: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = [None] * slots

    @property
    def length(self) -> int:
        """How many positions the cache holds."""
        first = self.entries[0] if self.entries else None
        return 0 if first is None else first[0].shape[-2]


def attend(cache: KVCache, slot: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float],
           gqa: bool) -> torch.Tensor:
    """Causal attention of the new queries over the cached keys and values and the new ones (appended):
    query i of n new ones sits at position past + i and reads keys 0..past + i."""
    past = cache.entries[slot]
    if past is not None:
        k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
    cache.entries[slot] = (k, v)
    tq, tk = q.shape[-2], k.shape[-2]
    mask = None if tq == 1 or tq == tk else torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=1 < tq == tk, scale=scale,
                                          enable_gqa=gqa)


def pos_rows(weight: torch.Tensor, pos: int, n: int) -> torch.Tensor:
    """Rows pos..pos+n-1 of a learned positional table."""
    if pos + n > weight.shape[0]:
        raise NndslDataError(f"position {pos + n - 1} is past the model's positional table ({weight.shape[0]} rows)")
    return weight[pos:pos + n]


def rope_angles(x: torch.Tensor, pos: int, n: int, half: int, base: float) -> torch.Tensor:
    """The rotary angle table of positions pos..pos+n-1, computed as the op's lowering computes all of them."""
    dt = torch.promote_types(x.dtype, torch.float32)
    t = torch.arange(pos, pos + n, device=x.device, dtype=dt)
    return torch.outer(t, base ** (torch.arange(half, device=x.device, dtype=dt) * (-1.0 / half)))


class Decoder:
    """A module's incremental decoder: ``step(ids, pos)`` -> logits of the new positions ``[B, n, vocab]``."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        graph = module.nndsl_graphs["torch"] if hasattr(module, "nndsl_graphs") else module.graph
        self.plan: Plan = plan(graph)
        self.source, consts = generate_step(graph, self.plan)
        self._fn = _compile(self.source, consts)
        self.cache = KVCache(len(self.plan.attention))

    def reset(self) -> None:
        self.cache = KVCache(len(self.plan.attention))

    @torch.no_grad()
    def step(self, ids: torch.Tensor, pos: int) -> torch.Tensor:
        """Feed ids [B, n] at positions pos.. (``pos`` must equal the cache's length)."""
        if pos != self.cache.length:
            raise ValueError(f"decoding position {pos} with {self.cache.length} positions cached")
        out = self._fn(self.module, self.cache, pos, ids)
        return out[0] if isinstance(out, (tuple, list)) else out


def generate_step(g: Graph, p: Plan) -> tuple[str, tuple]:
    """The source of ``step(self, cache, pos, v0)`` and its constants table ``K``."""
    names = emit._Names(g)
    consts: list[Any] = []
    args = [names.define(v) for v in g.inputs]
    lines = list(emit._dim_bindings(g, names).values())
    if g.params:
        lines.append(f"({', '.join(names.params.values())},) = rt.params(self)")
    slots = {id(n): i for i, n in enumerate(p.attention)}
    for n in g.nodes:
        if n.op == "param":
            emit._bind_param(n, names)
            continue
        special = _positional_line(n, names, slots, p)
        lines.append(special if special is not None else emit._emit_node(n, names, consts, "torch"))
    lines.append(f"return {', '.join(names[v] for v in g.outputs)}")
    src = f"def step(self, cache, pos, {', '.join(args)}):\n" + "".join(f"    {ln}\n" for ln in lines)
    return src, tuple(consts)


def _positional_line(n: Node, names: emit._Names, slots: dict[int, int], p: Plan) -> Optional[str]:
    """The rewritten line of an op that reads positions (None: the op's own lowering)."""
    from ..ir import dims as D

    ins = [names[v] for v in n.inputs]
    T = D.symbol(p.seq)
    if id(n) in slots:
        gqa = not D.equal(n.inputs[0].type.shape[-3], n.inputs[1].type.shape[-3]) if n.inputs[0].type.rank >= 3 \
            else False
        scale = n.attrs.get("scale")
        call = (f"kv.attend(cache, {slots[id(n)]}, {ins[0]}, {ins[1]}, {ins[2]}, "
                f"{None if scale is None else float(scale)!r}, {gqa!r})")
    elif n.op == "pos_embedding" and reads_position(n, T):
        call = f"kv.pos_rows({ins[1]}, pos, {names.dims[p.seq]})"
    elif n.op == "rope_angles" and reads_position(n, T):
        call = (f"kv.rope_angles({ins[0]}, pos, {names.dims[p.seq]}, {int(n.attrs['half'])}, "
                f"{float(n.attrs['base'])!r})")
    else:
        return None
    return f"{names.define(n.out)} = {call}"


def _compile(source: str, consts: tuple) -> Any:
    """Execute the generated step in a namespace of its own (``kv`` is this module)."""
    import sys

    from . import safety

    public = frozenset(n for n in globals() if not n.startswith("_"))
    safety.check(source, name="step", fixed=("self", "cache", "pos"), names=frozenset({"kv"}), attrs=public)
    filename = f"<nndsl-decode-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"torch": torch, "F": F, "rt": rt, "K": consts, "kv": sys.modules[__name__]}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - lowerings and fixed templates (see above)
    return namespace["step"]
