"""The training configuration: a ``train { ... }`` section evaluated into a typed ``TrainConfig``.

Each entry's expression is evaluated here by a small evaluator (numbers, strings, bools, lists,
unary minus, arithmetic on numbers, names, calls). A name is a model hyperparameter when the model
has one by that name (``context=ctx``), else a bare identifier (``loss = cross_entropy``). A call
becomes a ``Spec`` (name, bound arguments, span) checked against the signature of the dataset,
loss, optimizer or schedule it names. Overrides from the command line (``--epochs``, ``--lr``, ...)
apply after the file, type-checked the same way. Every mistake is an ``NndslConfigError`` at the
entry's span, with "did you mean" for misspelled names.
"""
from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..elab.scalar import unparse
from ..errors import NndslConfigError, Span, did_you_mean
from ..frontend import ast
from ..objective import is_short_form
from . import data as datasets
from .precision import PRECISIONS


# ----------------------------------------------------------------------------- specs and signatures
@dataclass
class Spec:
    """A named, argument-bound choice: ``adam(lr=1e-3)``, ``mnist("data/mnist", split="test")``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)  # every parameter, defaults filled in
    span: Optional[Span] = None

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    """One parameter of a signature: its kind (int float bool str ints floats), default, bounds."""

    name: str
    kind: str
    default: Any = REQUIRED
    min: Optional[float] = None  # inclusive
    choices: tuple = ()
    positive: bool = False  # strictly > 0


_KINDS = {int: "int", float: "float", bool: "bool", str: "str", list[int]: "ints", list[float]: "floats",
          list[str]: "strs"}


def signature_of(fn) -> list[Arg]:
    """A dataset constructor's positional-or-keyword parameters as Args (``Literal`` -> choices)."""
    hints = typing.get_type_hints(fn)
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue  # keyword-only ones (base_dir) are supplied by the runtime
        t = hints[p.name]
        default = REQUIRED if p.default is inspect.Parameter.empty else p.default
        if typing.get_origin(t) is typing.Literal:
            out.append(Arg(p.name, "str", default, choices=typing.get_args(t)))
        elif typing.get_origin(t) is Union:
            out.append(Arg(p.name, "str|int", default))
        else:
            out.append(Arg(p.name, _KINDS[t], default))
    return out


