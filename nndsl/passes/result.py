"""What every pass returns (torch.fx's ``PassResult``): the graph and whether it changed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir.graph import Graph


@dataclass
class PassResult:
    graph: Graph
    changed: bool


Pass = Callable[[Graph], PassResult]
