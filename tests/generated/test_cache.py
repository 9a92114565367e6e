"""The disk cache of generated kernels: a second process compiling the same model generates no
source; a damaged file is regenerated, never imported; no temporary file is left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r'''
import json, sys, torch, nndsl
from nndsl.backend.triton_gen import cache
src = """model M(x: f32[B, T, N], y: f32[N], N: int = 6) -> f32[B, T, N] {
    h = tanh(x * y + 1.0)
    return h * (mean(h ** 2, dim=-1, keepdim=true) + 1e-5) ** -0.5
}"""
m = nndsl.compile(src, backend="triton")
x = torch.randn(2, 3, 6, requires_grad=True)
m(x, torch.randn(6)).sum().backward()
print(json.dumps(cache.STATS))
'''


def _run(cache_dir: Path) -> dict:
    env = dict(os.environ, NNDSL_CACHE_DIR=str(cache_dir), TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_generates_no_source(tmp_path):
    first = _run(tmp_path)
    assert first["generated"] >= 2 and first["loaded"] == 0, first  # forward and backward kernels
    files = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert len(files) == first["generated"] and all(f.endswith(".py") for f in files), files
    second = _run(tmp_path)
    assert second == {"generated": 0, "loaded": first["generated"]}, second


def test_a_damaged_file_is_regenerated(tmp_path):
    first = _run(tmp_path)
    victim = sorted((tmp_path / "kernels").iterdir())[0]
    victim.write_text(victim.read_text().replace("tl.", "os.system('echo pwned'); tl.", 1))
    again = _run(tmp_path)
    assert again["generated"] == 1 and again["loaded"] == first["generated"] - 1, again
    assert "pwned" not in victim.read_text()


def test_unwritable_cache_falls_back_with_a_warning(tmp_path, monkeypatch):
    from nndsl.backend.triton_gen import cache

    monkeypatch.setenv("NNDSL_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(cache, "_fallback_dir", [])
    with pytest.warns(UserWarning, match="cannot write the kernel cache"):
        d = cache._kernel_dir()
    assert d.exists() and str(tmp_path) not in str(d)


def test_writes_are_atomic(tmp_path, monkeypatch):
    from nndsl.backend.triton_gen import cache

    target = tmp_path / "k.py"
    real = os.replace

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        cache._write_atomic(target, "x = 1\n")
    monkeypatch.setattr(os, "replace", real)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
    cache._write_atomic(target, "x = 1\n")
    assert target.read_text() == "x = 1\n"
