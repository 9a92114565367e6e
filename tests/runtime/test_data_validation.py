"""Every bad data input is a located nndsl error: driven through ``fit`` (what ``nndsl run`` calls) and
the CLI, each error must name the .nn file's ``file:line:col`` of the train entry, the field or the
index at fault, and what was expected -- never an internal error or a traceback."""
from __future__ import annotations

import gzip
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from runtime.rtkit import write_idx, write_mnist_dir

from nndsl.cli import main
from nndsl.compiler import build
from nndsl.errors import NndslConfigError, NndslDataError, NndslError
from nndsl.runtime.config import train_config
from nndsl.runtime.train import fit

CLASSIFIER = "model C(x: f32[B, 3], classes: int = 4) -> f32[B, classes] {\n    return linear(x, classes)\n}\n"
REGRESSOR = "model R(x: f32[B, 3]) -> f32[B, 1] {\n    return linear(x, 1)\n}\n"
IMAGES = "model I(x: f32[B, 1, 28, 28]) -> f32[B, 10] {\n    return linear(flatten(x), 10)\n}\n"
CHARS = ("model G(idx: i64[B, T], vocab: int = 6, D: int = 4) -> f32[B, T, vocab] {\n"
         "    return linear(embedding(idx, vocab, D, name=\"wte\"), vocab)\n}\n")


def _write(tmp_path: Path, model: str, body: str) -> Path:
    src = tmp_path / "t.nn"
    src.write_text(model + "train {\n" + body.strip("\n") + "\n    batch = 4\n}\n")
    return src


def fit_error(tmp_path: Path, body: str, model: str = CLASSIFIER, kind: type = NndslError) -> tuple[NndslError, str]:
    """The error ``fit`` raises for the train section ``body``, and the error's text."""
    src = _write(tmp_path, model, body)
    compiled = build(src)
    cfg = train_config(compiled.train, compiled.hyperparams, tmp_path, {})
    with pytest.raises(kind) as info:
        fit(compiled.module, cfg, None, progress=False, log=lambda line: None)
    return info.value, str(info.value)


def assert_at(text: str, tmp_path: Path, key: str) -> None:
    """``text`` starts at the line of ``key = ...`` in t.nn, as file:line:col, and has no traceback."""
    lines = (tmp_path / "t.nn").read_text().splitlines()
    line = next(i + 1 for i, l in enumerate(lines) if l.strip().startswith(f"{key} "))
    assert re.match(rf"{re.escape(str(tmp_path / 't.nn'))}:{line}:\d+: ", text), f"not located at {key}:\n{text}"
    assert "internal error" not in text and "Traceback" not in text


def _npz(tmp_path: Path, **arrays) -> None:
    np.savez(tmp_path / "d.npz", **arrays)


def _xy(n: int = 9, classes: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(size=(n, 3)).astype(np.float32), "y_train": rng.integers(0, classes, size=n)}


NPZ = 'data = npz("d.npz")\n    loss = cross_entropy'


# ----------------------------------------------------------------------------- labels vs the model
@pytest.mark.parametrize("bad", [-1, 4, 1000])
def test_a_label_outside_the_models_classes(tmp_path, bad):
    arrays = _xy(11, seed=bad & 7)
    arrays["y_train"][7] = bad
    _npz(tmp_path, **arrays)
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert f"y[7] = {bad}" in text and "labels 0..3 for its 4 classes" in text


def test_eval_labels_are_checked_too(tmp_path):
    arrays = _xy(10)
    bad = _xy(6, seed=1)
    bad["y_train"][2] = 9
    np.savez(tmp_path / "d.npz", **arrays)
    np.savez(tmp_path / "e.npz", x_test=bad["x_train"], y_test=bad["y_train"])
    err, text = fit_error(tmp_path, NPZ + '\n    eval = npz("e.npz", x="x_test", y="y_test")', kind=NndslDataError)
    assert_at(text, tmp_path, "eval")
    assert "eval set's y[2] = 9" in text


def test_a_uint64_label_beyond_int64(tmp_path):
    arrays = _xy(5)
    y = arrays["y_train"].astype(np.uint64)
    y[3] = 2**63 + 5
    _npz(tmp_path, x_train=arrays["x_train"], y_train=y)
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert f"y_train[3] = {2**63 + 5} does not fit an int64 label" in text


