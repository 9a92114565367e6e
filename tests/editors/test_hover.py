"""Analysis (nndsl check's errors on editor text) and hover (the value's type under the cursor)."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nndsl.cli import main
from nndsl.editors.analysis import analyze
from nndsl.editors.hover import hover

ROOT = Path(__file__).resolve().parents[2]


def at(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of ``needle``."""
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


def hover_text(text: str, needle: str, nth: int = 0) -> str:
    a = analyze(text)
    assert not a.errors, [str(e) for e in a.errors]
    info = hover(a, *at(text, needle, nth))
    assert info is not None, f"no hover on {needle!r}"
    return info.text


MLP = """model M(x: f32[B, {i}], hidden: int = {h}) -> f32[B, {o}] {{
    h = relu(linear(x, hidden))
    return linear(h, {o})
}}
"""


def test_names_calls_and_params_show_their_types():
    i, h, o = (random.randint(2, 999) for _ in range(3))
    src = MLP.format(i=i, h=h, o=o)
    assert hover_text(src, "h =") == f"h: f32[B, {h}]"
    assert hover_text(src, "h, ") == f"h: f32[B, {h}]"
    assert hover_text(src, "x, hidden") == f"x: f32[B, {i}]"
    assert hover_text(src, "relu") == f"relu(...) -> f32[B, {h}]"
    assert hover_text(src, "linear", 1) == f"linear(...) -> f32[B, {o}]"
    assert hover_text(src, "hidden)") == f"hidden: int = {h}  (hyperparameter)"
    assert hover_text(src, "return") == f"return: f32[B, {o}]"
    assert hover_text(src, "M(") .startswith(f"model M(x: f32[B, {i}]) -> f32[B, {o}]\n{i * h + h + h * o + o:,} parameters")


def test_block_values_show_the_first_instance():
    d = random.randint(2, 64)
    src = f"""block Res(x: f32[B, D]) -> f32[B, D] {{
    y = gelu(linear(x, 2 * D))
    return x + linear(y, D)
}}
model M(x: f32[B, {d}]) -> f32[B, {d}] {{
    repeat 3 {{ x = Res(x) }}
    return x
}}
"""
    assert hover_text(src, "y =") == f"y: f32[B, {2 * d}]"
    assert hover_text(src, "x: f32[B, D]") == f"x: f32[B, D]\nfirst call: x: f32[B, {d}]"
    assert hover_text(src, "+ linear") == f"add: f32[B, {d}]"
    assert hover_text(src, "Res(x)") == f"block Res(...) -> f32[B, {d}]"


def test_unpacked_values_and_rebinding():
    src = """model M(x: f32[B, 6]) -> f32[B, 2] {
    a, b = split(x, [4, 2], dim=-1)
    a = a[:, :2]
    return a * b
}
"""
    assert hover_text(src, "a, b") == "a: f32[B, 4]"
    assert hover_text(src, "b =") == "b: f32[B, 2]"
    assert hover_text(src, "a[") == "a: f32[B, 4]"       # the use reads the earlier binding
    assert hover_text(src, "a =") == "a: f32[B, 2]"      # the new binding
    assert hover_text(src, "a *") == "a: f32[B, 2]"


def test_nothing_to_show_on_blank_or_comment():
    src = MLP.format(i=3, h=4, o=5) + "# a comment\n"
    a = analyze(src)
    assert hover(a, *at(src, "# a comment")) is None
    assert hover(a, 2, 1) is None  # indentation


BROKEN = [
    ("model M(x: f32[B, 4]) -> f32[B, 3] {\n    h = linear(x, 5)\n    return h + linear(x, 6)\n}\n", "h + linear"),
    ("model M(x: f32[B, 4]) {\n    return lineer(x, 5)\n}\n", "lineer"),
    ("model M(x: f32[B, 4]) {\n    return linear(x 5)\n}\n", "5"),
    ("model M(x: f32[B, 4]) { return linear(x, 2) }\ntrain { optimizer = adamw(lr=-1) }\n", "-1"),
    ("model M(x: f32[B, 4]) { return linear(x, 2) }\ntrain { epochz = 3 }\n", "epochz"),
]


@pytest.mark.parametrize("src,where", BROKEN)
def test_errors_are_located_where_nndsl_check_locates_them(tmp_path, src, where):
    path = tmp_path / "m.nn"
    path.write_text(src)
    res = CliRunner().invoke(main, ["check", str(path)])
    assert res.exit_code == 1, res.output
    cli = re.search(r"m\.nn:(\d+):(\d+): ([a-z ]+): (.*)", res.output)
    a = analyze(src, path)
    assert a.errors, "the analysis found no error"
    e = a.errors[0]
    assert (e.span.line, e.span.col) == (int(cli.group(1)), int(cli.group(2))) == at(src, where)
    assert (e.kind, e.message) == (cli.group(3), cli.group(4))


def test_errors_of_other_models_are_reported_once():
    src = ("model A(x: f32[B, 4]) { return linear(x, 2) }\n"
           "model B(x: f32[B, 4]) -> f32[B, 3] { return linear(x, 2) }\n")
    a = analyze(src)
    assert [e.span.line for e in a.errors] == [2]
    assert list(a.graphs) == ["A"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.nn")), ids=lambda p: p.name)
def test_examples_check_clean(path):
    a = analyze(path.read_text(), path)
    assert not a.errors, [str(e) for e in a.errors]
    assert a.graphs
