"""The exact MIP pieces the ILP and the multiple-choice knapsack solver share: dominance pruning,
classes of identical layers, and HiGHS called through highspy (warm-started from an incumbent)."""
from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

from dse.solvers.result import SolveResult


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
def stdout_silenced():
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


def layer_classes(problem, keep) -> tuple[np.ndarray, np.ndarray]:
    """Group layers whose rows are identical (error, every constrained cost, allowed set).

    Identical layers are interchangeable, so one integer count per (class, format)
    replaces their binaries exactly and removes the symmetry that slows branch and
    bound (a data-free prior makes all 32 q_proj of a Llama identical).
    Returns (representative layer of each class, class index of each layer).
    """
    rows = [problem.error, keep.astype(float)] + [c.coef for c in problem.constraints()]
    key = np.ascontiguousarray(np.hstack([np.where(keep, r, 0.0) for r in rows]) + 0.0)  # + 0.0: -0.0 is 0.0
    index: dict = {}  # exact row bytes -> class (a hash per row: far faster than np.unique(axis=0) at 45k rows)
    inverse = np.fromiter((index.setdefault(row.tobytes(), len(index)) for row in key), np.int64, len(key))
    first = np.full(len(index), len(key), dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(len(key)))
    return first, inverse


def highs_status(highs) -> str:
    import highspy

    known = {highspy.HighsModelStatus.kOptimal: "optimal", highspy.HighsModelStatus.kInfeasible: "infeasible",
             highspy.HighsModelStatus.kTimeLimit: "time_limit"}
    return known.get(highs.getModelStatus(), str(highs.getModelStatus()))


def solve_highs(problem, keep, incumbent=None, time_limit: float | None = 60.0, classes=None) -> SolveResult:
    """The class-merged integer program over the formats in `keep`, in HiGHS through highspy.

    incumbent: a feasible assignment HiGHS starts from (its branch and bound then only
    has to close the gap). classes: `layer_classes(problem, keep)` where the caller has it.
    The thread count is left to HiGHS: its scheduler is global, and a second value is an error. Rows are scaled to unit size; a row the solver's feasibility
    tolerance lets exceed its limit by a hair is tightened and the model solved again.
    """
    import highspy

    t0 = time.perf_counter()
    L, F = problem.shape
    reps, cls = classes if classes is not None else layer_classes(problem, keep)
    counts = np.bincount(cls, minlength=len(reps))
    rows, cols = np.nonzero(keep[reps])  # one integer per (class, kept format), class-major
    layer_of = reps[rows]
    err_scale = float(np.abs(problem.error[layer_of, cols]).max()) or 1.0
    cons = problem.constraints()
    n, m = len(rows), len(reps) + len(cons)
    # column-wise matrix: column j has a 1 in its class's row and its scaled cost in each constraint row
    scales = [max(abs(c.rhs), float(np.abs(c.coef[layer_of, cols]).max()), 1e-300) for c in cons]
    index = np.column_stack([rows] + [np.full(n, len(reps) + k) for k in range(len(cons))]).ravel()
    value = np.column_stack([np.ones(n)] + [c.coef[layer_of, cols] / sc for c, sc in zip(cons, scales)]).ravel()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.col_cost_ = problem.error[layer_of, cols] / err_scale
    lp.col_lower_, lp.col_upper_ = np.zeros(n), counts[rows].astype(np.float64)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, n * (1 + len(cons)) + 1, 1 + len(cons), dtype=np.int32)
    lp.a_matrix_.index_, lp.a_matrix_.value_ = index.astype(np.int32), value
    row_lower = np.concatenate([counts.astype(np.float64), np.full(len(cons), -np.inf)])
    by_class = np.argsort(cls, kind="stable")
    starts = np.searchsorted(rows, np.arange(len(reps) + 1))
    shrink = np.ones(len(cons))
    status, assignment, bound, gap = "error", None, float("nan"), float("nan")
    for _ in range(4):
        lp.row_lower_ = row_lower
        lp.row_upper_ = np.concatenate([counts.astype(np.float64), [c.rhs * s / sc for c, s, sc in
                                                                     zip(cons, shrink, scales)]])
        with stdout_silenced():  # the banner HiGHS prints when created
            highs = highspy.Highs()  # a fresh one per attempt: a re-run of a solved model can come back unset
        for key, val in (("output_flag", False), ("mip_rel_gap", 1e-9), ("mip_abs_gap", 0.0),
                         ("mip_feasibility_tolerance", 1e-9), ("primal_feasibility_tolerance", 1e-9),
                         ("dual_feasibility_tolerance", 1e-9),
                         ("time_limit", max(0.01, float(time_limit or np.inf) - (time.perf_counter() - t0)))):
            highs.setOptionValue(key, val)
        highs.passModel(lp)
        if incumbent is not None:  # counts of the incumbent per (class, format)
            start = highspy.HighsSolution()
            column = np.full((len(reps), F), -1, dtype=np.int64)
            column[rows, cols] = np.arange(n)
            j = column[cls, incumbent]
            start.col_value = np.bincount(j[j >= 0], minlength=n).astype(np.float64).tolist()
            start.value_valid = True
            highs.setSolution(start)
        highs.run()
        status = highs_status(highs)
        values = np.rint(np.asarray(highs.getSolution().col_value, dtype=np.float64))
        assignment = None
        if status != "infeasible" and len(values) == n and (np.add.reduceat(values, starts[:-1]) == counts).all():
            assignment = np.empty(L, dtype=np.int64)
            assignment[by_class] = np.repeat(cols, values.astype(np.int64))
            info = highs.getInfo()
            bound = float(info.mip_dual_bound) * err_scale
            gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else float("nan")
        if assignment is None or not problem.violations(assignment):
            break
        for k, c in enumerate(cons):  # the tolerance let a row exceed its limit: tighten and solve again
            used = float(c.coef[np.arange(L), assignment].sum())
            if used > c.rhs:
                shrink[k] *= 1 - 2 * (used - c.rhs) / max(abs(c.rhs), 1e-300)
        assignment = None
    seconds = time.perf_counter() - t0
    info = {"solver": "highs", "layer_classes": len(reps), "choices": int(n)}
    if assignment is None:
        if status == "infeasible":
            return SolveResult("infeasible", None, float("nan"), float("nan"), seconds, "ilp",
                               "the constraints cannot all hold together: relax one of them", info=info)
        if incumbent is not None and not problem.violations(incumbent):
            obj = problem.objective(incumbent)
            return SolveResult("time_limit", incumbent, obj, float("nan"), seconds, "ilp",
                               f"highs returned {status}: the incumbent, not proven optimal", info=info)
        return SolveResult("error", None, float("nan"), float("nan"), seconds, "ilp",
                           f"highs returned {status} without a feasible assignment", info=info)
    objective = problem.objective(assignment)
    optimal = status == "optimal"
    return SolveResult("optimal" if optimal else "time_limit", assignment, objective,
                       0.0 if optimal and not np.isfinite(gap) else gap, seconds, "ilp", "solved by highs",
                       bound=bound if np.isfinite(bound) else objective if optimal else float("nan"), info=info)
