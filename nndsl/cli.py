"""The ``nndsl`` command: ``run`` (train per the file), ``check`` (shape-check + summary), ``compile``
(show the IR or the generated Python). A thin layer over ``nndsl.compiler`` and ``nndsl.runtime``.

Errors: an ``NndslError`` prints as ``file:line:col: kind: message`` with the source line, exit 1;
usage mistakes exit 2; anything else is an internal error in one line (``NNDSL_DEBUG=1`` shows the
traceback). No Python traceback reaches a user otherwise.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import click

from .errors import NndslConfigError, NndslError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Group(click.Group):
    """Turns nndsl errors and unexpected exceptions into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = os.environ.get("NNDSL_DEBUG", "") not in ("", "0")
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except NndslError as e:
            if debug:
                raise
            click.echo(str(e), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug in nndsl, not a user mistake
            if debug:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(f"nndsl: internal error: {type(e).__name__}: {first}\n"
                       "    this is a bug in nndsl; set NNDSL_DEBUG=1 to see the traceback", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nndsl", prog_name="nndsl")
def main() -> None:
    """nndsl: a compiler-backed language for neural networks."""


# ----------------------------------------------------------------------------- shared pieces
def _file_arg(f):
    return click.argument("file", type=click.Path(dir_okay=True, path_type=Path))(f)


def _set_opt(f):
    return click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                        help="Override a model hyperparameter (or a train setting such as batch or steps).")(f)


def _model_opt(f):
    return click.option("--model", default=None, metavar="NAME", help="Which model of the file (default: its only or first).")(f)


def _existing(file: Path) -> Path:
    if not file.exists():
        raise NndslError(f"no such file: {file}")
    if file.is_dir():
        raise NndslError(f"{file} is a folder; give a .nn file")
    return file


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in sets:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not _NAME.match(name):
            raise click.BadParameter(f"expected NAME=VALUE, got '{item}'", param_hint="--set")
        out[name] = value.strip()
    return out


def _literal(text: str) -> Any:
    """A --set value for a train setting: int, float, true/false, else the text."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _compile(path: Path, model: Optional[str], sets: dict[str, str], seed: int = 0, lower: bool = True,
             backend: str = "auto"):
    """Compile with ``sets`` as hyperparameters, except train settings the model does not declare.

    Returns (compiled, the --set entries left for the train section). The RNG is seeded first so
    the initial weights follow the train section's seed. ``lower=False``: only check (a
    ``compiler.Checked``: no module is built, no weight allocated).
    """
    from . import compiler
    from .runtime.config import OVERRIDABLE
    from .runtime.train import seed_everything

    def make(hyper: dict):
        if not lower:
            return compiler.check(path, model=model, hyperparams=hyper or None)
        seed_everything(seed)
        return compiler.build(path, model=model, hyperparams=hyper or None, backend=backend)

    train_sets = {k: v for k, v in sets.items() if k in OVERRIDABLE}
    hyper = {k: v for k, v in sets.items() if k not in train_sets}
    compiled = _from_set(make, hyper)
    clash = {k: v for k, v in train_sets.items() if k in compiled.hyperparams}
    if clash:  # the model declares a hyperparameter named like a train setting: it wins
        hyper.update(clash)
        train_sets = {k: v for k, v in train_sets.items() if k not in clash}
        compiled = _from_set(make, hyper)
    return compiled, train_sets


def _from_set(make, hyper: dict[str, str]):
    """``make(hyper)``; an error about one of the --set hyperparameters names the --set it came from."""
    try:
        return make(hyper)
    except NndslConfigError as e:
        culprit = next((k for k in hyper if f"'{k}'" in e.message and ("hyperparameter" in e.message
                                                                     or "input of" in e.message)), None)
        if culprit is not None and not e.message.startswith("--set"):
            e.message = f"--set {culprit}={hyper[culprit]}: {e.message}"
            e.args = (e.message,)
        raise


def _config(compiled, path: Path, train_sets: dict[str, str], cli: dict[str, Any]):
    from .runtime.config import train_config

    overrides = {k: _literal(v) for k, v in train_sets.items()}
    origins = {k: f"--set {k}={v}" for k, v in train_sets.items()}
    overrides.update({k: v for k, v in cli.items() if v is not None})
    origins.update({k: f"--{k}" for k, v in cli.items() if v is not None})
    return train_config(compiled.train, compiled.hyperparams, path.resolve().parent, overrides, origins)


# ----------------------------------------------------------------------------- commands
@main.command()
@_file_arg
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<file stem>).")
@click.option("--epochs", type=int, default=None, help="Train for N epochs (overrides the file).")
@click.option("--steps", type=int, default=None, help="Train for N optimizer steps (overrides the file).")
@click.option("--batch", type=int, default=None, help="Batch size.")
@click.option("--lr", type=float, default=None, help="Learning rate of the optimizer.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="Matmuls, convolutions and attention in bf16/fp16 (norms, losses, weights in fp32).")
@click.option("--backend", type=click.Choice(["auto", "torch", "triton"]), default="auto", show_default=True,
              help="Which forward trains: fused Triton kernels, PyTorch ops, or auto (Triton on CUDA); "
                   "triton on a CPU runs the kernels under Triton's interpreter (slow).")
@_set_opt
@_model_opt
@click.option("--resume", is_flag=True, help="Continue the run in the run folder from its newest good checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start afresh in a run folder holding an earlier run (deletes its checkpoints).")
@click.option("--no-progress", is_flag=True, help="No progress bar (the per-epoch lines remain).")
@click.option("--shard", is_flag=True, help="Under torchrun: shard the model between processes (FSDP2), not replicate it (DDP).")
def run(file: Path, out: Optional[Path], epochs: Optional[int], steps: Optional[int], batch: Optional[int],
        lr: Optional[float], device: Optional[str], precision: Optional[str], backend: str, sets: tuple[str, ...],
        model: Optional[str], resume: bool, overwrite: bool, no_progress: bool, shard: bool) -> None:
    """Train FILE's model per its train section and evaluate it (under torchrun: on every process)."""
    from .runtime.distributed import silence_other_ranks
    from .runtime.rundir import RunDir
    from .runtime.saver import claim

    silence_other_ranks()  # under torchrun rank 0 alone prints

    if epochs is not None and steps is not None:
        raise click.UsageError("give --epochs or --steps, not both")
    if resume and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    path = _existing(file)
    parsed = _parse_sets(sets)
    out = out if out is not None else Path("runs") / path.stem
    with RunDir.open(out) as run_dir:  # checked and locked before any work
        claim(run_dir.path, resume=resume, overwrite=overwrite, log=click.echo, dry=True)
        _run(path, run_dir, parsed, model, resume, overwrite, not no_progress,
             dict(epochs=epochs, steps=steps, batch=batch, lr=lr, device=device, precision=precision), backend, shard)