def test_a_csv_whole_number_beyond_int64_is_no_class_label(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c,y\n1,2,3,0\n4,5,6,123456789012345678901234567890\n")
    err, text = fit_error(tmp_path, 'data = csv("d.csv")\n    loss = cross_entropy', kind=NndslConfigError)
    assert_at(text, tmp_path, "loss")
    assert "integer class labels" in text and "y[1, 0] = 1.23457e+29 is a whole number too large" in text


def test_float_labels_for_cross_entropy_are_refused_at_the_loss(tmp_path):
    arrays = _xy(6)
    _npz(tmp_path, x_train=arrays["x_train"], y_train=arrays["y_train"] + 0.5)
    err, text = fit_error(tmp_path, NPZ, kind=NndslConfigError)
    assert_at(text, tmp_path, "loss")
    assert "cross_entropy takes integer class labels" in text and "f32" in text


def test_class_index_targets_for_mse(tmp_path):
    _npz(tmp_path, **_xy(6))
    err, text = fit_error(tmp_path, 'data = npz("d.npz")\n    loss = mse', kind=NndslConfigError)
    assert_at(text, tmp_path, "loss")
    assert "class-index targets" in text and "f32[B, 4]" in text and "cross_entropy" in text


def test_integer_regression_targets_are_fine_for_mse(tmp_path):
    """Whole-number targets and one output: mse trains (the check must not refuse good data)."""
    arrays = _xy(8)
    _npz(tmp_path, **arrays)
    src = _write(tmp_path, REGRESSOR, 'data = npz("d.npz")\n    loss = mse')
    compiled = build(src)
    cfg = train_config(compiled.train, compiled.hyperparams, tmp_path, {})
    out = fit(compiled.module, cfg, None, progress=False, log=lambda line: None)
    assert np.isfinite(out["final"]["train_loss"])


def test_binary_cross_entropy_targets_outside_0_1(tmp_path):
    arrays = _xy(7)
    y = np.zeros((7, 1), np.float32)
    y[5, 0] = 2.0
    _npz(tmp_path, x_train=arrays["x_train"], y_train=y)
    err, text = fit_error(tmp_path, 'data = npz("d.npz")\n    loss = binary_cross_entropy', REGRESSOR,
                          NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "y[5, 0] = 2.0" in text and "[0, 1]" in text


def test_perplexity_on_one_hot_targets(tmp_path):
    arrays = _xy(6)
    one_hot = np.eye(4, dtype=np.float32)[arrays["y_train"]]
    _npz(tmp_path, x_train=arrays["x_train"], y_train=one_hot)
    np.savez(tmp_path / "e.npz", x_test=arrays["x_train"], y_test=one_hot)
    body = ('data = npz("d.npz")\n    eval = npz("e.npz", x="x_test", y="y_test")\n    loss = mse\n'
            '    metrics = [perplexity]')
    err, text = fit_error(tmp_path, body, kind=NndslConfigError)
    assert_at(text, tmp_path, "metrics")
    assert "'perplexity' scores class labels [N]" in text and "y is f32[N, 4]" in text


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_x_is_the_datas_fault(tmp_path, value):
    arrays = _xy(20)
    arrays["x_train"][13, 2] = value
    _npz(tmp_path, **arrays)
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert f"x[13, 2] = {float(value)}" in text and "must be finite" in text
    assert "learning rate" not in text


def test_non_finite_y(tmp_path):
    arrays = _xy(5)
    y = np.ones((5, 1), np.float32)
    y[4, 0] = np.nan
    _npz(tmp_path, x_train=arrays["x_train"], y_train=y)
    err, text = fit_error(tmp_path, 'data = npz("d.npz")\n    loss = mse', REGRESSOR, NndslDataError)
    assert "y[4, 0] = nan" in text


def test_a_csv_nan_is_reported_at_its_line(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c,y\n1,2,3,0.5\n\n4,nan,6,1.5\n")
    err, text = fit_error(tmp_path, 'data = csv("d.csv")\n    loss = mse', REGRESSOR, NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "d.csv:4: 'nan' (column 'b')" in text


def test_an_empty_set(tmp_path):
    _npz(tmp_path, x_train=np.zeros((0, 3), np.float32), y_train=np.zeros(0, np.int64))
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "npz('d.npz') has no examples" in text


def test_an_empty_eval_split(tmp_path):
    (tmp_path / "c.txt").write_text("abcdef" * 10)
    body = 'data = text("c.txt", context=4, split=0.95)\n    eval = text("c.txt", context=4, split=0.95, part="val")'
    err, text = fit_error(tmp_path, body, CHARS, NndslDataError)
    assert_at(text, tmp_path, "eval")
    assert "the val part has 3 characters, too few for windows of 4" in text


# ----------------------------------------------------------------------------- text
def test_a_text_with_more_characters_than_the_vocabulary(tmp_path):
    (tmp_path / "c.txt").write_text("the quick brown fox\n" * 5)
    err, text = fit_error(tmp_path, 'data = text("c.txt", context=4)', CHARS, NndslDataError)
    assert_at(text, tmp_path, "data")
    need = len(set("the quick brown fox\n"))
    assert f"{need} distinct characters" in text and "vocabulary (embedding 'wte') is 6" in text
    assert f"--set vocab={need}" in text


def test_text_that_is_not_utf8_is_located_at_line_and_column(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"abc\nd\xc3\xa9f\nxy\xffz\n")
    err, text = fit_error(tmp_path, 'data = text("c.txt", context=2)', CHARS, NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "c.txt:3:3: not UTF-8 text (byte 0xff)" in text


def test_an_empty_text(tmp_path):
    (tmp_path / "c.txt").write_text("")
    err, text = fit_error(tmp_path, 'data = text("c.txt", context=2)', CHARS, NndslDataError)
    assert "0 characters, too few for windows of 2" in text


# ----------------------------------------------------------------------------- npz files
def _garbled_member(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x_train.npy", b"\x93NUMPY garbage")
        z.writestr("y_train.npy", b"")


def _pickled_objects(p: Path) -> None:
    np.savez(p, x_train=np.array([{"a": 1}, None], dtype=object), y_train=np.arange(2))


@pytest.mark.parametrize("make, expect", [
    (lambda p: p.write_bytes(b""), "is not an .npz archive (the file is empty)"),
    (lambda p: np.savez(p), "holds no arrays"),
    (lambda p: p.write_bytes(pickle.dumps({"x_train": [1, 2]})), "is not an .npz archive"),
    (lambda p: np.save(p.with_suffix(".npy"), np.arange(3)) or p.with_suffix(".npy").rename(p),
     "is not an .npz archive"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "is not an .npz archive"),
    (_garbled_member, "cannot read array 'x_train'"),
    (_pickled_objects, "array 'x_train' holds Python objects (pickled data)"),
    (lambda p: np.savez(p, x_train=np.array(["a", "b"]), y_train=np.arange(2)), "'x_train' holds strings"),
    (lambda p: np.savez(p, x_train=np.ones((2, 3)), y_train=np.array([b"a", b"b"])), "'y_train' holds byte strings"),
    (lambda p: np.savez(p, x_train=np.ones((2, 3), np.complex64), y_train=np.arange(2)), "complex numbers"),
    (lambda p: np.savez(p, x_train=np.float32(3.0), y_train=np.arange(2)), "is a single number"),
    (lambda p: np.savez(p, x_train=np.ones((3, 3)), y_train=np.arange(2)), "'x_train' has 3 rows but 'y_train' has 2"),
    (lambda p: np.savez(p, x_trian=np.ones((3, 3)), y_train=np.arange(3)), "no array 'x_train'"),
])
def test_bad_npz_files(tmp_path, make, expect):
    make(tmp_path / "d.npz")
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert expect in text


def test_a_missing_key_lists_the_arrays_there(tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.ones((3, 3)), y_train=np.arange(3))
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert "did you mean 'y_train'? its arrays: inputs, y_train" in text


def test_pickled_arrays_are_never_unpickled(tmp_path, monkeypatch):
    """An object array whose unpickling would run code: refused, and the code never runs."""
    ran = []

    class Boom:
        def __reduce__(self):
            return (ran.append, ("ran",))

    np.savez(tmp_path / "d.npz", x_train=np.array([Boom(), Boom()], dtype=object), y_train=np.arange(2))
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert "never unpickles (allow_pickle=False)" in text and ran == []


# ----------------------------------------------------------------------------- csv files
@pytest.mark.parametrize("content, expect", [
    ("a,b,c,y\n1,2,3,0\n1,2,0\n", "d.csv:3: 3 fields, expected 4"),
    ("a,b,c,y\n1,2,3,0\n\n1,two,3,1\n", "d.csv:4: 'two' is not a number (column 'b')"),
    ("a,b,y\n1,2,3,0\n", "d.csv:1: the header has 3 names, but the rows have 4 fields"),
    ("y\n0\n1\n", "a table needs the target and at least one feature"),
    ("a,b,c,y\n", "has no data rows"),
    ("a,b,c,y\n1,2,3,0\n1,2,\x00,1\n", "d.csv:3:"),
])
def test_bad_csv_files(tmp_path, content, expect):
    (tmp_path / "d.csv").write_text(content)
    err, text = fit_error(tmp_path, 'data = csv("d.csv")', kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert expect in text


def test_csv_not_utf8(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"a,b,c,y\n1,2,3,0\n1,\xe9,3,1\n")
    err, text = fit_error(tmp_path, 'data = csv("d.csv")', kind=NndslDataError)
    assert "d.csv:3:3: not UTF-8 text (byte 0xe9)" in text


# ----------------------------------------------------------------------------- IDX files and paths
def _mnist(tmp_path: Path) -> Path:
    write_mnist_dir(tmp_path / "m", n_train=6, n_test=3)
    return tmp_path / "m" / "train-labels-idx1-ubyte.gz"


MNIST = 'data = mnist("m", normalize=false)'


@pytest.mark.parametrize("damage, expect", [
    (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x06\x01\x02")), "2 data bytes, expected 6"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00")), "is not an IDX file"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00")), "truncated header"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\xff\xff\xff\xff")), "expected 4294967295"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\xff" * 12)), "magic number 2051 (u8, 3 dims), expected 2049"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x06" + bytes(6))[:-9]), "cannot read"),
    (lambda p: p.write_bytes(b"not gzip at all"), "cannot read"),
    (lambda p: write_idx(p, np.arange(5, dtype=np.uint8)), "images [6, 28, 28] do not match labels [5]"),
    (lambda p: write_idx(p, np.zeros(6, ">f4")), "magic number 3329 (f32, 1 dim), expected 2049 (u8, 1 dim)"),
    (lambda p: write_idx(p, np.zeros((6, 1), np.uint8)), "magic number 2050 (u8, 2 dims), expected 2049"),
    (lambda p: write_idx(p, np.array([0, 1, 3, 12, 1, 0], np.uint8)), "y[3] = 12, but the model takes labels 0..9"),
])
def test_damaged_idx_files(tmp_path, damage, expect):
    damage(_mnist(tmp_path))
    err, text = fit_error(tmp_path, MNIST, IMAGES, NndslDataError)
    assert_at(text, tmp_path, "data")
    assert expect in text


def test_a_folder_where_a_file_is_expected(tmp_path, monkeypatch):
    monkeypatch.delenv("NNDSL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.npz").mkdir()
    err, text = fit_error(tmp_path, NPZ, kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "d.npz  (a folder, not a file)" in text and "never downloads" in text


def test_an_unreadable_text_file(tmp_path, monkeypatch):
    (tmp_path / "c.txt").write_text("abcdef" * 4)
    real = Path.read_bytes

    def denied(self):
        if self.name == "c.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    err, text = fit_error(tmp_path, 'data = text("c.txt", context=2)', CHARS, NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "cannot read" in text and "Permission denied" in text


# ----------------------------------------------------------------------------- through the command line
@pytest.mark.parametrize("setup, body, model, expect", [
    (lambda p: (p / "c.txt").write_text("hello, world\n" * 4), 'data = text("c.txt", context=4)', CHARS,
     "--set vocab=10"),
    (lambda p: np.savez(p / "d.npz", x_train=np.array([[0, 1, np.nan]] * 4, np.float32), y_train=np.arange(4)),
     NPZ, CLASSIFIER, "x[0, 2] = nan"),
    (lambda p: np.savez(p / "d.npz", x_train=np.ones((4, 3), np.float32), y_train=np.array([0, -2, 1, 1])),
     NPZ, CLASSIFIER, "y[1] = -2"),
])
def test_cli_run_reports_bad_data_located(tmp_path, setup, body, model, expect):
    setup(tmp_path)
    src = _write(tmp_path, model, body)
    res = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "run"), "--no-progress"],
                             env={"NNDSL_DEBUG": ""})
    assert res.exit_code == 1, res.output
    assert_at(res.output[res.output.index(str(src)):], tmp_path, "data")
    assert expect in res.output
    assert "internal error" not in res.output and "Traceback" not in res.output


