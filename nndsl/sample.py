"""Text from a trained token model: ``nndsl sample`` and ``sample_text``.

Each new token is drawn from the model's logits at the last position (divided by the temperature,
cut to the ``top_k`` largest; temperature 0 takes the largest), with a ``torch.Generator`` seeded
by ``seed`` on the CPU, so a seed gives the same text on any device.

With ``cache=True`` (the default) a KV cache (``backend.decode``) makes each new token cost one
position; ``cache=False`` runs the whole context through the model for every token.

The context window. A model sees at most ``context`` tokens: the rows of its positional table,
else the window it was trained on (run.json), else any number. When the text outgrows it, the
window slides: it restarts on the newest ``context // 2`` tokens (the cache is recomputed from
them, one call), then grows one token per step again. Both ways of sampling slide at the same
tokens, so cached and uncached sampling give the same text.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .errors import NndslConfigError
from .ir import dims as D


def window_start(start: int, n: int, context: Optional[int]) -> int:
    """The first token the model sees when it predicts token ``n`` (its window began at ``start``)."""
    if context is None or n - start <= context:
        return start
    return n - max(1, context // 2)


def context_length(module: torch.nn.Module) -> Optional[int]:
    """The most tokens ``module`` takes: its positional tables' rows, else the recorded training window."""
    g = module.nndsl_graphs["torch"] if hasattr(module, "nndsl_graphs") else module.graph
    rows = [n.inputs[1].type.shape[0] for n in g.nodes if n.op == "pos_embedding"]
    if rows:
        return min(rows)
    seq = g.inputs[0].type.shape[-1] if g.inputs else None
    if seq is not None and D.is_static(seq):
        return seq
    data = (getattr(module, "nndsl_meta", None) or {}).get("data") or {}
    field = (data.get("inputs") or [None])[0]
    shape = ((data.get("fields") or {}).get(field) or {}).get("shape")
    return int(shape[-1]) if isinstance(shape, list) and shape and isinstance(shape[-1], int) else None


class _Uncached:
    """Logits for the next token from the whole window, recomputed every time."""

    def __init__(self, module: torch.nn.Module, context: Optional[int]):
        self.module, self.context, self.start = module, context, 0

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.start = window_start(self.start, ids.shape[1], self.context)
        out = self.module(ids[:, self.start:])
        return (out[0] if isinstance(out, (tuple, list)) else out)[0, -1]


class _Cached:
    """Logits for the next token from the KV cache: only the tokens not yet seen go through the model."""

    def __init__(self, module: torch.nn.Module, context: Optional[int]):
        from .backend.decode import Decoder

        self.decoder = Decoder(module)
        self.context, self.start, self.fed = context, 0, 0

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        start = window_start(self.start, ids.shape[1], self.context)
        if start != self.start or self.fed == 0:  # a new window: recompute the cache from its tokens
            self.decoder.reset()
            self.start, self.fed = start, start
        logits = self.decoder.step(ids[:, self.fed:], self.fed - self.start)
        self.fed = ids.shape[1]
        return logits[0, -1]


def pick(logits: torch.Tensor, temperature: float, top_k: Optional[int], gen: torch.Generator) -> int:
    """One token id drawn from ``logits`` [vocab] (see the module docstring)."""
    logits = logits.detach().to("cpu", torch.float64)
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen))


def sample(module: torch.nn.Module, prompt: Sequence[int], tokens: int, *, temperature: float = 1.0,
           top_k: Optional[int] = None, seed: int = 0, cache: bool = True,
           context: Optional[int] = None) -> list[int]:
    """``tokens`` new token ids after ``prompt`` (ids), from ``module`` in eval mode.
    ``context``: the window (default ``context_length(module)``)."""
    _check(prompt, tokens, temperature, top_k)
    module.eval()
    context = context_length(module) if context is None else context
    device = next(iter(module.parameters()), torch.empty(0)).device
    gen = torch.Generator().manual_seed(seed)
    step = (_Cached if cache else _Uncached)(module, context)
    ids = torch.tensor([list(prompt)], dtype=torch.int64, device=device)
    probs = bool(getattr(module, "output_is_probs", False))
    for _ in range(tokens):
        logits = step(ids)
        nxt = pick(logits.log() if probs else logits, temperature, top_k, gen)
        ids = torch.cat([ids, ids.new_tensor([[nxt]])], dim=1)
    return ids[0, len(prompt):].tolist()


def sample_text(module: torch.nn.Module, prompt: str, tokens: int, **options) -> str:
    """``sample`` on text: the run's recorded vocabulary (``nndsl.load``) encodes the prompt and decodes the result."""
    prep = getattr(module, "preprocess", None)
    if prep is None or prep.vocab is None:
        raise NndslConfigError("this model has no recorded vocabulary: sample from the run folder of a model "
                               "trained on text(...)")
    return prep.decode(sample(module, prep.encode(prompt), tokens, **options))


def _check(prompt: Sequence[int], tokens: int, temperature: float, top_k: Optional[int]) -> None:
    if len(prompt) == 0:
        raise NndslConfigError("the prompt is empty: give at least one token (one character)")
    if tokens < 0:
        raise NndslConfigError(f"the number of tokens must be >= 0, got {tokens}")
    if not temperature >= 0 or temperature == float("inf"):
        raise NndslConfigError(f"the temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise NndslConfigError(f"top-k must be >= 1, got {top_k}")
