"""``nndsl export``: ONNX files run in onnxruntime and torch.export programs reloaded give the model's
PyTorch output, at two batch sizes (and two lengths for the GPT): the symbolic dims stay dynamic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nndsl
from nndsl import export
from nndsl.cli import main

ort = pytest.importorskip("onnxruntime")  # an extra of the package (pip install nndsl[onnx])

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODELS = [("mnist_mlp.nn", {}), ("mnist_cnn.nn", {}),
          ("gpt_shakespeare.nn", dict(L=2, D=16, heads=2, ctx=12, vocab=13))]


def _inputs(model, batch: int, length: int) -> torch.Tensor:
    t = model.graph.inputs[0].type
    if t.dtype == "i64":
        return torch.randint(0, 13, (batch, length))
    return torch.rand(batch, *t.shape[1:])  # pixels in [0, 1), as MNIST's normalized ones roughly are


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


@pytest.mark.parametrize("file, hp", MODELS, ids=[f for f, _ in MODELS])
def test_onnx_round_trip(tmp_path, file, hp):
    torch.manual_seed(0)
    model = nndsl.compile(EXAMPLES / file, backend="torch", **hp).eval()
    path = export.save_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want_names = [v.name for v in model.graph.inputs]
    assert [i.name for i in session.get_inputs()] == want_names
    assert session.get_inputs()[0].shape[0] == "B"  # the batch dim is dynamic, named as in the file
    for batch, length in ((1, 5), (4, 9)):
        x = _inputs(model, batch, length)
        got = _run_onnx(path, x)
        with torch.no_grad():
            want = model(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # float32: ONNX Runtime's own kernels


@pytest.mark.parametrize("file, hp", MODELS, ids=[f for f, _ in MODELS])
def test_torch_export_round_trip(tmp_path, file, hp):
    torch.manual_seed(1)
    model = nndsl.compile(EXAMPLES / file, backend="torch", **hp).eval()
    probe = _inputs(model, 3, 4)
    with torch.no_grad():
        before = model(probe)
    path = export.save_torch_export(model, tmp_path / "m.pt2")
    loaded = torch.export.load(str(path)).module()
    for batch, length in ((2, 5), (5, 12)):  # torch.export specializes sizes 0 and 1
        x = _inputs(model, batch, length)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # tracing (which swaps parameters for fake tensors) left the model itself untouched
        assert torch.equal(model(probe), before)


def test_export_command(tmp_path):
    """A trained run exported by the CLI gives the loaded model's output."""
    src = (EXAMPLES / "mnist_mlp.nn").read_text().replace('"data/mnist"', repr(str(EXAMPLES / "data" / "mnist"))
                                                          .replace("'", '"'))
    (tmp_path / "mlp.nn").write_text(src)
    runner = CliRunner()
    res = runner.invoke(main, ["run", str(tmp_path / "mlp.nn"), "--out", str(tmp_path / "run"), "--steps", "3",
                               "--no-progress", "--set", "hidden=16"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx"),
                               "--torch-export", str(tmp_path / "m.pt2")])
    assert res.exit_code == 0, res.output
    assert "m.onnx" in res.output and "m.pt2" in res.output and "Traceback" not in res.output
    model = nndsl.load(tmp_path / "run")
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(_run_onnx(tmp_path / "m.onnx", x), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.export.load(str(tmp_path / "m.pt2")).module()(x), want)
    usage = runner.invoke(main, ["export", str(tmp_path / "run")])
    assert usage.exit_code == 2 and "--onnx" in usage.output
    missing = runner.invoke(main, ["export", str(tmp_path / "nowhere"), "--onnx", str(tmp_path / "x.onnx")])
    assert missing.exit_code == 1 and "not an nndsl run folder" in missing.output
    assert np.isfinite(want.numpy()).all()