LOSSES: dict[str, list[Arg]] = {
    "cross_entropy": [Arg("label_smoothing", "float", 0.0, min=0.0)],
    "mse": [],
    "binary_cross_entropy": [],
}
OPTIMIZERS: dict[str, list[Arg]] = {
    "sgd": [Arg("lr", "float", 0.01, positive=True), Arg("momentum", "float", 0.0, min=0.0),
            Arg("nesterov", "bool", False), Arg("weight_decay", "float", 0.0, min=0.0)],
    "adam": [Arg("lr", "float", 1e-3, positive=True), Arg("betas", "floats", [0.9, 0.999]),
             Arg("eps", "float", 1e-8, positive=True), Arg("weight_decay", "float", 0.0, min=0.0)],
    "adamw": [Arg("lr", "float", 1e-3, positive=True), Arg("betas", "floats", [0.9, 0.999]),
              Arg("eps", "float", 1e-8, positive=True), Arg("weight_decay", "float", 0.01, min=0.0)],
}
_WARMUP = Arg("warmup", "int", 0, min=0)  # linear warmup over this many optimizer steps, any schedule
SCHEDULES: dict[str, list[Arg]] = {
    "constant": [_WARMUP],
    "step": [Arg("every", "int", REQUIRED, positive=True), Arg("gamma", "float", 0.1, positive=True), _WARMUP],
    "multistep": [Arg("milestones", "ints", REQUIRED), Arg("gamma", "float", 0.1, positive=True), _WARMUP],
    "cosine": [_WARMUP, Arg("min_lr", "float", 0.0, min=0.0)],
}
EARLY_STOPS: dict[str, list[Arg]] = {  # `early_stop = patience(3, metric="-loss")`; metric "best": best's
    "patience": [Arg("evaluations", "int", REQUIRED, positive=True), Arg("metric", "str", "best")],
}
DATASETS: dict[str, list[Arg]] = {name: signature_of(fn) for name, fn in datasets.DATASETS.items()}
METRICS = ("loss", "accuracy", "f1", "mse", "mae", "r2", "perplexity")
HIGHER_IS_BETTER = ("accuracy", "f1", "r2")  # the rest, and train_loss, are better lower
DEVICES = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------- the configuration
@dataclass
class TrainConfig:
    """Everything a training run needs besides the model. Defaults apply to keys the file omits."""

    data: Optional[Spec] = None  # training set: mnist(...), fashion_mnist(...), text(...), npz(...), csv(...), ...
    eval: Optional[Spec] = None  # evaluation set (same constructors); None: no evaluation
    loss: Spec = field(default_factory=lambda: Spec("cross_entropy", {"label_smoothing": 0.0}))  # the
    #   objective: a loss by name (`loss = cross_entropy`) or an expression over the model's outputs, inputs
    #   and the data's fields (`loss = mse(out, x) + 0.1 * l1(code)`; see language.md, section 8)
    optimizer: Spec = field(default_factory=lambda: Spec("adam", _defaults(OPTIMIZERS["adam"])))
    schedule: Spec = field(default_factory=lambda: Spec("constant", {"warmup": 0}))
    l1: float = 0.0  # + l1 * sum|w| over weight matrices/kernels (tensors of rank >= 2) only
    l2: float = 0.0  # + l2 * sum w^2 over the same tensors (biases and norm parameters are exempt)
    epochs: Optional[int] = None  # epoch mode: passes over `data` (exactly one of epochs / steps; default 1 epoch)
    steps: Optional[int] = None  # step mode: optimizer steps (text data: random windows, nanoGPT-style)
    batch: int = 32  # samples (sequences) per optimizer step (under torchrun: over all processes together)
    accumulate: int = 1  # micro-batches per optimizer step: the batch is cut in this many parts whose gradients
    #                      add up (the loss weighted so they give the whole batch's gradient): less memory
    metrics: list[str] = field(default_factory=lambda: ["loss"])  # computed on `eval`
    clip: Optional[float] = None  # max global gradient norm; None: no clipping
    seed: int = 0  # seeds python, numpy, torch (and the model's initialization, via the CLI)
    checkpoint_every: Optional[int] = None  # epochs (step mode: steps); None: every epoch (step mode: every eval)
    checkpoint_minutes: float = 10.0  # also checkpoint when this long has passed since the last one
    keep_last: int = 2  # periodic checkpoints kept in run/checkpoints (the best one is kept apart)
    best: Optional[str] = None  # keep the best checkpoint by this metric ("accuracy", "-loss": lower is
    #                             better; "none": no best checkpoint); None: the first of `metrics`
    early_stop: Optional[Spec] = None  # patience(N, metric=...): stop when the metric has not improved for N
    #                                    evaluations in a row (the best checkpoint is kept by that metric)
    eval_every: Optional[int] = None  # evaluate every N steps (epoch mode: epochs); None: at most 10 times per run,
    #                                   at most once per epoch, a small share of the run (runtime/evaluation.py)
    eval_batches: Optional[int] = None  # intermediate evaluations on this many batches (None: the whole eval
    #                                     set); the final evaluation always covers the whole set
    workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto | cpu | cuda (auto: cuda when available)
    precision: str = "fp32"  # fp32 | bf16 | fp16: matmuls, convolutions, attention in bf16/fp16 (autocast);
    #                          norms, softmax, losses and the weights in fp32; fp16 scales the loss
    base_dir: Path = field(default_factory=Path.cwd)  # folder of the .nn file: relative data paths start here
    spans: dict[str, Span] = field(default_factory=dict, repr=False)  # key -> where the file set it

    @property
    def mode(self) -> str:
        return "steps" if self.steps is not None else "epochs"

    @property
    def lr(self) -> float:
        return float(self.optimizer.kwargs["lr"])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (recorded in run.json)."""
        out: dict[str, Any] = {}
        for k in KEYS:
            v = getattr(self, k)
            out[k] = {"name": v.name, **v.kwargs} if isinstance(v, Spec) else v
        return out


def _defaults(sig: list[Arg]) -> dict[str, Any]:
    return {a.name: a.default for a in sig if a.default is not REQUIRED}


# key -> kind of value it takes
KEYS: dict[str, str] = {
    "data": "dataset", "eval": "dataset", "loss": "loss", "optimizer": "optimizer", "schedule": "schedule",
    "l1": "float>=0", "l2": "float>=0", "epochs": "int>0", "steps": "int>0", "batch": "int>0",
    "metrics": "metrics", "clip": "float>0", "seed": "int>=0", "checkpoint_every": "int>0",
    "checkpoint_minutes": "float>0", "keep_last": "int>0", "best": "best", "accumulate": "int>0",
    "early_stop": "early_stop",
    "eval_every": "int>0", "eval_batches": "int>0", "workers": "int>=0", "device": "device",
    "precision": "precision",
}
_SCALAR_KINDS = {"float>=0": Arg("", "float", min=0.0), "float>0": Arg("", "float", positive=True),
                 "int>0": Arg("", "int", positive=True), "int>=0": Arg("", "int", min=0),
                 "device": Arg("", "str", choices=DEVICES), "precision": Arg("", "str", choices=PRECISIONS)}
# keys the command line may set (`--set batch=12`, `--epochs 3`); `lr` sets the optimizer's lr
OVERRIDABLE = tuple(k for k, kind in KEYS.items() if kind in _SCALAR_KINDS) + ("lr",)


# ----------------------------------------------------------------------------- the evaluator
@dataclass
class Ident:
    """A bare name that is not a hyperparameter: ``cross_entropy``, ``accuracy``."""

    name: str
    span: Span


@dataclass
class Call:
    name: str
    args: list[tuple[Any, Span]]
    kwargs: list[tuple[str, Any, Span, Span]]  # name, value, span of `name=value`, span of the value
    span: Span


class Evaluator:
    """Evaluates train-section expressions; names resolve to hyperparameter values first."""

    def __init__(self, hyperparams: dict[str, Any]):
        self.hp = dict(hyperparams)

    def eval(self, e: ast.Expr) -> Any:
        if isinstance(e, (ast.Num, ast.Str, ast.Bool)):
            return e.value
        if isinstance(e, ast.Name):
            return self.hp[e.id] if e.id in self.hp else Ident(e.id, e.span)
        if isinstance(e, (ast.ListExpr, ast.TupleExpr)):
            return [self.eval(i) for i in e.items]
        if isinstance(e, ast.UnaryOp):
            v = self.number(e.operand)
            return -v if e.op == "-" else v
        if isinstance(e, ast.BinOp):
            return self.binop(e)
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Name):
                raise NndslConfigError("only plain calls such as adam(lr=1e-3) are allowed in a train section",
                                       e.span)
            args = [(self.eval(a), _span(a)) for a in e.args]
            kwargs = [(k.name, self.eval(k.value), k.span, _span(k.value) or k.span) for k in e.kwargs]
            return Call(e.func.id, args, kwargs, e.span)
        raise NndslConfigError("this expression cannot appear in a train section", _span(e))

    def number(self, e: ast.Expr) -> float:
        v = self.eval(e)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise NndslConfigError(f"expected a number, got {_describe(v)}", _span(e), self._hint(v))
        return v

    def binop(self, e: ast.BinOp) -> Any:
        a, b = self.number(e.left), self.number(e.right)
        try:
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*":
                return a * b
            if e.op == "/":
                return a / b
            if e.op == "//":
                return a // b
            if e.op == "%":
                return a % b
            if e.op == "**":
                return a ** b
        except (ZeroDivisionError, OverflowError) as err:
            raise NndslConfigError(f"cannot evaluate: {err}", e.span) from None
        raise NndslConfigError(f"operator '{e.op}' is not allowed in a train section", e.span)

    def _hint(self, v: Any) -> Optional[str]:
        return did_you_mean(v.name, self.hp) if isinstance(v, Ident) else None


def _span(e: Any) -> Optional[Span]:
    return getattr(e, "span", None)


def _describe(v: Any) -> str:
    if isinstance(v, Ident):
        return f"the name '{v.name}' (not a hyperparameter of the model)"
    if isinstance(v, Call):
        return f"a call to {v.name}(...)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"


# ----------------------------------------------------------------------------- checking values
def check_value(a: Arg, v: Any, span: Optional[Span], what: str, hp: Optional[dict[str, Any]] = None) -> Any:
    """``v`` converted to ``a.kind`` (int -> float allowed), or a located error naming ``what``."""
    def fail(expected: str, hint: Optional[str] = None):
        if hint is None and isinstance(v, Ident):
            hint = did_you_mean(v.name, hp or {}) or (f'to pass text, quote it: "{v.name}"' if a.kind == "str" else None)
        raise NndslConfigError(f"{what}: expected {expected}, got {_describe(v)}", span, hint)

    kind = a.kind
    if kind == "strs":  # field names: quoted, or bare (on=[x, y]); one name alone is a list of one
        items = v if isinstance(v, list) else [v]
        return [check_value(Arg(a.name, "str"), x.name if isinstance(x, Ident) else x, span, what, hp)
                for x in items]
    if kind in ("ints", "floats"):
        items = v if isinstance(v, list) else None
        if items is None:
            fail(f"a list of {kind[:-1]}s, e.g. [1, 2]")
        return [check_value(Arg(a.name, kind[:-1], min=a.min, positive=a.positive), x, span, what, hp) for x in items]
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            fail("an integer")
    elif kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail("a number")
        v = float(v)
        if not math.isfinite(v):
            fail("a finite number")
    elif kind == "bool":
        if not isinstance(v, bool):
            fail("true or false")
    elif kind == "str|int":
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            fail("a string or an integer")
    elif kind == "str":
        if not isinstance(v, str):
            fail("a string" + (f" ({' | '.join(a.choices)})" if a.choices else ""))
        if a.choices and v not in a.choices:
            raise NndslConfigError(f'{what}: "{v}" is not one of {", ".join(a.choices)}', span,
                                   did_you_mean(v, a.choices))
    if a.positive and v <= 0:
        fail("a value > 0")
    if a.min is not None and v < a.min:
        fail(f"a value >= {a.min:g}")
    return v


def bind(call: Any, table: dict[str, list[Arg]], what: str, span: Optional[Span], hp: dict[str, Any]) -> Spec:
    """A name or call checked against ``table``'s signatures -> Spec with every argument bound."""
    if isinstance(call, Ident):
        call = Call(call.name, [], [], call.span)
    elif isinstance(call, str) and not isinstance(call, bool):
        call = Call(call, [], [], span)
    if not isinstance(call, Call):
        raise NndslConfigError(f"{what}: expected one of {', '.join(table)}, got {_describe(call)}", span)
    if call.name not in table:
        raise NndslConfigError(f"unknown {what} '{call.name}'", call.span,
                               did_you_mean(call.name, table) or f"expected one of: {', '.join(table)}")
    sig = table[call.name]
    if len(call.args) > len(sig):
        raise NndslConfigError(f"{call.name}() takes at most {len(sig)} positional arguments, got {len(call.args)}",
                               call.span)
    given: dict[str, tuple[Any, Optional[Span]]] = {}
    for a, (v, s) in zip(sig, call.args):
        given[a.name] = (v, s or call.span)
    names = [a.name for a in sig]
    for k, v, s, value_span in call.kwargs:
        if k not in names:
            raise NndslConfigError(f"{call.name}() has no argument '{k}'", s,
                                   did_you_mean(k, names) or f"its arguments: {', '.join(names) or 'none'}")
        if k in given:
            raise NndslConfigError(f"{call.name}() got argument '{k}' twice", s)
        given[k] = (v, value_span)
    kwargs: dict[str, Any] = {}
    for a in sig:
        if a.name in given:
            v, s = given[a.name]
            kwargs[a.name] = check_value(a, v, s, f"{call.name}() argument '{a.name}'", hp)
        elif a.default is REQUIRED:
            raise NndslConfigError(f"{call.name}() needs the argument '{a.name}'", call.span)
        else:
            kwargs[a.name] = a.default
    return Spec(call.name, kwargs, call.span)


