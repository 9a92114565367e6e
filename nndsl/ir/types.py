"""IR types: a tensor type is a shape of dims (int or symbolic) and a dtype name."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import NndslLimitError, NndslShapeError
from ..limits import check_dim, check_numel
from . import dims as D

# dtype names used in the language and the IR, and their torch dtypes
DTYPES: dict[str, torch.dtype] = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f64": torch.float64,
    "i64": torch.int64,
    "i32": torch.int32,
    "bool": torch.bool,
}
FLOAT_DTYPES = ("f32", "f16", "bf16", "f64")
INT_DTYPES = ("i64", "i32")


@dataclass(frozen=True)
class TensorType:
    shape: tuple  # of Dim
    dtype: str = "f32"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}")
        shape = tuple(D.norm(d) for d in self.shape)
        for d in shape:
            why = check_dim(d)
            if why:  # no span here: the elaborator locates it at the expression being built
                raise (NndslShapeError if "negative" in why else NndslLimitError)(why)
        why = check_numel(shape)
        if why:
            raise NndslLimitError(why)
        object.__setattr__(self, "shape", shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(self.shape, dtype)

    def same_as(self, other: "TensorType") -> bool:
        return (
            self.dtype == other.dtype
            and self.rank == other.rank
            and all(D.equal(a, b) for a, b in zip(self.shape, other.shape))
        )

    def numel_static(self) -> bool:
        return all(D.is_static(d) for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}{D.shape_str(self.shape)}"
