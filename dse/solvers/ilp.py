"""Exact allocation by integer programming (PuLP with HiGHS; CBC as fallback).

One binary x[l, f] per allowed (layer, format), sum_f x[l, f] = 1, and one row per
constraint -- the CalibTIP / HAWQ-V3 formulation -- with identical layers merged
into integer counts (see `layer_classes`). Formats that are dominated in a
layer (no better in error nor in any constrained cost than another allowed
format) are dropped first: an exact presolve that shrinks the model a lot.

Above `max_classes` distinct layers branch and bound at tight tolerance takes
minutes; for a single budget the Lagrangian multiple-choice-knapsack solver
(exact repair, certified gap) takes over, and the result says so in
`info["switched_to"]` and its message.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import numpy as np
import pulp

from quantcore.errors import QuantDSEError
from dse.solvers.result import SolveResult

#: above this many distinct layers `solve` hands a single budget to the Lagrangian solver
MAX_CLASSES = 1500


def undominated_mask(problem) -> np.ndarray:
    """Allowed formats that no other allowed format of the same layer dominates.

    g dominates f when error[g] <= error[f] and every constrained cost of g <= f's,
    with at least one strict (ties keep the lower index). Exact: some optimal
    solution never uses a dominated format.
    """
    costs = [problem.error] + [c.coef for c in problem.constraints()]
    keep = problem.mask.copy()
    F = problem.shape[1]
    for f in range(F):
        dominated = np.zeros(problem.shape[0], dtype=bool)
        for g in range(F):
            if g == f:
                continue
            le = problem.mask[:, g].copy()
            lt = np.zeros_like(le)
            for c in costs:
                le &= c[:, g] <= c[:, f]
                lt |= c[:, g] < c[:, f]
            dominated |= le & (lt | (g < f))
        keep[:, f] &= ~dominated
    return keep


@contextlib.contextmanager
def _stdout_silenced():
    """HiGHS prints a banner on the C-level stdout; keep stdout clean for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _solver(name: str, time_limit: float | None):
    options = dict(msg=False, timeLimit=time_limit)
    if name == "highs":
        available = pulp.HiGHS().available()
        if available:
            tight = dict(mip_feasibility_tolerance=1e-9, primal_feasibility_tolerance=1e-9,
                         dual_feasibility_tolerance=1e-9)
            return pulp.HiGHS(gapRel=1e-9, gapAbs=0.0, **tight, **options), "highs"
        name = "cbc"  # fall back
    if name == "cbc":
        if pulp.COIN_CMD().available():
            return pulp.COIN_CMD(gapRel=1e-9, gapAbs=0.0, **options), "cbc"
        with warnings.catch_warnings():  # the bundled CBC binary is deprecated in PuLP 3.x, still shipped
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.PULP_CBC_CMD(gapRel=1e-9, gapAbs=0.0, **options), "cbc"
    raise QuantDSEError(f"unknown ILP solver {name!r}: use highs or cbc")


def layer_classes(problem, keep) -> tuple[np.ndarray, np.ndarray]:
    """Group layers whose rows are identical (error, every constrained cost, allowed set).

    Identical layers are interchangeable, so one integer count per (class, format)
    replaces their binaries exactly and removes the symmetry that slows branch and
    bound (a data-free prior makes all 32 q_proj of a Llama identical).
    Returns (representative layer of each class, class index of each layer).
    """
    rows = [problem.error, keep.astype(float)] + [c.coef for c in problem.constraints()]
    key = np.ascontiguousarray(np.hstack([np.where(keep, r, 0.0) for r in rows]))
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _status(model, used: str, stopped_on_time: bool = False) -> str:
    """optimal | time_limit | infeasible | other, read from the solver itself.

    PuLP reports "Optimal" for a run that stopped at its time limit with a
    solution; HiGHS's model status and CBC's solution status tell them apart.
    CBC stopped by its time limit before any integer solution can come back as
    "Infeasible" (seen on a loaded machine with a feasible problem): a run that
    used up its time limit has not proved infeasibility, so it is a time limit.
    """
    if used == "highs" and getattr(model, "solverModel", None) is not None:
        import highspy

        status = model.solverModel.getModelStatus()
        known = {highspy.HighsModelStatus.kOptimal: "optimal", highspy.HighsModelStatus.kInfeasible: "infeasible",
                 highspy.HighsModelStatus.kTimeLimit: "time_limit"}
        return known.get(status, str(status))
    if model.status == pulp.LpStatusInfeasible:
        return "time_limit" if stopped_on_time else "infeasible"
    if model.sol_status == pulp.LpSolutionOptimal:
        return "optimal"
    if model.sol_status == pulp.LpSolutionIntegerFeasible:
        return "time_limit"
    return pulp.LpStatus[model.status]


