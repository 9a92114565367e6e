"""``nndsl plot`` and ``nndsl graph``: images of the expected size with something drawn, curves of
several runs in one legend, clusters named by the model's block scopes, clear errors."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib import image

from nndsl import compiler
from nndsl.cli import main
from nndsl.graph_view import view

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = """\
model Tiny(x: f32[B, 5], hidden: int = 4) -> f32[B, 1] {
    return linear(relu(linear(x, hidden)), 1)
}

train {
    data      = synthetic_regression(n=60, features=5, noise=0.01, seed=1)
    eval      = synthetic_regression(n=20, features=5, noise=0.01, seed=1, part="test")
    loss      = mse
    optimizer = adam(lr=1e-2)
    steps     = 4
    batch     = 16
    eval_every = 2
    metrics   = [mse, r2]
}
"""
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GPT_SETS = ["--set", "L=2", "--set", "D=16", "--set", "heads=2", "--set", "ctx=8"]


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], env={"NNDSL_DEBUG": ""})
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs with different learning rates."""
    folder = tmp_path_factory.mktemp("runs")
    src = folder / "tiny.nn"
    src.write_text(TINY)
    out = []
    for name, lr in (("fast", 3e-2), ("slow", 1e-3)):
        res = _invoke("run", src, "--out", folder / name, "--lr", lr, "--no-progress")
        assert res.exit_code == 0, res.output
        out.append(folder / name)
    return out


def _png(path):
    """The PNG's pixels (height, width, channels), after checking something other than background is drawn."""
    pixels = image.imread(str(path))
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.02, f"{path} looks blank"
    return pixels


