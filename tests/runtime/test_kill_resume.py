"""A real `nndsl run` killed with SIGKILL at many instants, then resumed until done.

The kills land deterministically inside and between every file write of a checkpoint (the
``NNDSL_FAULT=ckpt:<point>`` hooks of ``rundir.fault``), and at random times. After each kill every
published checkpoint must verify (never a mix of two), every resume must work, and the finished
run's weights and loss history must be bit-identical to an uninterrupted run with the same seed.

The reference run, the last resume and the lock test start `python -m nndsl.cli run` afresh; the
killed runs are `nndsl run` too, each in its own process, forked from a process that imported
nndsl once (a fresh interpreter per kill would spend most of the test importing torch).
CI runs each fault point once and two random kills; NNDSL_KILL_SWEEP=1 runs every point at its
1st-3rd occurrence and 20 random kills.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nndsl.runtime import checkpoint as ckpt

SWEEP = os.environ.get("NNDSL_KILL_SWEEP", "0") == "1"
POINTS = ["during-weights", "after-weights", "during-state", "after-state", "during-manifest", "after-manifest",
          "after-publish", "during-prune", "during-metrics"]  # in an order where each is reached (prune needs 3)
MODEL = """\
model Reg(x: f32[B, 4]) -> f32[B, 1] {
    return linear(dropout(relu(linear(x, 8)), 0.2), 1)
}

