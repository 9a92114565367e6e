"""One error hierarchy for everything a user can get wrong.

Every error carries a source span when there is one and prints as
``file:line:col: error: message``, then the source line with a caret under the
offending text, then an optional hint ("did you mean ...?", "expected ...").
The CLI prints ``str(err)`` and exits non-zero; no Python traceback reaches a user.
"""
from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Optional

MAX_MESSAGE_CHARS = 2000  # a message longer than this is elided in the middle
MAX_EXCERPT_CHARS = 200  # the quoted source line is cut to this many characters around the caret
_UNSAFE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # control, format (bidi), surrogate, private, unassigned, separators


def escape(text: str, keep: str = "") -> str:
    """``text`` with every character that could drive a terminal (ESC, NUL, CR, U+2028, bidi
    overrides...) written as a Python-style escape (``\\x1b``, ``\\u202e``); characters in ``keep`` stay."""
    out = []
    for ch in text:
        if ch in keep or unicodedata.category(ch) not in _UNSAFE:
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, the middle replaced by '...'."""
    if len(text) <= limit:
        return text
    half = max(limit // 2 - 10, 1)
    return f"{text[:half]} ... ({len(text) - 2 * half} characters elided) ... {text[-half:]}"


@dataclass(frozen=True)
class Span:
    """A region of a source file (1-based lines and columns; end is exclusive)."""

    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0
    source: Optional[str] = field(default=None, repr=False, compare=False)  # the whole file's text, to quote the line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def source_line(self) -> Optional[str]:
        """Line ``self.line`` of the source, counting lines as the lexer does (only '\\n' ends one)."""
        if self.source is None:
            return None
        lines = self.source.split("\n")
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1].removesuffix("\r")
        return None

    def excerpt(self) -> str:
        """The source line and a caret line under the span (empty when no source).

        Control characters in the line are escaped (nothing raw reaches a terminal), a very long
        line is cut around the span, and the caret still sits under the escaped text."""
        text = self.source_line()
        if text is None:
            return ""
        start = min(max(self.col - 1, 0), len(text))
        if self.end_line == self.line and self.end_col > self.col:
            width = self.end_col - self.col
        else:
            width = 1
        width = max(1, min(width, max(len(text) - start, 1), MAX_EXCERPT_CHARS // 2))
        lo = max(0, start - MAX_EXCERPT_CHARS // 2)
        hi = min(len(text), start + width + MAX_EXCERPT_CHARS // 2)
        before = ("..." if lo else "") + escape(text[lo:start], keep="\t")
        marked = escape(text[start:start + width], keep="\t")
        after = escape(text[start + width:hi], keep="\t") + ("..." if hi < len(text) else "")
        prefix = "".join(c if c == "\t" else " " for c in before)
        return f"    {before}{marked}{after}\n    {prefix}{'^' * max(len(marked), 1)}"

    def text(self) -> str:
        """The source text the span covers (first line only)."""
        line = self.source_line() or ""
        end = self.end_col - 1 if self.end_line == self.line and self.end_col > self.col else len(line)
        return line[self.col - 1 : end]


class NndslError(Exception):
    """Base of every error nndsl reports to users."""

    kind = "error"

    def __init__(self, message: str, span: Optional[Span] = None, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def __str__(self) -> str:
        where = f"{escape(str(self.span))}: " if self.span is not None else ""
        out = f"{where}{self.kind}: {escape(clip(str(self.message)), keep=chr(10))}"
        if self.span is not None:
            ex = self.span.excerpt()
            if ex:
                out += "\n" + ex
        if self.hint:
            out += f"\n    {escape(clip(str(self.hint)), keep=chr(10))}"
        return out


class NndslLimitError(NndslError):
    """A program that asks for more compile-time work than nndsl allows (see ``elab.limits``)."""

    kind = "limit error"


class NndslSyntaxError(NndslError):
    kind = "syntax error"


class NndslNameError(NndslError):
    kind = "name error"


class NndslTypeError(NndslError):
    """Wrong kind of value: a tensor where an int is needed, a bad argument, a bad dtype."""

    kind = "type error"


class NndslShapeError(NndslError):
    kind = "shape error"


class NndslConfigError(NndslError):
    """A bad train-section entry or a bad CLI override."""

    kind = "config error"


class NndslDataError(NndslError):
    """A dataset that is missing, unreadable or malformed."""

    kind = "data error"


class NndslLoweringError(NndslError):
    """A pass or backend could not handle the IR (names the pass)."""

    kind = "lowering error"


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """A 'did you mean ...?' hint for a misspelled name, or None."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not matches:
        return None
    if len(matches) == 1:
        return f"did you mean '{matches[0]}'?"
    return "did you mean " + ", ".join(f"'{m}'" for m in matches[:-1]) + f" or '{matches[-1]}'?"
