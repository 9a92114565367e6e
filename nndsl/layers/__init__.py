"""The standard library users call from .nn files: layers and ops, as builtins.

A builtin declares its signature (names, kinds, defaults) so the elaborator can check
arguments, convert them and suggest names; its body builds IR through a ``Builder``.

    @builtin("linear", "x: tensor, out: int, bias: bool = true", stateful=True)
    def linear(b: Builder, x, out, bias): ...

``stateful=True`` builtins own parameters: the elaborator opens a child scope for the
instance (``name=`` from the call, else a unique name from the builtin's name) before
calling them. ``load_all()`` imports every module that registers builtins.
"""
from __future__ import annotations

import importlib

from .registry import BUILTINS, Arg, Builtin, builtin, get  # noqa: F401

MODULES = ("core", "nn", "elementwise", "spatial", "attention")
_loaded = False


def load_all() -> dict:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in MODULES:
            importlib.import_module(f"{__name__}.{m}")
    return BUILTINS
