"""The run's logs beside its checkpoints: ``log.csv`` and TensorBoard event files.

    run_dir/log.csv          one row per evaluation: step, epoch, lr, train_loss, val_<metric>...,
                             samples_per_second (the ``history`` entries of metrics.json)
    run_dir/tensorboard/     event files (``tensorboard --logdir run_dir/tensorboard``), one scalar
                             per logged value, tagged as the CSV's columns, at its step

``fit`` makes one ``Tracker`` (``config``: the resolved train settings, shown in TensorBoard's
text tab) and calls ``log(entry)`` where it records an evaluation, ``close()``
at the end. The CSV starts from the history the run resumed with (a fresh run: none), so rows a
killed run logged past its last checkpoint are dropped and none is written twice; it is rewritten
whole (temp file + rename, like metrics.json) at every row, so a kill never leaves half a row.
TensorBoard's own ``purge_step`` hides the events past the resumed step; a fresh run removes the
event files of an earlier run in the folder. Only the main process writes (``is_main``; the other
ranks of a distributed run get a tracker that does nothing).
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import NndslDataError
from .rundir import METRICS, atomic_write, read_json

LOG_CSV, TENSORBOARD = "log.csv", "tensorboard"
FIRST_COLUMNS = ("step", "epoch", "lr")  # then the entry's values in the order it has them


class Tracker:
    """Writes every logged entry of one run to ``log.csv`` and TensorBoard (``run_dir`` None: nothing)."""

    def __init__(self, run_dir: Optional[Path], *, start: int = 0, history: Iterable[dict[str, Any]] = (),
                 config: Optional[dict[str, Any]] = None, is_main: bool = True):
        self.run_dir = Path(run_dir) if run_dir is not None and is_main else None
        self.rows: list[dict[str, Any]] = [dict(e) for e in history if e.get("step", 0) <= start]
        self.writer = None
        if self.run_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when there is a folder

        board = self.run_dir / TENSORBOARD
        if start == 0 and board.is_dir():  # a fresh run: the earlier run's events go
            shutil.rmtree(board)
        self.writer = SummaryWriter(str(board), purge_step=start + 1 if start > 0 else None)
        if config is not None and start == 0:  # TensorBoard's text tab shows the settings beside the curves
            text = json.dumps(config, indent=2, default=str)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        self._write_csv()

    def log(self, entry: dict[str, Any]) -> None:
        """One evaluation's values (``step`` among them): a CSV row and a scalar per value."""
        if self.run_dir is None:
            return
        self.rows.append(dict(entry))
        self._write_csv()
        step = int(entry["step"])
        for key, value in entry.items():
            if key != "step" and _number(value):
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _write_csv(self) -> None:
        text = to_csv(self.rows)
        atomic_write(self.run_dir / LOG_CSV, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """step, epoch, lr first, then every other key in the order the rows first have it."""
    seen = [c for c in FIRST_COLUMNS if any(c in r for r in rows)]
    for r in rows:
        seen += [k for k in r if k not in seen]
    return seen


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text, a header line first (a value a row lacks is an empty cell)."""
    out = io.StringIO()
    w = csv.DictWriter(out, columns(rows), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
    return out.getvalue()


# ----------------------------------------------------------------------------- reading a run's log
def read_log(run_dir: Path) -> list[dict[str, float]]:
    """The logged rows of a run folder: ``log.csv``, else the history in ``metrics.json`` (older runs).

    Every value is a float (an empty cell is left out of its row). A folder with neither file is
    not a run folder: an ``NndslDataError`` says so."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NndslDataError(f"{run_dir} is not a run folder (no such folder)",
                             hint="give the --out folder of an `nndsl run`")
    path = run_dir / LOG_CSV
    if path.is_file():
        return _read_csv(path)
    if (run_dir / METRICS).is_file():
        saved = read_json(run_dir / METRICS, "metrics.json")
        history = saved.get("history") if isinstance(saved, dict) else None
        if not isinstance(history, list):
            raise NndslDataError(f"{run_dir / METRICS}: expected an object with a 'history' list")
        return [{k: float(v) for k, v in e.items() if _number(v)} for e in history if isinstance(e, dict)]
    raise NndslDataError(f"{run_dir} is not an nndsl run folder (no {LOG_CSV} or {METRICS})",
                         hint="give the --out folder of an `nndsl run` that has logged an evaluation")


def _read_csv(path: Path) -> list[dict[str, float]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise NndslDataError(f"cannot read {path}: {e}") from None
    rows = []
    for i, r in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        row = {}
        for k, v in r.items():
            if k is None or v in (None, ""):
                continue
            try:
                row[k] = float(v)
            except ValueError:
                raise NndslDataError(f"{path}:{i}: column '{k}' holds '{v}', not a number") from None
        if not math.isfinite(row.get("step", math.nan)):
            raise NndslDataError(f"{path}:{i}: the row has no step")
        rows.append(row)
    return rows
