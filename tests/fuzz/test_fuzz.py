"""Fuzzing ``check`` in-process: mutated real sources and generated models must be accepted or rejected
with a located NndslError, within the time limit (see fuzzkit).

A short run by default (a few hundred inputs, a fixed seed, 4 CLI runs); ``NNDSL_FUZZ=20000`` runs that
many inputs (three quarters mutations, one quarter generated), ``NNDSL_FUZZ_SEED`` picks the seed, and
``NNDSL_FUZZ_CLI=200`` that many runs of the real ``nndsl check``/``compile`` (tests/fuzz/cli_fuzz.py).
"""
from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings

from fuzz import cli_fuzz, fuzzkit as fk

N = int(os.environ.get("NNDSL_FUZZ", "0") or 0)
SEED = int(os.environ.get("NNDSL_FUZZ_SEED", "0") or 0)
N_MUTATIONS = N * 3 // 4 if N else 300
N_GENERATED = N - N * 3 // 4 if N else 60
N_CLI = int(os.environ.get("NNDSL_FUZZ_CLI", "0") or 0) or 4


def _report(failures: list[tuple[str, str, str]], total: int) -> str:
    kinds = {}
    for kind, _, _ in failures:
        kinds[kind] = kinds.get(kind, 0) + 1
    lines = [f"{len(failures)} of {total} inputs broke the property: {kinds}"]
    for kind, detail, src in failures[:5]:
        lines.append(f"--- {kind}: {detail[:300]}\n{src[:600]!r}")
    return "\n".join(lines)


def test_mutated_sources_are_accepted_or_located():
    rng = random.Random(SEED)
    seeds = fk.corpus()
    failures = []
    for _ in range(N_MUTATIONS):
        src = fk.mutate(rng.choice(seeds), rng)
        kind, detail = fk.outcome(src)
        if kind not in ("ok", "error"):
            failures.append((kind, detail, src))
    assert not failures, _report(failures, N_MUTATIONS)


def test_the_corpus_itself_passes():
    """The unmutated seeds (valid examples and known-bad snippets) meet the property too."""
    failures = [(k, d, s) for s in fk.corpus() for k, d in [fk.outcome(s)] if k not in ("ok", "error")]
    assert not failures, _report(failures, len(fk.corpus()))


@settings(max_examples=N_GENERATED, deadline=None, derandomize=not N, database=None,
          suppress_health_check=list(HealthCheck))
@given(fk.model_source())
def test_generated_models_are_accepted_or_located(src):
    kind, detail = fk.outcome(src)
    assert kind in ("ok", "error"), f"{kind}: {detail[:500]}\n{src}"


def test_the_cli_prints_no_internal_error_or_traceback():
    found = cli_fuzz.run(N_CLI, SEED)
    assert not any(found.values()), {k: v[:2] for k, v in found.items() if v}
