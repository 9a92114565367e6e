"""Error texts are safe to print and say where: control characters from the source are escaped,
long texts are elided, invalid UTF-8 is reported at line:col, and Python keywords as names are
accepted by the front end (code generation must cope with any accepted name)."""
from __future__ import annotations

import keyword
import unicodedata

import pytest

from nndsl import compiler
from nndsl.errors import NndslError, NndslSyntaxError, Span


def _error(src: str) -> NndslError:
    with pytest.raises(NndslError) as err:
        compiler.check(src)
    return err.value


def _printable(text: str) -> bool:
    return all(c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
               for c in text)


@pytest.mark.parametrize("junk", ["\x1b[31m", "\x00", "\r", "\u2028", "\u202e", "\x7f", "\x9b", "\ufeff"])
def test_control_characters_in_the_source_are_escaped(junk):
    src = f"model M(x: f32[B, 4]) {{\n  return y  # {junk}\n}}\n"
    text = str(_error(src))
    assert _printable(text), f"raw control character in: {text!r}"
    assert "unknown name 'y'" in text and text.startswith("<string>:2:10:")


def test_control_character_as_a_token_is_escaped_and_the_caret_stays_under_it():
    err = _error("model M(x: f32[B, 4]) {\n  return \x1bx\n}\n")
    lines = str(err).splitlines()
    assert _printable(str(err)) and "\\x1b" in lines[1]
    assert lines[2].index("^") == lines[1].index("\\x1b") and lines[2].count("^") == len("\\x1b")


def test_lines_are_counted_like_the_lexer_counts_them():
    """A lone '\\r' or a U+2028 in a comment does not shift the quoted line."""
    err = _error("model M(x: f32[B, 4]) {  # a\rb\u2028c\n  return y\n}\n")
    assert err.span.line == 2 and "return y" in str(err).splitlines()[1]


def test_invalid_utf8_is_reported_at_line_and_column(tmp_path):
    path = tmp_path / "bad.nn"
    path.write_bytes("model M(x: f32[B, 4]) {\n  # é\xff here\n  return x\n}\n".encode("utf-8")
                     .replace(b"\xc3\xbf", b"\xff"))
    with pytest.raises(NndslSyntaxError) as err:
        compiler.check(path)
    e = err.value
    assert (e.span.line, e.span.col) == (2, 6), str(e)
    assert "UTF-8" in e.message and "0xff" in e.message and _printable(str(e))


def test_long_texts_are_elided():
    err = NndslError("x" * 100_000, Span("f.nn", 1, 1, 1, 2, "y" * 100_000), "z" * 100_000)
    assert len(str(err)) < 5000 and "elided" in str(err)


def test_a_huge_dim_in_a_message_is_elided():
    params = "x: f32[B, T], y: f32[B, 3]"
    body = "  repeat 20 {\n    x = concat(x, x * 1, dim=1)\n  }\n  return x + y"
    text = str(_error(f"model M({params}) {{\n{body}\n}}\n"))
    assert len(text) < 5000


@pytest.mark.parametrize("name", sorted(set(keyword.kwlist) - {"None", "True", "False", "return", "as"}))
def test_python_keywords_are_ordinary_names(name):
    checked = compiler.check(f"model M(x: f32[B, 4]) {{\n  {name} = relu(x)\n  return linear({name}, 3, name=\"{name}\")\n}}\n")
    assert f"{name}.weight" in checked.graph.params


@pytest.mark.parametrize("text", ["(" * 5000, "x\x00y", "train torch " + "(" * 300])
def test_one_line_source_text_that_cannot_be_a_file_name_is_parsed_as_source(text):
    _error(text)  # an NndslError (not OSError/ValueError from asking the file system)
