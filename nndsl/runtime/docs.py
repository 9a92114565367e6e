"""docs/runtime.md, generated from the tables that check a train section, so the two cannot drift.

    python -m nndsl.runtime.docs > docs/runtime.md

Names, arguments, kinds, bounds and defaults come from ``config.py`` (``KEYS``, ``TrainConfig``
and the comments on its fields, ``LOSSES``, ``OPTIMIZERS``, ``SCHEDULES``, ``DATASETS``,
``METRICS``) and the dataset constructors' docstrings; prose the tables lack is kept below, one
entry per name (a test fails when a name has none). Every ```` ```nn ```` block of the output is
a train-section body that ``tests/docs`` runs through the config evaluator.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import re
import sys
import tokenize
from typing import Any, Optional

from . import config as C
from . import data, evaluation
from .metrics import DESCRIPTIONS as METRIC_DESCRIPTIONS

LOSSES = {
    "cross_entropy": "Mean cross-entropy of integer class targets; logits or probabilities (a model ending "
                     "in softmax) both work. Outputs `[..., C]` with targets `[...]` (sequences) are flattened.",
    "mse": "Mean squared error against float targets of the output's shape (`[N]` targets fit `[N, 1]` outputs).",
    "binary_cross_entropy": "Mean binary cross-entropy of 0/1 targets; logits, or probabilities when the model "
                            "ends in sigmoid.",
}
OPTIMIZERS = {
    "sgd": "Stochastic gradient descent (`torch.optim.SGD`), with optional (Nesterov) momentum.",
    "adam": "Adam (`torch.optim.Adam`); `weight_decay` is added to the gradient (L2).",
    "adamw": "AdamW (`torch.optim.AdamW`): decoupled weight decay, as nanoGPT trains.",
}
SCHEDULES = {
    "constant": "The optimizer's `lr` throughout.",
    "step": "`lr * gamma ** (n // every)`, `n` counting epochs (step mode: steps).",
    "multistep": "`lr * gamma ** k`, `k` = how many of `milestones` (epochs; step mode: steps) have passed.",
    "cosine": "Half a cosine from `lr` down to `min_lr` over the whole run (after the warmup).",
}
SCHEDULE_NOTE = ("Every schedule takes `warmup`: the learning rate rises linearly over that many optimizer "
                 "steps first. Weight decay and the `l1`/`l2` penalties apply to weight matrices and kernels "
                 "(parameters of rank >= 2) only, never to biases or normalization parameters.")
# what a key is for, where TrainConfig's field has no comment to say it
KEY_NOTES = {
    "loss": "the training objective",
    "optimizer": "how the weights are updated, and the base learning rate `lr`",
    "schedule": "the learning rate at each optimizer step, as a factor of the optimizer's `lr`",
}
# one example per entry, as a train-section line (keys without one here show their default)
EXAMPLES = {
    ("dataset", "mnist"): 'data = mnist("data/mnist", split="train")',
    ("dataset", "fashion_mnist"): 'eval = fashion_mnist("data/fashion-mnist", split="test")',
    ("dataset", "text"): 'data = text("data/tinyshakespeare/input.txt", context=256, split=0.9)',
    ("dataset", "npz"): 'data = npz("letters.npz", x="x_train", y="y_train", scale=1.0 / 32768)',
    ("dataset", "csv"): 'data = csv("table.csv", target="price")',
    ("dataset", "synthetic_regression"): "data = synthetic_regression(n=1000, features=10, noise=0.1)",
    ("loss", "cross_entropy"): "loss = cross_entropy(label_smoothing=0.1)",
    ("loss", "mse"): "loss = mse",
    ("loss", "binary_cross_entropy"): "loss = binary_cross_entropy",
    ("optimizer", "sgd"): "optimizer = sgd(lr=0.1, momentum=0.9, nesterov=true)",
    ("optimizer", "adam"): "optimizer = adam(lr=3e-4)",
    ("optimizer", "adamw"): "optimizer = adamw(lr=1e-3, betas=[0.9, 0.99], weight_decay=0.1)",
    ("schedule", "constant"): "schedule = constant(warmup=100)",
    ("schedule", "step"): "schedule = step(every=10, gamma=0.5)",
    ("schedule", "multistep"): "schedule = multistep(milestones=[30, 60], gamma=0.1)",
    ("schedule", "cosine"): "schedule = cosine(warmup=100, min_lr=1e-4)",
    ("key", "data"): 'data = mnist("data/mnist", split="train")',
    ("key", "eval"): 'eval = mnist("data/mnist", split="test")',
    ("key", "loss"): "loss = cross_entropy(out, y) + 0.01 * mean(abs(out))",
    ("key", "optimizer"): "optimizer = adamw(lr=1e-3)",
    ("key", "schedule"): "schedule = cosine(warmup=100)",
    ("key", "l1"): "l1 = 1e-5",
    ("key", "l2"): "l2 = 1e-4",
    ("key", "epochs"): "epochs = 10",
    ("key", "steps"): "steps = 5000",
    ("key", "batch"): "batch = 64",
    ("key", "metrics"): "metrics = [accuracy, f1]",
    ("key", "clip"): "clip = 1.0",
    ("key", "seed"): "seed = 1337",
    ("key", "checkpoint_every"): "checkpoint_every = 2",
    ("key", "checkpoint_minutes"): "checkpoint_minutes = 30",
    ("key", "keep_last"): "keep_last = 3",
    ("key", "best"): 'best = "-loss"',
    ("key", "eval_every"): "eval_every = 500",
    ("key", "eval_batches"): "eval_batches = 20",
    ("key", "workers"): "workers = 4",
    ("key", "device"): 'device = "cpu"',
    ("key", "precision"): "precision = bf16",
    ("key", "accumulate"): "accumulate = 4",
    ("key", "early_stop"): 'early_stop = patience(5, metric="-loss")',
    ("early_stop", "patience"): 'early_stop = patience(3, metric="accuracy")',
}
EARLY_STOPS = {
    "patience": "Stop when `metric` has not improved for `evaluations` evaluations in a row (equal is no "
                "improvement), log why, and keep the best checkpoint by that metric (unless `best` names "
                "another). `metric` is ranked as `best` ranks (`\"accuracy\"`: higher is better, `\"-loss\"`: "
                "lower); `\"best\"` takes `best`'s metric, else the first of `metrics`. A resumed run that "
                "stopped early stays stopped.",
}
MANY_PROCESSES = (
    "`nndsl run` under `torchrun --nproc-per-node N [--nnodes M ...]` trains on N processes per machine with "
    "PyTorch's DistributedDataParallel (nccl on CUDA, one GPU per process; gloo on the CPU), or with FSDP2 "
    "(`fully_shard`: parameters, gradients and optimizer state sharded) given `--shard`. `batch` stays the "
    "global batch (it must divide by the number of processes): every process draws the same batch (the same "
    "shuffle, the same random text windows) and trains on its own slice, each slice's loss weighted by its "
    "share, so N processes train the single-process run. Every process evaluates the whole `eval` set; "
    "process 0 alone logs and writes the run folder, and its `run.json` records `world_size`. `--resume` "
    "loads the same checkpoint on every process (each one's RNG state and running loss are in it).")
_KIND_WORDS = {"dataset": "a dataset (see [Datasets](#datasets))", "loss": "a loss (see [Losses](#losses))",
               "optimizer": "an optimizer (see [Optimizers](#optimizers))",
               "schedule": "a schedule (see [Schedules](#schedules))",
               "metrics": "a list of metrics (see [Metrics](#metrics))",
               "best": 'a metric name, `"-name"` (lower is better), `"+name"` or `none`',
               "early_stop": "an early-stopping rule (see [Early stopping](#early-stopping))",
               "float>=0": "number >= 0", "float>0": "number > 0", "int>0": "integer > 0",
               "int>=0": "integer >= 0", "device": " \\| ".join(f"`{d}`" for d in C.DEVICES),
               "precision": " \\| ".join(f"`{p}`" for p in C.PRECISIONS)}
_ARG_KINDS = {"int": "integer", "float": "number", "bool": "`true` \\| `false`", "str": "string",
              "ints": "list of integers", "floats": "list of numbers", "str|int": "string or integer"}


# ----------------------------------------------------------------------------- values as .nn text
def literal(v: Any) -> str:
    """A Python value as .nn source: true, "text", [1, 2], 0.001, a Spec as a call."""
    if isinstance(v, C.Spec):
        return f"{v.name}({', '.join(f'{k}={literal(a)}' for k, a in v.kwargs.items())})"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v) if 1e-3 <= abs(v) < 1e6 or v == 0 else f"{v:g}"
    return str(v)


def _rst(text: str) -> str:
    """A docstring as markdown: ``code`` -> `code`, paragraphs kept, lines joined."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs).replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ----------------------------------------------------------------------------- what the tables say
