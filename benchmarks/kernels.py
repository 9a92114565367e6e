"""Kernel benchmarks: every nndsl.kernels family against PyTorch's own op, on a GPU.

    python benchmarks/kernels.py [--quick] [--family matmul] [--budget 150] [--out benchmarks/results]

Times each case with ``triton.testing.do_bench`` (median of many runs, L2 flushed between
runs), prints a table (ms, TFLOP/s or GB/s, ratio against PyTorch) and writes
``benchmarks/results/kernels-<gpu>.json``. Cases come from ``benchmarks/bench_<family>.py``
(``cases(quick)`` returns dicts with ``triton`` / ``torch`` zero-argument callables and the
FLOP or byte count of one call). The JSON is rewritten after every case, so a run stopped by a
timeout keeps what it measured; ``--budget`` shares that many seconds equally among the
families, and a family starts no new case once its share is spent (skipped cases are counted in
the JSON), so a short run still measures every family. Needs CUDA: on a machine without one it
says so and exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILIES = ("matmul", "attention", "conv2d", "rowwise", "linear_cross_entropy")


def _time(fn) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))


def _rate(case: dict, ms: float) -> tuple[float, str]:
    if case.get("flops"):
        return case["flops"] / (ms * 1e-3) / 1e12, "TFLOP/s"
    if case.get("bytes"):
        return case["bytes"] / (ms * 1e-3) / 1e9, "GB/s"
    return float("nan"), ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    ap.add_argument("--family", action="append", choices=FAMILIES, help="only these families")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON results")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the run, shared equally among the families: a family starts "
                         "no new case once its share is spent")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU; none is visible here. Nothing was measured.",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    gpu = torch.cuda.get_device_name()
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    path = Path(args.out) / f"kernels-{slug}.json"
    doc = {"gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d"), "copy_bandwidth_gbs": None, "quick": args.quick,
           "budget_s": args.budget, "skipped_cases": 0, "results": []}
    results = doc["results"]
    copy_bw = None
    start = time.perf_counter()
    families = args.family or FAMILIES
    header = f"{'family':<14}{'case':<44}{'mode':<9}{'triton ms':>10}{'torch ms':>10}{'triton':>12}{'torch':>12}{'ratio':>7}"
    print(f"# {gpu}, torch {torch.__version__}")
    print(header)
    print("-" * len(header))
    for i, fam in enumerate(families):
        mod = importlib.import_module(f"bench_{fam}")
        # this family's deadline: its share of the budget plus what earlier families left unused
        deadline = start + args.budget * (i + 1) / len(families) if args.budget is not None else None
        for case in mod.cases(quick=args.quick):
            if deadline is not None and time.perf_counter() > deadline:
                doc["skipped_cases"] += 1
                continue
            t_ms = _time(case["triton"]) if case.get("triton") else float("nan")
            r_ms = _time(case["torch"])
            t_rate, unit = _rate(case, t_ms)
            r_rate, _ = _rate(case, r_ms)
            ratio = r_ms / t_ms if t_ms == t_ms else float("nan")
            if case["family"] == "copy":
                copy_bw = r_rate
            row = {k: case[k] for k in ("family", "name", "mode")}
            row.update(triton_ms=t_ms, torch_ms=r_ms, unit=unit, triton_rate=t_rate, torch_rate=r_rate,
                       speedup_vs_torch=ratio)
            if unit == "GB/s" and copy_bw:
                row["triton_pct_of_copy_bw"] = 100.0 * t_rate / copy_bw
            results.append(row)
            print(f"{case['family']:<14}{case['name'][:43]:<44}{case['mode']:<9}{t_ms:>10.3f}{r_ms:>10.3f}"
                  f"{t_rate:>8.1f} {unit[:3]:<3}{r_rate:>8.1f} {unit[:3]:<3}{ratio:>7.2f}")
            del case
            torch.cuda.empty_cache()
            doc["copy_bandwidth_gbs"] = copy_bw
            _write(path, doc)
    doc["seconds"] = round(time.perf_counter() - start, 1)
    _write(path, doc)
    if doc["skipped_cases"]:
        print(f"budget of {args.budget:.0f} s spent: {doc['skipped_cases']} cases not measured")
    print(f"wrote {path} ({doc['seconds']} s)")
    return 0


def _write(path: Path, doc: dict) -> None:
    """Replace the JSON atomically (a run killed mid-write leaves the previous version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
