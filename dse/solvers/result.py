"""The result every solver returns (like scipy.optimize.OptimizeResult)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATUSES = ("optimal", "feasible", "infeasible", "time_limit", "error")


@dataclass
class SolveResult:
    """status: one of STATUSES; success: a feasible assignment exists in `assignment`.

    gap: relative optimality gap (0 when proven optimal; NaN when unknown).
    bound: best proven lower bound on the objective (NaN when unknown).
    info: solver-specific extras (e.g. {"switched_to": "lagrangian"}).
    """

    status: str
    assignment: np.ndarray | None
    objective: float
    gap: float
    seconds: float
    method: str
    message: str = ""
    bound: float = float("nan")
    info: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.assignment is not None and self.status in ("optimal", "feasible", "time_limit")
