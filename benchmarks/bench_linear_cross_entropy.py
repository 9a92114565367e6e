"""Fused linear + cross-entropy vs F.linear + F.cross_entropy (eager and torch.compile), on a GPU.

    python benchmarks/bench_linear_cross_entropy.py [--quick] [--out benchmarks/results]

One training step of a language model's head, loss forward + backward to x and W, in bf16:
time (``triton.testing.do_bench`` median) and peak memory above the inputs (everything the step
allocates, the gradients included). Lines: nndsl's chunked kernel with its default chunk
(default_chunk_rows), with Liger's rule (logits chunk ~ x's size) and with 4096 rows; the eager
PyTorch pair; the same pair under ``torch.compile``. Prints a table and writes
``<out>/linear_cross_entropy-<gpu>.json``. ``cases(quick)`` gives the same cases to
``benchmarks/kernels.py``. Needs CUDA: without it, says so and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (name, tokens N, width D, vocabulary V)
SHAPES = [
    ("GPT-2 small head, batch 8x1024", 8192, 768, 50257),
    ("Llama-3 8B head, batch 4x1024", 4096, 4096, 128256),
]
CHUNKS = (None, "liger", 4096)  # rows per chunk of the nndsl lines: default_chunk_rows, Liger's rule, 4096


def _liger_rows(n, d, v):
    """Liger's rule alone (no floor of d rows): next power of two >= n / ceil(v / d)."""
    return 1 << max(0, (-(-n // -(-v // d)) - 1).bit_length())


def _inputs(n, d, v, dtype):
    import torch

    x = torch.randn(n, d, device="cuda", dtype=dtype, requires_grad=True)
    w = (torch.randn(v, d, device="cuda") / d**0.5).to(dtype).requires_grad_()
    t = torch.randint(0, v, (n,), device="cuda")
    return x, w, t


def _lines(x, w, t):
    """{line name: zero-argument callable running one loss forward + backward to (x, w)}."""
    import torch
    import torch.nn.functional as F

    from nndsl.kernels.linear_cross_entropy import linear_cross_entropy

    def step(loss_fn):
        return lambda: torch.autograd.grad(loss_fn(), (x, w))

    def eager(x, w, t):
        return F.cross_entropy(F.linear(x, w), t)

    compiled = torch.compile(eager)
    n, d = x.shape
    rows = {c: _liger_rows(n, d, w.shape[0]) if c == "liger" else c for c in CHUNKS}
    lines = {f"nndsl chunk={c or 'default'}" + (f" ({r})" if c == "liger" else ""):
             step(lambda r=r: linear_cross_entropy(x, w, t, chunk_rows=r)) for c, r in rows.items()}
    lines["torch eager"] = step(lambda: eager(x, w, t))
    lines["torch.compile"] = step(lambda: compiled(x, w, t))
    return lines


def cases(quick: bool = False) -> list[dict]:
    """For benchmarks/kernels.py: nndsl (default chunk) against eager PyTorch, fwd+bwd, bf16."""
    import torch

    out = []
    for name, n, d, v in SHAPES[:1] if quick else SHAPES:
        lines = _lines(*_inputs(n, d, v, torch.bfloat16))
        out.append({"family": "linear_cross_entropy", "name": f"{name} (N={n} D={d} V={v})",
                    "mode": "fwd+bwd", "triton": lines["nndsl chunk=default"],
                    "torch": lines["torch eager"], "flops": 6.0 * n * d * v, "bytes": None})
    return out


def _peak_mib(fn) -> float:
    """Peak memory allocated by one call of fn, above what was allocated before it (MiB)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the GPT-2 shape only")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON results")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("bench_linear_cross_entropy.py needs a CUDA GPU; none is visible here. Nothing was measured.",
              file=sys.stderr)
        return 2
    from triton.testing import do_bench

    gpu = torch.cuda.get_device_name()
    print(f"# {gpu}, torch {torch.__version__}, bf16, loss forward + backward to x and W")
    header = (f"{'shape':<34}{'line':<26}{'ms':>9}{'TFLOP/s':>9}{'peak MiB':>10}"
              f"{'time vs eager':>15}{'mem vs eager':>14}")
    print(header)
    print("-" * len(header))
    results = []
    for name, n, d, v in SHAPES[:1] if args.quick else SHAPES:
        x, w, t = _inputs(n, d, v, torch.bfloat16)
        rows = []
        for line, fn in _lines(x, w, t).items():
            fn()  # compile / autotune outside the measurements
            mib = _peak_mib(fn)
            ms = float(do_bench(fn, warmup=25, rep=200, return_mode="median"))
            rows.append(dict(shape=name, N=n, D=d, V=v, line=line, ms=ms, peak_mib=mib,
                             tflops=6.0 * n * d * v / (ms * 1e-3) / 1e12))
        eager = next(r for r in rows if r["line"] == "torch eager")
        for r in rows:
            r["speedup_vs_eager"] = eager["ms"] / r["ms"]
            r["memory_vs_eager"] = r["peak_mib"] / eager["peak_mib"]
            print(f"{name[:33]:<34}{r['line']:<26}{r['ms']:>9.3f}{r['tflops']:>9.1f}{r['peak_mib']:>10.0f}"
                  f"{r['speedup_vs_eager']:>14.2f}x{r['memory_vs_eager']:>13.2f}x")
        results += rows
        del x, w, t
        torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    path = out / f"linear_cross_entropy-{slug}.json"
    doc = {"gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d"), "quick": args.quick, "dtype": "bfloat16",
           "results": results}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
