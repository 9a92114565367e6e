"""``nndsl export``, ``nndsl predict``, ``nndsl sample``: a trained model (a run folder) used from the
command line. Thin commands over ``nndsl.export``, ``nndsl.predict`` and ``nndsl.sample``; the
model comes from ``nndsl.load`` (weights, class names, vocabulary and preprocessing of the run)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

_WHICH = click.Choice(["latest", "best"])


def _run_arg(f):
    return click.argument("run", type=click.Path(file_okay=False, path_type=Path))(f)


def _which_opt(f):
    return click.option("--which", type=_WHICH, default="latest", show_default=True,
                        help="Which checkpoint: the newest, or the best by the run's metric.")(f)


def _device_opt(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
                        help="Where the model runs.")(f)


def _load(run: Path, which: str, device: str = "cpu"):
    """The run's model on the PyTorch backend, in eval mode."""
    from .compiler import load
    from .runtime.train import resolve_device

    return load(run, map_location=str(resolve_device(device)), which=which, backend="torch")


@click.command()
@_run_arg
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the model as ONNX (PyTorch's dynamo exporter; dynamic batch and sequence dims).")
@click.option("--torch-export", "pt2_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the model as a torch.export program (.pt2; torch.export.load reads it).")
@_which_opt
def export(run: Path, onnx_path: Optional[Path], pt2_path: Optional[Path], which: str) -> None:
    """Export RUN's trained model (its PyTorch forward) to ONNX and/or torch.export."""
    from . import export as ex

    if onnx_path is None and pt2_path is None:
        raise click.UsageError("say where to write: --onnx FILE and/or --torch-export FILE")
    module = _load(run, which)
    if onnx_path is not None:
        click.echo(f"wrote {ex.save_onnx(module, onnx_path)}")
    if pt2_path is not None:
        click.echo(f"wrote {ex.save_torch_export(module, pt2_path)}")


@click.command()
@_run_arg
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An image, .npy/.npz array or .csv file of examples (repeat for several).")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="How many classes to show.")
@click.option("--key", default=None, help="The array of a .npz file holding several.")
@_which_opt
@_device_opt
def predict(run: Path, inputs: tuple[Path, ...], top_k: int, key: Optional[str], which: str, device: str) -> None:
    """Classify the examples in the --input files with RUN's model: the top-k classes of each."""
    from .predict import format_predictions, predict_files

    click.echo(format_predictions(predict_files(_load(run, which, device), inputs, top_k, key)))


@click.command()
@_run_arg
@click.option("--prompt", default="\n", show_default="a line break", help="The text to continue.")
@click.option("--tokens", type=click.IntRange(min=0), default=200, show_default=True, help="How many tokens to add.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Divides the logits (0: always the most likely token).")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Draw from the K most likely tokens only.")
@click.option("--seed", type=int, default=0, show_default=True, help="The sampler's seed (the same seed, the same text).")
@click.option("--no-cache", is_flag=True,
              help="Recompute the whole context for every token (for models a KV cache cannot decode).")
@_which_opt
@_device_opt
def sample(run: Path, prompt: str, tokens: int, temperature: float, top_k: Optional[int], seed: int,
           no_cache: bool, which: str, device: str) -> None:
    """Continue --prompt with RUN's text model, one token at a time (with a KV cache)."""
    from .sample import sample_text

    module = _load(run, which, device)
    text = sample_text(module, prompt, tokens, temperature=temperature, top_k=top_k, seed=seed, cache=not no_cache)
    click.echo(prompt + text)


COMMANDS = (export, predict, sample)
