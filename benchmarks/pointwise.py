"""Generated kernels against eager PyTorch and torch.compile, in GB/s, on the chains between GEMMs.

    python benchmarks/pointwise.py [--quick] [--dtype bf16 --dtype fp32] [--out benchmarks/results]
    python benchmarks/pointwise.py --device cpu --quick     # a smoke run (kernels' references)

Cases, each written by hand the way users write them (nndsl source on one side, the same PyTorch
expression on the other):

* ``gelu_tanh``  — 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
* ``swiglu``     — a·σ(a)·b
* ``bias_dropout_residual_layernorm`` — layernorm(r + dropout(h + bias, 0.1))
* ``rmsnorm``    — x·(mean(x²) + ε)^-½·w

at transformer sizes (8192 × 4096 and 8192 × 8192; ``--quick``: 2048 × 1024), forward and
forward + backward, in bf16 and fp32. GB/s counts each tensor a step must read or write once (the
inputs and outputs; forward + backward adds the output gradient in and the input gradients out).
The copy bandwidth (``y.copy_(x)``) is measured in the same run: the target is ≥ 80% of it and
≥ 1.0× torch.compile. Prints a table and writes ``benchmarks/results/pointwise-<device>.json``
(rewritten after every case). Timing: ``triton.testing.do_bench`` medians on CUDA, medians of
``time.perf_counter`` on a CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SQRT_2_PI = math.sqrt(2.0 / math.pi)

# case -> (nndsl program over inputs of shape [M, N] (and [N]), its PyTorch twin, input kinds)
CASES = {
    "gelu_tanh": ("""model M(x: f32[M, N], N: int = 64) -> f32[M, N] {
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))
}""", lambda x: 0.5 * x * (1.0 + torch.tanh(SQRT_2_PI * (x + 0.044715 * x ** 3))), ("full",)),
    "swiglu": ("""model M(a: f32[M, N], b: f32[M, N], N: int = 64) -> f32[M, N] {
    return a * sigmoid(a) * b
}""", lambda a, b: a * torch.sigmoid(a) * b, ("full", "full")),
    "bias_dropout_residual_layernorm": ("""model M(h: f32[M, N], bias: f32[N], r: f32[M, N], N: int = 64) -> f32[M, N] {
    return layernorm(r + dropout(h + bias, 0.1))
}""", lambda h, bias, r: F.layer_norm(r + F.dropout(h + bias, 0.1, True), (h.shape[-1],)), ("full", "row", "full")),
    "rmsnorm": ("""model M(x: f32[M, N], w: f32[N], N: int = 64) -> f32[M, N] {
    return x * (mean(x ** 2, dim=-1, keepdim=true) + 1e-5) ** -0.5 * w
}""", lambda x, w: x * (x.pow(2).mean(-1, keepdim=True) + 1e-5) ** -0.5 * w, ("full", "row")),
}
SIZES = [(8192, 4096), (8192, 8192)]
QUICK_SIZES = [(2048, 1024)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _timer(device: str):
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: float(do_bench(fn, warmup=10, rep=50, return_mode="median"))

    def cpu(fn) -> float:
        fn()
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - t) * 1e3)
        return statistics.median(runs)

    return cpu


def _inputs(kinds, M, N, dtype, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    return [(torch.randn(M, N, generator=g) if k == "full" else torch.randn(N, generator=g)).to(device, dtype)
            .requires_grad_() for k in kinds]


def _step(fn, xs, backward: bool):
    def run():
        for x in xs:
            x.grad = None
        y = fn(*xs)
        if backward:
            y.backward(torch.ones_like(y))
    return run


def _bytes(xs, backward: bool) -> int:
    ins = sum(x.numel() * x.element_size() for x in xs)
    out = xs[0].numel() * xs[0].element_size()
    return ins + out + ((out + ins) if backward else 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small size")
    ap.add_argument("--size", default=None, metavar="MxN", help="only this size (e.g. 256x96)")
    ap.add_argument("--dtype", action="append", choices=list(DTYPES), help="only these dtypes")
    ap.add_argument("--case", action="append", choices=list(CASES), help="only these cases")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (no C compiler here)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON results")
    args = ap.parse_args(argv)
    if args.device is None:
        print("benchmarks/pointwise.py measures generated Triton kernels on a CUDA GPU; none is visible "
              "(--device cpu runs a smoke test of the references). Nothing was measured.", file=sys.stderr)
        return 2
    import nndsl

    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu-{platform.machine()}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    path = Path(args.out) / f"pointwise-{slug}.json"
    timer = _timer(dev)
    doc = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
           "copy_bandwidth_gbs": {}, "results": []}
    head = (f"{'case':<34}{'dtype':<6}{'size':<12}{'mode':<9}{'nndsl GB/s':>11}{'eager':>9}{'compile':>9}"
            f"{'copy':>8}{'vs compile':>11}{'of copy':>9}")
    print(f"# {name}, torch {torch.__version__}")
    print(head)
    print("-" * len(head))
    for dname in args.dtype or list(DTYPES):
        dtype = DTYPES[dname]
        sizes = [tuple(int(v) for v in args.size.lower().split("x"))] if args.size else \
            (QUICK_SIZES if args.quick else SIZES)
        for M, N in sizes:
            x = torch.randn(M, N, device=dev, dtype=dtype)
            y = torch.empty_like(x)
            copy = 2 * x.numel() * x.element_size() / (timer(lambda: y.copy_(x)) * 1e-3) / 1e9
            doc["copy_bandwidth_gbs"][f"{dname} {M}x{N}"] = round(copy, 1)
            del x, y
            for case in args.case or list(CASES):
                src, twin, kinds = CASES[case]
                module = nndsl.compile(src, backend="triton", N=N).to(dev).train()
                compiled = None if args.no_compile else torch.compile(twin)
                for backward in (False, True):
                    xs = _inputs(kinds, M, N, dtype, dev)
                    nbytes = _bytes(xs, backward)
                    ms = {"nndsl": timer(_step(module, xs, backward)), "eager": timer(_step(twin, xs, backward))}
                    if compiled is not None:
                        ms["compile"] = timer(_step(compiled, xs, backward))
                    gbs = {k: nbytes / (v * 1e-3) / 1e9 for k, v in ms.items()}
                    mode = "fwd+bwd" if backward else "forward"
                    vs = gbs["nndsl"] / gbs["compile"] if "compile" in gbs else float("nan")
                    print(f"{case:<34}{dname:<6}{f'{M}x{N}':<12}{mode:<9}{gbs['nndsl']:>11.0f}{gbs['eager']:>9.0f}"
                          f"{gbs.get('compile', float('nan')):>9.0f}{copy:>8.0f}{vs:>10.2f}x"
                          f"{gbs['nndsl'] / copy:>8.0%}")
                    doc["results"].append({"case": case, "dtype": dname, "M": M, "N": N, "mode": mode,
                                           "ms": {k: round(v, 4) for k, v in ms.items()},
                                           "gbs": {k: round(v, 1) for k, v in gbs.items()},
                                           "vs_compile": round(vs, 3), "of_copy": round(gbs["nndsl"] / copy, 3)})
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(doc, indent=2))
                    del xs
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