def field_comments() -> dict[str, str]:
    """``TrainConfig``'s fields -> the comment beside each (and the comment lines continuing it)."""
    src = inspect.getsource(C.TrainConfig)
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    out: dict[str, str] = {}
    current: Optional[str] = None
    for n, line in enumerate(src.splitlines(), start=1):
        m = re.match(r"\s{4}(\w+)\s*:", line)
        if m and not line.lstrip().startswith("#"):
            current = m.group(1) if n in comments else None
            if current:
                out[current] = comments[n]
        elif current and line.lstrip().startswith("#") and n in comments:
            out[current] += " " + comments[n]
        else:
            current = None
    return out


def train_defaults() -> dict[str, Any]:
    """Each train key's default, as ``TrainConfig()`` has it."""
    cfg = C.TrainConfig()
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in C.KEYS}


def example(section: str, name: str, key: str, sig: list[C.Arg]) -> str:
    """The example line for a table entry; without a curated one, its required arguments filled in."""
    if (section, name) in EXAMPLES:
        return EXAMPLES[(section, name)]
    needed = [a for a in sig if a.default is C.REQUIRED]
    fill = {"int": 1, "float": 1.0, "bool": True, "str": "x", "ints": [1], "floats": [1.0], "str|int": "x"}
    return f"{key} = {name}({', '.join(f'{a.name}={literal(fill[a.kind])}' for a in needed)})"


