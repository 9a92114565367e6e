"""Lark parse failures -> NndslSyntaxError: located, in plain words, with "did you mean" hints.

Three sources of wording, tried in order:
  1. special cases read off the tokens: '==', unmatched or mismatched brackets, an unterminated
     string, a stray character, the end of the file inside an open bracket;
  2. sample bad inputs kept beside the grammar (``nndsl/grammar/bad_examples.nn``), matched to
     the failure by LALR state and accepted tokens (Lark's ``match_examples`` idea; its own
     version also compares stack depth, which differs with nesting, so we match ourselves);
  3. the set of tokens the parser would have accepted, translated into words
     ("expected an expression", "expected ',' or ')' to close the call opened at 3:14").
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Callable, Optional

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import NndslSyntaxError, Span, did_you_mean

KEYWORDS = {"BLOCK": "block", "MODEL": "model", "TRAIN": "train", "RETURN": "return",
            "REPEAT": "repeat", "AS": "as", "TRUE": "true", "FALSE": "false", "NONE": "None"}
_CLOSER = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_OPENERS = set(_CLOSER)
_CLOSERS = set(_CLOSER.values())
_TOP_LEVEL = {"BLOCK", "MODEL", "TRAIN"}  # keywords that only start a definition at the top level
_EXPR_START = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "MINUS", "TRUE", "FALSE", "NONE"}
_CONTINUE = {"PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT", "AT", "POW", "DOT", "LSQB", "LPAR"}
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "ELLIPSIS": "'...'",
    "_NL": "a new line", "SEMICOLON": "';'", "$END": "the end of the file", "ARROW": "'->'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "DOT": "'.'", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "DSLASH": "'//'", "PERCENT": "'%'", "AT": "'@'", "POW": "'**'",
    **{k: f"'{v}'" for k, v in KEYWORDS.items()},
}


def syntax_error(e: UnexpectedInput, source: str, file: str, tokens: list[Token],
                 parse_fn: Callable[[str], object]) -> NndslSyntaxError:
    """The NndslSyntaxError for one Lark failure (``tokens``: what the parser had read)."""
    if isinstance(e, UnexpectedToken):
        return _unexpected_token(e, source, file, tokens, parse_fn)
    if isinstance(e, UnexpectedCharacters):
        return _unexpected_character(e, source, file)
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    return NndslSyntaxError("invalid syntax", Span(file, line, col, source=source))


# ----------------------------------------------------------------------------- characters
def _unexpected_character(e: UnexpectedCharacters, source: str, file: str) -> NndslSyntaxError:
    char = source[e.pos_in_stream] if e.pos_in_stream < len(source) else ""
    lines = source.split("\n")  # lines as the lexer counts them
    line_text = lines[e.line - 1] if e.line <= len(lines) else ""
    if char in "\"'":
        span = Span(file, e.line, e.column, e.line, len(line_text) + 1, source)
        return NndslSyntaxError("unterminated string", span,
                                f"add the closing {char}; a string must end on the line it starts on")
    span = Span(file, e.line, e.column, e.line, e.column + 1, source)
    hint = None
    if char in "<>!":
        hint = "nndsl has no comparison operators"
    elif char == "\\":
        hint = "a '\\' continues a line only when it is the last character on it"
    return NndslSyntaxError(f"unexpected character {char!r}", span, hint)


# ----------------------------------------------------------------------------- tokens
def _unexpected_token(e: UnexpectedToken, source: str, file: str, tokens: list[Token],
                      parse_fn: Callable[[str], object]) -> NndslSyntaxError:
    tok = e.token
    at_end = tok.type == "$END"
    idx = len(tokens) if at_end else _index_of(tok, tokens)
    prev = tokens[idx - 1] if idx > 0 else None
    before_prev = tokens[idx - 2] if idx > 1 else None
    accepts = set(e.accepts or e.expected)
    stack = _open_brackets(tokens[:idx])
    if at_end:
        span = _end_span(tokens, file, source)
    elif tok.type == "_NL" and prev is not None and prev.end_line == tok.line:
        span = Span(file, prev.end_line, prev.end_column, prev.end_line, prev.end_column + 1, source)
    else:
        span = _token_span(tok, file, source)
    found = _found(tok)

    # '==' (lexed as two '='; the parser may stop at either)
    if tok.type == "EQUAL" and (source[tok.end_pos:tok.end_pos + 1] == "=" or (
            prev is not None and prev.type == "EQUAL" and prev.end_pos == tok.start_pos)):
        first = tok if source[tok.end_pos:tok.end_pos + 1] == "=" else prev
        span = Span(file, first.line, first.column, first.line, first.column + 2, source)
        return NndslSyntaxError("'==' is not an nndsl operator", span,
                                "nndsl has no comparisons; use '=' to assign or to pass a keyword argument")
    # a closing bracket with no opener, or the wrong one
    if tok.type in _CLOSERS and not (stack and _CLOSER[stack[-1].type] == tok.type):
        top = stack[-1] if stack else None
        if top is not None and top.type != "LBRACE" and tok.type != "RBRACE":
            return NndslSyntaxError(
                f"expected {_WORDS[_CLOSER[top.type]]} to close {_describe(top, tokens)} "
                f"opened at {top.line}:{top.column}, found {found}", span)
        if not any(_CLOSER[o.type] == tok.type for o in stack):
            return NndslSyntaxError(f"unmatched {_WORDS[tok.type]}", span,
                                    f"there is no {_WORDS[_opener_of(tok.type)]} for it to close")
    # a definition starts while a '{' is open: report the '{' that lost its '}', not the keyword
    if tok.type in _TOP_LEVEL and any(t.type == "LBRACE" for t in stack):
        brace, before = _unclosed_brace(stack, tokens[:idx], source, tok)
        return NndslSyntaxError(
            f"unclosed '{{': {_describe(brace, tokens)} has no '}}' before {found} at {tok.line}:{tok.column}",
            _token_span(brace, file, source), f"add '}}' to close it (before line {before.line})")
    # the end of the file inside a bracket
    if at_end and stack:
        top = stack[-1]
        return NndslSyntaxError(
            f"unexpected end of file: expected {_WORDS[_CLOSER[top.type]]} to close "
            f"{_describe(top, tokens)} opened at {top.line}:{top.column}", span)

    label = _match_example(e, accepts, parse_fn)
    message, _, label_hint = (label or "").partition(" || ")
    message = f"{message}, found {found}" if label else _expected_words(accepts, stack, tokens, found)
    return NndslSyntaxError(message, span, _hint(tok, prev, before_prev, accepts, stack) or label_hint or None)


def _expected_words(accepts: set[str], stack: list[Token], tokens: list[Token], found: str) -> str:
    acc = set(accepts)
    if "STAR" in acc:  # after a complete expression: operators (or '=' of a keyword) could follow
        acc -= _CONTINUE | {"EQUAL"}
    words: list[str] = []
    if {"BLOCK", "MODEL", "TRAIN"} <= acc:
        return f"expected 'block', 'model' or 'train', found {found}"
    if _EXPR_START <= acc:
        acc -= _EXPR_START | {"PLUS", "COLON", "ELLIPSIS", "REPEAT"}
        words.append("an expression")
    if "_NL" in acc:
        acc -= {"_NL", "SEMICOLON", "RBRACE"}
        words.append("the end of the statement (a new line or ';')")
    closer = stack[-1] if stack and _CLOSER[stack[-1].type] in acc else None
    if closer is not None:
        acc.discard(_CLOSER[closer.type])
    words += sorted(_WORDS.get(t, t) for t in acc)
    if closer is not None:
        words.append(_WORDS[_CLOSER[closer.type]])
    text = "expected " + _join(words)
    if closer is not None:
        text += f" to close {_describe(closer, tokens)} opened at {closer.line}:{closer.column}"
    return f"{text}, found {found}"


def _hint(tok: Token, prev: Optional[Token], before_prev: Optional[Token], accepts: set[str],
          stack: list[Token]) -> Optional[str]:
    if tok.type == "NAME":
        keywords = [KEYWORDS[t] for t in accepts if t in KEYWORDS]
        hint = did_you_mean(tok.value, keywords)
        if hint:
            return hint
    if tok.type in KEYWORDS and "NAME" in accepts:
        return f"'{tok.value}' is a keyword and cannot be used as a name"
    at_statement_start = before_prev is None or before_prev.type in ("_NL", "SEMICOLON", "LBRACE")
    if (prev is not None and prev.type == "NAME" and at_statement_start and "EQUAL" in accepts
            and tok.type not in ("EQUAL", "COMMA")):
        hint = did_you_mean(prev.value, ["return", "repeat"])
        if hint:
            return hint
    same_line = prev is not None and prev.end_line == tok.line
    if ("COMMA" in accepts and same_line and stack and stack[-1].type != "LBRACE"
            and tok.type in _EXPR_START | {"ELLIPSIS"}):
        return "is a ',' missing before it?"
    return None


# ----------------------------------------------------------------------------- helpers
@lru_cache(maxsize=1)
def bad_examples() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The sample bad inputs beside the grammar: (message, snippets) pairs, in file order.

    File format: a line ``## message`` (or ``## message || hint``) starts a group; each other
    non-blank line that is not a ``#`` comment is one snippet, with the two characters ``\\n``
    standing for a newline.
    """
    text = resources.files("nndsl.grammar").joinpath("bad_examples.nn").read_text(encoding="utf-8")
    groups: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            groups.append((line[3:].strip(), []))
        elif line.strip() and not line.startswith("#") and groups:
            groups[-1][1].append(line.replace("\\n", "\n"))
    return tuple((label, tuple(snippets)) for label, snippets in groups)


