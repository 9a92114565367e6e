"""Source text -> typed AST: run the Lark parser, then the AST transform, then the front-end checks.

The grammar is ``nndsl/grammar/nndsl.lark`` (LALR(1), basic lexer), loaded once per process.
Newlines end statements, except inside ( ) and [ ] and just before '{' or '->':
``NewlineFilter`` drops them there, between the lexer and the parser.
Every failure leaves this module as an ``NndslError`` subclass with a span, never a Lark error.
"""
from __future__ import annotations

import threading
from importlib import resources
from typing import Iterator, Optional

from lark import Lark, Token, Tree, UnexpectedInput
from lark.exceptions import VisitError
from lark.lark import PostLex

from ..errors import NndslError, NndslLimitError, NndslSyntaxError, Span
from ..limits import MAX_NESTING, MAX_SOURCE_CHARS
from . import ast
from .checks import check_program
from .syntax_errors import syntax_error
from .to_ast import ToAst

_OPEN = {"LPAR", "LSQB"}
_CLOSE = {"RPAR", "RSQB"}
_JOINS_PREVIOUS_LINE = {"LBRACE", "ARROW"}


class NewlineFilter(PostLex):
    """Drops newline tokens inside ( ) and [ ] and before '{' or '->'; records the tokens it passes on.

    The recorded tokens let the error reporter find the bracket a failure sits in and
    the token before the failure (for "did you mean 'return'?").
    """

    always_accept = ()

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def tokens(self) -> list[Token]:
        return getattr(self._local, "tokens", [])

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        tokens: list[Token] = []
        self._local.tokens = tokens
        depth = 0
        newline: Optional[Token] = None  # held back until the next token shows whether it counts
        for tok in stream:
            if tok.type == "_NL":
                if not depth and newline is None:
                    newline = tok
                continue
            if newline is not None and tok.type not in _JOINS_PREVIOUS_LINE:
                tokens.append(newline)
                yield newline
            newline = None
            if tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(depth - 1, 0)
            tokens.append(tok)
            yield tok
        if newline is not None:
            tokens.append(newline)
            yield newline


_parser: Optional[Lark] = None
_filter = NewlineFilter()


def grammar_text() -> str:
    """The grammar, read from the installed package (nndsl.grammar)."""
    return resources.files("nndsl.grammar").joinpath("nndsl.lark").read_text(encoding="utf-8")


def lark_parser() -> Lark:
    """The Lark parser object, built on first use and kept for the life of the process."""
    global _parser
    if _parser is None:
        _parser = Lark(
            grammar_text(),
            parser="lalr",
            lexer="basic",
            postlex=_filter,
            propagate_positions=True,
            maybe_placeholders=True,
        )
    return _parser


def parse_tree(source: str):
    """The raw Lark parse tree (raises Lark's own exceptions; use ``parse`` instead)."""
    return lark_parser().parse(source)


def check_nesting(tree: Tree, file: str, source: str) -> None:
    """A located error at the first subtree nested deeper than MAX_NESTING (walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            meta = node.meta
            line, col = (meta.line, meta.column) if not getattr(meta, "empty", True) else (1, 1)
            end = (meta.end_line, meta.end_column) if line == getattr(meta, "end_line", 0) else (0, 0)
            raise NndslLimitError(f"the program is nested too deeply (more than {MAX_NESTING} levels of "
                                  "expressions and bodies)", Span(file, line, col, *end, source=source),
                                  "name some intermediate values")
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


def parse(source: str, file: str = "<string>") -> ast.Program:
    """Parse a .nn source text into an ``ast.Program`` (raises NndslError subclasses only)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise NndslLimitError(f"the source is {len(source):,} characters long; the limit is {MAX_SOURCE_CHARS:,}",
                              Span(file, 1, 1, source=source))
    # text -> Lark parse tree (syntax errors are reworded with locations and hints)
    try:
        tree = parse_tree(source)
    except UnexpectedInput as e:
        raise syntax_error(e, source, file, _filter.tokens, parse_tree) from None
    # nesting deep enough to exhaust Python's stack is refused before anything recurses on it
    check_nesting(tree, file, source)
    # parse tree -> typed AST with spans (bad types and dims are reported here)
    try:
        program = ToAst(file, source).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, NndslError):
            raise e.orig_exc from None
        raise
    except RecursionError:
        raise NndslLimitError("expressions are nested too deeply", Span(file, 1, 1, source=source)) from None
    # duplicate names, defaults on tensors, train keys: the checks that need no elaboration
    check_program(program)
    return program