def _solve_once(problem, keep, classes, rhs_scale: dict, solver_name: str, time_limit):
    L, F = problem.shape
    reps, cls = classes
    counts = np.bincount(cls, minlength=len(reps))
    rows, cols = np.nonzero(keep[reps])  # over classes
    layer_of = reps[rows]
    err_scale = float(np.abs(problem.error[layer_of, cols]).max()) or 1.0
    model = pulp.LpProblem("quantdse_allocation", pulp.LpMinimize)
    ub = counts[rows]
    if hasattr(model, "add_variable"):  # PuLP >= 3.3: variables belong to the model
        x = [model.add_variable(f"n_{c}_{f}", 0, int(u), cat=pulp.LpInteger) for c, f, u in zip(rows, cols, ub)]
    else:  # pragma: no cover - older PuLP
        x = [pulp.LpVariable(f"n_{c}_{f}", 0, int(u), cat=pulp.LpInteger) for c, f, u in zip(rows, cols, ub)]
    obj = problem.error[layer_of, cols] / err_scale
    model += pulp.LpAffineExpression(zip(x, obj.tolist()))
    starts = np.searchsorted(rows, np.arange(len(reps) + 1))
    for c in range(len(reps)):
        model += (pulp.LpAffineExpression((x[i], 1.0) for i in range(starts[c], starts[c + 1]))
                  == int(counts[c])), f"count_{c}"
    for con in problem.constraints():
        coef = con.coef[layer_of, cols]
        scale = max(abs(con.rhs), float(np.abs(coef).max()), 1e-300)
        model += (pulp.LpAffineExpression(zip(x, (coef / scale).tolist()))
                  <= con.rhs * rhs_scale.get(con.kind, 1.0) / scale), con.kind
    solver, used = _solver(solver_name, time_limit)
    started = time.perf_counter()
    with _stdout_silenced():
        model.solve(solver)
    stopped_on_time = time_limit is not None and time.perf_counter() - started >= time_limit
    status = _status(model, used, stopped_on_time)
    values = np.rint(np.array([v.varValue if v.varValue is not None else np.nan for v in x]))
    assignment = None
    if status != "infeasible" and np.isfinite(values).all() and \
            (np.add.reduceat(values, starts[:-1]) == counts).all():
        # hand the counts back to layers: within a class, layers in order take formats in order
        # (layers sorted by class, in layer order: one pass, not one scan of cls per class)
        by_class = np.argsort(cls, kind="stable")
        assignment = np.empty(L, dtype=np.int64)
        assignment[by_class] = np.repeat(cols, values.astype(np.int64))
    bound, gap = float("nan"), float("nan")
    if used == "highs" and getattr(model, "solverModel", None) is not None:
        info = model.solverModel.getInfo()
        bound = float(info.mip_dual_bound) * err_scale
        gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else float("nan")
    return status, assignment, used, bound, gap


def _hand_over(problem, reason: str) -> SolveResult:
    """Solve with the Lagrangian multiple-choice knapsack solver and say why in the result."""
    from dse.solvers import lagrangian

    result = lagrangian.solve(problem)
    result.info["switched_to"] = "lagrangian"
    gap = f"certified gap {result.gap:.2e}" if np.isfinite(result.gap) else "no gap"
    result.message = f"{reason}: solved by Lagrangian relaxation + exact repair ({result.status}, {gap})"
    result.method = "ilp"
    return result


def solve(problem, solver: str = "highs", time_limit: float | None = 60.0, max_classes: int = MAX_CLASSES) -> SolveResult:
    """Minimise total error subject to the problem's constraints, exactly.

    :param solver: "highs" (default, through highspy) or "cbc" (PuLP's bundled CBC).
    :param time_limit: seconds before the solver stops with its best solution (status "time_limit").
    :param max_classes: above this many distinct layers, a single (or bits+memory) budget is handed
        to the Lagrangian solver, which is exact where it proves optimality and certifies its gap
        otherwise; branch and bound at 1e-9 tolerance takes minutes there (bench/solvers.py).
    """
    t0 = time.perf_counter()
    L, F = problem.shape
    message = problem.infeasible_message()
    if message:
        return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - t0, "ilp", message)
    keep = undominated_mask(problem)
    classes = layer_classes(problem, keep)
    if len(classes[0]) > max_classes:
        from dse.solvers.lagrangian import one_constraint

        try:
            one_constraint(problem, "lagrangian")
            return _hand_over(problem, f"{len(classes[0])} distinct layers > {max_classes}")
        except QuantDSEError:
            pass  # several independent budgets: only the ILP handles them; go on with it
    rhs_scale: dict = {}
    for attempt in range(4):
        status, assignment, used, bound, gap = _solve_once(problem, keep, classes, rhs_scale, solver, time_limit)
        if assignment is None:
            break
        broken = problem.violations(assignment)
        if not broken:
            break
        # the solver's feasibility tolerance let a row exceed its limit by a hair: tighten and re-solve
        for c in problem.constraints():
            used_c = float(c.coef[np.arange(L), assignment].sum())
            if used_c > c.rhs:
                rhs_scale[c.kind] = rhs_scale.get(c.kind, 1.0) * (1 - 2 * (used_c - c.rhs) / max(abs(c.rhs), 1e-300))
        assignment = None
    seconds = time.perf_counter() - t0
    if assignment is None:
        if status == "infeasible":
            return SolveResult("infeasible", None, float("nan"), float("nan"), seconds, "ilp",
                               "the constraints cannot all hold together: relax one of them")
        return SolveResult("error", None, float("nan"), float("nan"), seconds, "ilp",
                           f"{used} returned {status} without a feasible assignment")
    objective = problem.objective(assignment)
    res_status = "optimal" if status == "optimal" else "time_limit"
    if res_status == "optimal" and not np.isfinite(gap):
        gap = 0.0
    return SolveResult(res_status, assignment, objective, gap, seconds, "ilp", f"solved by {used}",
                       bound=bound if np.isfinite(bound) else objective if res_status == "optimal" else float("nan"),
                       info={"solver": used, "layer_classes": len(classes[0]), "choices": int(keep.sum()),
                             "choices_before_presolve": int(problem.mask.sum())})
