"""``nndsl lsp``: a language server for .nn files (LSP over stdio, on pygls).

* On open and on every change, the document is checked as ``nndsl check`` checks a file
  (``analysis.analyze``: parse, shapes, the train section and its loss; no data read, nothing
  trained) and each error is published as a diagnostic at its exact span.
* On hover, the inferred type of the value under the cursor (``hover.hover``): ``h: f32[B, 128]``,
  a call's result type, a model's signature and parameter count.

Positions: a ``Span`` counts lines from 1 and columns from 1 in characters; LSP counts both from 0,
columns in the code units the client and server agreed on (UTF-16 by default), converted here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from ..errors import NndslError, Span
from .analysis import Analysis, analyze
from .hover import hover

log = logging.getLogger(__name__)


class NndslServer(LanguageServer):
    """Keeps the latest analysis of each open document (hover reads it)."""

    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("nndsl")
        except PackageNotFoundError:
            v = "0"
        super().__init__("nndsl", v, text_document_sync_kind=T.TextDocumentSyncKind.Full)
        self.analyses: dict[str, Analysis] = {}


server = NndslServer()


def _lines(text: str) -> list[str]:
    return text.split("\n")  # as Span counts lines: only '\n' ends one


def to_position(ls: LanguageServer, uri: str, lines: list[str], line: int, col: int) -> T.Position:
    """A 1-based (line, column in characters) as an LSP position in the client's code units."""
    line = min(max(line - 1, 0), max(len(lines) - 1, 0))
    col = min(max(col - 1, 0), len(lines[line]) if lines else 0)
    codec = ls.workspace.get_text_document(uri).position_codec
    return codec.position_to_client_units(lines, T.Position(line=line, character=col))


def to_range(ls: LanguageServer, uri: str, lines: list[str], span: Optional[Span]) -> T.Range:
    """The span's range; a span without an end covers one character; no span: the file's start."""
    if span is None:
        return T.Range(start=T.Position(line=0, character=0), end=T.Position(line=0, character=0))
    start = to_position(ls, uri, lines, span.line, span.col)
    end_line, end_col = (span.end_line, span.end_col) if span.end_line else (span.line, span.col + 1)
    return T.Range(start=start, end=to_position(ls, uri, lines, end_line, end_col))


def diagnostic(ls: LanguageServer, uri: str, lines: list[str], err: NndslError,
               severity: T.DiagnosticSeverity) -> T.Diagnostic:
    message = err.message + (f"\n{err.hint}" if err.hint else "")
    return T.Diagnostic(range=to_range(ls, uri, lines, err.span), message=message, severity=severity,
                        source="nndsl", code=err.kind)


def check_document(ls: NndslServer, uri: str) -> None:
    """Analyse the document and publish its diagnostics (an empty list clears old ones)."""
    doc = ls.workspace.get_text_document(uri)
    path = Path(to_fs_path(uri)) if uri.startswith("file:") else None
    try:
        a = analyze(doc.source, path)
    except Exception as e:  # a bug in nndsl: say so in the editor rather than stop serving
        log.exception("nndsl lsp: checking %s failed", uri)
        a = Analysis(doc.source, errors=[NndslError(f"internal error: {type(e).__name__}: {e}")])
    ls.analyses[uri] = a
    lines = _lines(a.text)
    diags = [diagnostic(ls, uri, lines, e, T.DiagnosticSeverity.Error) for e in a.errors]
    diags += [diagnostic(ls, uri, lines, w, T.DiagnosticSeverity.Warning) for w in a.warnings]
    ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=uri, diagnostics=diags,
                                                                     version=doc.version))


@server.feature(T.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: NndslServer, params: T.DidOpenTextDocumentParams) -> None:
    check_document(ls, params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: NndslServer, params: T.DidChangeTextDocumentParams) -> None:
    check_document(ls, params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: NndslServer, params: T.DidSaveTextDocumentParams) -> None:
    check_document(ls, params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: NndslServer, params: T.DidCloseTextDocumentParams) -> None:
    ls.analyses.pop(params.text_document.uri, None)
    ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(T.TEXT_DOCUMENT_HOVER)
def on_hover(ls: NndslServer, params: T.HoverParams) -> Optional[T.Hover]:
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    a = ls.analyses.get(uri)
    if a is None or a.text != doc.source:
        check_document(ls, uri)
        a = ls.analyses[uri]
    lines = _lines(a.text)
    if params.position.line >= len(lines):
        return None
    pos = doc.position_codec.position_from_client_units(lines, T.Position(line=params.position.line,
                                                                           character=params.position.character))
    try:
        info = hover(a, pos.line + 1, pos.character + 1)
    except Exception:  # a bug in nndsl: no hover rather than a dead server
        log.exception("nndsl lsp: hover failed at %s:%s", uri, params.position)
        return None
    if info is None:
        return None
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=f"```nndsl\n{info.text}\n```"),
                   range=to_range(ls, uri, lines, info.span))


def serve() -> None:
    """Serve over stdin/stdout until the client says exit."""
    logging.basicConfig(level=logging.WARNING)  # to stderr: stdout carries the protocol
    server.start_io()
