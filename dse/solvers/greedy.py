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


def _best_moves(t, a, idx, used, up: bool):
    """Best move of layers `idx` from formats `a[idx]`: (target, score, ok).

    up: score = error decrease per normalised cost (higher first), within the room
    `used` leaves; down: error increase per normalised cost saved on the violated
    limits (lower first), among moves that raise no cost.
    """
    err, mask, coefs, rhs, scales = t
    sub = np.arange(len(idx))
    ai = a[idx]
    e = err[idx]
    d_err = e - e[sub, ai][:, None]  # > 0: worse
    deltas = [c[idx] - c[idx, ai][:, None] for c in coefs]
    m = mask[idx]
    if up:
        d_cost = np.max([d / s for d, s in zip(deltas, scales)], axis=0) if deltas else np.zeros_like(e)
        ok = m & (d_err < 0)
        for d, r, u in zip(deltas, rhs, used):
            ok &= d <= r - u + 1e-10 * max(abs(r), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(ok, np.where(d_cost > 0, -d_err / d_cost, np.inf), -np.inf)
        # among equal scores (free moves) prefer the larger error decrease
        j = np.lexsort((np.where(ok, -d_err, -np.inf), score), axis=-1)[:, -1]
        return j, score[sub, j], ok[sub, j]
    saved = sum(-d / s for d, s, r, u in zip(deltas, scales, rhs, used) if u > r + 1e-10 * max(abs(r), 1.0))
    ok = m & (saved > 0)
    for d in deltas:
        ok &= d <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ok, d_err / saved, np.inf)
    j = score.argmin(axis=1)
    return j, score[sub, j], ok[sub, j]


def _rounds(problem, a, up: bool, deadline: float = np.inf) -> np.ndarray | None:
    """Greedy moves until none fits (up) or every constraint holds (down; None if impossible)."""
    cons = problem.constraints()
    t = (problem.masked(problem.error), problem.mask, [c.coef for c in cons], [c.rhs for c in cons],
         [max(abs(c.rhs), 1e-300) for c in cons])
    coefs, rhs = t[2], t[3]
    a = np.array(a, dtype=np.int64)
    rows = np.arange(len(a))
    sign = 1.0 if up else -1.0  # rank by sign * score, best first
    j, score, ok = _best_moves(t, a, rows, [float(c[rows, a].sum()) for c in coefs], up)
    window = 1024
    while time.perf_counter() < deadline:
        used = [float(c[rows, a].sum()) for c in coefs]
        if not up:
            if not problem.violations(a):
                return a
            j, score, ok = _best_moves(t, a, rows, used, up)  # which limits are over changes
        cand = np.nonzero(ok)[0]
        if len(cand) == 0:
            return a if up else None
        cand = cand[np.argsort(-sign * score[cand], kind="stable")][:window]  # a round takes at most this many
        # the score each moved layer would offer next: a round stops where one of those would rank higher
        nxt = a.copy()
        nxt[cand] = j[cand]
        _, score2, ok2 = _best_moves(t, nxt, cand, [-np.inf] * len(cons), up)  # room ignored
        s2 = np.where(ok2, sign * score2, -np.inf)
        in_order = np.ones(len(cand), dtype=bool)
        in_order[1:] = sign * score[cand][1:] >= np.maximum.accumulate(s2)[:-1]
        steps = [u + np.cumsum(c[cand, j[cand]] - c[cand, a[cand]]) for c, u in zip(coefs, used)]
        if up:  # in order and within every limit
            good = in_order.copy()
            for r, total in zip(rhs, steps):
                good &= total <= r + 1e-10 * max(abs(r), 1.0)
            n = len(cand) if good.all() else int(np.argmin(good))
        else:  # in order, up to the move that brings every constraint within its limit
            done = np.ones(len(cand), dtype=bool)
            for r, total in zip(rhs, steps):
                done &= total <= r
            n = len(cand) if in_order.all() else int(np.argmin(in_order))
            if done.any():
                n = min(n, int(np.argmax(done)) + 1)
        moved = cand[:max(n, 1)]
        window = 2 * window if len(moved) == window else max(1024, window // 2)
        a[moved] = j[moved]
        if up:  # recompute the moved layers and those whose move no longer fits
            used = [float(c[rows, a].sum()) for c in coefs]
            stale = np.zeros(len(a), dtype=bool)
            stale[moved] = True
            for c, r, u in zip(coefs, rhs, used):
                stale |= ok & (c[rows, j] - c[rows, a] > r - u + 1e-10 * max(abs(r), 1.0))
            idx = np.nonzero(stale)[0]
            j[idx], score[idx], ok[idx] = _best_moves(t, a, idx, used, up)
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


def solve(problem, time_limit: float | None = None) -> SolveResult:
    """Greedy upgrades from the cheapest assignment (repaired first if it breaks a limit).

    :param time_limit: seconds for the upgrade rounds (the result stays feasible).
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