def test_good_data_still_train(tmp_path):
    """The checks let a clean set through: two epochs on a tiny classification set lower the loss."""
    arrays = _xy(64, seed=5)
    arrays["y_train"] = (arrays["x_train"][:, 0] > 0).astype(np.int64) + 2 * (arrays["x_train"][:, 1] > 0)
    _npz(tmp_path, **arrays)
    src = _write(tmp_path, CLASSIFIER, NPZ + "\n    epochs = 3\n    optimizer = adam(lr=0.05)")
    compiled = build(src)
    cfg = train_config(compiled.train, compiled.hyperparams, tmp_path, {})
    torch.manual_seed(0)
    out = fit(compiled.module, cfg, None, progress=False, log=lambda line: None)
    losses = [h["train_loss"] for h in out["history"]]
    assert losses[-1] < losses[0], f"loss did not fall: {losses}"


# ----------------------------------------------------------------------------- shapes, and modules without a graph
def test_eval_features_that_do_not_fit_the_input(tmp_path):
    arrays = _xy(8)
    _npz(tmp_path, **arrays)
    np.savez(tmp_path / "e.npz", x_test=np.ones((5, 7), np.float32), y_test=np.arange(5) % 4)
    err, text = fit_error(tmp_path, NPZ + '\n    eval = npz("e.npz", x="x_test", y="y_test")', kind=NndslDataError)
    assert_at(text, tmp_path, "eval")
    assert "eval data do not fit the model: x has shape [N, 7], but the model's input 'x' is f32[B, 3]" in text


