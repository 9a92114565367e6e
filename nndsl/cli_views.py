"""``nndsl plot`` (training curves of run folders) and ``nndsl graph`` (a picture of a model's graph).

Registered on the ``nndsl`` group by importing this module (``cli.py`` does); the work is in
``nndsl.plot`` and ``nndsl.graph_view``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import click

from . import cli
from .cli import main

_SIZE = re.compile(r"^(\d+)x(\d+)$")


def _size(ctx, param, value: Optional[str]) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    m = _SIZE.match(value.strip())
    if not m or not (16 <= int(m.group(1)) <= 20000 and 16 <= int(m.group(2)) <= 20000):
        raise click.BadParameter(f"expected WIDTHxHEIGHT in pixels (16 to 20000 each), e.g. 1200x800, got '{value}'")
    return int(m.group(1)), int(m.group(2))


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("curves.png"),
              show_default=True, help="The image to write (.png, .svg, .pdf).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Draw only these panels (loss, lr, val_accuracy or accuracy, samples_per_second...); repeatable.")
@click.option("--size", callback=_size, default=None, metavar="WxH",
              help="Image size in pixels (default: 480x320 per panel, three panels a row, four as 2x2).")
def plot(runs: tuple[Path, ...], out: Path, metrics: tuple[str, ...], size: Optional[tuple[int, int]]) -> None:
    """Draw the training curves of one or more run folders (loss, metrics, learning rate), runs overlaid."""
    from .plot import plot_runs

    w, h = plot_runs(list(runs), out, list(metrics) or None, size)
    click.echo(f"wrote {out} ({w}x{h} pixels)")


@main.command()
@cli._file_arg
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The picture to write: .svg, .png, .pdf, or .dot for the Graphviz source (default: FILE's "
                   "stem + .svg).")
@click.option("--engine", type=click.Choice(["auto", "dot", "matplotlib"]), default="auto", show_default=True,
              help="Who draws: Graphviz's dot, matplotlib's layered layout, or auto (dot when installed).")
@cli._set_opt
@cli._model_opt
def graph(file: Path, out: Optional[Path], engine: str, sets: tuple[str, ...], model: Optional[str]) -> None:
    """Draw FILE's model: its ops, its blocks as clusters, the tensor shapes on the edges."""
    from .graph_view import render

    path = cli._existing(file)
    checked, _ = cli._compile(path, model, cli._parse_sets(sets), lower=False)
    out = out if out is not None else Path(path.stem + ".svg")
    size = render(checked.graph, out, engine)
    click.echo(f"wrote {out}" + (f" ({size[0]}x{size[1]} pixels)" if size else ""))
