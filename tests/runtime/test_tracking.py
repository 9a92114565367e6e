"""A run folder's logs and records: log.csv and TensorBoard events read back against metrics.json,
no row lost or repeated across --resume, the resolved configuration and the exact source kept."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
from click.testing import CliRunner
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nndsl.cli import main
from nndsl.frontend.parser import parse
from nndsl.runtime import checkpoint as ckpt
from nndsl.runtime.config import train_config
from nndsl.runtime.tracking import Tracker, read_log

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = """\
model Tiny(x: f32[B, 5], hidden: int = 4) -> f32[B, 1] {
    return linear(relu(linear(x, hidden)), 1)
}
"""
TRAIN = """\
train {
    data      = synthetic_regression(n=90, features=5, noise=0.01, seed=1)
    eval      = synthetic_regression(n=30, features=5, noise=0.01, seed=1, part="test")
    loss      = mse
    optimizer = adam(lr=1e-2, betas=[0.8, 0.99])
    schedule  = cosine(warmup=2)
    steps     = 4
    batch     = 16
    eval_every = 2
    checkpoint_every = 2
    keep_last = 10
    metrics   = [mse, r2]
    seed      = 3
}
"""


def _run(tmp_path, out, *extra):
    src = tmp_path / "tiny.nn"
    if not src.exists():
        src.write_text(MODEL + "\n" + TRAIN)
    res = CliRunner().invoke(main, ["run", str(src), "--out", str(out), "--no-progress", *map(str, extra)],
                             env={"NNDSL_DEBUG": "1"})
    assert res.exit_code == 0, res.output
    return res


def _csv_rows(out):
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _scalars(out):
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_csv_and_tensorboard_hold_every_logged_value(tmp_path):
    out = tmp_path / "run"
    _run(tmp_path, out, "--steps", 8, "--set", "batch=12")
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4, 6, 8]
    rows = _csv_rows(out)
    assert list(rows[0]) == ["step", "epoch", "lr", "train_loss", "val_mse", "val_r2", "samples_per_second"]
    assert len(rows) == len(history)
    for row, h in zip(rows, history):  # exact: the CSV writes floats with repr
        assert {k: float(v) for k, v in row.items()} == pytest.approx(h, rel=0, abs=0), (row, h)
    assert read_log(out) == [{k: float(v) for k, v in h.items()} for h in history]
    scalars = _scalars(out)
    assert set(scalars) == {"epoch", "lr", "train_loss", "val_mse", "val_r2", "samples_per_second"}
    for tag, points in scalars.items():  # TensorBoard stores float32
        assert [s for s, _ in points] == [h["step"] for h in history], tag
        assert [v for _, v in points] == pytest.approx([h[tag] for h in history], rel=1e-6), tag
    assert len({v for _, v in scalars["lr"]}) == len(history)  # the cosine schedule: the rate of each step


def test_resume_drops_rows_past_the_checkpoint_and_repeats_none(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "run"
    _run(tmp_path, ref, "--steps", 8)
    _run(tmp_path, out, "--steps", 8)
    # as if killed after logging step 8 but with only the checkpoints up to step 4 published
    for c in ckpt.listing(out):
        if c.step > 4:
            shutil.rmtree(c.path)
    assert [int(r["step"]) for r in _csv_rows(out)] == [2, 4, 6, 8]
    res = _run(tmp_path, out, "--steps", 8, "--resume")
    assert "step 4" in res.output
    rows, expected = _csv_rows(out), _csv_rows(ref)
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    for row, want in zip(rows, expected):  # a resumed run logs what an uninterrupted one does
        for k in ("step", "epoch", "lr", "train_loss", "val_mse", "val_r2"):
            assert float(row[k]) == float(want[k]), (k, row, want)
    for tag, points in _scalars(out).items():  # the events past step 4 of the first attempt are purged
        assert [s for s, _ in points] == [2, 4, 6, 8], (tag, points)
    # continuing further appends after the last row
    _run(tmp_path, out, "--steps", 12, "--resume")
    assert [int(r["step"]) for r in _csv_rows(out)] == [2, 4, 6, 8, 10, 12]
    # --overwrite starts the logs afresh
    _run(tmp_path, out, "--steps", 4, "--overwrite")
    assert [int(r["step"]) for r in _csv_rows(out)] == [2, 4]
    assert all([s for s, _ in pts] == [2, 4] for pts in _scalars(out).values())


def test_resolved_config_and_exact_source_are_kept(tmp_path):
    out = tmp_path / "run"
    src = tmp_path / "tiny.nn"
    src.write_bytes((MODEL + "\n# é, a comment\r\n" + TRAIN).encode("utf-8"))
    _run(tmp_path, out, "--steps", 2, "--lr", 0.003, "--set", "hidden=6", "--set", "batch=10", "--set", "clip=0.5")
    assert (out / "source.nn").read_bytes() == src.read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "Tiny" and config["hyperparams"] == {"hidden": 6}
    train = config["train"]
    assert (train["steps"], train["batch"], train["clip"], train["optimizer"]["lr"]) == (2, 10, 0.5, 0.003)
    assert train["optimizer"]["betas"] == [0.8, 0.99] and train["schedule"] == {"name": "cosine", "warmup": 2,
                                                                                  "min_lr": 0.0}
    assert json.loads((out / "run.json").read_text())["train"] == train
    # train.nn is a train section that evaluates to the same settings
    section = (out / "train.nn").read_text()
    assert "hidden=6" in section and "train Tiny {" in section
    prog = parse(MODEL + section, "train.nn")
    again = train_config(prog.trains[0], {"hidden": 6}, tmp_path)
    assert json.loads(json.dumps(again.as_dict())) == train


def test_a_tracker_off_the_main_process_or_without_a_folder_writes_nothing(tmp_path):
    Tracker(tmp_path, is_main=False).log({"step": 1, "train_loss": 0.5})
    Tracker(None).log({"step": 1, "train_loss": 0.5})
    assert list(tmp_path.iterdir()) == []


def test_a_value_that_appears_later_gets_a_column(tmp_path):
    t = Tracker(tmp_path)
    t.log({"step": 1, "epoch": 0.5, "lr": 0.1, "train_loss": 2.0})
    t.log({"step": 2, "epoch": 1.0, "lr": 0.1, "train_loss": 1.0, "val_loss": 1.5})
    t.close()
    assert _csv_rows(tmp_path) == [{"step": "1", "epoch": "0.5", "lr": "0.1", "train_loss": "2.0", "val_loss": ""},
                                   {"step": "2", "epoch": "1.0", "lr": "0.1", "train_loss": "1.0",
                                    "val_loss": "1.5"}]
    assert read_log(tmp_path)[0] == {"step": 1.0, "epoch": 0.5, "lr": 0.1, "train_loss": 2.0}


def test_reading_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    from nndsl.errors import NndslDataError

    with pytest.raises(NndslDataError, match="not an nndsl run folder"):
        read_log(tmp_path)
    with pytest.raises(NndslDataError, match="no such folder"):
        read_log(tmp_path / "missing")
    (tmp_path / "log.csv").write_text("step,train_loss\n1,abc\n")
    with pytest.raises(NndslDataError, match=r"log.csv:2: column 'train_loss' holds 'abc'"):
        read_log(tmp_path)
