"""``nndsl compile FILE --explain``: every kernel one training step launches, and why fusions missed.

One step (forward, loss, backward; not the optimizer) runs on small example inputs built from the
graph's input types, twice on the same weights: on the explained backend (Triton) and on the
torch backend, whose eager ATen ops are the unfused count. Launches are counted by
``backend.launches`` and attributed to IR nodes: a forward launch to the generated line running
(each line computes one node), a backward launch to the line that created the autograd node
running. Rows group the nodes that share their source lines and ops (a block repeated L times is
one row, ``L x``). Without CUDA the interpreted Triton kernels are counted but not run, so the
full-size GPT is explained in seconds.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import sympy
import torch

from .backend import launches
from .errors import NndslConfigError
from .ir import dims
from .ir.graph import Graph, Node

PHASES = ("forward", "backward")
OUTSIDE = "loss (outside the model)"  # launches no model line caused


@dataclass
class Row:
    """Launches of one phase caused by the IR nodes sharing ``lines`` and ``ir``."""

    lines: str  # "examples/gpt.nn:14,23"
    ir: str  # "fused_linear = linear + dropout + add"
    nodes: int  # how many IR nodes (a repeated block's copies)
    launches: int
    kernels: dict[str, int]  # kernel name -> launches
    order: int = field(default=0, repr=False)  # first node index: forward order


@dataclass
class Phase:
    launches: int  # on the explained backend
    unfused: int  # on the torch backend (eager ATen ops)
    rows: list[Row]
    unfused_kernels: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.launches / self.unfused if self.unfused else float("nan")


@dataclass
class Missed:
    lines: str
    candidate: str
    reason: str


@dataclass
class Generated:
    """One generated kernel (``passes.group``): what it covers and how its backward runs."""

    kernel: str  # the Triton function's name
    lines: str
    ops: str  # the IR ops it computes
    backward: str


@dataclass
class Explanation:
    model: str
    backend: str
    sizes: dict[str, int]  # the symbolic dims as bound for the step
    executed: bool  # False: interpreted kernels were counted, not run
    phases: dict[str, Phase]
    missed: list[Missed]
    generated: list[Generated] = field(default_factory=list)

    @property
    def launches(self) -> int:
        return sum(p.launches for p in self.phases.values())

    @property
    def unfused(self) -> int:
        return sum(p.unfused for p in self.phases.values())

    def to_json(self) -> str:
        out = asdict(self)
        for name, p in self.phases.items():
            out["phases"][name]["ratio"] = round(p.ratio, 4)
            for r in out["phases"][name]["rows"]:
                r.pop("order")
        out.update(launches=self.launches, unfused=self.unfused)
        return json.dumps(out, indent=2)


# ----------------------------------------------------------------------------- example inputs
def bind_sizes(g: Graph, batch: int = 2, sizes: Optional[dict[str, int]] = None) -> dict[str, int]:
    """A size for each symbolic dim: the first input's leading symbol is the batch, others 8."""
    sizes = dict(sizes or {})
    lead = g.inputs[0].type.shape[0] if g.inputs and g.inputs[0].type.rank else None
    for name in g.symbols:
        sizes.setdefault(name, batch if lead is not None and str(lead) == name else 8)
    return sizes


def _shape(shape: tuple, sizes: dict[str, int]) -> list[int]:
    env = {dims.symbol(k): v for k, v in sizes.items()}
    return [d if isinstance(d, int) else int(sympy.sympify(d).subs(env)) for d in shape]


def _index_bound(g: Graph, value) -> int:
    """Indices an integer input may hold: below every embedding table's row count it feeds (else 2)."""
    rows = [n.inputs[1].type.shape[0] for n in g.nodes if n.op == "embedding" and n.inputs[0] is value]
    return min([r for r in rows if isinstance(r, int)] or [2])


def example_inputs(g: Graph, sizes: dict[str, int], device: torch.device) -> list[torch.Tensor]:
    """Random inputs of the graph's input types: floats normal, integers valid indices."""
    out = []
    for v in g.inputs:
        shape, dtype = _shape(v.type.shape, sizes), _torch_dtype(v.type.dtype)
        if v.type.is_float:
            out.append(torch.randn(shape, dtype=dtype, device=device))
        else:
            out.append(torch.randint(0, _index_bound(g, v), shape, dtype=dtype, device=device))
    return out


def _torch_dtype(name: str) -> torch.dtype:
    from .ir.types import DTYPES

    return DTYPES[name]


def example_target(g: Graph, sizes: dict[str, int], loss: str, device: torch.device) -> torch.Tensor:
    """Targets the loss takes for the model's first output: class indices, 0/1 labels or reals."""
    shape = _shape(g.outputs[0].type.shape, sizes)
    if loss == "cross_entropy":
        if not shape:
            raise NndslConfigError("--explain: cross_entropy needs an output with a class axis")
        return torch.randint(0, shape[-1], shape[:-1], device=device)
    if loss == "binary_cross_entropy":
        return torch.randint(0, 2, shape, device=device).float()
    return torch.randn(shape, device=device)


