"""``nndsl predict`` on MNIST test images (PNG, JPEG, .npz, .csv) after a short training run: the
printed classes and probabilities are the model's on the raw pixels with the run's recorded
preprocessing, computed here by hand in float64."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nndsl
from nndsl.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MNIST = Path(__file__).resolve().parents[2] / "examples" / "data" / "mnist"
LINE = re.compile(r"^(\S+): (.*)$")


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], env={"NNDSL_DEBUG": ""})
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """The example MLP trained for 60 steps on MNIST."""
    tmp = tmp_path_factory.mktemp("mnist")
    src = (MNIST.parents[1] / "mnist_mlp.nn").read_text().replace('"data/mnist"', json.dumps(str(MNIST)))
    (tmp / "mlp.nn").write_text(src)
    res = _invoke("run", tmp / "mlp.nn", "--out", tmp / "run", "--steps", 60, "--no-progress", "--set", "hidden=32")
    assert res.exit_code == 0, res.output
    return tmp / "run"


@pytest.fixture(scope="module")
def test_images():
    images = np.frombuffer(gzip.open(MNIST / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(labels), 12, replace=False)
    return images.reshape(-1, 28, 28)[pick], labels[pick]


def _reference(run: Path, pixels: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) from run.json's recorded scale/mean/std, in float64."""
    data = json.loads((run / "run.json").read_text())["data"]
    prep = data["preprocess"]["x"]
    model = nndsl.load(run).double()
    x = (torch.from_numpy(pixels.astype(np.float64)) * prep["scale"] - prep["mean"]) / prep["std"]
    with torch.no_grad():
        probs = torch.softmax(model(x.reshape(-1, 1, 28, 28)), dim=-1)
    top = torch.topk(probs, k, dim=-1)
    return [[(data["classes"][i], p) for p, i in zip(ps.tolist(), ix.tolist())]
            for ps, ix in zip(top.values, top.indices)]


def _parse(output: str) -> dict[str, list[tuple[str, float]]]:
    out = {}
    for line in output.strip().splitlines():
        source, rest = LINE.match(line).groups()
        out[source] = [(name, float(p)) for name, p in re.findall(r"(\S+) \(([0-9.]+)\)", rest)]
    return out


def test_predict_images_arrays_and_rows(mnist_run, test_images, tmp_path):
    images, labels = test_images
    for i in range(4):
        Image.fromarray(images[i]).save(tmp_path / f"digit{i}.png")
    Image.fromarray(images[4]).convert("RGB").save(tmp_path / "digit4.bmp")  # color: made grayscale again
    np.savez(tmp_path / "stack.npz", images=images[5:9])
    np.savetxt(tmp_path / "rows.csv", images[9:12].reshape(3, -1), delimiter=",", fmt="%d",
               header=",".join(f"p{i}" for i in range(784)), comments="")
    files = [f"digit{i}.png" for i in range(4)] + ["digit4.bmp", "stack.npz", "rows.csv"]
    res = _invoke("predict", mnist_run, *[a for f in files for a in ("--input", tmp_path / f)], "--top-k", 3)
    assert res.exit_code == 0, res.output
    got = _parse(res.output)
    sources = [f"digit{i}.png" for i in range(4)] + ["digit4.bmp"] + [f"stack.npz[{i}]" for i in range(4)] + \
        [f"rows.csv:{i}" for i in (2, 3, 4)]
    assert list(got) == sources
    want = _reference(mnist_run, images, 3)
    for source, w in zip(sources, want):
        assert [n for n, _ in got[source]] == [n for n, _ in w], source
        assert all(abs(p - q) < 2e-3 for (_, p), (_, q) in zip(got[source], w)), (source, got[source], w)
    # 60 steps learn MNIST well enough that most of the 12 digits come out right
    right = sum(got[s][0][0] == str(y) for s, y in zip(sources, labels))
    assert right >= 9, (right, res.output)


def test_predict_resizes_images(mnist_run, test_images, tmp_path):
    """A 56x56 JPEG of a digit is resized to the model's 28x28 and gives the digit's class."""
    images, _ = test_images
    Image.fromarray(images[0]).save(tmp_path / "small.png")
    Image.fromarray(images[0]).resize((56, 56), Image.NEAREST).save(tmp_path / "big.jpg", quality=95)
    res = _invoke("predict", mnist_run, "--input", tmp_path / "small.png", "--input", tmp_path / "big.jpg",
                  "--top-k", 1)
    assert res.exit_code == 0, res.output
    got = _parse(res.output)
    assert got["big.jpg"][0][0] == got["small.png"][0][0]


@pytest.mark.parametrize("name, content, needle", [
    ("notes.txt", b"hello", "cannot read .txt"),
    ("two.npz", None, "holds 2 arrays (a, b): say which with --key"),
    ("short.csv", b"1,2,3\n", "3 values, the model takes 784"),
    ("bad.png", b"not a png", "not an image Pillow can read"),
    ("odd.npy", None, "neither one example of shape [1, 28, 28] nor a stack"),
])
def test_predict_errors_name_the_file(mnist_run, tmp_path, name, content, needle):
    path = tmp_path / name
    if name == "two.npz":
        np.savez(path, a=np.zeros(784), b=np.zeros(784))
    elif name == "odd.npy":
        np.save(path, np.zeros((5, 7)))
    else:
        path.write_bytes(content)
    res = _invoke("predict", mnist_run, "--input", path)
    assert res.exit_code == 1 and needle in res.output and name in res.output, res.output


def test_predict_refuses_a_model_that_is_not_a_classifier(tmp_path):
    (tmp_path / "reg.nn").write_text(
        "model R(x: f32[B, 3]) -> f32[B] {\n    return linear(x, 1).reshape([B])\n}\n"
        "train {\n    data = synthetic_regression(n=20, features=3, seed=1)\n    loss = mse\n"
        "    optimizer = sgd(lr=0.01)\n    steps = 1\n    batch = 4\n}\n")
    res = _invoke("run", tmp_path / "reg.nn", "--out", tmp_path / "run", "--no-progress")
    assert res.exit_code == 0, res.output
    np.save(tmp_path / "x.npy", np.ones((2, 3)))
    res = _invoke("predict", tmp_path / "run", "--input", tmp_path / "x.npy")
    assert res.exit_code == 1 and "predict is for classifiers" in res.output, res.output