def test_text_windows_longer_than_a_static_context(tmp_path):
    (tmp_path / "c.txt").write_text("abcab" * 20)
    model = CHARS.replace("idx: i64[B, T]", "idx: i64[B, 8]").replace("[B, T, vocab]", "[B, 8, vocab]")
    err, text = fit_error(tmp_path, 'data = text("c.txt", context=12)', model, NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "training data do not fit the model: x has shape [N, 12], but the model's input 'idx' is i64[B, 8]" in text


@pytest.mark.parametrize("bad", [-1, 5])
def test_a_plain_torch_module_gets_the_label_check_on_its_first_batch(tmp_path, bad):
    """No graph to read the classes from: the first batch's output gives them (train.py's fallback)."""
    arrays = _xy(12)
    arrays["y_train"][9] = bad
    _npz(tmp_path, **arrays)
    src = _write(tmp_path, CLASSIFIER, NPZ)
    compiled = build(src)
    cfg = train_config(compiled.train, compiled.hyperparams, tmp_path, {})
    with pytest.raises(NndslDataError) as info:
        fit(torch.nn.Linear(3, 5), cfg, None, progress=False, log=lambda line: None)
    assert_at(str(info.value), tmp_path, "data")
    assert f"targets hold {bad}, but the model outputs 5 classes (labels 0..4)" in str(info.value)


@pytest.mark.parametrize("name", ["~no_such_user_here/d.npz", "d\x00.npz", "d\n.npz"])
def test_odd_data_paths_are_plain_misses(tmp_path, name):
    err, text = fit_error(tmp_path, f"data = npz({name!r})".replace("'", '"'), kind=NndslDataError)
    assert_at(text, tmp_path, "data")
    assert "not found; tried:" in text


def test_huge_finite_values_are_not_mistaken_for_inf():
    """The fast finite check sums first; a sum that overflows must fall back, not report an inf."""
    from nndsl.runtime.data import Source, loaded

    x = torch.full((101, 3), 3e38)
    assert loaded(Source(x, torch.zeros(101, dtype=torch.long)), "big") is not None
    x[77, 1] = -float("inf")
    with pytest.raises(NndslDataError, match=r"big: x\[77, 1\] = -inf"):
        loaded(Source(x, torch.zeros(101, dtype=torch.long)), "big")
