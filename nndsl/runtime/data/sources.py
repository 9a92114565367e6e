"""In-memory datasets and how batches are drawn from them.

Every loader returns a ``Source``: named fields held in memory (or memory-mapped), indexed a
whole batch at a time (``source[idx_tensor] -> {"x": ..., "y": ...}``). A DataLoader then runs with ``batch_size=None`` and a sampler
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
    """``n`` examples held as named fields (``x``, ``y``, npz keys, csv columns), indexed a batch at a time.

    ``source[idx]`` is ``{field: tensor}``. A field is a tensor in memory, or a ``Mapped`` array
    (a memory-mapped ``.npy``) read and preprocessed a batch at a time. ``preprocess`` records what
    was applied to each field (``{"x": {"scale": ..., "mean": ..., "std": ...}}``) and ``classes``
    the class names where the data name them: ``nndsl.load`` applies the one and shows the other.
    Extra attributes (``vocab_size``, ``true_w``) come as keyword ``info``.
    """

    random_windows = False  # True: step-mode training samples fresh random windows (text)

    def __init__(self, x: Any = None, y: Any = None, *, fields: Optional[dict[str, Any]] = None,
                 preprocess: Optional[dict[str, dict]] = None, classes: Optional[list[str]] = None, **info: Any):
        self.fields: dict[str, Any] = {}
        if x is not None:
            self.fields["x"] = x
        if y is not None:
            self.fields["y"] = y
        self.fields.update(fields or {})
        rows = {k: len(v) for k, v in self.fields.items()}
        if len(set(rows.values())) > 1:
            a, b = sorted(rows, key=rows.get)[0], sorted(rows, key=rows.get)[-1]
            raise NndslDataError(f"{b} has {rows[b]} examples but {a} has {rows[a]}")
        self.preprocess = dict(preprocess or {})
        self.classes = classes
        for k, v in info.items():
            setattr(self, k, v)

    @property
    def x(self) -> torch.Tensor:
        return self.fields["x"]

    @property
    def y(self) -> torch.Tensor:
        return self.fields["y"]

    def __len__(self) -> int:
        return len(next(iter(self.fields.values()))) if self.fields else 0

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.fields.items()}

    def field_type(self, name: str) -> tuple[torch.dtype, tuple[int, ...]]:
        """A field's dtype and the shape of one example."""
        v = self.fields[name]
        return v.dtype, tuple(v.shape[1:])

    def describe(self) -> str:
        shown = ", ".join(f"{k} {_shape(v)}" for k, v in self.fields.items())
        return f"{len(self):,} examples, {shown}"


class Mapped:
    """A memory-mapped array used as a field (its ``rows`` only, when split): a batch is read,
    converted and preprocessed (``convert``: numpy rows -> tensor) when it is indexed."""

    def __init__(self, array, rows, convert):
        import numpy as np

        self.array, self.convert = array, convert
        self.rows = rows if rows is not None else np.arange(len(array))
        self.shape = (len(self.rows), *array.shape[1:])
        self.dtype = convert(np.asarray(array[:1])).dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> torch.Tensor:
        import numpy as np

        want = self.rows[np.asarray(idx)]
        order = np.argsort(want, kind="stable")  # sorted reads are sequential on disk
        out = self.convert(np.ascontiguousarray(self.array[want[order]]))
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return out[torch.from_numpy(back)]

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point


