"""Counting the kernels a piece of code launches, without a GPU.

Fusion is judged by how many kernels a training step launches, and that count must be testable on
a CPU. ``count_launches()`` is a context manager that records

* every Triton kernel launch, compiled (CUDA) or interpreted (``TRITON_INTERPRET=1``): the
  ``run`` method of Triton's ``JITFunction`` / ``InterpretedFunction`` is wrapped while it is active;
* every ATen operator that computes something, through a ``TorchDispatchMode``: in eager PyTorch
  each such operator is one kernel launch. Views, metadata queries and bare allocations launch
  nothing and are not counted, nor are CPU scalars made from nothing (seed draws: host work on a
  GPU); nndsl's own custom ops (namespace ``nndsl``) are not counted themselves, because the
  Triton kernels they launch are.

Each record carries the *phase* and IR *node* that were current when it launched (set by the
caller through ``at(phase, node)``), so a launch can be attributed to the source line that caused
it. ``trace_lines`` does that for generated forwards: it follows their lines with ``sys.settrace``
(forward launches go to the IR node of the line running) and remembers which line created each
autograd node; ``hook_backward`` then marks every backward step with the line whose node runs.

``count_launches(execute=False)`` records interpreted Triton kernels without running them: the
count does not depend on the numbers, and the interpreter is slow (the outputs are left as
allocated). Compiled (CUDA) kernels always run.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# ATen operators that launch no kernel: allocation, aliasing and metadata.
_FREE = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias",
    "lift_fresh", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size",
    "_local_scalar_dense", "set_", "resize_", "_has_compatible_shallow_copy_type", "is_nonzero",
    "result_type", "_unsafe_view", "view", "_reshape_alias", "as_strided", "expand", "t",
    "transpose", "permute", "unsqueeze", "squeeze", "select", "slice", "split", "split_with_sizes",
    "unbind", "chunk", "unflatten", "view_as", "expand_as", "reshape_alias", "record_stream", "promote_types",
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


def _host_scalar(args: Any, kwargs: Any, out: Any) -> bool:
    """A factory op making only CPU scalars (a dropout kernel's seed draw from torch's CPU
    generator): host work that launches no kernel on a GPU, so not counted on a CPU either."""
    if any(isinstance(x, torch.Tensor) for x in tree_leaves((args, kwargs))):
        return False
    outs = [x for x in tree_leaves(out) if isinstance(x, torch.Tensor)]
    return bool(outs) and all(x.dim() == 0 and x.device.type == "cpu" for x in outs)


class _AtenCounter(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        ns = getattr(func, "namespace", "")
        base = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
        out = func(*args, **(kwargs or {}))
        free = base.rstrip("_") in _FREE or base in _FREE or getattr(func, "is_view", False)
        if ns == "aten" and not free and not _host_scalar(args, kwargs, out):
            _record("aten", base)
        return out


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
def count_launches(execute: bool = True) -> Iterator[Launches]:
    """Record every kernel launched inside the block (see the module docstring); ``execute=False``:
    interpreted Triton kernels are recorded but not run."""
    result = Launches()
    patched: list[tuple[type, Any]] = []
    outermost = not _active
    if outermost:  # patch Triton and watch ATen once, for the outermost block
        for cls in _triton_run_classes():
            orig = cls.run

            def run(self, *args, __orig=orig, __skip=not execute and cls.__name__ == "InterpretedFunction",
                    **kwargs):
                if not kwargs.get("warmup", False):
                    _record("triton", _kernel_name(self))
                    if __skip:
                        return None
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


# ----------------------------------------------------------------------------- attribution
def _tensors(x: Any) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for item in x:
            yield from _tensors(item)


def claim_graph(roots: Any, owners: dict, owner: Any) -> None:
    """Give every autograd node reachable from the tensors in ``roots`` and not owned yet to ``owner``."""
    stack = [t.grad_fn for t in _tensors(roots) if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or fn in owners:
            continue
        owners[fn] = owner
        stack.extend(nxt for nxt, _ in fn.next_functions)


@contextlib.contextmanager
def trace_lines(files: dict[str, Sequence[Optional[int]]], phase: str = "forward") -> Iterator[dict]:
    """Attribute launches inside the functions compiled from ``files`` (filename -> the IR node
    index of each line, index = line - 1) to the node of the line running, and yield ``owners``:
    autograd node -> the IR node index of the line that created it (filled as lines complete).

    Launches outside those functions keep the attribution of their caller (``phase``, None at
    the outermost level): a loss computed after the forward reads as (phase, None).
    """
    owners: dict = {}
    frames: list[list] = []  # per active traced frame: [line nodes, node of the line running]
    at(phase, None)

    def done(frame, extra: Any = ()) -> None:  # the line that was running has completed
        claim_graph([*frame.f_locals.values(), extra], owners, frames[-1][1])

    def local(frame, event, arg):
        if event == "line":
            done(frame)
            nodes = frames[-1][0]
            i = frame.f_lineno - 1
            frames[-1][1] = nodes[i] if 0 <= i < len(nodes) else None
            at(phase, frames[-1][1])
        elif event == "return":
            done(frame, arg)
            frames.pop()
            at(phase, frames[-1][1] if frames else None)
        return local

    def call(frame, event, arg):
        nodes = files.get(frame.f_code.co_filename)
        if event != "call" or nodes is None:
            return None
        frames.append([nodes, None])
        at(phase, None)
        return local

    before = sys.gettrace()
    sys.settrace(call)
    try:
        yield owners
    finally:
        sys.settrace(before)


def hook_backward(roots: Any, owners: dict, phase: str = "backward", default: Any = None) -> Callable[[], None]:
    """Before each autograd node reachable from ``roots`` runs, attribute launches to
    (``phase``, its owner in ``owners``; ``default`` for nodes no line created). Returns a
    function that removes the hooks."""
    claim_graph(roots, owners, default)
    handles = []
    for fn, owner in owners.items():
        handles.append(fn.register_prehook(lambda grads, __owner=owner: at(phase, __owner)))
    return lambda: [h.remove() for h in handles]
