"""One error hierarchy for everything a user can get wrong.

Every error carries a source span when there is one and prints as
``file:line:col: error: message``, then the source line with a caret under the
offending text, then an optional hint ("did you mean ...?", "expected ...").
The CLI prints ``str(err)`` and exits non-zero; no Python traceback reaches a user.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Optional


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
        if self.source is None:
            return None
        lines = self.source.splitlines()
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1]
        return None

    def excerpt(self) -> str:
        """The source line and a caret line under the span (empty when no source)."""
        text = self.source_line()
        if text is None:
            return ""
        start = max(self.col - 1, 0)
        if self.end_line == self.line and self.end_col > self.col:
            width = self.end_col - self.col
        else:
            width = 1
        width = max(1, min(width, max(len(text) - start, 1)))
        prefix = "".join(c if c == "\t" else " " for c in text[:start])
        return f"    {text}\n    {prefix}{'^' * width}"

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
        where = f"{self.span}: " if self.span is not None else ""
        out = f"{where}{self.kind}: {self.message}"
        if self.span is not None:
            ex = self.span.excerpt()
            if ex:
                out += "\n" + ex
        if self.hint:
            out += f"\n    {self.hint}"
        return out


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
