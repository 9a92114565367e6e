"""Checkpoint folders: verified on read, damage reported and skipped, never non-finite, kept and pruned
as configured; the run folder is locked, cleaned, and everything read from it is validated."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from runtime.rtkit import section
from safetensors.torch import save_file

import nndsl
from nndsl.errors import NndslConfigError, NndslDataError
from nndsl.runtime import checkpoint as ckpt
from nndsl.runtime.rundir import RunDir, read_meta
from nndsl.runtime.train import fit

SOURCE = "model Lin(x: f32[B, 6]) -> f32[B, 1] {\n    return linear(x, 1)\n}\n"
BODY = """
    data      = synthetic_regression(n=40, features=6, noise=0.01, seed=5)
    eval      = synthetic_regression(n=20, features=6, noise=0.01, seed=5, part="test")
    loss      = mse
    optimizer = sgd(lr=0.05)
    steps     = 12
    batch     = 8
    eval_every = 3
    metrics   = [mse, loss]
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(out, body=BODY, model=None, **kw):
    model = model if model is not None else nndsl.compile(SOURCE)
    meta = {"source": SOURCE, "model": "Lin", "hyperparams": {}}
    logs = []
    fit(model, section(body), out, device="cpu", progress=False, model_meta=meta, log=logs.append, **kw)
    return model, logs


def _forge(folder, weights=None, state_bytes=None):
    """Replace a checkpoint's files and rewrite its manifest to match (what an attacker can do)."""
    if weights is not None:
        save_file(weights, str(folder / ckpt.WEIGHTS))
    if state_bytes is not None:
        (folder / ckpt.STATE).write_bytes(state_bytes)
    manifest = json.loads((folder / ckpt.MANIFEST).read_text())
    for f in (ckpt.WEIGHTS, ckpt.STATE):
        data = (folder / f).read_bytes()
        manifest["files"][f] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / ckpt.MANIFEST).write_text(json.dumps(manifest))


def test_periodic_best_and_keep_last(tmp_path):
    body = BODY + '    keep_last = 3\n    checkpoint_every = 2\n    best = "-loss"\n'
    model, _ = _train(tmp_path / "r", body)
    found = ckpt.listing(tmp_path / "r")
    assert [c.step for c in found if not c.best] == [8, 10, 12], found
    history = json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]
    best_step = min(history, key=lambda h: h["val_loss"])["step"]
    assert [c.step for c in found if c.best] == [best_step]
    best = nndsl.load(tmp_path / "r", which="best").state_dict()
    _, saved = ckpt.load_weights(tmp_path / "r", "best")
    assert all(torch.equal(best[k], saved[k]) for k in saved)
    latest = nndsl.load(tmp_path / "r").state_dict()
    assert all(torch.equal(latest[k], v) for k, v in model.state_dict().items())


def test_time_based_checkpoints_and_an_accuracy_best(tmp_path):
    # checkpoint_minutes tiny: a checkpoint after every step; best by r2 (higher is better)
    body = BODY.replace("[mse, loss]", "[mse, r2]") + "    checkpoint_minutes = 0.000001\n    keep_last = 1\n"
    _train(tmp_path / "r", body)
    found = ckpt.listing(tmp_path / "r")
    history = json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]
    assert [c.step for c in found if not c.best] == [12]
    assert [c.step for c in found if c.best] == [max(history, key=lambda h: h["val_r2"])["step"]]


def test_damaged_checkpoints_are_reported_and_skipped(tmp_path):
    body = BODY + "    keep_last = 3\n    best = none\n"
    _train(tmp_path / "r", body)
    steps = [c.step for c in ckpt.listing(tmp_path / "r")]
    assert steps == [6, 9, 12]
    newest = ckpt.listing(tmp_path / "r")[-1].path
    data = (newest / ckpt.WEIGHTS).read_bytes()
    (newest / ckpt.WEIGHTS).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(NndslDataError, match=r"damaged checkpoint .*step-000000012: model.safetensors does not match"):
        ckpt.read(ckpt.listing(tmp_path / "r")[-1])
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        where, _ = ckpt.load_weights(tmp_path / "r")
    assert where.parent.name == "step-000000009"
    # resume falls back too, says so, and continues from step 9
    logs = _train(tmp_path / "r", body.replace("steps     = 12", "steps     = 15"), resume=True)[1]
    assert any("damaged checkpoint" in m and "trying the checkpoint before it" in m for m in logs), logs
    assert any("resuming from" in m and "step 9" in m for m in logs), logs
    assert [c.step for c in ckpt.listing(tmp_path / "r")] == [9, 12, 15]


