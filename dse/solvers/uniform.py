"""The best single format: every layer takes the same format (the usual baseline).

Layers where that format is not allowed take their allowed format nearest in bits
(then lowest error). Among the formats whose assignment meets every limit, the
one with the lowest total error wins.
"""
from __future__ import annotations

import time

import numpy as np

from dse.solvers.result import SolveResult


def assignment_for(problem, f: int) -> np.ndarray:
    """Format `f` everywhere it is allowed, else the nearest allowed format by bits."""
    distance = problem.masked(np.abs(problem.bits - problem.bits[:, [f]]))
    tie = problem.masked(problem.error)
    near = np.lexsort((tie, distance), axis=-1)[:, 0]
    return np.where(problem.mask[:, f], f, near)


def solve(problem) -> SolveResult:
    """The best single format for every layer: no options."""
    started = time.perf_counter()
    best, best_f = None, None
    for f in range(problem.shape[1]):
        a = assignment_for(problem, f)
        if not problem.violations(a) and (best is None or problem.objective(a) < problem.objective(best)):
            best, best_f = a, f
    seconds = time.perf_counter() - started
    if best is None:
        msg = problem.infeasible_message() or "no single format meets every limit: try --method ilp (mixed precision)"
        return SolveResult("infeasible", None, float("nan"), float("nan"), seconds, "uniform", msg)
    return SolveResult("feasible", best, problem.objective(best), float("nan"), seconds, "uniform",
                       info={"format": problem.format_names[best_f]})
