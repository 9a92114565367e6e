"""A Pygments lexer for .nn files (registered as the ``nndsl`` lexer, files ``*.nn``).

    pygmentize -l nndsl examples/gpt_shakespeare.nn

Declarations (``block``/``model``/``train``) and the name they declare, keywords, tensor types
(``f32[B, 10]``: the dtype before a ``[``) and scalar types after ``:`` or ``->``, the standard
library's builtins and the train section's functions, numbers, strings with their escapes,
comments and operators. Inside a train section, each entry's key (``optimizer = ...``) is an
attribute. A character the language does not have is an ``Error`` token.
"""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import (Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from . import words as W

_WORD_END = r"(?![A-Za-z0-9_])"
_SCALAR_TYPE = rf"{W.alternation(W.SCALAR_TYPES)}{_WORD_END}(?![\t \f]*\()"  # int, not the call int(x)


class NndslLexer(RegexLexer):
    """Lexer for nndsl, the language of neural networks in .nn files."""

    name = "nndsl"
    aliases = ["nndsl", "nn"]
    filenames = ["*.nn"]
    mimetypes = ["text/x-nndsl"]

    tokens = {
        "root": [
            (rf"(train){_WORD_END}", Keyword.Declaration, "train-head"),
            include("body"),
        ],
        # everything outside a train section's own rules
        "body": [
            (r"[\t \f]*\r?\n|[\t \f]+", Whitespace),
            (r"\\(?=[\t \f]*\r?\n)", Text),  # an explicit line continuation
            (r"#[^\n]*", Comment.Single),
            (rf"({W.alternation(W.DECLARATIONS[:2])})(\s+)({W.NAME})", bygroups(Keyword.Declaration, Whitespace,
                                                                                 Name.Class)),
            (rf"{W.alternation(W.DTYPES)}(?=[\t \f]*\[)", Keyword.Type),
            (rf"(:)([\t \f]*)({_SCALAR_TYPE})", bygroups(Punctuation, Whitespace, Keyword.Type)),
            (rf"(->)([\t \f]*)({_SCALAR_TYPE})", bygroups(Operator, Whitespace, Keyword.Type)),
            (rf"(\.)([\t \f]*)({W.NAME})", bygroups(Punctuation, Whitespace, Name.Function)),  # x.f(...)
            (rf"{W.alternation(W.KEYWORDS + W.DECLARATIONS)}{_WORD_END}", Keyword),
            (rf"{W.alternation(W.CONSTANTS)}{_WORD_END}", Keyword.Constant),
            (rf"{W.alternation(W.BUILTINS + W.TRAIN_FUNCTIONS)}{_WORD_END}", Name.Builtin),
            (W.NAME, Name),
            (W.FLOAT, Number.Float),
            (W.INTEGER, Number.Integer),
            (r'"', String.Double, "dq-string"),
            (r"'", String.Single, "sq-string"),
            (r"->|\.\.\.|\*\*|//|[-+*/%@=]", Operator),
            (r"[()\[\]{},:;.]", Punctuation),
        ],
        "dq-string": [
            (r'\\.', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", Error, "#pop"),  # a string ends on its line
        ],
        "sq-string": [
            (r"\\.", String.Escape),
            (r"[^'\\\n]+", String.Single),
            (r"'", String.Single, "#pop"),
            (r"\n", Error, "#pop"),
        ],
        # `train [Model]` up to its '{'
        "train-head": [
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r"\{", Punctuation, ("#pop", "train")),
            (W.NAME, Name.Class),
        ],
        # a train section's entries: `key = value`, the key at the start of an entry
        "train": [
            (r"\}", Punctuation, "#pop"),
            (rf"((?:^|(?<=[{{;\n]))[\t \f]*)({W.NAME})([\t \f]*)(=)",
             bygroups(Whitespace, Name.Attribute, Whitespace, Operator)),
            (r"[(\[]", Punctuation, "nested"),
            include("body"),
        ],
        # inside brackets of a train value, `name=` is a keyword argument, not an entry
        "nested": [
            (r"[)\]]", Punctuation, "#pop"),
            (r"[(\[]", Punctuation, "#push"),
            include("body"),
        ],
    }
