#!/usr/bin/env bash
# The prepared GPU check: one run on a fresh GPU machine with no package registry, end to end in
# under 8 minutes, everything written to one flat folder of at most 8 files.
#
#   bash benchmarks/gpu_check.sh                  # from anywhere; runs in the repository root
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh  # the stages that need no GPU (install, versions,
#                                                 # the CUDA test selection, the benchmark's CLI)
#   bash benchmarks/gpu_check.sh --fetch-wheels   # here, with a registry: put the lark wheel in .whl/
#
# Stages, in order of what matters most, each hard-stopped with `timeout` inside a total budget:
#   install   the carried wheels in .whl/ (lark), then the project itself, both without network:
#             `pip install --no-deps --no-build-isolation --no-index -e .`; where that cannot build
#             (no `wheel` for an old setuptools, say), /tmp/nndsl-site/nndsl links the checkout's
#             nndsl/, kernels/ and grammar/ into the installed layout, run with `python -P` so
#             that ./nndsl does not shadow it
#   env       python, torch, triton, nndsl, lark, driver, device, clocks (again after the benchmarks)
#   tests     the real-size CUDA kernel tests in bf16 (and those without a dtype parameter) with
#             the interpreter off (NNDSL_TEST_CUDA=1 -m "cuda and not interpreter"), in parallel
#             when pytest-xdist is there
#   bench     benchmarks/kernels.py --quick against cuBLAS / SDPA / cuDNN / torch, with a budget
#   pointwise benchmarks/pointwise.py: generated kernels vs eager and torch.compile in GB/s, at
#             8192 x 4096 in bf16 (GPU_CHECK_POINTWISE_ARGS to change), beside the copy bandwidth
#   train     benchmarks/train_step.py when the file exists (skipped with a message otherwise)
#   tests+    with whatever time is left: the fp16 and fp32 CUDA tests, and the small odd-shape
#             tests of both groups (`device` fixture) compiled on the GPU
# Output ($OUT if set, else benchmarks/results/gpu-<date>/): summary.txt, env.txt (with the install
# log), tests.log, bench.log (kernels and pointwise), kernels-<gpu>.json, pointwise-<gpu>.json,
# train_step.log, train_step-<device>.json.
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET (seconds, default 450),
# GPU_CHECK_WORKERS (pytest-xdist workers, default 8), GPU_CHECK_TRAIN_ARGS (extra arguments).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
PYOPT=                                          # becomes -P when the checkout is linked, not installed
DRY=${GPU_CHECK_DRY:-0}
BUDGET=${GPU_CHECK_BUDGET:-450}
WORKERS=${GPU_CHECK_WORKERS:-8}
LARK_VERSION=1.3.1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

if [[ ${1:-} == --fetch-wheels ]]; then        # run on a machine that reaches the registry
    mkdir -p .whl
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform any -d .whl "lark==$LARK_VERSION"
fi

OUT_DIR=${OUT:-benchmarks/results/gpu-$(date +%Y-%m-%d-%H%M)}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
START=$SECONDS
MARK=$(mktemp)                                  # outside OUT_DIR: files newer than the start
SITE_FLAG=$(mktemp -u)                          # made by stage_install when it links the checkout
SUMMARY=()
pyrun() { "$PY" ${PYOPT:+"$PYOPT"} "$@"; }

left() { echo $((BUDGET - (SECONDS - START))); }

# run_stage NAME CAP LOG CMD...: run CMD under `timeout`, at most CAP seconds and what the budget
# leaves; record the status, the time and the last line that matches the log's summary.
run_stage() {
    local name=$1 cap=$2 log=$3; shift 3
    local t0=$SECONDS limit rc status
    limit=$(( cap < $(left) ? cap : $(left) ))
    if (( limit < 5 )); then
        SUMMARY+=("$(printf '%-9s %-10s %5s  %s' "$name" skipped - "no time left in the ${BUDGET} s budget")")
        return 0
    fi
    echo "== $name (at most ${limit} s) -> $(basename "$log")"
    { echo "\$ $*"; echo; } >>"$log"
    timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >>"$log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status=TIMEOUT ;;
        *) status="FAILED($rc)" ;;
    esac
    tail -n 3 "$log" | sed 's/^/   | /'
    SUMMARY+=("$(printf '%-9s %-10s %5s  %s' "$name" "$status" $((SECONDS - t0)) "$(detail "$log")")")
    return 0
}

