"""The "scale" solver: multiple-choice knapsack by Lagrangian relaxation, with a certificate.

1. LP relaxation (Sinha & Zoltners 1979): walk every layer's lower convex hull of
   (cost, error), taking hull steps steepest first while the budget lasts. The
   first step that does not fit sets the multiplier lambda; the steps taken are a
   feasible incumbent, and the dual function g(lambda) = sum_l min_f (error +
   lambda * cost) - lambda * rhs is a proven lower bound (weak duality).
2. Reduced-cost fixing: any assignment better than the incumbent has
   sum_l rc[l, f_l] <= incumbent - bound, with rc >= 0 the reduced costs at lambda.
   A format whose rc alone exceeds that gap can be dropped; most layers keep one
   format and are fixed.
3. An exact dynamic program over the few layers left (Pareto lists of
   (cost, error), pruned by the same reduced-cost budget) finds the optimum.
   When too many layers are left (near-ties are common at 45k layers), the DP
   re-optimises only the most fractional ones and the certified gap is reported.

Fully vectorised numpy: one sort over all hull steps, then work only on the core.
One constraint (or several proportional ones, e.g. bits and memory); other
combinations raise QuantDSEError naming the methods that handle them.
"""
from __future__ import annotations

import time

import numpy as np

from quantcore.errors import QuantDSEError
from dse.solvers.hull import lp_relaxation
from dse.solvers.result import SolveResult


def one_constraint(problem, method: str) -> tuple[np.ndarray, float] | None:
    """(coef, rhs) of the single effective constraint, or None when there is none.

    Constraints whose coefficients are proportional (bits and memory are bits x
    params / 8 vs bits x params) collapse into the tightest one.
    """
    cons = problem.constraints()
    if not cons:
        return None
    ref = cons[0]
    mask = problem.mask
    rhs = ref.rhs
    for c in cons[1:]:
        denom = float(np.abs(np.where(mask, ref.coef, 0.0)).sum())
        k = float(np.abs(np.where(mask, c.coef, 0.0)).sum()) / denom if denom > 0 else 0.0
        if not (k > 0 and np.allclose(np.where(mask, c.coef, 0.0), k * np.where(mask, ref.coef, 0.0),
                                      rtol=1e-9, atol=0.0)):
            raise QuantDSEError(f"{method} handles one budget ({ref.kind}) or proportional ones such as bits and "
                                f"memory, not {ref.kind} and {c.kind} together: use --method ilp, nas or greedy")
        rhs = min(rhs, c.rhs / k)
    return ref.coef, rhs


def infeasible(problem, method: str, started: float, message: str | None = None) -> SolveResult:
    msg = message or problem.infeasible_message() or f"{method} found no assignment within every limit"
    return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - started, method, msg)


