"""Character-level text (Tiny Shakespeare): vocabulary from the whole file, a train/val split."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from ...errors import NndslConfigError, NndslDataError
from .paths import resolve, text_position
from .sources import TextSource


@functools.lru_cache(maxsize=4)
def _encode(path: str, mtime: float) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The file as token ids over its sorted character set (cached: data and eval read one file)."""
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = text_position(raw, e.start)
        raise NndslDataError(f"{path}:{line}:{col}: not UTF-8 text (byte 0x{raw[e.start]:02x})",
                             hint="text() reads UTF-8; convert the file, e.g. iconv -t utf-8") from None
    except OSError as e:
        raise NndslDataError(f"cannot read {path}: {e.strerror or e}") from None
    # code points, then their sorted unique values (== sorted(set(text))) and each one's rank
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    uniq, ids = np.unique(codes, return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64)), tuple(chr(c) for c in uniq)


def text(path: str, context: int, split: float = 0.9, part: Literal["train", "val"] = "train", *,
         base_dir: Optional[Path] = None) -> TextSource:
    """Windows of ``context`` characters with next-character targets: x i64[N, context], y i64[N, context].

    The first ``split`` of the file is "train", the rest "val"; the vocabulary (``vocab_size``)
    is every character of the whole file, sorted, so both parts share it.
    """
    if context <= 0:
        raise NndslConfigError(f"text(): context must be > 0, got {context}")
    if not 0.0 < split < 1.0:
        raise NndslConfigError(f"text(): split must be between 0 and 1 (the train fraction), got {split}")
    found = resolve(path, base_dir, what="text file")
    tokens, vocab = _encode(str(found), found.stat().st_mtime)
    cut = int(len(tokens) * split)
    part_tokens = tokens[:cut] if part == "train" else tokens[cut:]
    if len(part_tokens) < context + 2:
        raise NndslDataError(f"{found}: the {part} part has {len(part_tokens)} characters, "
                             f"too few for windows of {context}")
    return TextSource(part_tokens, context, list(vocab))