detail() {  # the last pytest / benchmark summary line of a log
    grep -E '(passed|failed|error|skipped|deselected).* in [0-9.]+s|^wrote |cases not measured|^env:|^install:' "$1" \
        | tail -n 1 | cut -c1-90
}

stage_install() {
    local whl=(.whl/*.whl)
    if [[ -e ${whl[0]} ]]; then
        echo "install: carried wheels ${whl[*]}"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "${whl[@]}" || return 1
    else
        echo "install: no .whl/ here (carry it: bash benchmarks/gpu_check.sh --fetch-wheels, then carry .whl)"
    fi
    if "$PY" -m pip install --no-deps --no-build-isolation --no-index --no-cache-dir -e . ; then
        echo "install: nndsl editable from $ROOT"
    else
        echo "install: the editable install failed; linking the checkout into /tmp/nndsl-site/nndsl"
        rm -rf /tmp/nndsl-site && mkdir -p /tmp/nndsl-site/nndsl || return 1
        ln -s "$ROOT"/nndsl/* /tmp/nndsl-site/nndsl/ && ln -s "$ROOT/kernels" /tmp/nndsl-site/nndsl/kernels &&
            ln -s "$ROOT/grammar" /tmp/nndsl-site/nndsl/grammar || return 1
        touch "$SITE_FLAG"
        export PYTHONPATH=/tmp/nndsl-site${PYTHONPATH:+:$PYTHONPATH} PYOPT=-P
    fi
    pyrun -c "import lark, nndsl, nndsl.grammar; print('install: nndsl', nndsl.__file__, '| lark', lark.__version__)"
}

stage_env() {
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    uname -a
    pyrun - <<'EOF'
import importlib, platform
print("python", platform.python_version(), platform.python_implementation())
found = {}
for name in ("torch", "triton", "lark", "numpy", "pytest", "xdist", "pytest_timeout"):
    try:
        found[name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as e:  # a missing package is a finding, not a crash
        found[name] = f"missing ({type(e).__name__})"
    print(f"{name:<15}{found[name]}")
device = "no CUDA device"
try:
    from importlib import metadata
    import nndsl, nndsl.kernels.library
    try:
        v = metadata.version("nndsl")
    except metadata.PackageNotFoundError:
        v = "(linked checkout, no metadata)"
    print(f"{'nndsl':<15}{v} at {nndsl.__file__}")
except Exception as e:
    print(f"{'nndsl':<15}not importable: {e!r}")
try:
    import torch
    print("cuda (torch)  ", torch.version.cuda, "| available:", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        device = f"{p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB"
        print(f"device         {device}, tf32 matmul: {torch.backends.cuda.matmul.allow_tf32}")
except Exception as e:
    print("torch cuda query failed:", repr(e))
print(f"env: python {platform.python_version()}, torch {found['torch']}, triton {found['triton']}, {device}")
EOF
    clocks
}

clocks() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw \
            --format=csv
    else
        echo "nvidia-smi: not found"
    fi
}

pytest_cuda() {  # pytest_cuda ARGS...: the CUDA kernel tests with the interpreter off
    local par=()
    if pyrun -c "import xdist" 2>/dev/null && (( WORKERS > 1 )); then par=(-n "$WORKERS"); fi
    if pyrun -c "import pytest_timeout" 2>/dev/null; then par+=(--timeout 240); fi
    NNDSL_TEST_CUDA=1 pyrun -m pytest tests/kernels -p no:cacheprovider -q -rfE --durations=8 \
        "${par[@]}" "$@"
}

stage_train() {
    if [[ ! -f benchmarks/train_step.py ]]; then
        echo "train: benchmarks/train_step.py is not in this checkout; skipped"
        return 0
    fi
    local args=()
    if pyrun benchmarks/train_step.py --help 2>/dev/null | grep -q -- '--out'; then args=(--out "$OUT_DIR"); fi
    # shellcheck disable=SC2086  # GPU_CHECK_TRAIN_ARGS is a list of words
    pyrun benchmarks/train_step.py "${args[@]}" ${GPU_CHECK_TRAIN_ARGS:-}
    local rc=$? json
    json=$(find benchmarks/results -maxdepth 1 -name 'train_step-*.json' -newer "$MARK" 2>/dev/null | head -n 1)
    if [[ -n $json && ! -e $OUT_DIR/$(basename "$json") ]]; then cp "$json" "$OUT_DIR/"; fi
    return $rc
}

export PY PYOPT WORKERS OUT_DIR MARK SITE_FLAG ROOT
export -f pyrun stage_install stage_env clocks pytest_cuda stage_train

# ------------------------------------------------------------------------------------------------
echo "gpu_check: output in $OUT_DIR, budget ${BUDGET} s$([[ $DRY == 1 ]] && echo ', DRY run (no GPU stages)')"
run_stage install 120 "$OUT_DIR/env.txt" stage_install
if [[ -e $SITE_FLAG ]]; then
    export PYTHONPATH=/tmp/nndsl-site${PYTHONPATH:+:$PYTHONPATH} PYOPT=-P
    rm -f "$SITE_FLAG"
fi
run_stage env 60 "$OUT_DIR/env.txt" stage_env

if [[ $DRY == 1 ]]; then
    # what the GPU run would select (no GPU here: the same selection must skip, not fail)
    WORKERS=1  # the tests only collect and skip here
    run_stage tests 240 "$OUT_DIR/tests.log" pytest_cuda -m "cuda and not interpreter" --cuda-dtypes=bfloat16
    run_stage bench 30 "$OUT_DIR/bench.log" pyrun benchmarks/kernels.py --help
    run_stage pointwise 30 "$OUT_DIR/bench.log" pyrun benchmarks/pointwise.py --help
    run_stage train 30 "$OUT_DIR/train_step.log" bash -c \
        'if [[ -f benchmarks/train_step.py ]]; then pyrun benchmarks/train_step.py --help; else echo "train: benchmarks/train_step.py is not in this checkout; skipped"; fi'
else
    run_stage tests ${GPU_CHECK_TESTS_CAP:-150} "$OUT_DIR/tests.log" pytest_cuda -m "cuda and not interpreter" --cuda-dtypes=bfloat16
    bench_cap=$(( $(left) > ${GPU_CHECK_BENCH_CAP:-90} ? ${GPU_CHECK_BENCH_CAP:-90} : $(left) ))
    run_stage bench "$bench_cap" "$OUT_DIR/bench.log" \
        pyrun benchmarks/kernels.py --quick --budget $((bench_cap > 60 ? bench_cap - 40 : 20)) --out "$OUT_DIR"
    run_stage pointwise ${GPU_CHECK_POINTWISE_CAP:-100} "$OUT_DIR/bench.log" \
        pyrun benchmarks/pointwise.py ${GPU_CHECK_POINTWISE_ARGS:---size 8192x4096 --dtype bf16} --out "$OUT_DIR"
    { echo "# clocks after the benchmarks"; clocks; } >>"$OUT_DIR/env.txt" 2>&1
    run_stage train ${GPU_CHECK_TRAIN_CAP:-150} "$OUT_DIR/train_step.log" stage_train
    run_stage tests+ 240 "$OUT_DIR/tests.log" pytest_cuda -m cuda --cuda-dtypes=float16,float32
fi
rm -f "$MARK" "$OUT_DIR"/*.tmp

{
    echo
    echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - START)) s of ${BUDGET} s, $OUT_DIR)"
    printf '%-9s %-10s %5s  %s\n' stage status s detail
    printf '%s\n' "${SUMMARY[@]}"
    grep -m1 -A1 '^name' "$OUT_DIR/env.txt" | tail -n 1 | sed 's/^/device: /'
} | tee "$OUT_DIR/summary.txt"
ls "$OUT_DIR"
