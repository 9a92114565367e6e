"""The TextMate grammar (editors/nndsl.tmLanguage.json) and the VS Code manifest that points at it."""
from __future__ import annotations

import json
import re
from pathlib import Path

from nndsl.editors import textmate, words as W

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR = ROOT / "editors" / "nndsl.tmLanguage.json"


def load() -> dict:
    return json.loads(GRAMMAR.read_text())


def rules(node):
    """Every rule (a dict with match/begin) in the grammar."""
    if isinstance(node, dict):
        if "match" in node or "begin" in node:
            yield node
        for v in node.values():
            yield from rules(v)
    elif isinstance(node, list):
        for v in node:
            yield from rules(v)


def words_of(scope_prefix: str) -> set[str]:
    """The words of the rules whose scope starts with ``scope_prefix``: their regex's alternation."""
    out: set[str] = set()
    for r in rules(load()):
        if r.get("name", "").startswith(scope_prefix):
            alt = re.search(r"\(\?:([A-Za-z0-9_|]+)\)", r["match"])
            out |= set(alt.group(1).split("|"))
    return out


def test_file_is_the_generators_output():
    assert GRAMMAR.read_text() == textmate.render(), \
        "editors/nndsl.tmLanguage.json is stale: python -m nndsl.editors.textmate > editors/nndsl.tmLanguage.json"


def test_valid_grammar_with_scopes():
    g = load()
    assert g["scopeName"] == "source.nndsl" and g["fileTypes"] == ["nn"]
    names = {r.get("name", "") for r in rules(g)} | {c["name"] for r in rules(g)
                                                    for k in ("captures", "beginCaptures", "endCaptures")
                                                    for c in r.get(k, {}).values()}
    for scope in ("keyword.control.nndsl", "storage.type.nndsl", "storage.type.dtype.nndsl",
                  "storage.type.scalar.nndsl", "comment.line.number-sign.nndsl", "constant.numeric.float.nndsl",
                  "string.quoted.double.nndsl", "support.function.builtin.nndsl", "entity.name.type.nndsl"):
        assert scope in names, f"no rule gives scope {scope}"
    for inc in re.findall(r'"include": "#([a-z]+)"', GRAMMAR.read_text()):
        assert inc in g["repository"], f"#{inc} is included but not defined"


def test_regexes_compile():
    for r in rules(load()):
        for k in ("match", "begin", "end"):
            if k in r:
                re.compile(r[k])


def test_keyword_lists_match_the_lexer():
    from nndsl.editors.pygments_lexer import NndslLexer  # noqa: F401  (the lexer reads the same lists)

    assert words_of("keyword.control") == set(W.KEYWORDS)
    assert words_of("storage.type.nndsl") == set(W.DECLARATIONS)
    assert words_of("constant.language.nndsl") == set(W.CONSTANTS)
    assert words_of("storage.type.dtype") == set(W.DTYPES)
    assert words_of("support.function.builtin") == set(W.BUILTINS)
    lexer_keywords = {w for pattern, *_ in _lexer_rules() for w in re.findall(r"\(\?:([a-zA-Z|]+)\)", pattern)
                      for w in w.split("|") if w in set(W.KEYWORDS) | set(W.DECLARATIONS)}
    assert lexer_keywords == words_of("keyword.control") | words_of("storage.type.nndsl")


def _lexer_rules():
    from nndsl.editors.pygments_lexer import NndslLexer

    for state in NndslLexer.tokens.values():
        for rule in state:
            if isinstance(rule, tuple):
                yield rule


def test_comment_and_keyword_rules_match_what_they_should():
    g = load()["repository"]
    assert re.search(g["comment"]["match"], "x = 1  # a note").group(0) == "# a note"
    kw = next(r for r in g["keywords"]["patterns"] if r["name"].startswith("keyword.control"))["match"]
    assert [m.group(0) for m in re.finditer(kw, "repeat L as blocks { return x }; reshape; ask")] == \
        ["repeat", "as", "return"]


def test_vscode_manifest_points_at_the_grammar():
    manifest = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    lang = manifest["contributes"]["languages"][0]
    assert ".nn" in lang["extensions"]
    (gram,) = manifest["contributes"]["grammars"]
    assert gram["language"] == lang["id"] and gram["scopeName"] == load()["scopeName"]
    assert (ROOT / "editors" / "vscode" / gram["path"]).resolve() == GRAMMAR.resolve()
    assert (ROOT / "editors" / "vscode" / lang["configuration"]).is_file()
    json.loads((ROOT / "editors" / "vscode" / lang["configuration"]).read_text())
