"""The compiler driver: text -> parse tree -> AST -> IR -> passes -> backend, one stage per line."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .errors import NndslConfigError, NndslDataError, NndslError, NndslLimitError, NndslSyntaxError, Span, escape
from .frontend import ast
from .ir.graph import Graph


@dataclass
class Compiled:
    """Everything one compilation produced (the CLI and the runtime read it)."""

    program: ast.Program
    model_name: str
    graph: Graph
    module: torch.nn.Module
    hyperparams: dict[str, Any]
    train: Optional[ast.TrainSection]
    path: Optional[Path]
    python_source: str
    source: str


def read_source(source_or_path: Union[str, Path]) -> tuple[str, Optional[Path]]:
    """A path (Path, or a str naming an existing file / ending in .nn) or the source text itself."""
    if isinstance(source_or_path, Path) or (
        isinstance(source_or_path, str) and "\n" not in source_or_path and "{" not in source_or_path
        and (source_or_path.endswith(".nn") or _is_file(source_or_path))
    ):
        path = Path(source_or_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NndslError(f"no such file: {escape(str(path))}") from None
        except OSError as e:
            raise NndslError(f"cannot read {escape(str(path))}: {e.strerror or e}") from None
        return decode_source(data, str(path)), path
    return str(source_or_path), None


def _is_file(text: str) -> bool:
    """True when ``text`` names an existing file (False for text no file can be named: too long, NUL...)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def decode_source(data: bytes, file: str) -> str:
    """UTF-8 source bytes as text; invalid UTF-8 is a syntax error at its line:col (not a byte offset)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
        text = data.decode("utf-8", errors="replace")
        raise NndslSyntaxError(f"the file is not valid UTF-8 (byte 0x{data[e.start]:02x} here)",
                               Span(file, line, col, line, col + 1, text),
                               "save the file as UTF-8") from None


@dataclass
class Checked:
    """What ``check`` produced: the typed IR and the summary, without lowering (no weight is allocated)."""

    program: ast.Program
    model_name: str
    graph: Graph
    hyperparams: dict[str, Any]
    train: Optional[ast.TrainSection]
    path: Optional[Path]
    source: str
    names: dict[str, Any] = field(default_factory=dict)  # the model body's top-level names (the loss reads them)

    def summary(self) -> str:
        """The Keras-style table of layers, shapes and parameter counts (counted from the types)."""
        from .summary import summarize

        return summarize(self.graph)


def check(
    source_or_path: Union[str, Path],
    *,
    model: Optional[str] = None,
    hyperparams: Optional[dict[str, Any]] = None,
    verify: bool = True,
) -> Checked:
    """Parse and type-check a .nn file: the IR graph of its model, never a ``torch.nn.Module``.

    Parameter counts come from the parameter types; nothing is allocated or initialized, and every
    compile-time loop is bounded (``nndsl.limits``), so checking any source is quick and safe.
    """
    from .elaborate import elaborate
    from .frontend.parser import parse
    from .ir.verify import verify as verify_graph

    text, path = read_source(source_or_path)
    file = str(path) if path is not None else "<string>"
    # text -> parse tree -> AST with source spans
    program = parse(text, file)
    # AST -> typed IR: names, blocks, repeats, hyperparameters, shapes
    names: dict[str, Any] = {}
    graph = elaborate(program, model, hyperparams, names=names)
    # the IR's invariants hold
    if verify:
        verify_graph(graph)
    return Checked(program, graph.name, graph, dict(graph.hyperparams), _train_section(program, graph.name),
                   path, text, names)


def objective(checked: Checked):
    """The training objective (``nndsl.objective``) of a checked model: its train section's loss
    built on its graph. None where the section's loss does not bind (its configuration reports
    that) or where the file declares no loss and the default (cross_entropy) does not fit."""
    from .objective import build_objective, train_loss

    loss = train_loss(checked.train, checked.graph.hyperparams)
    if loss is None:
        return None
    try:
        return build_objective(checked.program, checked.graph, checked.names, loss)
    except NndslError:
        if loss.span is None:  # the default loss, on a model it does not suit: train nothing by default
            return None
        raise


def build(
    source_or_path: Union[str, Path],
    *,
    model: Optional[str] = None,
    hyperparams: Optional[dict[str, Any]] = None,
    backend: str = "auto",
    verify: bool = True,
) -> Compiled:
    """Compile to a module. ``backend``: "torch" (PyTorch ops), "triton" (fused Triton kernels;
    on a CPU they run under ``TRITON_INTERPRET=1``), or "auto" (Triton on CUDA inputs, PyTorch
    elsewhere; on a machine without CUDA only the PyTorch forward is generated)."""
    from .backend import torch_codegen
    from .passes import run_passes

    # text -> AST -> typed, verified IR (see check)
    checked = check(source_or_path, model=model, hyperparams=hyperparams, verify=verify)
    graph = checked.graph
    # the weights must fit in this machine's memory before any is allocated
    _check_memory(graph)
    # how the loss reads the output, decided before a pass may rewrite a trailing softmax
    output_is_probs = torch_codegen.ends_in_probs(graph)
    # the training objective (model + data fields + loss) as IR: the train section's loss, elaborated
    obj = objective(checked)
    # IR -> IR: each backend's pass pipeline, on its own copy of the graph (and of the objective)
    graphs = {b: run_passes(copy.deepcopy(graph), b, verify=verify) for b in backends_for(backend)}
    objectives = {b: run_passes(copy.deepcopy(obj.graph), b, verify=verify) for b in graphs} \
        if obj is not None else None
    # IR -> nn.Module with a generated forward (and objective) per backend, one parameter tree
    meta = {"source": checked.source, "file": str(checked.path) if checked.path is not None else "<string>",
            "model": graph.name, "hyperparams": dict(graph.hyperparams)}
    try:
        module = torch_codegen.lower_backends(graphs, meta, output_is_probs=output_is_probs, backend=backend,
                                              objectives=objectives, loss=obj.spec if obj else None)
    except MemoryError:
        raise _out_of_memory(graph) from None
    except RuntimeError as e:  # torch's allocators say "can't allocate memory" / "out of memory"
        if "allocat" in str(e) or "out of memory" in str(e):
            raise _out_of_memory(graph) from None
        raise
    shown = "triton" if "triton" in graphs and backend != "torch" else "torch"
    return Compiled(checked.program, graph.name, graphs[shown], module, dict(graph.hyperparams), checked.train,
                    checked.path, module.nndsl_sources[shown], checked.source)


def backends_for(backend: str) -> list[str]:
    """The forwards a module gets: always PyTorch's; Triton's when asked for, or on "auto" where
    CUDA and Triton are there. ``--backend triton`` without CUDA runs the kernels under Triton's
    interpreter, which must be switched on before Triton is first imported."""
    from .backend.torch_codegen import BACKENDS

    if backend not in BACKENDS:
        raise NndslConfigError(f"unknown backend {backend!r}", hint="use auto, torch or triton")
    if backend == "torch":
        return ["torch"]
    cuda = torch.cuda.is_available()
    if backend == "auto" and not cuda:
        return ["torch"]
    if not cuda:
        _ensure_interpreter()
    from .backend import triton_lowering  # noqa: F401  (registers the kernel lowerings)

    return ["torch", "triton"]


def _ensure_interpreter() -> None:
    import os
    import sys

    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return
    if "triton" in sys.modules:
        raise NndslConfigError("the Triton backend without CUDA runs its kernels under Triton's interpreter, "
                               "but Triton was imported before it could be switched on",
                               hint="set TRITON_INTERPRET=1 in the environment, or use --backend torch")
    os.environ["TRITON_INTERPRET"] = "1"

def _check_memory(graph: Graph) -> None:
    """A located error when the model's parameters and buffers need more bytes than this machine has
    (allocating them would fail, or wake the out-of-memory killer)."""
    from .ir.types import DTYPES

    sizes = [(p.numel() * DTYPES[p.dtype].itemsize, p) for p in graph.params.values()]
    total = sum(n for n, _ in sizes)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if total > memory:
        largest = max(sizes, key=lambda x: x[0])[1]
        raise NndslLimitError(f"the model's weights need {total / 2 ** 30:,.1f} GiB, more than this machine's "
                              f"{memory / 2 ** 30:,.1f} GiB of memory (the largest, '{largest.name}', has "
                              f"{largest.numel():,} elements)", largest.span)


def _out_of_memory(graph: Graph) -> NndslLimitError:
    """Allocating the weights failed: say so (a file-level error), not an internal error."""
    return NndslLimitError(f"not enough memory to allocate the model's {graph.num_parameters(False):,} weights")


def _train_section(program: ast.Program, model_name: str) -> Optional[ast.TrainSection]:
    models = program.models()
    for t in program.trains:
        if t.model == model_name or (t.model is None and (len(models) == 1 or not any(
                x.model == model_name for x in program.trains))):
            return t
    return None


def compile(source_or_path: Union[str, Path], model: Optional[str] = None, *, backend: str = "auto",
            **hyperparams: Any) -> torch.nn.Module:
    """Compile a .nn file (a path or the source text) to a ``torch.nn.Module``.

    Keyword arguments override the model's hyperparameters: ``nndsl.compile("gpt.nn", D=128)``.
    ``backend``: "auto" (fused Triton kernels on CUDA inputs, PyTorch ops elsewhere), "triton" or
    "torch"; ``module.nndsl_backend`` switches it later. The state_dict is the same for all.
    Where the train section's loss has an IR form (cross-entropy on logits), the module also has
    ``nndsl_objective(*inputs, y)``: that loss compiled with the model (``nndsl.objective``; on
    the Triton backend the last projection and the loss run as one kernel), which ``nndsl run`` trains.
    """
    return build(source_or_path, model=model, hyperparams=hyperparams, backend=backend).module


def load(run_dir: Union[str, Path], map_location: str = "cpu", which: str = "latest",
         backend: str = "auto") -> torch.nn.Module:
    """The trained model of an ``nndsl run``: recompiled from its recorded source, weights loaded.

    The module comes in eval mode (dropout off, batchnorm's running statistics used and kept), with
    the data's recorded preprocessing: ``module.predict(raw, ...)`` runs it on raw inputs (pixels,
    samples, a string of text) as the training data were prepared; ``module.preprocess(raw, ...)``
    gives the prepared inputs; ``module.classes`` the class names, where the data named them.
    ``which``: "latest" (the newest good checkpoint) or "best" (the best by the run's ``best`` metric).
    Everything read is validated first (run.json field by field, weights through safetensors and
    their checksums); non-finite weights are refused.
    """
    from .runtime.checkpoint import load_weights
    from .runtime.data.record import attach
    from .runtime.rundir import read_meta

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    where, state = load_weights(run_dir, which)
    compiled = build(meta["source"], model=meta["model"], hyperparams=meta.get("hyperparams"), backend=backend)
    module = compiled.module
    try:
        module.load_state_dict({k: v.to(map_location) for k, v in state.items()})
    except RuntimeError as e:
        raise NndslDataError(f"the weights in {where} do not fit the model recorded in {run_dir / 'run.json'}: "
                             f"{str(e).strip().splitlines()[0]}") from None
    module.nndsl_meta.update({k: v for k, v in meta.items() if k != "source"})
    # the data's recorded preprocessing, applied by module.preprocess / module.predict on raw inputs
    attach(module, meta.get("data"), str(run_dir / "run.json"))
    return module.to(map_location).eval()
