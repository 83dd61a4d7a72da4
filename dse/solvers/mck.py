"""Exact multiple-choice knapsack in milliseconds: Lagrangian bound, exact core, HiGHS last.

For one budget (or proportional ones: bits and memory), following Pisinger's
"minimal core" idea for the multiple-choice knapsack:

1. LP relaxation on each layer's lower hull (Sinha & Zoltners 1979, `dse.solvers.hull`):
   the multiplier lambda and the proven lower bound g(lambda); the LP solution rounded
   down plus a greedy fill of the budget left over is the incumbent.
2. Reduced-cost fixing at lambda: a format whose reduced cost exceeds (incumbent - bound)
   is in no solution at least as good as the incumbent; most layers keep one format.
3. An exact dynamic program over the layers left (the core), on Pareto lists of
   (cost, error), pruned by the LP bound of the layers still to come with the budget
   still left. When it finishes, the result is proven optimal (gap 0).
4. Only when the core is too large for that, several budgets are independent, or most layers
   are identical (a data-free prior on a 45k-tensor MoE: a dozen classes), HiGHS
   (`dse.solvers.ilp.solve_highs`, highspy called directly) solves the reduced model,
   warm-started from the incumbent.

`info["proved_by"]` says which step proved the result.
"""
from __future__ import annotations

import time

import numpy as np

from dse.solvers.hull import lower_hull, lp_relaxation, segments
from dse.solvers.result import SolveResult
from quantcore.errors import QuantDSEError

#: relative tolerance of the bound tests (rounding in sums of ~1e5 terms stays far below it)
RTOL = 1e-9
#: at least this many layers per class of identical layers: HiGHS on the class counts beats the per-layer DP
CLASS_RATIO = 8


def _lp(cost, err, mask, rhs):
    """(incumbent, lambda, lower bound, whether every best-error choice fits) of the LP relaxation."""
    incumbent, lam, taken, steps = lp_relaxation(cost, err, mask, rhs)
    if taken == steps:
        return incumbent, 0.0, None, True
    bound = float(np.where(mask, err + lam * cost, np.inf).min(axis=1).sum() - lam * rhs)
    return incumbent, lam, bound, False


def _fill(cost, err, mask, assignment, rhs, rounds: int = 16):
    """Spend the budget the rounded LP leaves: repeatedly the single change with the largest error decrease."""
    rows = np.arange(len(assignment))
    a = assignment.copy()
    for _ in range(rounds):
        left = rhs - float(cost[rows, a].sum())
        gain = np.where(mask & (cost - cost[rows, a][:, None] <= left), err[rows, a][:, None] - err, 0.0)
        l, f = np.unravel_index(int(np.argmax(gain)), gain.shape)
        if gain[l, f] <= 0:
            break
        a[l] = f
    return a


def _suffix_bounds(cost, err, elig, order, budget_points):
    """For each DP step i in `budget_points`: (C0, E0, cumulative dcost, cumulative derr) of the LP
    relaxation of core layers order[i:], so that its value at budget b is E0 - interp(b - C0)."""
    vertices, count = lower_hull(cost, err, elig)
    seg = segments(cost, err, vertices, count)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    seg_pos = position[seg.layer]
    slope = seg.slope
    rows = np.arange(len(order))
    c0, e0 = cost[rows, vertices[:, 0]], err[rows, vertices[:, 0]]
    c0_by_pos, e0_by_pos = c0[order], e0[order]
    out = {}
    for i in budget_points:
        pick = np.nonzero(seg_pos >= i)[0]
        by = pick[np.argsort(-slope[pick], kind="stable")]
        out[i] = (float(c0_by_pos[i:].sum()), float(e0_by_pos[i:].sum()),
                  np.concatenate([[0.0], np.cumsum(seg.dcost[by])]), np.concatenate([[0.0], np.cumsum(seg.derr[by])]))
    return out


