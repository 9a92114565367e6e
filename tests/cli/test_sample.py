"""``nndsl sample`` and the KV-cached decoder: cached sampling equals uncached sampling token for
token, each new token runs one position, models that mix positions are refused at their line."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import nndsl
from nndsl.backend import decode
from nndsl.backend.decode import Decoder
from nndsl.cli import main
from nndsl.sample import context_length, sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GPT = dict(L=2, D=16, heads=2, ctx=12, vocab=13, dropout=0.0)
LLAMA = dict(L=2, D=16, heads=2, hidden=24, vocab=13)


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], env={"NNDSL_DEBUG": ""})
    assert "Traceback" not in result.output, result.output
    return result


def _model(file: str, **hp) -> torch.nn.Module:
    torch.manual_seed(len(file))
    return nndsl.compile(EXAMPLES / file, backend="torch", **hp).double().eval()


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """A tiny GPT trained for 3 steps on random words (its run folder records the vocabulary)."""
    tmp = tmp_path_factory.mktemp("gpt")
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog".split()
    text = " ".join(rng.choice(words) for _ in range(800))
    (tmp / "text.txt").write_text(text)
    src = (EXAMPLES / "gpt_shakespeare.nn").read_text().replace("data/tinyshakespeare/input.txt", "text.txt")
    (tmp / "gpt.nn").write_text(src)
    sets = [a for k, v in dict(GPT, vocab=len(set(text)), dropout=0.1, steps=3, batch=4, eval_batches=1).items()
            for a in ("--set", f"{k}={v}")]
    res = _invoke("run", tmp / "gpt.nn", "--out", tmp / "run", "--no-progress", *sets)
    assert res.exit_code == 0, res.output
    return tmp / "run"


def test_sample_is_deterministic_for_a_seed_and_cached_equals_uncached(gpt_run):
    base = ("sample", gpt_run, "--prompt", "the fox ", "--tokens", 40, "--top-k", 5, "--temperature", 0.9)
    first = _invoke(*base, "--seed", 7)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("the fox ") and len(first.output) == len("the fox ") + 40 + 1
    assert _invoke(*base, "--seed", 7).output == first.output
    assert _invoke(*base, "--seed", 7, "--no-cache").output == first.output
    assert _invoke(*base, "--seed", 8).output != first.output
    vocab = set(nndsl.load(gpt_run).preprocess.vocab)
    assert set(first.output[:-1]) <= vocab


def test_sample_errors_are_messages(gpt_run):
    res = _invoke("sample", gpt_run, "--prompt", "THE", "--tokens", 3)
    assert res.exit_code == 1 and "outside the run's vocabulary" in res.output and "'EHT'" in res.output
    res = _invoke("sample", gpt_run, "--prompt", "", "--tokens", 3)
    assert res.exit_code == 1 and "prompt is empty" in res.output
    res = _invoke("sample", gpt_run, "--temperature", -1)
    assert res.exit_code == 2


@pytest.mark.parametrize("file, hp, context", [("gpt_shakespeare.nn", GPT, None), ("llama_shakespeare.nn", LLAMA, 10)])
@pytest.mark.parametrize("temperature, top_k, seed", [(0.0, None, 0), (1.0, None, 3), (0.7, 4, 11)])
def test_cached_sampling_equals_uncached(file, hp, context, temperature, top_k, seed, monkeypatch):
    """40 tokens after a 5-token prompt: past the context (12 rows of wpe; a window of 10 for the
    rope model), so both slide their window too. The same tokens, from the same logits (float64)."""
    model = _model(file, **hp)
    prompt = torch.randint(0, 13, (5,), generator=torch.Generator().manual_seed(seed)).tolist()
    kw = dict(temperature=temperature, top_k=top_k, seed=seed, context=context)
    logits = {True: [], False: []}
    for cache in (True, False):
        real = nndsl.sample.pick
        monkeypatch.setattr(nndsl.sample, "pick", lambda lg, *a, c=cache, real=real: logits[c].append(lg) or real(lg, *a))
        out = sample(model, prompt, 40, cache=cache, **kw)
        monkeypatch.undo()
        if cache:
            cached = out
    assert cached == out
    assert len(cached) == 40 and all(0 <= t < 13 for t in cached)
    torch.testing.assert_close(torch.stack(logits[True]), torch.stack(logits[False]), rtol=1e-9, atol=1e-9)


def test_each_new_token_costs_one_position(monkeypatch):
    """The attention inputs of a new token hold one query; the keys grow by one per token, up to the
    context (12), where the window restarts on its newest half (6) in one call."""
    model = _model("gpt_shakespeare.nn", **GPT)
    seen = []
    real = decode.attend

    def spy(cache, slot, q, k, v, scale, gqa):
        out = real(cache, slot, q, k, v, scale, gqa)
        if slot == 0:
            seen.append((q.shape[-2], cache.entries[0][0].shape[-2]))
        return out

    monkeypatch.setattr(decode, "attend", spy)
    assert context_length(model) == 12
    sample(model, [1, 2, 3, 4, 5], 12, temperature=0.0)
    # prompt: 5 positions at once; then 1 per token up to 12 cached; the 13th token restarts on the newest 6
    assert seen[0] == (5, 5)
    assert seen[1:8] == [(1, k) for k in range(6, 13)]
    assert seen[8] == (6, 6) and seen[9:] == [(1, 7), (1, 8), (1, 9)]


@pytest.mark.parametrize("file, hp", [("gpt_shakespeare.nn", GPT), ("llama_shakespeare.nn", LLAMA)])
def test_decoded_chunks_equal_the_full_forward(file, hp):
    """Positions fed in chunks of 3, 1, 4 (a chunk after cached ones takes the offset causal mask)
    give the logits of one full forward, in float64."""
    model = _model(file, **hp)
    ids = torch.randint(0, 13, (2, 8), generator=torch.Generator().manual_seed(5))
    want = model(ids)
    dec = Decoder(model)
    got = torch.cat([dec.step(ids[:, 0:3], 0), dec.step(ids[:, 3:4], 3), dec.step(ids[:, 4:8], 4)], dim=1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert dec.cache.length == 8


CONV = """\
model C(idx: i64[B, T]) -> f32[B, T, 7] {
    x = embedding(idx, 7, 8).transpose(1, 2)
    h = conv1d(x, 8, kernel=3, padding=1)
    return linear(h.transpose(1, 2), 7)
}
"""
FULL = """\
model F(idx: i64[B, T]) -> f32[B, T, 7] {
    x = embedding(idx, 7, 8).reshape([B, T, 2, 4]).transpose(1, 2)
    y = attention(x, x, x)
    return linear(y.transpose(1, 2).reshape([B, T, 8]), 7)
}
"""
MEAN = """\
model M(idx: i64[B, T]) -> f32[B, T, 7] {
    x = embedding(idx, 7, 8)
    return linear(x - mean(x, dim=1, keepdim=true), 7)
}
"""


@pytest.mark.parametrize("src, op, line, why", [(CONV, "conv1d", 3, "combines positions"),
                                                (FULL, "attention", 3, "without causal=true"),
                                                (MEAN, "mean", 3, "reduces over the positions")])
def test_models_that_mix_positions_are_refused_at_their_line(src, op, line, why):
    model = nndsl.compile(src, backend="torch")
    with pytest.raises(nndsl.NndslLoweringError) as e:
        sample(model, [1, 2], 3)
    assert e.value.span is not None and e.value.span.line == line
    assert f"cannot sample with a KV cache: {op}" in e.value.message and why in e.value.message
    assert "--no-cache" in str(e.value)
    out = sample(model, [1, 2], 3, cache=False, seed=1)  # without a cache it samples
    assert len(out) == 3 and out == sample(model, [1, 2], 3, cache=False, seed=1)