def _metrics(v: Any, span: Optional[Span]) -> list[str]:
    items = v if isinstance(v, list) else [v]
    out = []
    for it in items:
        name = it.name if isinstance(it, Ident) else it if isinstance(it, str) else None
        where = it.span if isinstance(it, Ident) else span
        if name is None:
            raise NndslConfigError(f"metrics: expected metric names such as [accuracy, f1], got {_describe(it)}", span)
        if name not in METRICS:
            raise NndslConfigError(f"unknown metric '{name}'", where,
                                   did_you_mean(name, METRICS) or f"expected one of: {', '.join(METRICS)}")
        if name not in out:
            out.append(name)
    return out


def _best(v: Any, span: Optional[Span]) -> str:
    """A metric to keep the best checkpoint by: a name, "-name"/"+name" (lower/higher is better), "none"."""
    name = v.name if isinstance(v, Ident) else v if isinstance(v, str) else None
    if name is None:
        raise NndslConfigError(f'best: expected a metric name such as "accuracy" or "-loss", got {_describe(v)}', span)
    bare = name.lstrip("+-") if name[:1] in "+-" and len(name) > 1 else name
    bare = bare.removeprefix("val_") if bare.removeprefix("val_") in METRICS else bare  # val_accuracy = accuracy
    choices = (*METRICS, "train_loss")
    if bare not in choices and name != "none":
        raise NndslConfigError(f"best: unknown metric '{bare}'", getattr(v, "span", span),
                               did_you_mean(bare, choices) or f"expected one of: {', '.join(choices)}, none")
    return name