def key_example(key: str, defaults: dict[str, Any]) -> str:
    """The example line of a train key: the curated one, else the key set to its default."""
    return EXAMPLES.get(("key", key)) or f"{key} = {literal(defaults[key])}"


def _arg_table(sig: list[C.Arg]) -> list[str]:
    if not sig:
        return ["No arguments."]
    rows = ["| argument | kind | default | accepted |", "|---|---|---|---|"]
    for a in sig:
        accepted = []
        if a.choices:
            accepted.append(" \\| ".join(f"`{literal(c)}`" for c in a.choices))
        if a.positive:
            accepted.append("> 0")
        if a.min is not None:
            accepted.append(f">= {a.min:g}")
        default = "required" if a.default is C.REQUIRED else f"`{literal(a.default)}`"
        rows.append(f"| `{a.name}` | {_ARG_KINDS.get(a.kind, a.kind)} | {default} | {' '.join(accepted)} |")
    return rows


def _entries(title: str, section: str, key: str, table: dict[str, list[C.Arg]], prose: dict[str, str],
             intro: str) -> list[str]:
    out = [f"## {title}", "", intro, ""]
    for name, sig in table.items():
        out += [f"### `{name}`", "", prose.get(name, ""), "", *_arg_table(sig), "",
                "```nn", example(section, name, key, sig), "```", ""]
    return out


def _dataset_prose() -> dict[str, str]:
    return {name: _rst(fn.__doc__ or "") for name, fn in data.DATASETS.items()}


