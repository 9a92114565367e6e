"""Fuzz the real command line: N mutated or generated sources through ``nndsl check`` and
``nndsl compile --emit python``, counting what a user must never see.

    python tests/fuzz/cli_fuzz.py 200 [seed]

Prints one line of counts (runs, internal errors, tracebacks, hangs, raw control characters,
other exit codes) and the first offending inputs; exits 1 when any count but runs is non-zero.
Each run has a 60 s limit and an 8 GiB address-space limit (a safety net on shared machines).
"""
from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fuzz import fuzzkit as fk  # noqa: E402

NNDSL = [sys.executable, "-m", "nndsl.cli"]
RUN_LIMIT_S = 60
MEMORY_LIMIT = 8 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _raw_control(text: str) -> bool:
    return any(c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def run(n: int, seed: int = 0) -> dict[str, list]:
    rng = random.Random(seed)
    seeds = fk.corpus()
    found: dict[str, list] = {"internal error": [], "traceback": [], "hang": [], "raw control": [], "exit": []}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("NNDSL_DEBUG", None)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            src = fk.mutate(rng.choice(seeds), rng)
            path = Path(tmp) / f"m{i}.nn"
            path.write_bytes(src.encode("utf-8", errors="surrogateescape"))
            cmd = ["check", str(path)] if i % 2 == 0 else ["compile", str(path), "--emit", "python"]
            try:
                res = subprocess.run(NNDSL + cmd, capture_output=True, text=True, errors="replace", env=env,
                                     timeout=RUN_LIMIT_S, preexec_fn=_limit_memory, cwd=tmp)
            except subprocess.TimeoutExpired:
                found["hang"].append((cmd[0], src))
                continue
            err = res.stderr
            if "internal error" in err:
                found["internal error"].append((cmd[0], err.strip()[:300], src))
            if "Traceback (most recent call last)" in err:
                found["traceback"].append((cmd[0], err.strip()[-300:], src))
            if res.returncode == 1 and _raw_control(err):
                found["raw control"].append((cmd[0], err[:300], src))
            if res.returncode not in (0, 1):
                found["exit"].append((cmd[0], res.returncode, err[-300:], src))
    return found


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    found = run(n, seed)
    print(f"cli fuzz: {n} runs, " + ", ".join(f"{len(v)} {k}" for k, v in found.items()))
    for kind, items in found.items():
        for item in items[:3]:
            print(f"--- {kind}: {item!r}"[:1200])
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
