"""Exact allocation by integer programming (PuLP with HiGHS; CBC as fallback).

One binary x[l, f] per allowed (layer, format), sum_f x[l, f] = 1, and one row per
constraint -- the CalibTIP / HAWQ-V3 formulation -- with identical layers merged
into integer counts (see `layer_classes`). Formats that are dominated in a
layer (no better in error nor in any constrained cost than another allowed
format) are dropped first: an exact presolve that shrinks the model a lot.

Above `max_layers` layers the model gets too big for PuLP's Python front end and
the Lagrangian multiple-choice-knapsack solver (certified gap) takes over; the
result says so in `info["switched_to"]`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import numpy as np
import pulp

from dse.errors import QuantDSEError
from dse.solvers.result import SolveResult

#: above this many layers `solve` hands over to the Lagrangian solver
MAX_LAYERS = 20000


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
            return pulp.HiGHS(gapRel=1e-9, gapAbs=0.0, **options), "highs"
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


def _solve_once(problem, keep, rhs_scale: dict, solver_name: str, time_limit):
    L, F = problem.shape
    reps, cls = layer_classes(problem, keep)
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
    with _stdout_silenced():
        model.solve(solver)
    status = pulp.LpStatus[model.status]
    values = np.rint(np.array([v.varValue if v.varValue is not None else np.nan for v in x]))
    assignment = None
    if np.isfinite(values).all() and (np.add.reduceat(values, starts[:-1]) == counts).all():
        # hand the counts back to layers: within a class, layers in order take formats in order
        assignment = np.empty(L, dtype=np.int64)
        for c in range(len(reps)):
            members = np.flatnonzero(cls == c)
            assignment[members] = np.repeat(cols[starts[c]:starts[c + 1]],
                                            values[starts[c]:starts[c + 1]].astype(np.int64))
    bound, gap = float("nan"), float("nan")
    if used == "highs" and getattr(model, "solverModel", None) is not None:
        info = model.solverModel.getInfo()
        bound = float(info.mip_dual_bound) * err_scale
        gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else float("nan")
    return status, assignment, used, bound, gap, len(reps)


def solve(problem, solver: str = "highs", time_limit: float | None = 60.0, max_layers: int = MAX_LAYERS,
          **_ignored) -> SolveResult:
    """Minimise total error subject to the problem's constraints, exactly.

    :param solver: "highs" (default, through highspy) or "cbc" (PuLP's bundled CBC).
    :param time_limit: seconds before the solver stops with its best solution.
    :param max_layers: above this, switch to the Lagrangian solver (certified gap).
    """
    t0 = time.perf_counter()
    L, F = problem.shape
    if L > max_layers:
        from dse.solvers import lagrangian

        result = lagrangian.solve(problem)
        result.info["switched_to"] = "lagrangian"
        result.message = (f"{L} layers > {max_layers}: solved by Lagrangian relaxation with certified gap "
                          f"{result.gap:.2e}. " + result.message).strip()
        result.method = "ilp"
        return result
    message = problem.infeasible_message()
    if message:
        return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - t0, "ilp", message)
    keep = undominated_mask(problem)
    rhs_scale: dict = {}
    for attempt in range(4):
        status, assignment, used, bound, gap, classes = _solve_once(problem, keep, rhs_scale, solver, time_limit)
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
        if status == "Infeasible":
            return SolveResult("infeasible", None, float("nan"), float("nan"), seconds, "ilp",
                               "the constraints cannot all hold together: relax one of them")
        return SolveResult("error", None, float("nan"), float("nan"), seconds, "ilp",
                           f"{used} returned {status} without a feasible assignment")
    objective = problem.objective(assignment)
    if status == "Optimal":
        res_status = "optimal"
        if not np.isfinite(gap):
            gap = 0.0
    else:
        res_status = "time_limit"
    return SolveResult(res_status, assignment, objective, gap, seconds, "ilp", f"solved by {used}",
                       bound=bound if np.isfinite(bound) else objective if res_status == "optimal" else float("nan"),
                       info={"solver": used, "layer_classes": classes, "choices": int(keep.sum()),
                             "choices_before_presolve": int(problem.mask.sum())})