def _run(path: Path, run_dir, parsed: dict[str, str], model: Optional[str], resume: bool, overwrite: bool,
         progress: bool, cli: dict[str, Any], backend: str = "auto", shard: bool = False) -> None:
    """``nndsl run`` once its run folder is locked: compile, configure, train, report."""
    from .runtime.config import describe
    from .runtime.metrics import fmt
    from .runtime.train import fit, resolve_device

    out = run_dir.path
    compiled, train_sets = _compile(path, model, parsed, backend=backend)
    if compiled.train is None:
        raise NndslConfigError(f"{path} has no train section for model {compiled.model_name}",
                               hint="add: train { data = ...  loss = ...  optimizer = ... }")
    cfg = _config(compiled, path, train_sets, cli)
    if cfg.seed != 0 and not resume:  # initial weights from the train section's seed
        compiled, _ = _compile(path, model, parsed, seed=cfg.seed, backend=backend)
    module = compiled.module
    dev = resolve_device(cfg.device)
    cfg = _interpreted_eval(cfg, module, dev, click.echo)
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    click.echo(f"{compiled.model_name}: {n_params:,} parameters, training on {dev} with "
               f"{_SHOWN[_backend_used(module, dev)]}{' (resuming)' if resume else ''}; run folder {out}")
    click.echo(describe(cfg))
    result = fit(module, cfg, run_dir, device=str(dev), resume=resume, overwrite=overwrite,
                 output_is_probs=bool(getattr(module, "output_is_probs", False)), progress=progress,
                 model_meta=dict(getattr(module, "nndsl_meta", {}) or {}), backend=backend,
                 final_whole=_backend_used(module, dev) != "interpreted", shard=shard)
    final = "  ".join(f"{k} {fmt(v)}" for k, v in result["final"].items())
    click.echo(f"final: {final}  ({result['samples_per_second']:,.0f} samples/s, {result['seconds']:.1f} s)")
    click.echo(f"saved {out}/checkpoints, metrics.json, run.json")


