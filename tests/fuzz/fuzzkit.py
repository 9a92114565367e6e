"""Fuzzing helpers: a corpus of real sources, grammar-aware mutations of them, random but mostly-valid
model sources (hypothesis strategies), and ``outcome`` — one source through ``compiler.check`` under a
time limit, classified.

The property every input must meet: accepted, or rejected with a located ``NndslError`` (one with a
span, or a file-level error such as "this file defines no model") — never another exception, never
over the time limit.
"""
from __future__ import annotations

import random
import re
import signal
import string
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from hypothesis import strategies as st

from nndsl import compiler
from nndsl.errors import NndslError
from nndsl.frontend.parser import lark_parser

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 2.0
# errors about the file as a whole, which have no one place to point at
FILE_LEVEL = re.compile(r"defines no model|no model named|has no hyperparameter|has no default|"
                        r"is an input of|no such file|is a block, not a model")


# ------------------------------------------------------------------------------------------ corpus
def corpus() -> list[str]:
    """The examples, the tests' .nn files and each snippet of grammar/bad_examples.nn."""
    files = sorted(ROOT.glob("examples/*.nn")) + sorted(ROOT.glob("tests/**/*.nn"))
    out = [f.read_text(encoding="utf-8") for f in files]
    for line in (ROOT / "grammar" / "bad_examples.nn").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(line.replace("\\n", "\n"))
    return out


# --------------------------------------------------------------------------------------- outcome
class Timeout(Exception):
    """The input ran past the time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Timeout in the main thread after ``seconds`` (SIGALRM)."""
    def _raise(signum, frame):
        raise Timeout(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(source: str, hyperparams: Optional[dict] = None, limit: float = TIME_LIMIT_S) -> tuple[str, str]:
    """('ok' | 'error' | 'unlocated' | 'exception' | 'hang', detail) for one source."""
    start = time.monotonic()
    kind, detail = _classify(source, hyperparams, limit)
    took = time.monotonic() - start
    if took > limit:  # also when the alarm's exception was swallowed (e.g. raised inside a gc callback)
        return "hang", f"took {took:.1f} s ({kind}: {detail[:200]})"
    return kind, detail


def _classify(source: str, hyperparams: Optional[dict], limit: float) -> tuple[str, str]:
    try:
        with time_limit(limit):
            compiler.check(source, hyperparams=hyperparams)
        return "ok", ""
    except Timeout as e:
        return "hang", str(e)
    except NndslError as e:
        if e.span is None and not FILE_LEVEL.search(e.message):
            return "unlocated", str(e)
        return "error", ""
    except Exception as e:  # noqa: BLE001 - the fuzzer's whole point
        return "exception", f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------- mutations
NUMBERS = ["0", "-1", "1", "2", "3", "7", "0.5", "1e309", "1e-400", "-0.0", str(2 ** 31), str(2 ** 40),
           str(2 ** 62), str(2 ** 63), str(10 ** 30), "9" * 60, "100000", "1_000_000_000", "00", "3.0"]
NAMES = ["class", "def", "lambda", "import", "self", "torch", "F", "rt", "None", "none", "repeat", "return",
         "model", "block", "train", "B", "T", "x", "__init__", "é", "名前", "x\u2028y", "a\nb", "\u202ex",
         "inf", "nan", "int", "f32", "i64", "bool", "_", "linear", "sum", "self.x"]
SNIPPETS = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "**", "//", "@", "...", "->", "\n", ";", "\\\n",
            "repeat 100000000 {", "repeat N {", "\x00", "\x1b[31m", "\r", "\u2028", "\ufeff", "'", '"',
            "x[5:2]", "x[:, -100:]", " ** 1000", " * 10 ** 18", "(" * 60, ")" * 60, "#", "\t"]


def tokens(source: str) -> list:
    """Lark's tokens of ``source`` (as far as the lexer gets)."""
    out = []
    try:
        for tok in lark_parser().lex(source):
            out.append(tok)
    except Exception:  # noqa: BLE001 - a lexing failure just ends the list
        pass
    return [t for t in out if t.start_pos is not None and t.end_pos is not None]


def mutate(source: str, rng: random.Random) -> str:
    """One to three grammar-aware edits of ``source``."""
    for _ in range(rng.choice((1, 1, 2, 3))):
        source = _one_edit(source, rng)
    return source


