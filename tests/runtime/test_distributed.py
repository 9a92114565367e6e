"""`nndsl run` under torchrun: 2 processes on the CPU (gloo) train the single-process run.

Two processes with the file's global batch must give the single-process run's weights and loss
history (within float32 round-off: the gradient is summed in another order), with DDP and with
FSDP2 (``--shard``); a run stopped after k steps and resumed under torchrun must end where an
uninterrupted run ends. The data are 37 examples in batches of 8, so the last batch of each epoch
(5 examples) splits unevenly (3 + 2) and its losses must be weighted by each rank's share.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nndsl.errors import NndslConfigError
from nndsl.runtime import checkpoint as ckpt
from nndsl.runtime import data
from nndsl.runtime.distributed import Cluster
from runtime.rtkit import section, source_line

MODEL = """\
model Reg(x: f32[B, 4]) -> f32[B, 1] {
    return linear(relu(linear(x, 8)), 1)
}

train {
    data      = npz("d.npz", x="x", y="y")
    eval      = npz("d.npz", x="xt", y="yt")
    loss      = mse
    optimizer = adam(lr=1e-2)
    epochs    = 3
    batch     = 8
    metrics   = [mse]
    l2        = 1e-3
    seed      = 1
}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The model, fresh random data, and the single-process run every test compares with."""
    d = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x @ rng.normal(size=4) + 0.1).astype(np.float32)
    np.savez(d / "d.npz", x=x[:37], y=y[:37], xt=x[37:], yt=y[37:])
    (d / "m.nn").write_text(MODEL)
    _nndsl(d, "single")
    _nndsl(d, "single12", "--steps", "12")
    return d


def _nndsl(cwd: Path, out: str, *args: str, procs: int = 1) -> None:
    launch = ["-m", "torch.distributed.run", "--nproc-per-node", str(procs)] if procs > 1 else []
    cmd = [sys.executable, *launch, "-m", "nndsl.cli", "run", "m.nn", "--out", out, "--no-progress", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", NNDSL_DEBUG="")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{' '.join(cmd[1:])} failed:\n{r.stdout}\n{r.stderr}"


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = ckpt.load_weights(a)[1], ckpt.load_weights(b)[1]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"weight {k}: {m}")


def _history(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["history"]


def test_two_processes_train_the_single_process_run(folder):
    _nndsl(folder, "ddp", procs=2)
    _same_weights(folder / "single", folder / "ddp")
    one, two = _history(folder / "single"), _history(folder / "ddp")
    assert [e["step"] for e in one] == [e["step"] for e in two]
    for a, b in zip(one, two):  # the running loss is every rank's examples', as one process's
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_mse"] == pytest.approx(a["val_mse"], rel=1e-5)
    assert json.loads((folder / "ddp" / "run.json").read_text())["world_size"] == 2
    assert json.loads((folder / "single" / "run.json").read_text())["world_size"] == 1


def test_sharded_fsdp2_trains_the_single_process_run(folder):
    """With 3 micro-batches a step, some of them empty on one rank: every rank still runs 3 (FSDP2
    gathers the weights in each forward)."""
    _nndsl(folder, "fsdp", "--shard", "--set", "accumulate=3", procs=2)
    _same_weights(folder / "single", folder / "fsdp")


def test_resume_under_torchrun_ends_where_an_uninterrupted_run_ends(folder):
    _nndsl(folder, "resumed", "--steps", "5", "--set", "accumulate=2", procs=2)  # DDP's no_sync too
    saved = ckpt.newest(folder / "resumed")[2]
    assert saved["step"] == 5 and len(saved["ranks"]) == 2  # each rank's RNG and running loss
    _nndsl(folder, "resumed", "--steps", "12", "--set", "accumulate=2", "--resume", procs=2)
    _same_weights(folder / "single12", folder / "resumed")
    assert _history(folder / "resumed")[-1]["train_loss"] == pytest.approx(
        _history(folder / "single12")[-1]["train_loss"], rel=1e-5)


# ----------------------------------------------------------------------------- no processes needed
@pytest.mark.parametrize("n,batch,world", [(37, 8, 2), (10, 4, 4), (13, 6, 3)])
def test_ranks_split_each_batch_into_disjoint_slices(n, batch, world):
    one = list(data.EpochBatches(n, batch, shuffle=True, seed=5, epoch=2))
    ranks = [list(data.EpochBatches(n, batch, shuffle=True, seed=5, epoch=2, rank=r, world=world))
             for r in range(world)]
    for i, whole in enumerate(one):
        assert torch.equal(torch.cat([r[i] for r in ranks]), whole)  # disjoint, together the batch
        assert sum(len(r[i]) for r in ranks) == data.global_batch(data.Source(torch.zeros(n, 1)), batch, i, False)


def test_random_text_windows_are_split_between_ranks_not_repeated():
    src = data.TextSource(torch.randint(0, 50, (5000,)), 16, [chr(65 + i) for i in range(50)])
    one = src.sample(12, torch.Generator().manual_seed(3))
    parts = [src.sample(12, torch.Generator().manual_seed(3), rank=r, world=3) for r in range(3)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), one["x"])
    assert all(len(p["x"]) == 4 for p in parts)


def test_a_batch_that_does_not_split_evenly_is_an_error_at_its_line():
    body = "data = synthetic_regression(n=30)\nbatch = 10\n"
    cfg = section(body)
    with pytest.raises(NndslConfigError) as e:
        Cluster(world=3).check_batch(cfg.batch, cfg.spans.get("batch"))
    assert e.value.span.line == source_line(body, "batch = 10")
    assert "batch = 10" in e.value.message and "3 processes" in e.value.message
    Cluster(world=2).check_batch(cfg.batch, cfg.spans.get("batch"))  # 10 = 2 x 5: fine
