"""IR ops: shape inference and PyTorch lowering, one module per family.

``load_all()`` imports every family so that ``registry.OPS`` is complete.
"""
from __future__ import annotations

import importlib

# every module of this package that registers ops
FAMILIES = ("core", "shape", "pointwise", "activations", "select", "stats", "nn", "spatial", "attention",
            "sequence", "fused", "loss")

_loaded = False


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for fam in FAMILIES:
        importlib.import_module(f"{__name__}.{fam}")