def _set(cfg: TrainConfig, key: str, value: Any, span: Optional[Span], hp: dict[str, Any]) -> None:
    kind = KEYS[key]
    if kind == "dataset":
        value = bind(value, DATASETS, "dataset", span, hp)
    elif kind in ("loss", "optimizer", "schedule"):
        table = {"loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}[kind]
        value = bind(value, table, kind, span, hp)
        if kind == "optimizer" and value.name == "sgd" and value.kwargs["nesterov"] and value.kwargs["momentum"] <= 0:
            raise NndslConfigError("sgd(nesterov=true) needs momentum > 0", value.span)
    elif kind == "metrics":
        value = _metrics(value, span)
    elif kind == "best":
        value = _best(value, span)
    elif kind == "early_stop":
        if not isinstance(value, (Call, Ident)):
            raise NndslConfigError(f'early_stop: expected a rule such as patience(3, metric="-loss"), '
                                   f"got {_describe(value)}", span)
        value = bind(value, EARLY_STOPS, "early-stopping rule", span, hp)
        metric = value.kwargs["metric"]
        if metric != "best" and _best(metric, value.span) == "none":  # _best: a metric it knows
            raise NndslConfigError('patience(): metric "none" ranks nothing; name a metric such as "-loss"',
                                   value.span)
    elif kind == "precision":  # a bare name reads as its text: precision = bf16
        value = check_value(_SCALAR_KINDS[kind], value.name if isinstance(value, Ident) else value,
                            getattr(value, "span", span), key, hp)
    else:
        value = check_value(_SCALAR_KINDS[kind], value, span, key, hp)
    setattr(cfg, key, value)


# ----------------------------------------------------------------------------- the entry point
def train_config(
    section: Optional[ast.TrainSection],
    hyperparams: dict[str, Any],
    base_dir: Path,
    overrides: Optional[dict[str, Any]] = None,
    origins: Optional[dict[str, str]] = None,
) -> TrainConfig:
    """The file's train section, then the command line's ``overrides`` (``epochs``, ``lr``, ...), checked;
    ``origins`` names where an override came from in its errors (default ``--key``)."""
    cfg = TrainConfig(base_dir=Path(base_dir))
    ev = Evaluator(hyperparams)
    seen: dict[str, ast.TrainEntry] = {}
    for entry in section.entries if section is not None else []:
        if entry.key not in KEYS:
            raise NndslConfigError(f"unknown train setting '{entry.key}'", _key_span(entry),
                                   did_you_mean(entry.key, KEYS) or f"settings: {', '.join(KEYS)}")
        if entry.key in seen:
            raise NndslConfigError(f"'{entry.key}' is set twice (first on line {seen[entry.key].span.line})",
                                   _key_span(entry))
        seen[entry.key] = entry
        if entry.key == "loss" and not is_short_form(entry.value):  # an expression: nndsl.objective builds it
            cfg.loss = Spec("expression", {"text": unparse(entry.value)}, entry.value.span)
        else:
            _set(cfg, entry.key, ev.eval(entry.value), _span(entry.value) or entry.span, hyperparams)
        cfg.spans[entry.key] = entry.span
    if cfg.epochs is not None and cfg.steps is not None:
        raise NndslConfigError("set either epochs or steps, not both", seen["steps"].span,
                               "epochs = passes over the data; steps = optimizer steps")
    apply_overrides(cfg, overrides or {}, origins)
    if cfg.epochs is None and cfg.steps is None:
        cfg.epochs = 1
    return cfg


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], origins: Optional[dict[str, str]] = None) -> None:
    """Command-line settings, after the file: ``--epochs`` switches to epoch mode, ``--steps`` to step mode.
    ``origins``: key -> how the user wrote it (``--set batch=abc``), for errors; default ``--key``."""
    for key, value in overrides.items():
        if value is None:
            continue
        origin = (origins or {}).get(key, f"--{key.replace('_', '-')}")
        if key == "lr":
            cfg.optimizer.kwargs["lr"] = check_value(Arg("lr", "float", positive=True), value, None, origin)
            continue
        if key not in OVERRIDABLE:
            raise NndslConfigError(f"{origin}: '{key}' cannot be set from the command line",
                                   hint=did_you_mean(key, OVERRIDABLE) or f"settable: {', '.join(OVERRIDABLE)}")
        setattr(cfg, key, check_value(_SCALAR_KINDS[KEYS[key]], value, None, origin))
        if key == "epochs":
            cfg.steps = None
        elif key == "steps":
            cfg.epochs = None