@pytest.mark.parametrize("damage,needle", [
    ("flip", "state.pt does not match"),
    ("manifest", "manifest.json is not an nndsl manifest"),
    ("no-manifest", "manifest: cannot read"),
    ("foreign", "state.pt: "),
])
def test_every_kind_of_damage_is_named(tmp_path, damage, needle):
    _train(tmp_path / "r", BODY + "    best = none\n")
    c = ckpt.listing(tmp_path / "r")[-1]
    if damage == "flip":
        data = bytearray((c.path / ckpt.STATE).read_bytes())
        data[len(data) // 2] ^= 1
        (c.path / ckpt.STATE).write_bytes(bytes(data))
    elif damage == "manifest":
        (c.path / ckpt.MANIFEST).write_text('{"format": "something else"}')
    elif damage == "no-manifest":
        (c.path / ckpt.MANIFEST).unlink()
    else:  # a pickle that would run code, with a manifest forged to match
        class Evil:
            def __reduce__(self):
                return (os.mkdir, (str(tmp_path / "pwned"),))
        import io
        buf = io.BytesIO()
        torch.save({"step": Evil()}, buf)
        _forge(c.path, state_bytes=buf.getvalue())
    with pytest.raises(NndslDataError, match=f"damaged checkpoint {c.path}: {needle}"):
        ckpt.read(c)
    assert not (tmp_path / "pwned").exists(), "a crafted state.pt ran code"


def test_non_finite_weights_are_never_written_nor_loaded(tmp_path):
    class GoesNan(torch.nn.Linear):
        calls = 0

        def forward(self, x):
            GoesNan.calls += self.training
            out = super().forward(x)
            return out * float("nan") if GoesNan.calls >= 8 else out

    torch.manual_seed(0)
    with pytest.raises(NndslConfigError, match="the loss became nan at step 8") as info:
        _train(tmp_path / "r", BODY + "    checkpoint_every = 1\n", model=GoesNan(6, 1))
    assert "step 7" in info.value.message and "last good checkpoint" in info.value.message
    assert "lower the learning rate" in info.value.hint
    found = ckpt.listing(tmp_path / "r")
    assert found and max(c.step for c in found) == 7, found
    for c in found:
        assert ckpt.nonfinite(ckpt.read(c)[0]) is None
    with pytest.raises(NndslDataError, match="holds nan or inf"):
        ckpt.write(tmp_path / "r", 99, {"w": torch.tensor([1.0, float("inf")])}, {})
    # a forged checkpoint with nan weights is refused by nndsl.load
    _forge(found[-1].path, weights={"linear.weight": torch.full((1, 6), float("nan")), "linear.bias": torch.zeros(1)})
    with pytest.raises(NndslDataError, match="weight 'linear.weight' holds nan or inf; refusing to load it"):
        nndsl.load(tmp_path / "r")


def test_the_nan_check_finds_the_exact_step_between_reads(tmp_path):
    """The flag is read every 25 steps; a loss going nan at step 31 is reported as step 31."""
    class Late(torch.nn.Linear):
        calls = 0

        def forward(self, x):
            Late.calls += self.training
            return super().forward(x) * (float("inf") if Late.calls == 31 else 1.0)

    body = BODY.replace("steps     = 12", "steps     = 60").replace("eval_every = 3", "eval_every = 60")
    with pytest.raises(NndslConfigError, match="the loss became inf at step 31"):
        _train(None, body, model=Late(6, 1))


def test_the_lock_refuses_a_second_run(tmp_path):
    with RunDir.open(tmp_path / "r"):
        with pytest.raises(NndslConfigError, match=rf"the run folder {tmp_path / 'r'} is in use by another "
                                                   rf"nndsl run \(pid {os.getpid()}\)"):
            _train(tmp_path / "r")
    _train(tmp_path / "r")  # released: the folder is usable again


def test_leftovers_are_removed_under_the_lock(tmp_path):
    _train(tmp_path / "r")
    (tmp_path / "r" / "checkpoints" / ".tmp-step-000000013.abc").mkdir()
    (tmp_path / "r" / "checkpoints" / ".tmp-step-000000013.abc" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "r" / ".tmp-metrics.json.xyz").write_text("{")
    with RunDir.open(tmp_path / "r") as run:
        assert len(run.removed) == 2
    names = sorted(p.name for p in (tmp_path / "r").rglob("*") if p.name.startswith(".tmp-"))
    assert names == [], names


def test_a_fresh_run_does_not_overwrite_an_earlier_one(tmp_path):
    _train(tmp_path / "r")
    with pytest.raises(NndslConfigError, match="already holds a run"):
        _train(tmp_path / "r")
    _, logs = _train(tmp_path / "r", overwrite=True)
    assert any("removed the" in m for m in logs)
    with pytest.raises(NndslDataError, match="nothing to resume"):
        _train(tmp_path / "empty", resume=True)


def test_out_under_a_regular_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NndslConfigError, match=r"cannot use .*f/run as the run folder: .*f is a file"):
        RunDir.open(tmp_path / "f" / "run")


@pytest.mark.parametrize("field,value,needle", [
    ("source", 3, "field 'source' must be the model's source text"),
    ("model", "Lin\nimport os", "field 'model' must be a model name"),
    ("hyperparams", {"a": [1]}, "field 'hyperparams'"),
    ("hyperparams", {"not a name": 1}, "field 'hyperparams'"),
    ("vocab", ["ab", "c"], "field 'vocab' must be a list of one-character strings"),
    ("output_is_probs", "yes", "field 'output_is_probs' must be true or false"),
])
def test_run_json_is_validated_field_by_field(tmp_path, field, value, needle):
    _train(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    meta[field] = value
    (tmp_path / "r" / "run.json").write_text(json.dumps(meta))
    with pytest.raises(NndslDataError, match=needle):
        nndsl.load(tmp_path / "r")


def test_run_json_with_nan_or_not_an_object(tmp_path):
    (tmp_path / "run.json").write_text('{"source": "x", "model": "M", "hyperparams": {"a": NaN}}')
    with pytest.raises(NndslDataError, match="NaN is not allowed"):
        read_meta(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(NndslDataError, match="expected a JSON object"):
        read_meta(tmp_path)