def _match_example(e: UnexpectedToken, accepts: set[str], parse_fn: Callable[[str], object]) -> Optional[str]:
    """The message of the sample that failed in the same parser state, preferring the same token."""
    position = getattr(e.state, "position", None)
    candidates = [(tok_type, label) for pos, acc, tok_type, label in _example_states(parse_fn)
                  if pos == position and acc == accepts]
    for tok_type, label in candidates:
        if tok_type == e.token.type:
            return label
    return candidates[0][1] if candidates else None


_EXAMPLE_STATES: list[tuple[object, frozenset, str, str]] = []


def _example_states(parse_fn: Callable[[str], object]) -> list[tuple[object, frozenset, str, str]]:
    """(parser state, accepted tokens, unexpected token type, message) for each sample, computed once."""
    if not _EXAMPLE_STATES:
        for label, snippets in bad_examples():
            for snippet in snippets:
                try:
                    parse_fn(snippet)
                except UnexpectedToken as ut:
                    state = getattr(ut.state, "position", None)
                    _EXAMPLE_STATES.append((state, frozenset(ut.accepts or ut.expected), ut.token.type, label))
                except UnexpectedInput:
                    pass
    return _EXAMPLE_STATES


def _index_of(tok: Token, tokens: list[Token]) -> int:
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i] is tok or tokens[i].start_pos == tok.start_pos:
            return i
    return len(tokens)


