"""Counting the kernels a piece of code launches, without a GPU.

Fusion is judged by how many kernels a training step launches, and that count must be testable on
a CPU. ``count_launches()`` is a context manager that records

* every Triton kernel launch, compiled (CUDA) or interpreted (``TRITON_INTERPRET=1``): the
  ``run`` method of Triton's ``JITFunction`` / ``InterpretedFunction`` is wrapped while it is active;
* every ATen operator that computes something, through a ``TorchDispatchMode``: in eager PyTorch
  each such operator is one kernel launch. Views, metadata queries and bare allocations launch
  nothing and are not counted; nndsl's own custom ops (namespace ``nndsl``) are not counted
  themselves, because the Triton kernels they launch are.

Each record carries the *phase* and IR *node* that were current when it launched (set by the
caller through ``at(phase, node)``; ``--explain`` marks every generated line and every backward
step this way), so a launch can be attributed to the source line that caused it.
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ATen operators that launch no kernel: allocation, aliasing and metadata.
_FREE = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias",
    "lift_fresh", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size",
    "_local_scalar_dense", "set_", "resize_", "_has_compatible_shallow_copy_type", "is_nonzero",
    "result_type", "_unsafe_view", "view", "_reshape_alias", "as_strided", "expand", "t",
    "transpose", "permute", "unsqueeze", "squeeze", "select", "slice", "split", "split_with_sizes",
    "unbind", "chunk", "unflatten", "view_as", "expand_as", "reshape_alias", "record_stream",
}


@dataclass
class Launch:
    kind: str  # "triton" or "aten"
    name: str  # kernel or operator name
    phase: str  # "forward" / "backward" / "" as set by ``at``
    node: Optional[int]  # IR node index as set by ``at``


@dataclass
class Launches:
    """What ran inside one ``count_launches()`` block."""

    records: list[Launch] = field(default_factory=list)

    def total(self, phase: Optional[str] = None) -> int:
        return sum(1 for r in self.records if phase is None or r.phase == phase)

    def by_name(self, phase: Optional[str] = None) -> Counter:
        return Counter(f"{r.kind}:{r.name}" for r in self.records if phase is None or r.phase == phase)

    def by_node(self) -> dict[Optional[int], Counter]:
        out: dict[Optional[int], Counter] = {}
        for r in self.records:
            out.setdefault(r.node, Counter())[(r.phase, r.kind, r.name)] += 1
        return out


_state = threading.local()


def _current() -> tuple[str, Optional[int]]:
    return getattr(_state, "where", ("", None))


def at(phase: str, node: Optional[int] = None) -> None:
    """Attribute the launches that follow (in this thread) to ``phase`` and IR node index ``node``."""
    _state.where = (phase, node)


_active: list[Launches] = []  # the innermost counting block records


def _record(kind: str, name: str) -> None:
    if _active and not getattr(_state, "in_triton", False):
        phase, node = _current()
        _active[-1].records.append(Launch(kind, name, phase, node))


class _AtenCounter(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        ns = getattr(func, "namespace", "")
        base = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
        if ns == "aten" and base.rstrip("_") not in _FREE and base not in _FREE and not getattr(func, "is_view", False):
            _record("aten", base)
        return func(*args, **(kwargs or {}))


def _triton_run_classes() -> list[type]:
    classes = []
    try:
        from triton.runtime.jit import JITFunction

        classes.append(JITFunction)
    except Exception:  # pragma: no cover - Triton not installed
        pass
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append(InterpretedFunction)
    except Exception:  # pragma: no cover
        pass
    return classes


def _kernel_name(fn: Any) -> str:
    inner = getattr(fn, "fn", fn)
    return getattr(inner, "__name__", type(fn).__name__)


@contextlib.contextmanager
def count_launches() -> Iterator[Launches]:
    """Record every kernel launched inside the block (see the module docstring)."""
    result = Launches()
    patched: list[tuple[type, Any]] = []
    outermost = not _active
    if outermost:  # patch Triton and watch ATen once, for the outermost block
        for cls in _triton_run_classes():
            orig = cls.run

            def run(self, *args, __orig=orig, **kwargs):
                if not kwargs.get("warmup", False):
                    _record("triton", _kernel_name(self))
                outer = getattr(_state, "in_triton", False)
                _state.in_triton = True  # the interpreter's own host copies are not launches
                try:
                    return __orig(self, *args, **kwargs)
                finally:
                    _state.in_triton = outer

            cls.run = run
            patched.append((cls, orig))
    _active.append(result)
    saved = _current()
    try:
        with _AtenCounter() if outermost else contextlib.nullcontext():
            yield result
    finally:
        _active.pop()
        _state.where = saved
        for cls, orig in patched:
            cls.run = orig
