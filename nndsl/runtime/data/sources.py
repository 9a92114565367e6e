"""In-memory datasets and how batches are drawn from them.

Every loader returns a ``Source``: tensors held in memory, indexed a whole batch at a time
(``source[idx_tensor] -> (x, y)``). A DataLoader then runs with ``batch_size=None`` and a sampler
that yields index tensors, so a batch is one gather instead of ``batch`` calls to ``__getitem__``
and a collate (about 10x faster on the CPU for MNIST-sized data).

Batch order is a pure function of (seed, epoch, position): epoch ``e`` uses the permutation drawn
from a generator seeded with ``(seed, e)``, so a run resumed at any step sees the same batches.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Sampler

from ...errors import NndslDataError

_EVAL_SEED = 0x5EED  # the fixed order (and windows) of `eval_batches` evaluations


class Source:
    """``n`` examples ``x[i], y[i]`` held as tensors; extra attributes (``vocab_size``, ``true_w``) via info."""

    random_windows = False  # True: step-mode training samples fresh random windows (text)

    def __init__(self, x: torch.Tensor, y: torch.Tensor, **info: Any):
        if len(x) != len(y):
            raise NndslDataError(f"x has {len(x)} examples but y has {len(y)}")
        self.x, self.y = x, y
        for k, v in info.items():
            setattr(self, k, v)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]

    def describe(self) -> str:
        return f"{len(self):,} examples, x {_shape(self.x)}, y {_shape(self.y)}"


class TextSource(Source):
    """Character-level text: ``tokens`` (i64, 1-D) cut into windows of ``context`` chars.

    Item ``i`` is the ``i``-th non-overlapping window (x) and the same window shifted by one (y);
    ``sample`` draws windows at random offsets, as nanoGPT's ``get_batch`` does.
    """

    random_windows = True

    def __init__(self, tokens: torch.Tensor, context: int, vocab: list[str]):
        self.tokens, self.context, self.vocab = tokens, context, vocab
        self.vocab_size = len(vocab)
        self._offsets = torch.arange(context + 1)

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.context

    def _windows(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.tokens[starts[:, None] + self._offsets]  # [B, context + 1]
        return w[:, :-1], w[:, 1:]

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._windows(torch.as_tensor(idx) * self.context)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.tokens) - self.context, (batch,), generator=generator)
        return self._windows(starts)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def describe(self) -> str:
        return f"{len(self.tokens):,} chars, vocab {self.vocab_size}, windows of {self.context}"


def _shape(t: torch.Tensor) -> str:
    dt = str(t.dtype).replace("torch.", "").replace("float32", "f32").replace("int64", "i64")
    return f"{dt}[{', '.join(str(s) for s in t.shape[1:])}]" if t.dim() > 1 else dt


# ----------------------------------------------------------------------------- batching
def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class EpochBatches(Sampler):
    """Index tensors of one epoch: a (seed, epoch)-determined permutation, cut into batches.

    ``skip`` drops the first batches (a run resumed mid-epoch); the last batch may be short.
    """

    def __init__(self, n: int, batch: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, skip: int = 0):
        self.n, self.batch, self.shuffle, self.seed, self.epoch, self.skip = n, batch, shuffle, seed, epoch, skip

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)) if self.shuffle \
            else torch.arange(self.n)
        for i in range(self.skip * self.batch, self.n, self.batch):
            yield order[i : i + self.batch]

    def __len__(self) -> int:
        return max(0, batches_per_epoch(self.n, self.batch) - self.skip)


def batches_per_epoch(n: int, batch: int) -> int:
    return -(-n // batch)


def loader(source: Source, sampler: Sampler, *, workers: int = 0, pin: bool = False) -> DataLoader:
    """A DataLoader that fetches whole batches: ``sampler`` yields index tensors, ``batch_size=None``.

    It gets its own generator: a DataLoader otherwise draws its workers' base seed from the global
    RNG each time it is iterated, which would shift dropout masks after a resume.
    """
    return DataLoader(source, sampler=sampler, batch_size=None, num_workers=workers, pin_memory=pin,
                      generator=torch.Generator().manual_seed(0))


def train_batches(source: Source, batch: int, *, seed: int, start: int, step_mode: bool,
                  generator: Optional[torch.Generator] = None, workers: int = 0,
                  pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches from optimizer step ``start`` on, endlessly.

    Text in step mode: random windows drawn with ``generator`` (whose state the checkpoint keeps).
    Otherwise: epoch after epoch of shuffled batches; step ``s`` is batch ``s % per_epoch`` of
    epoch ``s // per_epoch``.
    """
    if step_mode and source.random_windows:
        assert generator is not None
        while True:
            yield source.sample(batch, generator)
    per_epoch = batches_per_epoch(len(source), batch)
    epoch, skip = divmod(start, per_epoch)
    while True:
        sampler = EpochBatches(len(source), batch, shuffle=True, seed=seed, epoch=epoch, skip=skip)
        yield from loader(source, sampler, workers=workers, pin=pin)
        epoch, skip = epoch + 1, 0


def eval_batches(source: Source, batch: int, limit: Optional[int], *, workers: int = 0,
                 pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Evaluation batches: the whole set in order (``limit`` None), else ``limit`` batches drawn
    the same way at every evaluation (random windows for text, a fixed shuffle otherwise)."""
    if limit is None:
        yield from loader(source, EpochBatches(len(source), batch, shuffle=False), workers=workers, pin=pin)
        return
    if source.random_windows:
        g = torch.Generator().manual_seed(_EVAL_SEED)
        for _ in range(limit):
            yield source.sample(batch, g)
        return
    sampler = EpochBatches(len(source), batch, shuffle=True, seed=_EVAL_SEED)
    for i, xy in enumerate(loader(source, sampler, workers=workers, pin=pin)):
        if i >= limit:
            break
        yield xy