def _backend_used(module, dev) -> str:
    """Which forward trains on ``dev``: "triton", "interpreted" (Triton's kernels on a CPU) or "torch"."""
    b = getattr(module, "nndsl_backend", "torch")
    if b == "triton" or (b == "auto" and dev.type == "cuda"):
        return "triton" if dev.type == "cuda" else "interpreted"
    return "torch"


_SHOWN = {"triton": "the Triton backend", "interpreted": "the Triton backend (kernels under Triton's interpreter)",
          "torch": "the PyTorch backend"}
_INTERPRETED_EVAL_BATCHES = 2  # the interpreter takes seconds per batch: a whole eval set would take hours


def _interpreted_eval(cfg, module, dev, log):
    """Under Triton's interpreter, evaluate on a few batches unless the file or --set says how many."""
    import dataclasses

    if cfg.eval_batches is not None or _backend_used(module, dev) != "interpreted":
        return cfg
    log(f"evaluating on {_INTERPRETED_EVAL_BATCHES} batches per evaluation (the final one too) under Triton's "
        "interpreter (--set eval_batches=N to change)")
    return dataclasses.replace(cfg, eval_batches=_INTERPRETED_EVAL_BATCHES)


@main.command()
@_file_arg
@_set_opt
@_model_opt
def check(file: Path, sets: tuple[str, ...], model: Optional[str]) -> None:
    """Parse and shape-check FILE, check its train section and its loss, check the data against the model
    and the loss from the files' headers (nothing is loaded or trained), print a summary of the model."""
    from .compiler import objective
    from .runtime.config import describe
    from .runtime.data.headers import check_data
    from .runtime.evaluation import metrics_without_eval
    from .summary import summarize

    path = _existing(file)
    checked, train_sets = _compile(path, model, _parse_sets(sets), lower=False)
    cfg = _config(checked, path, train_sets, {}) if checked.train is not None else None
    objective(checked)  # the loss, elaborated on the model: its errors at their line
    fields = check_data(checked, cfg) if cfg is not None else []
    click.echo(summarize(checked.graph))
    if cfg is not None:
        click.echo(describe(cfg))
        if fields:
            click.echo("\n".join(fields))
        warning = metrics_without_eval(cfg)
        if warning:
            click.echo(warning, err=True)


@main.command()
def lsp() -> None:
    """Run the language server for editors (LSP over stdio): check errors as you type, shapes on hover."""
    from .editors.lsp import serve

    serve()


@main.command(name="compile")
@_file_arg
@click.option("--emit", type=click.Choice(["ir", "python", "triton"]), default="ir", show_default=True,
              help="What to print: the IR after the passes, the generated forward, or the Triton source "
                   "of the generated kernels (with the triton pipeline).")
@click.option("--backend", type=click.Choice(["torch", "triton"]), default=None,
              help="Whose pass pipeline to run (default: torch; triton with --explain).")
@click.option("--dump-ir", "dump_ir", default=None, metavar="PASS",
              help="Print the IR after pass PASS of the pipeline (dce, canonicalize, cse, raise, ...).")
@click.option("--explain", type=click.Choice(["table", "json"]), is_flag=False, flag_value="table", default=None,
              help="List every kernel one training step launches, per source line, beside the unfused "
                   "count, and why fusion candidates did not fuse (--explain=json: as JSON).")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Batch size of the --explain step.")
