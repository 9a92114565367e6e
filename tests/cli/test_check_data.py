"""`nndsl check` checks the train section against the data from file headers, without loading a set:
each mismatch is reported at the line that declares it, naming both sides."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from nndsl.cli import main
from runtime.rtkit import write_mnist_dir

LINEAR = "model M(x: f32[B, 3]) -> f32[B, 2] {\n    return linear(x, 2)\n}\n"


def _check(tmp_path, src: str):
    (tmp_path / "m.nn").write_text(src)
    return CliRunner().invoke(main, ["check", str(tmp_path / "m.nn")])


def _failed_at(res, line: int, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    assert f"m.nn:{line}:" in res.output, res.output
    for n in needles:
        assert n in res.output, res.output
    assert "internal error" not in res.output and "Traceback" not in res.output


@pytest.fixture()
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(8, 3)).astype(np.float32), x5=np.zeros((8, 5), np.float32),
             y=rng.integers(0, 2, 8), yf=rng.normal(size=8).astype(np.float32))
    return tmp_path


def test_good_data_pass_and_list_their_fields(arrays):
    res = _check(arrays, LINEAR + 'train {\n    data = npz("d.npz", fields=["x", "y"])\n}\n')
    assert res.exit_code == 0, res.output
    assert "data fields: x float32[3], y int64[]" in res.output


def test_a_missing_file(tmp_path):
    res = _check(tmp_path, LINEAR + 'train {\n    loss = cross_entropy\n    data = npz("nope.npz")\n}\n')
    _failed_at(res, 6, "npz file 'nope.npz' not found")


def test_an_input_shape_the_data_do_not_have(arrays):
    res = _check(arrays, LINEAR + 'train {\n    data = npz("d.npz", x="x5", y="y")\n}\n')
    _failed_at(res, 5, "x has shape [N, 5]", "model's input 'x' is f32[B, 3]")


def test_an_eval_set_is_located_at_its_own_line(arrays):
    res = _check(arrays, LINEAR + 'train {\n    data = npz("d.npz", fields=["x", "y"])\n'
                                  '    eval = npz("d.npz", x="x5", y="y")\n}\n')
    _failed_at(res, 6, "eval data do not fit", "x has shape [N, 5]")


def test_float_targets_for_cross_entropy_at_the_loss_line(arrays):
    res = _check(arrays, LINEAR + 'train {\n    data = npz("d.npz", x="x", y="yf")\n    loss = cross_entropy\n}\n')
    _failed_at(res, 6, "cross_entropy takes integer class labels", "y is f32")


def test_more_classes_than_the_model_outputs(tmp_path):
    write_mnist_dir(tmp_path / "mnist")
    src = ('model M(x: f32[B, 1, 28, 28]) -> f32[B, 5] {\n    return linear(flatten(x), 5)\n}\n'
           'train {\n    data = mnist("mnist")\n}\n')
    _failed_at(_check(tmp_path, src), 5, "has 10 classes", "the model outputs 5 classes")


def test_a_vocabulary_smaller_than_the_texts(tmp_path):
    (tmp_path / "t.txt").write_text("abcdefghijkl" * 10)
    src = ('model L(idx: i64[B, T], vocab: int = 6) -> f32[B, T, vocab] {\n'
           '    return linear(embedding(idx, vocab, 8, name="wte"), vocab)\n}\n'
           'train {\n    data = text("t.txt", context=4)\n}\n')
    _failed_at(_check(tmp_path, src), 5, "12 distinct characters", "embedding 'wte'", "--set vocab=12")


def test_a_model_input_without_a_field(arrays):
    src = ('model M(x: f32[B, 3], w: f32[B, 3]) -> f32[B, 2] {\n    return linear(x * w, 2)\n}\n'
           'train {\n    data = npz("d.npz", fields=["x", "y"])\n}\n')
    _failed_at(_check(arrays, src), 5, "input 'w' has no field of its name", "its fields: x, y")


def test_a_loss_field_the_data_lack(arrays):
    src = LINEAR + 'train {\n    data = npz("d.npz", fields=["x", "y"])\n    loss = cross_entropy(out, label)\n}\n'
    _failed_at(_check(arrays, src), 6, "the loss reads the field 'label'", "fields x, y")


def test_a_loss_that_does_not_fit_the_output_kind(arrays):
    src = ('model M(x: f32[B, 3]) -> f32[B, 2] {\n    return softmax(linear(x, 2))\n}\n'
           'train {\n    data = npz("d.npz", fields=["x", "y"])\n    loss = binary_cross_entropy(out, y)\n}\n')
    _failed_at(_check(arrays, src), 6, "binary_cross_entropy does not fit a softmax output", "use cross_entropy")


def test_check_reads_headers_only(tmp_path, monkeypatch):
    write_mnist_dir(tmp_path / "mnist")
    import nndsl.runtime.data.idx as idx

    def never(*a, **k):
        raise AssertionError("check loaded a whole set")

    monkeypatch.setattr(idx, "read_idx", never)
    src = ('model M(x: f32[B, 1, 28, 28]) -> f32[B, 10] {\n    return linear(flatten(x), 10)\n}\n'
           'train {\n    data = mnist("mnist")\n}\n')
    res = _check(tmp_path, src)
    assert res.exit_code == 0, res.output