def _key_span(entry: ast.TrainEntry) -> Span:
    """The span of the key alone (the entry's span starts with it)."""
    s = entry.span
    return Span(s.file, s.line, s.col, s.line, s.col + len(entry.key), s.source)


def describe(cfg: TrainConfig) -> str:
    """One paragraph for ``nndsl check`` and the start of ``nndsl run``."""
    length = f"{cfg.steps} steps" if cfg.mode == "steps" else f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
    loss = cfg.loss.kwargs["text"] if cfg.loss.name == "expression" else cfg.loss.name
    lines = [f"train: {length}, batch {cfg.batch}, {cfg.optimizer}, loss {loss}, schedule {cfg.schedule}"]
    lines.append(f"  data {cfg.data if cfg.data else '(none)'}")
    if cfg.eval:
        lines.append(f"  eval {cfg.eval}; metrics {', '.join(cfg.metrics)}")
    extras = [f"{k} {getattr(cfg, k)}" for k in ("l1", "l2", "clip", "early_stop") if getattr(cfg, k)]
    if cfg.accumulate > 1:
        extras.append(f"accumulate {cfg.accumulate} micro-batches per step")
    if cfg.precision != "fp32":
        extras.append(f"precision {cfg.precision}")
    if extras:
        lines.append("  " + ", ".join(extras))
    return "\n".join(lines)