def _one_edit(source: str, rng: random.Random) -> str:
    toks = tokens(source)
    kind = rng.random()
    if not toks or kind < 0.08:  # raw bytes or characters somewhere
        pos = rng.randrange(len(source) + 1)
        junk = "".join(rng.choice(string.printable + "\x00\x1b\x7f\u2028\u202e\xe9") for _ in range(rng.randint(1, 4)))
        return source[:pos] + junk + source[pos:]
    t = rng.choice(toks)
    a, b = t.start_pos, t.end_pos
    if kind < 0.25:  # delete a token
        return source[:a] + source[b:]
    if kind < 0.38:  # duplicate a token
        return source[:b] + " " + source[a:b] + source[b:]
    if kind < 0.48:  # swap with another token
        u = rng.choice(toks)
        c, d = sorted([(a, b), (u.start_pos, u.end_pos)])
        if c[1] > d[0]:
            return source
        return source[:c[0]] + source[d[0]:d[1]] + source[c[1]:d[0]] + source[c[0]:c[1]] + source[d[1]:]
    if kind < 0.68:  # a number replaced
        nums = [x for x in toks if x.type == "NUMBER"] or [t]
        t = rng.choice(nums)
        return source[:t.start_pos] + rng.choice(NUMBERS) + source[t.end_pos:]
    if kind < 0.83:  # a name replaced
        names = [x for x in toks if x.type == "NAME"] or [t]
        t = rng.choice(names)
        return source[:t.start_pos] + rng.choice(NAMES) + source[t.end_pos:]
    if kind < 0.93:  # a snippet inserted
        return source[:a] + rng.choice(SNIPPETS) + source[a:]
    # deep nesting around a token
    k = rng.choice((10, 60, 200, 1000))
    return source[:a] + "(" * k + source[a:b] + ")" * k + source[b:]


# ------------------------------------------------------------------------------- generated models
_SYMS = st.sampled_from(["B", "T", "N"])
_SMALL = st.integers(min_value=1, max_value=12)


@st.composite
def dim_expr(draw, depth: int = 0) -> str:
    """A dim: a small int, a hyperparameter name, or arithmetic on them."""
    if depth > 2 or draw(st.booleans()):
        return draw(st.one_of(_SMALL.map(str), st.just("D"), st.just("H")))
    op = draw(st.sampled_from(["+", "*", "//", "-", "**"]))
    right = draw(st.integers(0, 3).map(str)) if op == "**" else draw(dim_expr(depth + 1))
    return f"({draw(dim_expr(depth + 1))} {op} {right})"


_LAYERS = [
    "x = relu(x)", "x = linear(x, {d})", "x = layernorm(x)", "x = gelu(x)", "x = x + x", "x = x * 0.5",
    "x = x[:, {a}:{b}]", "x = softmax(x)", "x = dropout(x, 0.1)", "x = x @ transpose(x, 0, 1)",
    "x = concat(x, x, dim=1)", "x = reshape(x, [-1, {d}])", "x = sum(x, dim=1, keepdim=true)",
    "x = mean(x, dim=-1, keepdim=true)", "x = tanh(x) ** 2", "x = x - max(x, dim=1, keepdim=true)",
    "x = flatten(x)", "x = embedding(cast(x, \"i64\"), {d}, {d})", "x = maxpool1d(unsqueeze(x, 0), 2)[0]",
]


@st.composite
def layer(draw, depth: int = 0) -> str:
    if depth < 2 and draw(st.integers(0, 7)) == 0:
        body = draw(st.lists(layer(depth + 1), min_size=1, max_size=3))
        count = draw(st.one_of(st.integers(0, 4).map(str), st.just("L")))
        inner = "\n".join("  " + line for b in body for line in b.splitlines())
        return f"repeat {count} {{\n{inner}\n}}"
    tpl = draw(st.sampled_from(_LAYERS))
    return tpl.format(d=draw(dim_expr()), a=draw(st.integers(-6, 6)), b=draw(st.integers(-6, 6)))


@st.composite
def model_source(draw) -> str:
    """A random model: two hyperparameters, an input with static or symbolic dims, 1-6 layers."""
    rows = draw(st.one_of(_SYMS, _SMALL.map(str)))
    cols = draw(dim_expr())
    dtype = draw(st.sampled_from(["f32", "f32", "f64", "i64", "bool"]))
    hp = f"D: int = {draw(_SMALL)}, H: int = {draw(_SMALL)}, L: int = {draw(st.integers(0, 3))}"
    body = draw(st.lists(layer(), min_size=1, max_size=6))
    lines = "\n".join("  " + line for b in body for line in b.splitlines())
    return f"model M(x: {dtype}[{rows}, {cols}], {hp}) {{\n{lines}\n  return x\n}}\n"
