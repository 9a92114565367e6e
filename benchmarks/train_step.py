"""Training-step benchmark: nndsl's backends against the same model written by hand in PyTorch.

    python benchmarks/train_step.py [--device cuda|cpu] [--models gpt,gpt2,cnn] [--steps N] [--out DIR]

Per model and variant, one training step (forward, cross-entropy, backward, AdamW) is timed as the
median of ``--steps`` steps after warm-up; beside it: tokens or images per second, kernel launches
per step, peak memory, and the time to the first step (cold compile). nndsl's variants train
through the module's compiled objective (``nndsl_objective``: model and loss in one graph, the
loss fused into kernels on the Triton backend), as ``nndsl run`` does. Variants:

* ``nndsl-triton``  ``examples/*.nn`` compiled with ``backend="triton"`` (fused kernels)
* ``nndsl-torch``   the same file on the PyTorch reference backend
* ``eager``         the model written by hand (``benchmarks/handwritten.py``), eager PyTorch
* ``torch.compile`` that hand-written model under ``torch.compile``

The baseline is the faster of ``eager`` and ``torch.compile``, measured in the same run. On CUDA,
launches are the CUDA kernels the profiler records for one step; on a CPU there are no kernels, so
the column counts ATen operator calls (labelled ``ops``). Precision: bf16 autocast on CUDA
(``--precision``), fp32 on a CPU. A variant that cannot run says why in its row. The table is
printed and ``<out>/train_step-<device>.json`` written.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Fresh compile caches, so the first step of each variant is a cold compile (set before torch/triton load).
_CACHE = tempfile.mkdtemp(prefix="nndsl-bench-")
os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(_CACHE, "triton"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_CACHE, "inductor"))
os.environ.setdefault("NNDSL_CACHE_DIR", os.path.join(_CACHE, "nndsl"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(HERE))
import handwritten  # noqa: E402

# name -> (example file, hyperparameters, batch, kind); the CPU sizes keep a run to minutes on 2 cores
MODELS: dict[str, dict[str, Any]] = {
    "gpt": {"file": "examples/gpt_shakespeare.nn", "kind": "tokens",
            "cuda": dict(hp=dict(vocab=65, ctx=256, D=384, heads=6, L=6, dropout=0.2), batch=64),
            "cpu": dict(hp=dict(vocab=65, ctx=64, D=128, heads=4, L=4, dropout=0.0), batch=12)},
    "gpt2": {"file": "examples/gpt_shakespeare.nn", "kind": "tokens",
             "cuda": dict(hp=dict(vocab=50257, ctx=1024, D=768, heads=12, L=12, dropout=0.0), batch=8),
             "cpu": dict(hp=dict(vocab=50257, ctx=128, D=768, heads=12, L=2, dropout=0.0), batch=1)},
    "cnn": {"file": "examples/mnist_cnn.nn", "kind": "images",
            "cuda": dict(hp=dict(classes=10), batch=256), "cpu": dict(hp=dict(classes=10), batch=64)},
}
VARIANTS = ("nndsl-triton", "nndsl-torch", "eager", "torch.compile")


def _batch(name: str, cfg: dict, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b = cfg["batch"]
    if MODELS[name]["kind"] == "tokens":
        hp = cfg["hp"]
        x = torch.randint(hp["vocab"], (b, hp["ctx"]), generator=g)
        y = torch.randint(hp["vocab"], (b, hp["ctx"]), generator=g)
    else:
        x = torch.randn(b, 1, 28, 28, generator=g)
        y = torch.randint(10, (b,), generator=g)
    return x.to(dev), y.to(dev)


def _model(name: str, variant: str, cfg: dict) -> torch.nn.Module:
    hp = cfg["hp"]
    if variant.startswith("nndsl"):
        from nndsl.compiler import build

        backend = variant.split("-", 1)[1]
        return build(ROOT / MODELS[name]["file"], hyperparams=dict(hp), backend=backend).module
    if MODELS[name]["kind"] == "tokens":
        return handwritten.GPT(hp["vocab"], hp["ctx"], hp["D"], hp["heads"], hp["L"], hp["dropout"])
    return handwritten.MnistCNN(hp["classes"])


def _step_fn(model: torch.nn.Module, variant: str, dev: torch.device, precision: str) -> Callable:
    fused = dev.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused) if fused else \
        torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if variant == "torch.compile" else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    # nndsl trains through its compiled objective (model + loss, the loss fused into kernels on
    # the Triton backend), as `nndsl run` does; the hand-written model through forward + F.cross_entropy
    objective = getattr(model, "nndsl_objective", None) if variant.startswith("nndsl") else None

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            if objective is not None:
                loss = objective(x, y)
            else:
                out = fwd(x)
                loss = F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _launches(step: Callable, x, y, dev: torch.device) -> int:
    """CUDA kernels of one step (profiler), or ATen operator calls on a CPU."""
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step(x, y)
            _sync(dev)
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        step(x, y)
    return Count.n


def measure(name: str, variant: str, dev: torch.device, steps: int, precision: str) -> dict[str, Any]:
    cfg = MODELS[name][dev.type]
    x, y = _batch(name, cfg, dev)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = _model(name, variant, cfg).to(dev).train()
    step = _step_fn(model, variant, dev, precision)
    step(x, y)
    _sync(dev)
    first = time.perf_counter() - t0
    warm = None
    if variant.startswith("nndsl"):  # a second compile of the same file: caches warm
        t0 = time.perf_counter()
        m2 = _model(name, variant, cfg).to(dev).train()
        _step_fn(m2, variant, dev, precision)(x, y)
        _sync(dev)
        warm = time.perf_counter() - t0
        del m2
    for _ in range(3):
        step(x, y)
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    ms = statistics.median(times) * 1e3
    items = x.numel() if MODELS[name]["kind"] == "tokens" else x.shape[0]
    return {"model": name, "variant": variant, "ms": ms, "per_second": items / (ms * 1e-3),
            "unit": MODELS[name]["kind"], "launches": _launches(step, x, y, dev),
            "launch_unit": "kernels" if dev.type == "cuda" else "ops", "peak_mib": peak,
            "first_step_s": first, "warm_first_step_s": warm,
            "params": sum(p.numel() for p in model.parameters()), "batch": cfg["batch"], "hp": cfg["hp"]}


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="gpt,gpt2,cnn")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 5 on a CPU)")
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                    help="autocast dtype (default bf16 on CUDA, fp32 on a CPU)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    steps = args.steps or (20 if dev.type == "cuda" else 5)
    precision = args.precision or ("bf16" if dev.type == "cuda" else "fp32")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    label = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"# train step on {label}; torch {torch.__version__}; precision {precision}; median of {steps} steps")
    head = f"{'model':<6}{'variant':<15}{'ms/step':>10}{'per s':>12}{'launches':>10}{'peak MiB':>10}{'1st step s':>11}{'warm s':>8}{'vs base':>8}"
    print(head)
    print("-" * len(head))
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        group = []
        for variant in args.variants.split(","):
            try:
                r = measure(name, variant, dev, steps, precision)
            except Exception as e:  # a variant that cannot run is reported, not hidden
                r = {"model": name, "variant": variant, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]}
            group.append(r)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        base = [r["ms"] for r in group if r["variant"] in ("eager", "torch.compile") and "ms" in r]
        for r in group:
            if "ms" in r and base:
                r["speedup_vs_baseline"] = min(base) / r["ms"]
            if "error" in r:
                print(f"{name:<6}{r['variant']:<15}  n/a: {r['error']}")
            else:
                print(f"{name:<6}{r['variant']:<15}{r['ms']:>10.2f}{r['per_second']:>12,.0f}{r['launches']:>10}"
                      f"{_fmt(r['peak_mib'], '>10.0f'):>10}{r['first_step_s']:>11.2f}{_fmt(r['warm_first_step_s'], '>8.2f'):>8}"
                      f"{_fmt(r.get('speedup_vs_baseline'), '>8.2f'):>8}")
        rows += group
        _write(args.out, label, dev, precision, steps, rows)  # after every model: a cut-off run keeps its rows
    return 0


def _write(out_dir: str, label: str, dev: torch.device, precision: str, steps: int, rows: list) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] if dev.type == "cuda" else "cpu"
    path = out / f"train_step-{slug}.json"
    doc = {"device": label, "torch": torch.__version__, "precision": precision, "steps": steps,
           "date": time.strftime("%Y-%m-%d"), "results": rows}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
