"""Front-end checks on a parsed ``ast.Program``: the errors that need the whole file but no elaboration.

  * two definitions with one name; two parameters of a definition with one name  -> NndslNameError
  * the same name twice on the left of one tuple assignment                     -> NndslNameError
  * a default value on a tensor parameter                                       -> NndslTypeError
  * a train section naming something that is not a model of the file            -> NndslNameError
  * a train key set twice; two train sections for the same model                -> NndslConfigError
"""
from __future__ import annotations

from typing import Iterable

from ..errors import NndslConfigError, NndslNameError, NndslTypeError, Span, did_you_mean
from . import ast


def check_program(program: ast.Program) -> None:
    """Raise the first problem found, in source order within each kind of check."""
    seen: dict[str, ast.Definition] = {}
    for d in program.definitions:
        if d.name in seen:
            first = seen[d.name]
            raise NndslNameError(f"'{d.name}' is defined twice", name_span(d.span, d.name),
                                 f"the first definition ({first.kind}) is at {first.span}")
        seen[d.name] = d
        _check_params(d)
        _check_statements(d.body)
    _check_trains(program)


def _check_params(d: ast.Definition) -> None:
    names: dict[str, ast.Param] = {}
    for p in d.params:
        if p.name in names:
            raise NndslNameError(f"parameter '{p.name}' of '{d.name}' is declared twice",
                                 name_span(p.span, p.name), f"the first one is at {names[p.name].span}")
        names[p.name] = p
        if isinstance(p.type, ast.TensorTypeExpr) and p.default is not None:
            raise NndslTypeError(f"tensor parameter '{p.name}' cannot have a default value", p.default.span,
                                 "only int, float, bool and str parameters take defaults")


def _check_statements(body: Iterable[ast.Stmt]) -> None:
    for s in body:
        if isinstance(s, ast.Assign):
            seen: set[str] = set()
            for t in s.targets:
                if t.id in seen:
                    raise NndslNameError(f"'{t.id}' appears twice on the left of '='", t.span)
                seen.add(t.id)
        elif isinstance(s, ast.Repeat):
            _check_statements(s.body)


def _check_trains(program: ast.Program) -> None:
    models = program.models()
    sections: dict[object, ast.TrainSection] = {}
    for t in program.trains:
        if t.model is not None and t.model not in models:
            what = "a block, not a model" if t.model in program.blocks() else "not a model of this file"
            hint = did_you_mean(t.model, models) or (
                f"models here: {', '.join(models)}" if models else "define it with 'model'")
            raise NndslNameError(f"'train {t.model}': '{t.model}' is {what}", name_span(t.span, t.model), hint)
        if t.model in sections:
            which = f"for '{t.model}'" if t.model else "without a model name"
            raise NndslConfigError(f"a second train section {which}", t.span,
                                   f"the first is at {sections[t.model].span}; merge them")
        sections[t.model] = t
        keys: dict[str, ast.TrainEntry] = {}
        for e in t.entries:
            if e.key in keys:
                raise NndslConfigError(f"train key '{e.key}' is set twice", name_span(e.span, e.key),
                                       f"the first is at {keys[e.key].span}")
            keys[e.key] = e


def name_span(span: Span, name: str) -> Span:
    """The span of the first ``name`` on the span's first line at or after its start column."""
    line = span.source_line()
    if line is None:
        return span
    i = line.find(name, span.col - 1)
    while i >= 0:
        before = line[i - 1] if i > 0 else " "
        after = line[i + len(name)] if i + len(name) < len(line) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return Span(span.file, span.line, i + 1, span.line, i + 1 + len(name), span.source)
        i = line.find(name, i + 1)
    return span
