"""``nndsl check``'s checks on an editor's unsaved text, for the language server.

    a = analyze(text, Path("mnist.nn"))
    a.errors    # NndslErrors, each located by its span (empty when the file checks)
    a.graphs    # model name -> its typed IR graph (the checked model first), for hover

The checked model goes through the same stages as ``nndsl check``: parse, elaborate and verify
(``compiler.check``), the train section's settings (``runtime.config.train_config``) and its loss
(``compiler.objective``). The data files are not opened and nothing is trained. The file's other
models are elaborated too (with their defaults), so their errors show and their values hover.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import NndslError
from ..frontend import ast
from ..ir.graph import Graph


@dataclass
class Analysis:
    text: str
    program: Optional[ast.Program] = None  # None when the text does not parse
    graphs: dict[str, Graph] = field(default_factory=dict)  # model name -> graph, the checked model first
    errors: list[NndslError] = field(default_factory=list)
    warnings: list[NndslError] = field(default_factory=list)  # what `nndsl check` prints as a warning


def analyze(text: str, path: Optional[Path] = None) -> Analysis:
    """Check ``text`` (the contents of ``path``, perhaps unsaved) as ``nndsl check`` would."""
    from .. import compiler
    from ..elaborate import elaborate, select_model
    from ..frontend.parser import parse

    out = Analysis(text)
    file = str(path) if path is not None else "<string>"
    try:
        out.program = parse(text, file)
    except NndslError as e:
        out.errors.append(e)
        return out
    checked_name = None  # its errors are reported once, by the check
    try:
        checked_name = select_model(out.program).name
        # compiler.check reads a one-line text without '{' as a path: a newline keeps it source text
        checked = compiler.check(text if "\n" in text or "{" in text else text + "\n")
        out.graphs[checked.model_name] = checked.graph
        _check_train(checked, path, out)
    except NndslError as e:
        out.errors.append(e)
    for name in out.program.models():
        if name not in out.graphs and name != checked_name:
            try:
                out.graphs[name] = elaborate(out.program, name)
            except NndslError as e:
                out.errors.append(e)
    return out


def _check_train(checked, path: Optional[Path], out: Analysis) -> None:
    """The train section's settings and its loss, as ``nndsl check`` checks them (no data is read)."""
    from ..compiler import objective
    from ..runtime.config import train_config
    from ..runtime.evaluation import metrics_without_eval

    if checked.train is None:
        return
    cfg = train_config(checked.train, checked.hyperparams, path.parent if path is not None else Path("."))
    objective(checked)
    warning = metrics_without_eval(cfg)
    if warning:
        out.warnings.append(NndslError(warning, checked.train.span))

