"""Early stopping: ``early_stop = patience(N, metric=...)`` ends a run when its metric has not
improved for N evaluations in a row.

The metric is ranked as ``best`` ranks checkpoints ("accuracy": higher is better, "-loss": lower;
``metric="best"``, the default, takes ``best``'s metric, else the first of ``metrics``), and the
best checkpoint is kept by it (``saver.best_metric``). The count survives a resume, and a run that
stopped early stays stopped when resumed.
"""
from __future__ import annotations

from typing import Any, Optional

from .config import TrainConfig
from .saver import better, default_metric, ranking


class EarlyStop:
    """Counts evaluations without improvement; ``update`` says why the run stops, or None."""

    def __init__(self, cfg: TrainConfig, has_eval: bool):
        spec = cfg.early_stop
        self.patience = spec.kwargs["evaluations"] if spec is not None else None
        name = spec.kwargs["metric"] if spec is not None else "best"
        if name == "best":
            name = cfg.best if cfg.best not in (None, "none") else default_metric(cfg, has_eval)
        self.metric = ranking(name) if spec is not None else None
        self.best: Optional[float] = None
        self.waited = 0  # evaluations since the last improvement
        self.stopped = False

    def update(self, entry: dict[str, Any]) -> Optional[str]:
        """Take one evaluation; the reason to stop now, or None."""
        if self.metric is None:
            return None
        value = better(entry, self.metric, self.best, "early_stop")
        if value is not None:
            self.best, self.waited = value, 0
            return None
        self.waited += 1
        if self.waited < self.patience:
            return None
        self.stopped = True
        return (f"early stop: {self.metric[0]} has not improved for {self.waited} evaluations "
                f"(best {self.best if self.best is not None else 'none'}, patience {self.patience})")

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited, "stopped": self.stopped}

    def load(self, state: Optional[dict[str, Any]]) -> None:
        if state:
            self.best, self.waited, self.stopped = state["best"], int(state["waited"]), bool(state["stopped"])