# ----------------------------------------------------------------------------- the page
def render() -> str:
    """The whole of docs/runtime.md."""
    comments, defaults = field_comments(), train_defaults()
    out = [
        "# The runtime reference: train sections",
        "",
        "<!-- Generated by `python -m nndsl.runtime.docs > docs/runtime.md` from the tables that check a train",
        "     section (nndsl/runtime/config.py and the dataset constructors); edit those, not this file. -->",
        "",
        "A `train { ... }` section (see [the language reference](language.md)) sets how `nndsl run` trains the",
        "model: one `key = value` per line. This page lists every key, dataset, loss, optimizer, schedule and",
        "metric with its arguments, defaults and an example; each example is checked by the test suite.",
        "An unknown name or a bad value is a config error at its line.",
        "",
        "```nn",
        *EXAMPLE_SECTION.strip().splitlines(),
        "```",
        "",
        "## Keys",
        "",
        "| key | value | default | meaning | example |",
        "|---|---|---|---|---|",
    ]
    for key, kind in C.KEYS.items():
        default = defaults.get(key)
        if default is None:
            shown = "unset"
        elif kind == "metrics":  # metric names are written bare
            shown = "`[" + ", ".join(default) + "]`"
        else:
            shown = f"`{literal(default)}`"
        note = comments.get(key) or KEY_NOTES.get(key, "")
        out.append(f"| `{key}` | {_KIND_WORDS.get(kind, kind)} | {shown} | {_cell(note)} | "
                   f"`{key_example(key, defaults)}` |")
    out += [""]
    out += _entries("Datasets", "dataset", "data", C.DATASETS, _dataset_prose(),
                    "`data` and `eval` each name one. Files are read from local paths only (nndsl never "
                    "downloads); a relative path starts at the `.nn` file's folder.")
    out += _entries("Losses", "loss", "loss", C.LOSSES, LOSSES,
                    "`loss = name` or `loss = name(arguments)`.")
    out += _entries("Optimizers", "optimizer", "optimizer", C.OPTIMIZERS, OPTIMIZERS,
                    "`lr` here is the base learning rate the schedule scales.")
    out += _entries("Schedules", "schedule", "schedule", C.SCHEDULES, SCHEDULES, SCHEDULE_NOTE)
    out += _entries("Early stopping", "early_stop", "early_stop", C.EARLY_STOPS, EARLY_STOPS,
                    "`early_stop = patience(...)` ends a run early; unset, a run trains for all its epochs or steps.")
    out += ["## Metrics", "",
            f"`metrics = [...]` names what each evaluation computes on the `eval` set. A run reports them as "
            f"`{evaluation.PREFIX}<metric>` (`val_loss`, `val_accuracy`), beside `{evaluation.TRAIN_LOSS}` (the "
            "mean training loss since the previous evaluation), in its log, its progress bar, `metrics.json` "
            "and what `fit` returns. Without an `eval` set only `train_loss` is reported, and asking for "
            "metrics is a warning.", "", "| metric | what it is |", "|---|---|"]
    out += [f"| `{m}` | {_cell(METRIC_DESCRIPTIONS.get(m, ''))} |" for m in C.METRICS]
    out += ["", "```nn", "metrics = [" + ", ".join(C.METRICS) + "]", "```", ""]
    out += ["## When a run evaluates", "",
            f"With `eval_every` unset, a run evaluates at most {evaluation.MAX_EVALUATIONS} times, never more "
            "often than once per epoch in epoch mode, and only as often as keeps evaluation within about "
            f"{evaluation.EVAL_SHARE:.0%} of the run (an evaluation batch costs about a third of a training "
            "step): a short run evaluates once, at its end. `eval_every` sets the interval (steps; epochs in "
            "epoch mode). `eval_batches` limits the intermediate evaluations to that many batches; the final "
            "evaluation always covers the whole `eval` set, so the final metrics are the set's.", "",
            "```nn", "steps = 20000", "eval_every = 1000", "eval_batches = 50", "```", ""]
    out += ["## From the command line", "",
            "`nndsl run` and `nndsl check` take `--set key=value` for these keys (after the file's values, "
            "checked the same way; an error names the `--set`): "
            + ", ".join(f"`{k}`" for k in C.OVERRIDABLE) + ". `--set` also sets the model's hyperparameters "
            "(`--set D=256`); a hyperparameter named like a key wins. `nndsl run` also takes `--epochs`, "
            "`--steps`, `--batch`, `--lr`, `--device` and `--precision`.", ""]
    out += ["## Many processes", "", MANY_PROCESSES, "",
            "```nn", "batch      = 64   # over all processes: 16 each on 4", "accumulate = 2    # 8 at a time",
            "```", ""]
    return "\n".join(out).rstrip() + "\n"


EXAMPLE_SECTION = """
data      = mnist("data/mnist", split="train")
eval      = mnist("data/mnist", split="test")
loss      = cross_entropy
optimizer = adam(lr=1e-3)
schedule  = cosine()
epochs    = 4
batch     = 64
metrics   = [accuracy, f1]
"""


def nn_examples(markdown: str) -> list[str]:
    """Every example of a page, each a train-section body: the ```nn blocks, and the example
    column of the keys table (one line each)."""
    blocks = re.findall(r"^```nn\n(.*?)^```$", markdown, flags=re.S | re.M)
    cells = re.findall(r"^\| `\w+` \|.*\| `(\w+ = [^`]+)` \|$", markdown, flags=re.M)
    return blocks + cells


if __name__ == "__main__":  # python -m nndsl.runtime.docs > docs/runtime.md
    sys.stdout.write(render())
