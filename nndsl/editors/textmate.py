"""The TextMate grammar of .nn files (VS Code, Sublime Text, GitHub's linguist, Shiki...), built from
the same word lists as the Pygments lexer.

    python -m nndsl.editors.textmate > editors/nndsl.tmLanguage.json

``editors/nndsl.tmLanguage.json`` is this module's output, committed; a test checks it is up to date.
"""
from __future__ import annotations

import json
from typing import Any

from . import words as W

SCOPE = "source.nndsl"
_END = r"(?![A-Za-z0-9_])"


def _word_rule(words, scope: str) -> dict:
    return {"name": f"{scope}.nndsl", "match": rf"(?<![A-Za-z0-9_]){W.alternation(words)}{_END}"}


def grammar() -> dict[str, Any]:
    """The grammar as a JSON-ready dict."""
    scalar = rf"{W.alternation(W.SCALAR_TYPES)}{_END}(?!\s*\()"
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "nndsl",
        "scopeName": SCOPE,
        "fileTypes": ["nn"],
        "patterns": [{"include": "#train"}, {"include": "#body"}],
        "repository": {
            "train": {
                "name": "meta.train.nndsl",
                "begin": rf"(?<![A-Za-z0-9_])(train){_END}(?:\s+({W.NAME}))?",
                "beginCaptures": {"1": {"name": "storage.type.train.nndsl"},
                                  "2": {"name": "entity.name.type.model.nndsl"}},
                "end": r"\}",
                "endCaptures": {"0": {"name": "punctuation.section.block.end.nndsl"}},
                "patterns": [
                    {"match": rf"(?:^|(?<=[{{;]))\s*({W.NAME})\s*(=)",
                     "captures": {"1": {"name": "variable.other.property.setting.nndsl"},
                                  "2": {"name": "keyword.operator.assignment.nndsl"}}},
                    {"include": "#body"},
                ],
            },
            "body": {"patterns": [{"include": f"#{k}"} for k in (
                "comment", "definition", "types", "method", "keywords", "constants", "builtins", "numbers",
                "strings", "operators", "punctuation")]},
            "comment": {"name": "comment.line.number-sign.nndsl", "match": r"(#).*$",
                        "captures": {"1": {"name": "punctuation.definition.comment.nndsl"}}},
            "definition": {
                "match": rf"(?<![A-Za-z0-9_])({W.alternation(W.DECLARATIONS[:2])})\s+({W.NAME})",
                "captures": {"1": {"name": "storage.type.definition.nndsl"},
                             "2": {"name": "entity.name.type.nndsl"}},
            },
            "types": {"patterns": [
                {"name": "storage.type.dtype.nndsl",
                 "match": rf"(?<![A-Za-z0-9_]){W.alternation(W.DTYPES)}(?=\s*\[)"},
                {"match": rf"(:|->)\s*({scalar})",
                 "captures": {"1": {"name": "punctuation.separator.annotation.nndsl"},
                              "2": {"name": "storage.type.scalar.nndsl"}}},
            ]},
            "method": {"match": rf"(\.)\s*({W.NAME})",
                       "captures": {"1": {"name": "punctuation.accessor.nndsl"},
                                    "2": {"name": "entity.name.function.method.nndsl"}}},
            "keywords": {"patterns": [_word_rule(W.KEYWORDS, "keyword.control"),
                                      _word_rule(W.DECLARATIONS, "storage.type")]},
            "constants": _word_rule(W.CONSTANTS, "constant.language"),
            "builtins": {"patterns": [_word_rule(W.BUILTINS, "support.function.builtin"),
                                      _word_rule(W.TRAIN_FUNCTIONS, "support.function.train")]},
            "numbers": {"patterns": [
                {"name": "constant.numeric.float.nndsl", "match": rf"(?<![A-Za-z0-9_.])(?:{W.FLOAT})"},
                {"name": "constant.numeric.integer.nndsl", "match": rf"(?<![A-Za-z0-9_.]){W.INTEGER}"},
            ]},
            "strings": {"patterns": [_string('"', "double"), _string("'", "single")]},
            "operators": {"patterns": [
                {"name": "keyword.operator.arrow.nndsl", "match": "->"},
                {"name": "constant.language.ellipsis.nndsl", "match": r"\.\.\."},
                {"name": "keyword.operator.arithmetic.nndsl", "match": r"\*\*|//|[-+*/%@]"},
                {"name": "keyword.operator.assignment.nndsl", "match": "="},
            ]},
            "punctuation": {"patterns": [
                {"name": "punctuation.separator.nndsl", "match": "[,:;]"},
                {"name": "punctuation.section.brackets.nndsl", "match": r"[()\[\]{}]"},
            ]},
        },
    }


def _string(quote: str, kind: str) -> dict:
    """A string ends at its closing quote or, unclosed, at the end of its line."""
    return {"name": f"string.quoted.{kind}.nndsl", "begin": quote, "end": f"({quote})|$",
            "beginCaptures": {"0": {"name": "punctuation.definition.string.begin.nndsl"}},
            "endCaptures": {"1": {"name": "punctuation.definition.string.end.nndsl"}},
            "patterns": [{"name": "constant.character.escape.nndsl", "match": r"\\."}]}


def render() -> str:
    """The grammar file's text."""
    return json.dumps(grammar(), indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