def example_fields(module: torch.nn.Module, sizes: dict[str, int], device: torch.device) -> list[torch.Tensor]:
    """Values for the data fields the compiled objective reads after the model's inputs: floats
    normal, integers 0 or 1 (a valid class for any classifier, a valid binary label)."""
    g = module.nndsl_objective_graphs["torch"]
    out = []
    for v in g.inputs[len(module.graph.inputs):]:
        shape, dtype = _shape(v.type.shape, sizes), _torch_dtype(v.type.dtype)
        out.append(torch.randn(shape, dtype=dtype, device=device) if v.type.is_float
                   else torch.randint(0, 2, shape, dtype=dtype, device=device))
    return out


# ----------------------------------------------------------------------------- one counted step
def count_step(module: torch.nn.Module, backend: str, inputs: list[torch.Tensor], target,
               loss_fn: Optional[Callable], execute: bool) -> launches.Launches:
    """Launches of forward + loss + backward on ``backend``, each attributed to an IR node index of
    ``module.nndsl_graphs[backend]`` (None: the loss, or work no model line caused). A first,
    uncounted step pays what only a first step does (autotuning, cached tables)."""
    if len(module.nndsl_graphs) > 1:
        module.nndsl_backend = backend
    objective = getattr(module, "nndsl_objective", None)
    fn = type(module).__dict__.get(f"_nndsl_objective_{backend}")
    if objective is not None and fn is not None and "nndsl_objective" not in vars(module):
        # the training objective (model + loss, fused) is generated code of its own: trace it
        files = {fn.__code__.co_filename: module.nndsl_objective_lines[backend][1]}
    else:
        fwd = type(module).__dict__.get(f"_nndsl_forward_{backend}", type(module).forward)
        files = {fwd.__code__.co_filename: module.nndsl_lines[backend][1]}
    for _warmup in (True, False):
        module.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        with launches.count_launches(execute=execute) as got:
            with launches.trace_lines(files, "forward") as owners:
                targets = target if isinstance(target, list) else [target]
                loss = objective(*inputs, *targets) if objective is not None else loss_fn(module(*inputs), target)
                loss = loss[0] if isinstance(loss, (tuple, list)) else loss  # (loss, extras) from an objective
            remove = launches.hook_backward(loss, owners)
            try:
                launches.at("backward", None)
                loss.backward()
            finally:
                remove()
    module.zero_grad(set_to_none=True)
    return got


def describe(node: Node) -> str:
    """``fused_linear = linear + dropout + add`` for a fused node, else the op; a kernel's
    dropout or causal mask, when it is an attribute and not an op it covers, in parentheses."""
    ops = node.region.ops() if node.region is not None else []
    text = f"{node.op} = {' + '.join(ops)}" if ops else node.op
    extra = ["causal"] if node.attrs.get("causal") is True else []
    p = node.attrs.get("dropout")
    if isinstance(p, float) and p > 0.0 and "dropout" not in ops and node.op != "dropout":
        extra.append(f"dropout {p:g}")
    return f"{text} ({', '.join(extra)})" if extra else text


def source_lines(node: Node) -> str:
    """``file:line,line`` of every source span the node covers."""
    return _span_lines([s for s in (node.covers or (node.span,)) if s is not None])


def rows(records: list[launches.Launch], g: Graph, phase: str) -> list[Row]:
    """Group one phase's launches by (source lines, IR ops) of the node they are attributed to."""
    groups: dict[tuple[str, str], Row] = {}
    members: dict[tuple[str, str], set] = {}
    for r in records:
        if r.phase != phase:
            continue
        node = g.nodes[r.node] if r.node is not None and r.node < len(g.nodes) else None
        key = (source_lines(node), describe(node)) if node is not None else ("", OUTSIDE)
        row = groups.setdefault(key, Row(key[0], key[1], 0, 0, {}, r.node if r.node is not None else 1 << 30))
        members.setdefault(key, set()).add(r.node)
        row.launches += 1
        name = r.name if r.kind == "triton" else f"aten.{r.name}"
        row.kernels[name] = row.kernels.get(name, 0) + 1
        row.order = min(row.order, r.node if r.node is not None else 1 << 30)
    for key, row in groups.items():
        row.nodes = len(members[key] - {None}) or 1
    return sorted(groups.values(), key=lambda r: r.order)


