"""The Pygments lexer: every example lexes without an Error token; snippets get the expected tokens."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String, Whitespace

from nndsl.editors.pygments_lexer import NndslLexer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.nn"))


def tokens(text: str) -> list[tuple]:
    """The non-blank tokens, as (token type, text)."""
    return [(t, v) for t, v in NndslLexer().get_tokens(text) if t not in Whitespace and v.strip()]


def kind_of(text: str, word: str, nth: int = 0) -> object:
    found = [t for t, v in tokens(text) if v == word]
    assert len(found) > nth, f"'{word}' is not a token of {text!r}: {tokens(text)}"
    return found[nth]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_lex_without_errors(path):
    text = path.read_text()
    toks = list(NndslLexer().get_tokens(text))
    assert "".join(v for _, v in toks) == (text if text.endswith("\n") else text + "\n")  # nothing lost
    bad = [(t, v) for t, v in toks if t in Error]
    assert not bad, f"{path.name}: error tokens {bad[:5]}"


def test_declarations_types_and_builtins():
    src = "block Mix(x: f32[B, T, D], heads: int = 2) -> f32[B, T, D] {\n    return linear(x, D)\n}\n"
    assert kind_of(src, "block") in Keyword.Declaration
    assert kind_of(src, "Mix") in Name.Class
    assert kind_of(src, "f32") in Keyword.Type
    assert kind_of(src, "int") in Keyword.Type
    assert kind_of(src, "return") in Keyword
    assert kind_of(src, "linear") in Name.Builtin
    assert kind_of(src, "x") is Name
    assert kind_of(src, "->") in Operator


def test_int_call_is_a_builtin_not_a_type():
    src = "model M(x: f32[B, 4], k: int = 2) { return linear(x, int(k / 2)) }\n"
    assert kind_of(src, "int", 0) in Keyword.Type
    assert kind_of(src, "int", 1) in Name.Builtin


def test_numbers_strings_comments_constants():
    src = "model M(x: f32[B, 3]) {  # note\n    return dropout(x, 0.5, name=\"a\\\"b\") * 1_000 + 1e-3 }\n"
    assert kind_of(src, "# note") in Comment
    assert kind_of(src, "0.5") in Number.Float
    assert kind_of(src, "1_000") in Number.Integer
    assert kind_of(src, "1e-3") in Number.Float
    assert kind_of(src, '\\"') in String.Escape
    assert kind_of("x = [true, false, None]", "None") in Keyword.Constant


def test_method_named_repeat_is_not_the_keyword():
    src = "model M(x: f32[B, 3]) {\n    repeat 2 { x = x.repeat(1, 1) }\n    return x\n}\n"
    assert kind_of(src, "repeat", 0) in Keyword
    assert kind_of(src, "repeat", 1) in Name.Function


def test_train_keys_are_attributes_and_keyword_arguments_are_not():
    src = "train M {\n    optimizer = adamw(lr=1e-3); batch = 8\n    loss = cross_entropy\n}\n"
    assert kind_of(src, "train") in Keyword.Declaration
    assert kind_of(src, "M") in Name.Class
    assert kind_of(src, "optimizer") in Name.Attribute
    assert kind_of(src, "batch") in Name.Attribute
    assert kind_of(src, "loss") in Name.Attribute
    assert kind_of(src, "lr") is Name
    assert kind_of(src, "adamw") in Name.Builtin


def test_foreign_characters_and_unclosed_strings_are_errors():
    assert [v for t, v in NndslLexer().get_tokens("x = $y\n") if t in Error] == ["$"]
    unclosed = list(NndslLexer().get_tokens('x = "open\ny = 1\n'))
    assert [v for t, v in unclosed if t in Error] == ["\n"]
    assert ("y" in [v for t, v in unclosed if t is Name])  # the next line lexes as code again


def test_registered_as_a_pygments_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["pygments.lexers"]["nndsl"]
    module, _, cls = target.partition(":")
    assert (module, cls) == (NndslLexer.__module__, NndslLexer.__name__)
    assert "nndsl.editors" in project["tool"]["setuptools"]["packages"]
    assert "*.nn" in NndslLexer.filenames