def _size(output):
    m = re.search(r"\((\d+)x(\d+) pixels\)", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def test_plot_overlays_runs_one_panel_each(runs, tmp_path):
    out = tmp_path / "curves.png"
    res = _invoke("plot", *runs, "--out", out)
    assert res.exit_code == 0, res.output
    # loss, val_mse, val_r2, lr: four panels, 2x2 of 480x320
    assert _png(out).shape[:2] == (640, 960)
    assert _size(res.output) == (960, 640)
    svg = tmp_path / "curves.svg"
    assert _invoke("plot", *runs, "--out", svg).exit_code == 0
    text = svg.read_text()
    for label in ("fast", "slow", ">loss<", ">val_mse<", ">val_r2<", ">lr<"):
        assert label in text, label
    assert "samples_per_second" not in text


def test_plot_picks_metrics_and_a_size(runs, tmp_path):
    out = tmp_path / "r2.png"
    res = _invoke("plot", runs[0], "--out", out, "--metric", "r2", "--metric", "samples_per_second",
                  "--size", "700x333")
    assert res.exit_code == 0, res.output
    assert _png(out).shape[:2] == (333, 700)
    res = _invoke("plot", runs[0], "--out", tmp_path / "one.png", "--metric", "lr")
    assert res.exit_code == 0 and _png(tmp_path / "one.png").shape[:2] == (320, 480)


@pytest.mark.parametrize("args, message", [
    (["--metric", "acuracy"], "the runs logged no 'acuracy'"),
    (["--out", "x.txt"], "cannot tell the image format"),
    (["--out", "no/such/dir/x.png"], "does not exist"),
    (["--size", "12by4"], "expected WIDTHxHEIGHT"),
])
def test_plot_errors(runs, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    res = _invoke("plot", runs[0], *args)
    assert res.exit_code != 0 and message in res.output, res.output


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _invoke("plot", tmp_path / "empty", "--out", tmp_path / "x.png")
    assert res.exit_code == 1 and "is not an nndsl run folder" in res.output, res.output
    res = _invoke("plot", tmp_path / "missing", "--out", tmp_path / "x.png")
    assert res.exit_code == 1 and "no such folder" in res.output, res.output
    assert not (tmp_path / "x.png").exists()


def test_plot_reads_metrics_json_when_there_is_no_csv(runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs[0], old)
    (old / "log.csv").unlink()
    res = _invoke("plot", old, "--out", tmp_path / "old.png")
    assert res.exit_code == 0, res.output
    _png(tmp_path / "old.png")


def test_graph_draws_blocks_as_clusters_with_shapes(tmp_path):
    gpt = EXAMPLES / "gpt_shakespeare.nn"
    svg, png = tmp_path / "g.svg", tmp_path / "g.png"
    res = _invoke("graph", gpt, "--out", svg, "--engine", "matplotlib", *GPT_SETS)
    assert res.exit_code == 0, res.output
    text = svg.read_text()
    for scope, kind in (("blocks.0", "Block"), ("blocks.1", "Block"), ("blocks.0.attn", "CausalSelfAttention"),
                        ("blocks.1.mlp", "MLP")):
        assert f'id="cluster_{scope}"' in text and f"{scope}: {kind}" in text, scope
    assert "f32[B, T, 16]" in text and "f32[B, 2, T, 8]" in text and ">attention<" in text
    res = _invoke("graph", gpt, "--out", png, "--engine", "matplotlib", *GPT_SETS)
    assert res.exit_code == 0, res.output
    w, h = _size(res.output)
    assert _png(png).shape[:2] == (h, w) and h > w  # one column of blocks, top to bottom


def test_graph_auto_engine_and_dot_source(tmp_path):
    gpt = EXAMPLES / "gpt_shakespeare.nn"
    res = _invoke("graph", gpt, "--out", tmp_path / "auto.png", *GPT_SETS)  # dot where installed, else matplotlib
    assert res.exit_code == 0, res.output
    _png(tmp_path / "auto.png")
    assert _invoke("graph", gpt, "--out", tmp_path / "g.dot", *GPT_SETS).exit_code == 0
    dot = (tmp_path / "g.dot").read_text()
    outer = dot.index('subgraph "cluster_blocks.0" {')
    inner = dot.index('subgraph "cluster_blocks.0.attn" {')
    second = dot.index('subgraph "cluster_blocks.1" {')
    assert outer < inner < second  # blocks.0.attn nested inside blocks.0
    assert 'label="blocks.0.attn: CausalSelfAttention"' in dot and '[label="f32[B, T, 48]"]' in dot


def test_graph_view_keeps_every_op_and_every_edge():
    g = compiler.check(EXAMPLES / "mnist_cnn.nn").graph
    v = view(g)
    ops = [n for n in g.nodes if n.op != "param"]
    assert [n.label.split("\n")[0] for n in v.nodes if n.kind == "op"] == [n.op for n in ops]
    uses = [(x, n) for n in ops for x in n.inputs if x.producer is None or x.producer.op != "param"]
    assert len(v.edges) == len(uses) + len(g.outputs)
    assert sorted(shape for _, _, shape in v.edges) == sorted([str(x.type) for x, _ in uses] +
                                                              [str(x.type) for x in g.outputs])


@pytest.mark.skipif(shutil.which("dot") is not None, reason="Graphviz is installed here")
def test_graph_engine_dot_without_graphviz_says_so(tmp_path):
    res = _invoke("graph", EXAMPLES / "mnist_cnn.nn", "--out", tmp_path / "g.svg", "--engine", "dot")
    assert res.exit_code == 1 and "dot` is not installed" in res.output, res.output


@pytest.mark.parametrize("name, message", [("g.bmpx", "cannot tell the format"), ("nope/g.svg", "does not exist")])
def test_graph_errors(tmp_path, name, message):
    res = _invoke("graph", EXAMPLES / "mnist_cnn.nn", "--out", tmp_path / name)
    assert res.exit_code == 1 and message in res.output, res.output
    res = _invoke("graph", tmp_path / "missing.nn")
    assert res.exit_code == 1 and "no such file" in res.output, res.output