# ----------------------------------------------------------------------------- the driver
def explain(compiled: Any, *, batch: int = 2, sizes: Optional[dict[str, int]] = None, loss: Any = None,
            backend: str = "triton", device: Optional[str] = None, execute: Optional[bool] = None) -> Explanation:
    """Count one training step of ``compiled`` (a ``compiler.Compiled`` built with ``backend``) on
    ``backend`` and on the torch backend. ``loss``: the train section's loss ``Spec`` (default
    cross-entropy). ``execute``: run interpreted kernels (default: only compiled CUDA ones run)."""
    from .objective import objective_fields
    from .runtime.config import Spec
    from .runtime.losses import make_loss

    module = compiled.module
    if backend not in module.nndsl_graphs:
        raise NndslConfigError(f"--explain: the module has no {backend} forward (built for "
                               f"{', '.join(module.nndsl_graphs)})")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    execute = dev.type == "cuda" if execute is None else execute
    spec = loss if loss is not None else Spec("cross_entropy", {"label_smoothing": 0.0})
    g_plain = module.nndsl_graphs["torch"]
    bound = bind_sizes(g_plain, batch, sizes)
    module.to(dev).train()
    inputs = example_inputs(g_plain, bound, dev)
    fields = objective_fields(module)
    if spec.name == "expression" or len(fields) > 1:  # a loss written in the language: its data fields
        target = example_fields(module, bound, dev)
        loss_fn = None
    else:
        target = example_target(g_plain, bound, spec.name, dev)
        loss_fn = make_loss(spec, bool(getattr(module, "output_is_probs", False)))
    was = module.nndsl_backend
    try:
        fused = count_step(module, backend, inputs, target, loss_fn, execute)
        plain = count_step(module, "torch", inputs, target, loss_fn, execute)
    finally:
        module.nndsl_backend = was
    g = step_graph(module, backend)
    phases = {ph: Phase(fused.total(ph), plain.total(ph), rows(fused.records, g, ph),
                        dict(Counter(r.name for r in plain.records if r.phase == ph))) for ph in PHASES}
    missed = [Missed(_span_lines(n.spans), n.candidate, n.reason) for n in g.fusion_log]
    return Explanation(compiled.model_name, backend, bound, execute, phases, missed, generated_kernels(g))


def generated_kernels(g: Graph) -> list[Generated]:
    """Every generated kernel of ``g``, once per distinct kernel, in graph order."""
    from .backend.triton_gen import op as gen

    out: dict[str, Generated] = {}
    for n in g.nodes:
        if n.op != "generated":
            continue
        spec = gen.spec_of(n.attrs["kernel"])
        name = gen.kernel_name(spec)
        lines = source_lines(n)
        if name in out:
            if lines and lines not in out[name].lines:
                out[name].lines += f"; {lines}"
            continue
        out[name] = Generated(name, lines, " + ".join(n.attrs.get("ops", ())), gen.backward_note(spec))
    return list(out.values())


def step_graph(module: torch.nn.Module, backend: str) -> Graph:
    """The IR one training step runs: the compiled objective graph (model + loss) when the module
    has one and no objective was put on the instance by hand (that one runs ``forward``)."""
    objectives = {} if "nndsl_objective" in vars(module) else getattr(module, "nndsl_objective_graphs", None) or {}
    return objectives.get(backend) or module.nndsl_graphs[backend]


def _span_lines(spans) -> str:
    """``file:line,line`` of every span, one entry per file."""
    by_file: dict[str, set[int]] = {}
    for s in spans:
        by_file.setdefault(s.file, set()).add(s.line)
    return "; ".join(f"{f}:{','.join(map(str, sorted(ls)))}" for f, ls in by_file.items())


# ----------------------------------------------------------------------------- the table
def format_explanation(e: Explanation) -> str:
    """The readable report: a table per phase, the totals beside the unfused count, missed fusions."""
    sizes = ", ".join(f"{k}={v}" for k, v in e.sizes.items())
    out = [f"{e.model}: kernel launches of one training step (forward, loss, backward; {sizes}) "
           f"on the {e.backend} backend" + ("" if e.executed else " (interpreted kernels counted, not run)")]
    for name, p in e.phases.items():
        out += ["", f"{name}: {p.launches} launches ({e.backend}) vs {p.unfused} unfused (torch, eager "
                f"ATen ops): {p.ratio:.2f}x", _table(p.rows)]
    out += ["", f"{'':10}{e.backend:>9}{'unfused':>9}{'ratio':>8}"]
    for name, p in e.phases.items():
        out.append(f"{name:10}{p.launches:9}{p.unfused:9}{p.ratio:8.2f}")
    total_ratio = e.launches / e.unfused if e.unfused else float("nan")
    out.append(f"{'step':10}{e.launches:9}{e.unfused:9}{total_ratio:8.2f}")
    if e.generated:
        out += ["", "generated kernels (nndsl compile --emit triton prints their source):"]
        out += [f"  {k.kernel}: {k.ops}  [{k.lines or '-'}]; backward: {k.backward}" for k in e.generated]
    out += ["", "fusion candidates that did not fuse:" if e.missed else "fusion candidates that did not fuse: none"]
    out += [f"  {m.lines}: {m.candidate}: {m.reason}" for m in e.missed]
    return "\n".join(out)


def _table(rows_: list[Row]) -> str:
    head = ("launches", "IR nodes", "source", "kernels")
    body = [(str(r.launches), (f"{r.nodes} x " if r.nodes > 1 else "") + r.ir, r.lines or "-",
             ", ".join(f"{k} x{n}" if n > 1 else k for k, n in r.kernels.items())) for r in rows_]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(3)]
    fmt = lambda x: f"  {x[0]:>{widths[0]}}  {x[1]:<{widths[1]}}  {x[2]:<{widths[2]}}  {x[3]}".rstrip()  # noqa: E731
    return "\n".join(fmt(x) for x in [head, *body])