def _open_brackets(tokens: list[Token]) -> list[Token]:
    stack: list[Token] = []
    for t in tokens:
        if t.type in _OPENERS:
            stack.append(t)
        elif t.type in _CLOSERS and stack and _CLOSER[stack[-1].type] == t.type:
            stack.pop()
    return stack


def _unclosed_brace(stack: list[Token], tokens: list[Token], source: str, found: Token) -> tuple[Token, Token]:
    """The '{' most likely missing its '}', and the token its '}' belongs before (``found``, or the
    misplaced '}'): the innermost open '{', unless a '}' inside it, first on
    its line, closes a '{' whose line is indented differently (that '}' was meant for an outer
    '{', so the inner '{' is the unclosed one)."""
    lines = source.split("\n")

    def indent(line: int) -> int:
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return len(text) - len(text.lstrip(" \t"))

    outer = [t for t in stack if t.type == "LBRACE"][-1]
    inner: list[Token] = []
    for t in tokens[_index_of(outer, tokens) + 1:]:
        if t.type == "LBRACE":
            inner.append(t)
        elif t.type == "RBRACE" and inner:
            opened = inner.pop()
            if indent(t.line) == t.column - 1 and indent(opened.line) != t.column - 1:
                return opened, t
    return outer, found


def _describe(opener: Token, tokens: list[Token]) -> str:
    """What an open bracket started: 'the call', 'the list', 'the body of block 'A'', ..."""
    i = _index_of(opener, tokens)
    prev = tokens[i - 1] if i > 0 else None
    before = tokens[i - 2] if i > 1 else None
    if opener.type == "LPAR":
        if prev is not None and prev.type == "NAME":
            if before is not None and before.type in ("BLOCK", "MODEL"):
                return f"the parameter list of '{prev.value}'"
            return "the method call" if before is not None and before.type == "DOT" else "the call"
        return "the return types" if prev is not None and prev.type == "ARROW" else "the parenthesis"
    if opener.type == "LSQB":
        if prev is not None and prev.type == "NAME" and before is not None and before.type in ("COLON", "ARROW"):
            return "the tensor type"
        if prev is not None and prev.type in ("NAME", "RPAR", "RSQB"):
            return "the subscript"
        return "the list"
    for j in range(i - 1, -1, -1):
        t = tokens[j]
        if t.type in ("BLOCK", "MODEL"):
            name = tokens[j + 1].value if j + 1 < len(tokens) and tokens[j + 1].type == "NAME" else "?"
            return f"the body of {t.value} '{name}'"
        if t.type == "TRAIN":
            return "the train section"
        if t.type == "REPEAT":
            return "the body of 'repeat'"
    return "the '{'"


def _opener_of(closer: str) -> str:
    return next(o for o, c in _CLOSER.items() if c == closer)


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "_NL":
        return "the end of the line"
    if tok.type == "STRING":
        return f"the string {tok.value}"
    return f"'{tok.value}'"


def _join(words: list[str]) -> str:
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _token_span(tok: Token, file: str, source: str) -> Span:
    if tok.type == "_NL":  # point just past the end of the line
        return Span(file, tok.line, tok.column, tok.line, tok.column + 1, source)
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column, source)


def _end_span(tokens: list[Token], file: str, source: str) -> Span:
    real = [t for t in tokens if t.type != "_NL"]
    if not real:
        return Span(file, 1, 1, source=source)
    last = real[-1]
    return Span(file, last.end_line, last.end_column, last.end_line, last.end_column + 1, source)