def exact_core(cost, err, elig, lam, budget, slack, ub, max_states, deadline):
    """Exact DP over the core layers: (best error, choices) with error <= ub, (inf, None) when none
    beats ub, or None when the Pareto lists outgrow `max_states` or the deadline passes.

    States are Pareto-optimal partial sums (cost, error); a state is dropped when its cost
    cannot be completed within `budget`, or its error plus a lower bound on the layers still
    to come exceeds `ub`: their LP relaxation with the budget still left (every few layers),
    else the Lagrangian bound at `lam` (reduced cost above `slack`).
    """
    n = len(cost)
    spread = np.where(elig, err, -np.inf).max(axis=1) - np.where(elig, err, np.inf).min(axis=1)
    order = np.argsort(-spread, kind="stable")  # the layers that matter most first: bounds bite early
    opts = [np.nonzero(elig[i])[0] for i in order]
    least = np.array([cost[i, o].min() for i, o in zip(order, opts)])
    room = budget - np.concatenate([np.cumsum(least[::-1])[::-1], [0.0]])  # cost a state may have after step i
    best = np.array([(err[i, o] + lam * cost[i, o]).min() for i, o in zip(order, opts)])
    rc_room = slack + np.concatenate([[0.0], np.cumsum(best)])  # e + lam * c may not exceed this after step i
    step = max(1, n // 64)
    bounds = _suffix_bounds(cost, err, elig, order, range(step, n, step))
    s_cost, s_err = np.zeros(1), np.zeros(1)
    picks = []
    limit = ub + RTOL * max(abs(ub), 1e-300)
    for pos, (i, o) in enumerate(zip(order, opts)):
        # option-major: each option's states stay sorted by cost, so the stable sort below only merges runs
        nc = (cost[i, o][:, None] + s_cost[None, :]).ravel()
        ne = (err[i, o][:, None] + s_err[None, :]).ravel()
        ok = (nc <= room[pos + 1]) & (ne + lam * nc <= rc_room[pos + 1] * (1 + RTOL))
        if pos + 1 in bounds:
            c0, e0, dc, de = bounds[pos + 1]
            lp = e0 - np.interp(budget - nc - c0, dc, de)
            ok &= ne + lp - RTOL * (np.abs(ne) + np.abs(lp)) <= limit
        else:
            ok &= ne <= limit
        keep = np.nonzero(ok)[0]
        keep = keep[np.argsort(nc[keep], kind="stable")]  # equal costs in any order: a duplicate may survive
        ne = ne[keep]
        front = ne < np.concatenate([[np.inf], np.minimum.accumulate(ne)[:-1]])
        keep = keep[front]
        if len(keep) == 0:
            return np.inf, None
        if len(keep) > max_states or time.perf_counter() > deadline:
            return None
        picks.append((keep, len(s_cost)))  # index = option * (states before) + parent state
        s_cost, s_err = nc[keep], ne[front]
    state = int(np.argmin(s_err))
    found = float(s_err[state])
    picked = np.empty(n, dtype=np.int64)
    for pos in range(n - 1, -1, -1):
        keep, parents = picks[pos]
        k = int(keep[state])
        picked[order[pos]] = opts[pos][k // parents]
        state = k % parents
    return found, picked


def _result(status, assignment, objective, gap, started, proved_by, bound, info, message=""):
    info = {**info, "solver": "mck" if proved_by.startswith("mck") else "highs", "proved_by": proved_by}
    return SolveResult(status, assignment, objective, gap, time.perf_counter() - started, "mck", message,
                       bound=bound, info=info)


def solve(problem, time_limit: float | None = 60.0, max_core: int = 5000, max_states: int = 300_000,
          seed: int | None = None) -> SolveResult:
    """The proven optimum of `problem` (status "optimal", gap 0), or HiGHS's best within `time_limit`.

    :param time_limit: seconds for the whole solve (the DP and, where needed, HiGHS).
    :param max_core: most layers left after reduced-cost fixing for which the exact DP runs.
    :param max_states: largest Pareto list the DP may keep before HiGHS takes over.
    :param seed: accepted for the common solver signature; nothing here is random.
    """
    from dse.solvers.mip import layer_classes, solve_highs, undominated_mask
    from dse.solvers.lagrangian import infeasible, one_constraint

    started = time.perf_counter()
    deadline = started + (time_limit if time_limit is not None else np.inf)
    message = problem.infeasible_message()
    if message:
        return infeasible(problem, "mck", started, message)
    L, F = problem.shape
    rows = np.arange(L)
    try:
        single = one_constraint(problem, "mck")
    except QuantDSEError:  # several independent budgets: HiGHS on the whole model
        return _result_of_highs(solve_highs(problem, undominated_mask(problem), None, time_limit), started, {})
    if single is None:
        a = problem.masked(problem.error).argmin(axis=1)
        obj = problem.objective(a)
        return _result("optimal", a, obj, 0.0, started, "mck: no budget binds", obj, {})
    coef, rhs = single
    keep = undominated_mask(problem)
    classes = layer_classes(problem, keep)
    if len(classes[0]) * CLASS_RATIO <= L:  # mostly identical layers: a tiny integer program in counts
        return _result_of_highs(solve_highs(problem, keep, None, time_limit, classes), started,
                                {"layer_classes": len(classes[0])})
    cost, err = np.where(keep, coef, np.inf), np.where(keep, problem.error, np.inf)

    incumbent, lam, bound, all_fit = _lp(cost, err, keep, rhs)
    if all_fit:
        obj = problem.objective(incumbent)
        return _result("optimal", incumbent, obj, 0.0, started, "mck: every best-error format fits", obj, {})
    incumbent = _fill(cost, err, keep, incumbent, rhs)
    ub = problem.objective(incumbent)
    info = {"lambda": lam, "lp_bound": bound}
    if ub - bound <= RTOL * 1e-3 * max(abs(ub), 1e-300):
        return _result("optimal", incumbent, ub, 0.0, started, "mck: LP bound", ub, info)

    # reduced-cost fixing: no solution as good as the incumbent uses a format with rc > slack
    slack = ub - bound
    lagr = np.where(keep, err + lam * cost, np.inf)
    best_l = lagr.min(axis=1)
    rc = lagr - best_l[:, None]
    fuzz = RTOL * (np.abs(problem.error) + lam * np.abs(coef))
    elig = keep & (rc <= slack * (1 + RTOL) + fuzz)
    core = np.nonzero(elig.sum(axis=1) > 1)[0]
    fixed = np.setdiff1d(rows, core)
    info["core_layers"] = int(len(core))
    found = None
    if len(core) <= max_core:
        base = incumbent.copy()
        base[fixed] = np.where(elig[fixed], rc[fixed], np.inf).argmin(axis=1)
        budget = rhs - float(cost[fixed, base[fixed]].sum())
        budget += 1e-10 * max(abs(rhs), 1.0)  # within problem.violations' tolerance
        e_fixed = float(err[fixed, base[fixed]].sum())
        found = exact_core(cost[core], err[core], elig[core], lam, budget,
                           slack * (1 + RTOL) + float(fuzz[core].max(initial=0.0)) * F, ub - e_fixed,
                           max_states, deadline)
    if found is not None:
        if found[1] is not None:
            base[core] = found[1]
            if problem.objective(base) < ub and not problem.violations(base):
                incumbent, ub = base, problem.objective(base)
        return _result("optimal", incumbent, ub, 0.0, started, "mck: Lagrangian bound + exact core", ub, info)
    # the core is too large for the DP: HiGHS on the formats reduced-cost fixing kept, from the incumbent
    left = None if time_limit is None else max(0.1, deadline - time.perf_counter())
    return _result_of_highs(solve_highs(problem, elig, incumbent, left), started, info)


def _result_of_highs(result: SolveResult, started: float, info: dict) -> SolveResult:
    result.info.update(info)
    result.info["proved_by"] = "highs" if result.status == "optimal" else "none"
    result.seconds = time.perf_counter() - started
    result.method = "mck"
    return result