def _exact_core(cost, err, rc, elig, budget, slack, max_states, deadline):
    """Exact DP over the core layers: (best error, choices [n_core]) or None if too big.

    States are Pareto-optimal (cost, error) partial sums; a state is dropped when its
    cost cannot be completed within `budget` or its reduced cost exceeds `slack`.
    """
    n = len(cost)
    opts = [np.nonzero(elig[i])[0] for i in range(n)]
    min_rest = np.concatenate([np.cumsum([cost[i, o].min() for i, o in enumerate(opts)][::-1])[::-1], [0.0]])
    s_cost, s_err, s_rc = np.zeros(1), np.zeros(1), np.zeros(1)
    parents, choices = [], []
    for i, o in enumerate(opts):
        nc = (s_cost[:, None] + cost[i, o][None, :]).ravel()
        ne = (s_err[:, None] + err[i, o][None, :]).ravel()
        nr = (s_rc[:, None] + rc[i, o][None, :]).ravel()
        keep = np.nonzero((nc + min_rest[i + 1] <= budget) & (nr <= slack))[0]
        nc, ne, nr = nc[keep], ne[keep], nr[keep]
        order = np.lexsort((ne, nc))
        nc, ne, nr, keep = nc[order], ne[order], nr[order], keep[order]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(ne)[:-1]])
        front = ne < best_before
        s_cost, s_err, s_rc, keep = nc[front], ne[front], nr[front], keep[front]
        if len(s_cost) > max_states or time.perf_counter() > deadline:
            return None
        if len(s_cost) == 0:
            return np.inf, None
        parents.append(keep // len(o))
        choices.append(o[keep % len(o)])
    state = int(np.argmin(s_err))
    best = float(s_err[state])
    picked = np.empty(n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        picked[i] = choices[i][state]
        state = parents[i][state]
    return best, picked


def solve(problem, max_core: int = 2000, repair_layers: int = 64, max_states: int = 200_000,
          time_limit: float | None = None) -> SolveResult:
    """Optimal (or certified-gap) assignment under one budget.

    :param max_core: most layers left after reduced-cost fixing for which the exact
        DP runs (then the result is proven optimal).
    :param repair_layers: above `max_core`, the DP re-optimises only this many of
        the most fractional layers and the result carries its certified gap.

    :param max_states: largest Pareto list the exact core DP may keep before it
        gives up and returns the incumbent with its gap.
    :param time_limit: seconds for the core DP (the relaxation always runs).
    """
    started = time.perf_counter()
    deadline = started + (time_limit if time_limit is not None else np.inf)
    method = "lagrangian"
    L, F = problem.shape
    rows = np.arange(L)
    err = problem.masked(problem.error)
    single = one_constraint(problem, method)
    if single is None:
        a = err.argmin(axis=1)
        obj = problem.objective(a)
        return SolveResult("optimal", a, obj, 0.0, time.perf_counter() - started, method, bound=obj)
    coef, rhs = single
    cost = problem.masked(coef)
    cheapest = np.where(cost == cost.min(axis=1, keepdims=True), err, np.inf).argmin(axis=1)
    if problem.violations(cheapest):
        return infeasible(problem, method, started)

    # 1. LP relaxation on the hulls: steepest steps first while they fit
    incumbent, lam, k, steps = lp_relaxation(cost, err, problem.mask, rhs)
    ub = problem.objective(incumbent)
    lagr = problem.masked(problem.error + lam * coef)
    best_l = lagr.min(axis=1)
    bound = float(best_l.sum() - lam * rhs)
    info = {"lambda": lam, "lp_bound": bound, "hull_steps": int(steps), "core_layers": 0}
    if k == steps or ub - bound <= 1e-12 * max(abs(ub), 1e-300):
        return SolveResult("optimal", incumbent, ub, 0.0, time.perf_counter() - started, method,
                           bound=ub, info=info)

    # 2. reduced-cost fixing
    slack = ub - bound
    rc = lagr - best_l[:, None]
    fuzz = 1e-12 * (np.abs(err) + lam * np.abs(cost))  # rounding in rc, so no optimum is cut off
    elig = problem.mask & (rc <= slack * (1 + 1e-9) + np.where(problem.mask, fuzz, 0.0))
    core = np.nonzero(elig.sum(axis=1) > 1)[0]
    fixed = np.setdiff1d(rows, core)
    assignment = incumbent.copy()
    assignment[fixed] = np.where(elig[fixed], rc[fixed], np.inf).argmin(axis=1)
    info["core_layers"] = int(len(core))

    # 3. exact DP over the core when it is small; else over the most fractional layers
    if len(core) <= max_core:
        chosen, exact = core, True
    else:  # layers whose second-best option is closest to a tie: the fractional ones
        second = np.sort(np.where(elig[core], rc[core], np.inf), axis=1)[:, 1]
        chosen, exact = np.sort(core[np.argsort(second, kind="stable")[:repair_layers]]), False
        assignment = incumbent.copy()
    others = np.setdiff1d(rows, chosen)
    budget = rhs - float(cost[others, assignment[others]].sum())
    budget += 1e-10 * max(abs(rhs), 1.0)  # within problem.violations' tolerance
    found = _exact_core(cost[chosen], err[chosen], rc[chosen], elig[chosen], budget,
                        slack * (1 + 1e-9) + float(fuzz[chosen].max(initial=0.0)) * F, max_states, deadline)
    exact = exact and found is not None
    if found is not None and found[1] is not None:
        assignment[chosen] = found[1]
        if problem.objective(assignment) < ub and not problem.violations(assignment):
            incumbent, ub = assignment, problem.objective(assignment)
    seconds = time.perf_counter() - started
    if exact:
        return SolveResult("optimal", incumbent, ub, 0.0, seconds, method, bound=ub, info=info)
    gap = (ub - bound) / max(abs(ub), 1e-300)
    return SolveResult("feasible", incumbent, ub, gap, seconds, method, bound=bound, info=info,
                       message=f"{len(core)} layers near the multiplier: too many to prove optimality "
                               f"exactly; certified gap {gap:.2e}")
