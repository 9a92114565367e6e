"""The training language: losses written in .nn (compiled into the objective graph and compared with
hand-written PyTorch), data as named fields (several inputs, npz integer fields, splits, scale on
exactly the named fields, memory-mapped .npy), and a loaded run in eval mode with its preprocessing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import nndsl
from nndsl.cli import main
from nndsl.compiler import build
from nndsl.errors import NndslError
from nndsl.objective import objective_fields
from nndsl.runtime.data import csv, npz
from runtime.rtkit import write_mnist_dir
from tolerance import assert_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")

AE = """model AE(x: f32[B, 6], code: int = 3) -> (f32[B, 6], f32[B, code]) {
    h = relu(linear(x, code))
    out = linear(h, 6)
    return out, h
}
train {
    data = npz("d.npz", fields=["x"])
    loss = mse(out, x) + 0.1 * l1(h)
    optimizer = adam(lr=1e-2)
    steps = 6
    batch = 4
}
"""

TWO = """model Two(a: f32[B, 4], b: f32[B, 2]) -> (f32[B, 3], f32[B, 1]) {
    h = relu(linear(concat(a, b, dim=1), 8))
    logits = linear(h, 3)
    value = linear(h, 1)
    return logits, value
}
train {
    data = npz("d.npz", fields=["a", "b", "label", "target"])
    loss = cross_entropy(logits, label, label_smoothing=0.1) + 0.5 * mse(value, target)
    steps = 3
    batch = 5
}
"""


def _run(tmp_path, src: str, *extra: str):
    (tmp_path / "m.nn").write_text(src)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "m.nn"), "--out", str(tmp_path / "run"), "--no-progress",
                                    *extra])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


# ------------------------------------------------------------------------------- losses in the language
def test_an_autoencoder_loss_reads_the_input_as_its_target_and_a_penalty_on_an_activation(tmp_path):
    m = build(AE, backend="torch").module
    assert objective_fields(m) == []  # x is the model's own input: no extra field
    x = torch.randn(5, 6)
    out, h = m(x)
    want = ((out.double() - x.double()) ** 2).mean() + 0.1 * h.double().abs().mean()
    assert_close("autoencoder loss", m.nndsl_objective(x).double(), want, 1e-5)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(13, 6)).astype(np.float32))
    metrics = _run(tmp_path, AE)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert np.isfinite(losses).all() and len(losses) >= 2, metrics


def test_two_inputs_two_outputs_two_weighted_losses(tmp_path):
    m = build(TWO, backend="torch").module
    assert objective_fields(m) == ["label", "target"]
    a, b = torch.randn(7, 4), torch.randn(7, 2)
    label, target = torch.randint(0, 3, (7,)), torch.randn(7, 1)
    logits, value = m(a, b)
    want = F.cross_entropy(logits.double(), label, label_smoothing=0.1) + 0.5 * F.mse_loss(value.double(),
                                                                                            target.double())
    assert_close("two losses", m.nndsl_objective(a, b, label, target).double(), want, 1e-5)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", a=rng.normal(size=(11, 4)).astype(np.float32),
             b=rng.normal(size=(11, 2)).astype(np.float32), label=rng.integers(0, 3, 11).astype(np.int32),
             target=rng.normal(size=11).astype(np.float32))  # [N] target for a [B, 1] output
    metrics = _run(tmp_path, TWO)
    assert np.isfinite(metrics["history"][-1]["train_loss"])


@pytest.mark.parametrize("loss, message", [
    ("mse(out)", "the loss must be a float scalar"),
    ("mean(out) + linear(out, 2)", "may not create parameters"),
    ("cross_entropy(sigmoid(out), y)", "use binary_cross_entropy"),
    ("mse(oot, y)", "'oot' is no name of the model"),
])
def test_bad_loss_expressions_are_located(loss, message):
    src = f"model M(x: f32[B, 4]) -> f32[B, 3] {{\n    return linear(x, 3)\n}}\ntrain {{\n    loss = {loss}\n}}\n"
    if loss == "mse(out)":
        src = src.replace("mse(out)", "out * 2.0")
    with pytest.raises(NndslError, match=message) as info:
        build(src, backend="torch")
    assert info.value.span is not None and info.value.span.line == 5, info.value


def test_binary_cross_entropy_on_a_sigmoid_reads_its_logits():
    m = build("model M(x: f32[B, 4]) -> f32[B, 2] {\n    return sigmoid(linear(x, 2))\n}\n"
              "train {\n    loss = binary_cross_entropy(out, y)\n}\n", backend="torch").module
    x, y = torch.randn(9, 4), torch.randint(0, 2, (9, 2)).float()
    want = F.binary_cross_entropy(m(x).double(), y.double())
    assert_close("bce", m.nndsl_objective(x, y).double(), want, 1e-5)


# ------------------------------------------------------------------------------- data as named fields
def test_npz_keeps_integer_fields_and_splits_disjointly(tmp_path):
    rng = np.random.default_rng(2)
    ids, w = rng.integers(0, 50, size=(20, 5)).astype(np.int32), rng.normal(size=(20, 3))
    np.savez(tmp_path / "t.npz", ids=ids, w=w)
    tr = npz("t.npz", fields=["ids", "w"], split=0.75, base_dir=tmp_path)
    va = npz("t.npz", fields=["ids", "w"], split=0.75, part="val", base_dir=tmp_path)
    assert tr.fields["ids"].dtype == torch.int64 and tr.fields["w"].dtype == torch.float32
    assert len(tr) == 15 and len(va) == 5
    rows = {tuple(r) for r in torch.cat([tr.fields["ids"], va.fields["ids"]]).tolist()}
    assert rows == {tuple(r) for r in ids.tolist()}, "train and val do not partition the rows"


def test_csv_splits_and_names_its_columns(tmp_path):
    lines = ["a,b,y"] + [f"{i},{i * 2},{i % 3}" for i in range(10)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    tr = csv("t.csv", split=0.7, base_dir=tmp_path)
    va = csv("t.csv", split=0.7, part="val", base_dir=tmp_path)
    assert len(tr) == 7 and len(va) == 3
    assert sorted(torch.cat([tr.fields["a"], va.fields["a"]]).tolist()) == list(map(float, range(10)))
    assert torch.equal(tr.fields["b"], tr.x[:, 1]) and tr.y.dtype == torch.int64


def test_scale_applies_to_exactly_the_fields_it_names(tmp_path):
    rng = np.random.default_rng(3)
    x, y, z = (rng.integers(0, 256, size=(6, 4)).astype(np.uint8) for _ in range(3))
    np.savez(tmp_path / "p.npz", x=x, y=y, z=z)
    src = npz("p.npz", fields=["x", "y", "z"], scale=1.0 / 255, on=["x", "y"], base_dir=tmp_path)
    np.testing.assert_allclose(src.fields["x"].numpy(), x / 255.0, rtol=1e-6)
    np.testing.assert_allclose(src.fields["y"].numpy(), y / 255.0, rtol=1e-6)
    assert src.fields["z"].dtype == torch.int64 and torch.equal(src.fields["z"], torch.from_numpy(z).long())
    assert set(src.preprocess) == {"x", "y"}
    with pytest.raises(NndslError, match="scale/normalize name the field 'q'"):
        npz("p.npz", fields=["x"], scale=0.5, on=["q"], base_dir=tmp_path)


def test_a_folder_of_npy_files_is_memory_mapped(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    x = np.random.default_rng(4).normal(size=(9, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", np.arange(9) % 2)
    src = npz("big", scale=2.0, base_dir=tmp_path)
    batch = src[torch.tensor([7, 1, 4])]
    np.testing.assert_allclose(batch["x"].numpy(), x[[7, 1, 4]] * 2.0, rtol=1e-6)
    assert batch["y"].tolist() == [1, 1, 0]


# ------------------------------------------------------------------------------- a loaded run
def test_load_is_in_eval_mode_and_predicts_on_raw_pixels(tmp_path):
    write_mnist_dir(tmp_path / "mnist", n_train=9, n_test=4)
    src = ("model M(x: f32[B, 1, 28, 28]) -> f32[B, 10] {\n    return linear(dropout(flatten(x), 0.5), 10)\n}\n"
           'train {\n    data = mnist("mnist")\n    steps = 2\n    batch = 4\n}\n')
    _run(tmp_path, src)
    m = nndsl.load(tmp_path / "run")
    assert not m.training and m.classes == list("0123456789")
    raw = np.random.default_rng(5).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    by_hand = ((torch.from_numpy(raw).double() / 255.0 - 0.1307) / 0.3081).float().reshape(3, 1, 28, 28)
    assert_close("preprocess", m.preprocess(raw)[0].double(), by_hand.double(), 1e-6)
    assert torch.equal(m.predict(raw), m(by_hand)), "predict must be the eval-mode model on the prepared input"
    assert m.predict(raw, labels=True) == [str(int(i)) for i in m(by_hand).argmax(-1)]