@_set_opt
@_model_opt
def compile_(file: Path, emit: str, backend: Optional[str], dump_ir: Optional[str], explain: Optional[str],
             batch: int, sets: tuple[str, ...], model: Optional[str]) -> None:
    """Compile FILE and print its IR or its generated Python forward, or explain its kernels."""
    path = _existing(file)
    backend = backend or ("triton" if explain or emit == "triton" else "torch")
    compiled, train_sets = _compile(path, model, _parse_sets(sets), backend=backend)
    if explain is not None:
        from .explain import explain as explain_step, format_explanation

        loss = _config(compiled, path, train_sets, {}).loss if compiled.train is not None else None
        report = explain_step(compiled, batch=batch, loss=loss, backend=backend)
        click.echo(report.to_json() if explain == "json" else format_explanation(report))
    elif dump_ir is not None:
        _dump_ir(compiled, backend, dump_ir)
    elif emit == "python":
        click.echo(compiled.python_source.rstrip())
    elif emit == "triton":
        _emit_triton(compiled, backend)
    else:
        from .ir.printer import print_graph

        click.echo(print_graph(compiled.graph))


def _emit_triton(compiled, backend: str) -> None:
    """The Triton source of every generated kernel one training step runs, forward and backward."""
    from .explain import source_lines, step_graph

    if backend != "triton":
        raise click.BadParameter("generated kernels come from the triton pipeline: use --backend triton",
                                 param_hint="--emit triton")
    from .backend.triton_gen import op as gen

    seen: set[str] = set()
    g = step_graph(compiled.module, "triton")
    for n in g.nodes:
        if n.op != "generated" or n.attrs["kernel"] in seen:
            continue
        seen.add(n.attrs["kernel"])
        nlead = max([len(v.type.shape) for v in [*n.inputs, *n.outputs]] + [1]) - 1
        for name, src in gen.sources(n.attrs["kernel"], nlead).items():
            click.echo(f"# {name}: {' + '.join(n.attrs.get('ops', ()))}  [{source_lines(n) or '-'}]")
            click.echo(src)
    if not seen:
        click.echo("# no generated kernels: every op of this model runs on a hand-written kernel or PyTorch")


def _dump_ir(compiled, backend: str, wanted: str) -> None:
    """Re-run the pipeline on a fresh graph, printing the IR after each run of pass ``wanted``."""
    from .elaborate import elaborate
    from .passes import PIPELINES, pass_name, run_passes

    names = [pass_name(p) for p in PIPELINES[backend]]
    if wanted not in names and wanted not in (p.__name__ for p in PIPELINES[backend]):
        raise click.BadParameter(f"'{wanted}' is not a pass of the {backend} pipeline ({', '.join(names)})",
                                 param_hint="--dump-ir")
    run_passes(elaborate(compiled.program, compiled.model_name, compiled.hyperparams), backend,
               after=_printer(backend, wanted, ""))
    # the training objective (model + loss as one graph), when the file has one
    if compiled.train is not None:
        from .compiler import check, objective

        obj = objective(check(compiled.path or compiled.source, model=compiled.model_name,
                              hyperparams=compiled.hyperparams))
        if obj is not None:
            run_passes(obj.graph, backend, after=_printer(backend, wanted, "objective (the model and its loss) "))


def _printer(backend: str, wanted: str, label: str):
    """An ``after`` hook for run_passes printing the IR after each run of pass ``wanted``."""
    from .ir.printer import print_graph
    from .passes import PIPELINES, pass_name

    pipeline = PIPELINES[backend]
    seen = [0]

    def after(name: str, g) -> None:
        seen[0] += 1
        if wanted in (name, pipeline[seen[0] - 1].__name__):
            click.echo(f"// {label}after {name} (pass {seen[0]} of {len(pipeline)})")
            click.echo(print_graph(g))

    return after


from . import cli_views  # noqa: E402,F401  (registers nndsl plot and nndsl graph)
from .cli_infer import COMMANDS as _INFER  # noqa: E402  (export, predict, sample)
for _cmd in _INFER:
    main.add_command(_cmd)

if __name__ == "__main__":  # python -m nndsl.cli
    sys.exit(main())