class TextSource(Source):
    """Character-level text: ``tokens`` (i64, 1-D) cut into windows of ``context`` chars.

    Item ``i`` is the ``i``-th non-overlapping window (x) and the same window shifted by one (y);
    ``sample`` draws windows at random offsets, as nanoGPT's ``get_batch`` does.
    """

    random_windows = True

    def __init__(self, tokens: torch.Tensor, context: int, vocab: list[str]):
        self.tokens, self.context, self.vocab = tokens, context, vocab
        self.vocab_size = len(vocab)
        self.preprocess, self.classes = {}, None
        self._offsets = torch.arange(context + 1)

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.context

    def _windows(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.tokens[starts[:, None] + self._offsets]  # [B, context + 1]
        return w[:, :-1], w[:, 1:]

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = self._windows(torch.as_tensor(idx) * self.context)
        return {"x": x, "y": y}

    def sample(self, batch: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """``batch`` windows at random offsets; of ``world`` processes, rank ``rank`` keeps its slice."""
        starts = torch.randint(len(self.tokens) - self.context, (batch,), generator=generator)
        x, y = self._windows(torch.tensor_split(starts, world)[rank])
        return {"x": x, "y": y}

    @property
    def fields(self) -> dict[str, Any]:
        return {"x": self.tokens, "y": self.tokens}

    def field_type(self, name: str) -> tuple[torch.dtype, tuple[int, ...]]:
        return torch.int64, (self.context,)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def describe(self) -> str:
        return f"{len(self.tokens):,} chars, vocab {self.vocab_size}, windows of {self.context}"


def _shape(t: Any) -> str:
    dt = str(t.dtype).replace("torch.", "").replace("float32", "f32").replace("int64", "i64")
    return f"{dt}[{', '.join(str(s) for s in t.shape[1:])}]" if t.dim() > 1 else dt


# ----------------------------------------------------------------------------- batching
def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class EpochBatches(Sampler):
    """Index tensors of one epoch: a (seed, epoch)-determined permutation, cut into batches.

    ``skip`` drops the first batches (a run resumed mid-epoch); the last batch may be short.
    Of ``world`` processes, rank ``rank`` takes its contiguous slice of each (global) batch: the
    slices of one batch are disjoint and together the single-process batch.
    """

    def __init__(self, n: int, batch: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, skip: int = 0,
                 rank: int = 0, world: int = 1):
        self.n, self.batch, self.shuffle, self.seed, self.epoch, self.skip = n, batch, shuffle, seed, epoch, skip
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)) if self.shuffle \
            else torch.arange(self.n)
        for i in range(self.skip * self.batch, self.n, self.batch):
            yield torch.tensor_split(order[i : i + self.batch], self.world)[self.rank]

    def __len__(self) -> int:
        return max(0, batches_per_epoch(self.n, self.batch) - self.skip)


def batches_per_epoch(n: int, batch: int) -> int:
    return -(-n // batch)


def global_batch(source: Source, batch: int, step: int, step_mode: bool) -> int:
    """Examples in the (global) batch of optimizer step ``step`` (0-based): ``batch``, less for the
    last batch of an epoch."""
    if step_mode and source.random_windows:
        return batch
    return min(batch, len(source) - (step % batches_per_epoch(len(source), batch)) * batch)


def loader(source: Source, sampler: Sampler, *, workers: int = 0, pin: bool = False) -> DataLoader:
    """A DataLoader that fetches whole batches: ``sampler`` yields index tensors, ``batch_size=None``.

    It gets its own generator: a DataLoader otherwise draws its workers' base seed from the global
    RNG each time it is iterated, which would shift dropout masks after a resume.
    """
    return DataLoader(source, sampler=sampler, batch_size=None, num_workers=workers, pin_memory=pin,
                      generator=torch.Generator().manual_seed(0))


def train_batches(source: Source, batch: int, *, seed: int, start: int, step_mode: bool,
                  generator: Optional[torch.Generator] = None, workers: int = 0,
                  pin: bool = False, rank: int = 0, world: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """Training batches from optimizer step ``start`` on, endlessly.

    Text in step mode: random windows drawn with ``generator`` (whose state the checkpoint keeps).
    Otherwise: epoch after epoch of shuffled batches; step ``s`` is batch ``s % per_epoch`` of
    epoch ``s // per_epoch``. Of ``world`` processes, rank ``rank`` gets its slice of each batch
    (every rank draws the same global batch: ranks never repeat each other's examples or windows).
    """
    if step_mode and source.random_windows:
        assert generator is not None
        while True:
            yield source.sample(batch, generator, rank, world)
    per_epoch = batches_per_epoch(len(source), batch)
    epoch, skip = divmod(start, per_epoch)
    while True:
        sampler = EpochBatches(len(source), batch, shuffle=True, seed=seed, epoch=epoch, skip=skip,
                               rank=rank, world=world)
        yield from loader(source, sampler, workers=workers, pin=pin)
        epoch, skip = epoch + 1, 0


def eval_batches(source: Source, batch: int, limit: Optional[int], *, workers: int = 0,
                 pin: bool = False) -> Iterator[dict[str, torch.Tensor]]:
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
