"""Exact allocation: proven optimal plans, by the fastest path that proves them.

The default (`solver="auto"`) is the exact multiple-choice knapsack solver
(`dse.solvers.mck`: Lagrangian bound, reduced-cost fixing, exact core DP), which
proves optimality in milliseconds for one budget; HiGHS, called through highspy
directly and warm-started from that solver's incumbent, takes what it cannot close
and every problem with several independent budgets.

The integer program: one integer count per (class of identical layers, allowed
format), counts summing to the class size, and one row per constraint -- the
CalibTIP / HAWQ-V3 formulation with identical layers merged (see `layer_classes`).
Formats that are dominated in a layer (no better in error nor in any constrained
cost than another allowed format) are dropped first: an exact presolve.

`solver="highs"` runs that model in HiGHS alone; `solver="pulp"` builds it through
PuLP (the path before the fast solver, kept for benchmarks); `solver="cbc"` is PuLP's
CBC. Above `max_classes` distinct layers their branch and bound at tight tolerance
takes minutes; for a single budget the Lagrangian solver takes over there, and the
result says so in `info["switched_to"]` and its message.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from quantcore.errors import QuantDSEError
from dse.solvers.mip import highs_status, layer_classes, solve_highs, stdout_silenced, undominated_mask  # noqa: F401  (re-exported)
from dse.solvers.result import SolveResult

#: above this many distinct layers `solve` hands a single budget to the Lagrangian solver
MAX_CLASSES = 1500
#: the paths `solve(solver=...)` takes
SOLVERS = ("auto", "highs", "pulp", "cbc")


def _solver(name: str, time_limit: float | None):
    import pulp  # only the PuLP paths need it: a sweep worker that never takes them starts faster

    options = dict(msg=False, timeLimit=time_limit)
    if name == "pulp":
        available = pulp.HiGHS().available()
        if available:
            tight = dict(mip_feasibility_tolerance=1e-9, primal_feasibility_tolerance=1e-9,
                         dual_feasibility_tolerance=1e-9)
            return pulp.HiGHS(gapRel=1e-9, gapAbs=0.0, **tight, **options), "pulp-highs"
        name = "cbc"  # fall back
    if name == "cbc":
        if pulp.COIN_CMD().available():
            return pulp.COIN_CMD(gapRel=1e-9, gapAbs=0.0, **options), "cbc"
        with warnings.catch_warnings():  # the bundled CBC binary is deprecated in PuLP 3.x, still shipped
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.PULP_CBC_CMD(gapRel=1e-9, gapAbs=0.0, **options), "cbc"
    raise QuantDSEError(f"unknown ILP solver {name!r}: use {', '.join(SOLVERS)}")


def _status(model, used: str, stopped_on_time: bool = False) -> str:
    """optimal | time_limit | infeasible | other, read from the solver itself.

    PuLP reports "Optimal" for a run that stopped at its time limit with a
    solution; HiGHS's model status and CBC's solution status tell them apart.
    CBC stopped by its time limit before any integer solution can come back as
    "Infeasible" (seen on a loaded machine with a feasible problem): a run that
    used up its time limit has not proved infeasibility, so it is a time limit.
    """
    import pulp

    if used == "pulp-highs" and getattr(model, "solverModel", None) is not None:
        return highs_status(model.solverModel)
    if model.status == pulp.LpStatusInfeasible:
        return "time_limit" if stopped_on_time else "infeasible"
    if model.sol_status == pulp.LpSolutionOptimal:
        return "optimal"
    if model.sol_status == pulp.LpSolutionIntegerFeasible:
        return "time_limit"
    return pulp.LpStatus[model.status]


def _solve_once(problem, keep, classes, rhs_scale: dict, solver_name: str, time_limit):
    import pulp

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
    with stdout_silenced():
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
    if used == "pulp-highs" and getattr(model, "solverModel", None) is not None:
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


def solve(problem, solver: str = "auto", time_limit: float | None = 60.0, max_classes: int = MAX_CLASSES,
          seed: int | None = None) -> SolveResult:
    """Minimise total error subject to the problem's constraints, exactly.

    :param solver: "auto" (default: the exact multiple-choice knapsack solver, HiGHS for what it
        cannot close), "highs" (highspy alone), "pulp" (PuLP with HiGHS) or "cbc" (PuLP's CBC).
    :param time_limit: seconds before the solver stops with its best solution (status "time_limit").
    :param max_classes: for "highs", "pulp" and "cbc": above this many distinct layers, a single (or
        bits+memory) budget is handed to the Lagrangian solver, which is exact where it proves
        optimality and certifies its gap otherwise; branch and bound at 1e-9 tolerance takes minutes
        there (bench/solvers.py).
    :param seed: accepted for the common solver signature; the ILP is deterministic.
    """
    if solver not in SOLVERS:
        raise QuantDSEError(f"unknown ILP solver {solver!r}: use {', '.join(SOLVERS)}")
    t0 = time.perf_counter()
    message = problem.infeasible_message()
    if message:
        return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - t0, "ilp", message)
    if solver == "auto":
        from dse.solvers import mck

        result = mck.solve(problem, time_limit=time_limit)
        result.method = "ilp"
        if result.success and not result.message:
            result.message = f"proven optimal by {result.info['proved_by']}" if result.status == "optimal" else ""
        return result
    L, F = problem.shape
    keep = undominated_mask(problem)
    classes = layer_classes(problem, keep)
    if len(classes[0]) > max_classes:
        from dse.solvers.lagrangian import one_constraint

        try:
            one_constraint(problem, "lagrangian")
            return _hand_over(problem, f"{len(classes[0])} distinct layers > {max_classes}")
        except QuantDSEError:
            pass  # several independent budgets: only the ILP handles them; go on with it
    if solver == "highs":
        result = solve_highs(problem, keep, None, time_limit)
        result.seconds = time.perf_counter() - t0
        return result
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