train {
    data      = npz("d.npz", x="x", y="y")
    eval      = npz("d.npz", x="xt", y="yt")
    loss      = mse
    optimizer = adam(lr=1e-2)
    steps     = 60
    batch     = 8
    eval_every = 10
    checkpoint_every = 3
    metrics   = [mse]
    seed      = 1
}
"""


def _setup(folder: Path) -> None:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x @ rng.normal(size=4) + 0.1).astype(np.float32)
    np.savez(folder / "d.npz", x=x[:40], y=y[:40], xt=x[40:], yt=y[40:])
    (folder / "m.nn").write_text(MODEL)


def _command(out: str, resume: bool) -> list[str]:
    return [sys.executable, "-m", "nndsl.cli", "run", "m.nn", "--out", out, "--no-progress"] + ["--resume"] * resume


def _env(fault: str = "") -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", NNDSL_DEBUG="")
    env.pop("NNDSL_FAULT", None)
    if fault:
        env["NNDSL_FAULT"] = f"ckpt:{fault}"
    return env


# Reads one request per line ({"args", "cwd", "env", "log"}), forks a child that runs the nndsl command
# with its output in "log", prints {"pid"} at once and {"exit"} when the child ends.
_FORKER = r"""
import json, os, sys
import nndsl.cli
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.chdir(req["cwd"])
        os.environ.pop("NNDSL_FAULT", None)
        os.environ.update(req["env"])
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            nndsl.cli.main(req["args"], prog_name="nndsl")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    print(json.dumps({"exit": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), flush=True)
"""


class Forker:
    """Runs `nndsl run` in processes forked from one that has nndsl imported already."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.proc = subprocess.Popen([sys.executable, "-c", _FORKER], cwd=cwd, env=_env(), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def start(self, out: str, *, resume: bool, fault: str = "") -> tuple[int, Path]:
        log = self.cwd / f"log-{time.monotonic_ns()}.txt"
        env = {"NNDSL_FAULT": f"ckpt:{fault}"} if fault else {}
        req = {"args": _command(out, resume)[3:], "cwd": str(self.cwd), "env": env, "log": str(log)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["pid"], log

    def wait(self) -> int:
        return json.loads(self.proc.stdout.readline())["exit"]

    def run(self, out: str, *, resume: bool, fault: str = "") -> tuple[int, str]:
        _, log = self.start(out, resume=resume, fault=fault)
        return self.wait(), log.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _run(cwd: Path, out: str, *, resume: bool, fault: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(_command(out, resume), cwd=cwd, env=_env(fault), capture_output=True, text=True,
                          timeout=300)


def _assert_clean_output(text: str, what: str) -> None:
    assert "Traceback" not in text and "internal error" not in text and "damaged" not in text, f"{what}:\n{text}"


def _assert_every_checkpoint_whole(out: Path, what: str) -> None:
    found = ckpt.listing(out)
    assert [c for c in found if not c.best], f"{what}: no checkpoint left"
    for c in found:
        ckpt.read(c)  # raises "damaged checkpoint" on any mix or tear


def _history(out: Path) -> list[dict]:
    history = json.loads((out / "metrics.json").read_text())["history"]
    return [{k: v for k, v in h.items() if k != "samples_per_second"} for h in history]


def _kill_at_random(forker: Forker, out: str, delay: float) -> int:
    """Start a resume, wait until it has loaded its checkpoint, SIGKILL it ``delay`` s later."""
    pid, log = forker.start(out, resume=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            s in (log.read_text() if log.exists() else "") for s in ("resuming from", "nothing to do", "error")):
        time.sleep(0.01)
    time.sleep(delay)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        pass
    code = forker.wait()
    _assert_clean_output(log.read_text(), f"the resume killed after {delay:.3f} s")
    return code


def test_killed_anywhere_resumes_to_the_same_weights_and_history(tmp_path):
    _setup(tmp_path)
    ref = _run(tmp_path, "ref", resume=False)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    faults = [f"{p}:{n}" for n in (1, 2, 3) for p in POINTS] if SWEEP else POINTS
    forker = Forker(tmp_path)
    try:
        for i, fault in enumerate(faults):
            if i == 0 and not fault.endswith((":2", ":3")):
                fault += ":2"  # the first run must publish a checkpoint before it dies, to have one to resume
            code, text = forker.run("out", resume=i > 0, fault=fault)
            assert code == -signal.SIGKILL, f"fault {fault} was not reached (exit {code}):\n{text}"
            _assert_clean_output(text, f"fault {fault}")
            _assert_every_checkpoint_whole(tmp_path / "out", f"after the kill at {fault}")
        for k in range(20 if SWEEP else 2):
            delay = rng.uniform(0.0, 1.0)
            code = _kill_at_random(forker, "out", delay)
            assert code in (0, -signal.SIGKILL), f"random kill {k} after {delay:.3f} s (seed {seed}): exit {code}"
            _assert_every_checkpoint_whole(tmp_path / "out", f"after the random kill {k} at {delay:.3f} s (seed {seed})")
    finally:
        forker.close()
    done = _run(tmp_path, "out", resume=True)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_clean_output(done.stdout + done.stderr, "the last resume")
    assert not list((tmp_path / "out").rglob(".tmp-*")), "leftovers of killed runs were not removed"
    _, ref_w, _ = ckpt.newest(tmp_path / "ref")
    found, out_w, state = ckpt.newest(tmp_path / "out")
    assert found.step == 60 and state["step"] == 60
    assert set(ref_w) == set(out_w)
    for k in ref_w:
        assert torch.equal(ref_w[k], out_w[k]), f"{k} differs from the uninterrupted run (random seed {seed})"
    assert _history(tmp_path / "out") == _history(tmp_path / "ref")


def test_two_runs_on_one_out_and_an_out_under_a_file(tmp_path):
    _setup(tmp_path)
    slow = MODEL.replace("steps     = 60", "steps     = 100000").replace("checkpoint_every = 3",
                                                                         "checkpoint_every = 1000")
    (tmp_path / "slow.nn").write_text(slow)
    first = subprocess.Popen(_command("shared", False)[:4] + ["slow.nn", "--out", "shared", "--no-progress"],
                             cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in first.stdout:
            if line.startswith("data:"):
                break
        second = _run(tmp_path, "shared", resume=False)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"the run folder shared is in use by another nndsl run (pid {first.pid})" in second.stderr, \
            second.stderr
        assert "parameters" not in second.stdout, "the second run compiled before checking --out"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    (tmp_path / "file").write_text("not a folder")
    p = _run(tmp_path, "file/run", resume=False)
    assert p.returncode == 1 and "cannot use file/run as the run folder: file is a file" in p.stderr, p.stderr
    assert "parameters" not in p.stdout
