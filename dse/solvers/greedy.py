"""HAWQ-style greedy: from the cheapest format per layer, take the upgrade with the best
error decrease per extra cost while it fits.

The cost of a move is its largest increase over the constraints, each normalised by
its right-hand side (the "normalised max cost ratio"), so one rule serves one or
several budgets. Moves are taken in rounds, vectorised over layers: every layer's
best move is ranked, and a round takes them in ranked order while they fit and
while no layer's *next* move would have ranked higher -- the same order as taking
one move at a time. `downgrade` is the mirror image (least error increase per
normalised cost saved) and repairs over-budget assignments for baq and nas.
"""
from __future__ import annotations

import time

import numpy as np

from dse.solvers.result import SolveResult


def _scales(cons) -> list[float]:
    return [max(abs(c.rhs), 1e-300) for c in cons]


def _best_moves(problem, a, cons, used, up: bool):
    """Per layer: (target format, score, ok). up: score = error decrease per cost (higher first);
    down: error increase per cost saved (lower first), only moves that raise no cost."""
    L = len(a)
    rows = np.arange(L)
    err = problem.masked(problem.error)
    d_err = err - err[rows, a][:, None]  # > 0: worse
    deltas = [c.coef - c.coef[rows, a][:, None] for c in cons]
    norm = [d / s for d, s in zip(deltas, _scales(cons))]
    if up:
        d_cost = np.max(norm, axis=0) if norm else np.zeros_like(err)
        fits = np.ones_like(problem.mask)
        for d, c, u in zip(deltas, cons, used):
            fits &= d <= c.rhs - u + 1e-10 * max(abs(c.rhs), 1.0)
        ok = problem.mask & (d_err < 0) & fits
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(d_cost > 0, -d_err / d_cost, np.inf)
        score = np.where(ok, score, -np.inf)
        # among equal scores (free moves) prefer the larger error decrease
        key = np.where(ok, -d_err, -np.inf)
        j = np.lexsort((key, score), axis=-1)[:, -1] if len(a) else np.zeros(0, np.int64)
        return j, score[rows, j], ok[rows, j]
    over = [u > c.rhs + 1e-10 * max(abs(c.rhs), 1.0) for c, u in zip(cons, used)]
    saved = sum(-n for n, o in zip(norm, over) if o)
    raises = np.zeros_like(problem.mask)
    for d in deltas:
        raises |= d > 0
    ok = problem.mask & ~raises & (saved > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ok, d_err / saved, np.inf)
    j = score.argmin(axis=1)
    return j, score[rows, j], ok[rows, j]


def _rounds(problem, a, up: bool, deadline: float = np.inf) -> np.ndarray | None:
    """Greedy moves until none fits (up) or every constraint holds (down; None if impossible)."""
    cons = problem.constraints()
    a = a.copy()
    rows = np.arange(len(a))
    sign = 1.0 if up else -1.0  # rank by sign * score, best first
    while time.perf_counter() < deadline:
        used = [float(c.coef[rows, a].sum()) for c in cons]
        if not up and not problem.violations(a):
            return a
        j, score, ok = _best_moves(problem, a, cons, used, up)
        cand = np.nonzero(ok)[0]
        if len(cand) == 0:
            return a if up else None
        cand = cand[np.argsort(-sign * score[cand], kind="stable")]
        # the score each moved layer would offer next: a round stops where one of those would rank higher
        nxt = a.copy()
        nxt[cand] = j[cand]
        _, score2, ok2 = _best_moves(problem, nxt, cons, [float(c.coef[rows, nxt].sum()) for c in cons], up)
        s2 = np.where(ok2[cand], sign * score2[cand], -np.inf)
        in_order = np.ones(len(cand), dtype=bool)
        in_order[1:] = sign * score[cand][1:] >= np.maximum.accumulate(s2)[:-1]
        steps = [u + np.cumsum(c.coef[cand, j[cand]] - c.coef[cand, a[cand]]) for c, u in zip(cons, used)]
        if up:  # in order and within every limit
            good = in_order.copy()
            for c, total in zip(cons, steps):
                good &= total <= c.rhs + 1e-10 * max(abs(c.rhs), 1.0)
            n = len(cand) if good.all() else int(np.argmin(good))
        else:  # in order, up to the move that brings every constraint within its limit
            done = np.ones(len(cand), dtype=bool)
            for c, total in zip(cons, steps):
                done &= total <= c.rhs
            n = len(cand) if in_order.all() else int(np.argmin(in_order))
            if done.any():
                n = min(n, int(np.argmax(done)) + 1)
        n = max(n, 1)
        a[cand[:n]] = j[cand[:n]]
    return a if up else None


def upgrade(problem, start: np.ndarray, time_limit: float | None = None) -> np.ndarray:
    """Greedy upgrades from a feasible `start` while any fits."""
    deadline = time.perf_counter() + (time_limit if time_limit is not None else np.inf)
    return _rounds(problem, np.asarray(start), up=True, deadline=deadline)


def downgrade(problem, start: np.ndarray) -> np.ndarray | None:
    """Greedy downgrades (least error increase per cost saved) until every limit holds; None if stuck."""
    return _rounds(problem, np.asarray(start), up=False)


def cheapest(problem) -> np.ndarray:
    """Per layer, the allowed format with the smallest normalised total cost (then lowest error)."""
    cons = problem.constraints()
    total = sum(c.coef / s for c, s in zip(cons, _scales(cons))) if cons else np.zeros(problem.shape)
    total = problem.masked(total)
    return np.where(total == total.min(axis=1, keepdims=True), problem.masked(problem.error), np.inf).argmin(axis=1)


def solve(problem, time_limit: float | None = None, **_ignored) -> SolveResult:
    """Greedy upgrades from the cheapest assignment (repaired first if it breaks a limit).

    :param time_limit: seconds for the upgrade rounds (the result stays feasible).
    Options of other methods (seed, ...) are accepted and ignored.
    """
    started = time.perf_counter()
    a = cheapest(problem)
    if problem.violations(a):
        a = downgrade(problem, a)
    if a is None:
        msg = problem.infeasible_message() or ("greedy found no assignment within every limit at once: "
                                               "try --method ilp, which is exact")
        return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - started,
                           "greedy", msg)
    a = upgrade(problem, a, time_limit)
    return SolveResult("feasible", a, problem.objective(a), float("nan"), time.perf_counter() - started, "greedy")
