"""BAQ-style closed-form bit allocation (rate-distortion), projected onto the format catalog.

BAQ (CSU-ModelCompression/BAQ, REFERENCE.md "Allocation methods") sets
R_j = R_ref + (1/theta) * log2(L_j / GM(L)): with per-weight distortion
D_j = L_j * 2^(-theta * R_j), this equalises the marginal distortion of every layer,
which is the optimum of sum_j n_j D_j under sum_j n_j R_j = R_ref * sum_j n_j.

Here theta is fitted from the error table (least squares of log2(error) vs bits
within each layer; BAQ's own proxy gives about 1.95), L_j is the layer's error at
its reference format divided by its parameters and brought back to 0 bits
(times 2^(theta * bits_ref)), GM is the parameter-weighted geometric mean, and R_j is
rounded to the allowed format nearest in bits (then lowest error). A greedy fix-up
then meets the budget exactly: downgrades while over, upgrades while room is left.

Format families (`int-g128`, `nf-g64`, ... : the name without its bit width) can lose
accuracy at different rates per bit, so each family gets its own theta, fitted on its
own formats, and its own closed form: R_j,fam = R_ref + (log2 L_j,fam - GM_fam) / theta_fam,
with L_j,fam taken from that family's reference format. Each family's rates alone
average R_ref, and when the families share one slope they coincide (a constant
per-family accuracy offset cancels against GM_fam), which is the pooled BAQ. So a
layer has one rate per family, and each format is measured against the layer's rate
in *that format's* family: the layer takes the format nearest its own family's rate
(ties: lowest error), and a family that gains more per bit (larger theta) spreads its
layers' rates less. (A pooled fit across families also reads their accuracy offsets
as slope: 2.01 against the generating 1.95 on bench/solvers.py's table.) A family with too few points for a slope (a single width, or fewer
than MIN_FAMILY_DOF residual points) uses the pooled theta; a layer with no lossy
format in a family measures that family's formats against its pooled rate.
"""
from __future__ import annotations

import re
import time

import numpy as np

from quantcore.errors import QuantDSEError
from dse.solvers import greedy
from dse.solvers.result import SolveResult

#: BAQ's fixed slope for its GPTQ-style loss proxy (REFERENCE.md, "details from their code")
PAPER_THETA = 1.95

#: points beyond one intercept per layer that a family's own slope needs; fewer: pooled theta
MIN_FAMILY_DOF = 2


def family(format_name: str) -> str:
    """`int4-g128` -> `int-g128`, `fp8-e4m3` -> `fp-e4m3`: the name without its bit width."""
    return re.sub(r"^([a-zA-Z_]+?)\d+(\.\d+)?", r"\1", format_name)


def fit_theta(bits: np.ndarray, error: np.ndarray, usable: np.ndarray) -> float:
    """Slope of -log2(error) vs bits, pooled over layers (each layer its own intercept); NaN if unfit."""
    x = np.where(usable, bits, np.nan)
    y = np.where(usable, np.log2(np.where(usable, error, 1.0)), np.nan)
    n = usable.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = x - np.nansum(x, axis=1, keepdims=True) / n
        dy = y - np.nansum(y, axis=1, keepdims=True) / n
    sxx = float(np.nansum(dx * dx))
    if sxx <= 0:
        return float("nan")
    return float(-np.nansum(dx * dy) / sxx)


def _budget_bits(problem) -> float:
    kinds = set(problem.limits)
    if not kinds or not kinds <= {"bits", "memory"}:
        raise QuantDSEError(f"baq allocates under a bits or memory budget only, got {sorted(kinds) or 'none'}: "
                            f"use --method ilp, nas or greedy for latency or energy limits")
    total = float(problem.params.sum())
    return min(c.rhs / total * (8.0 if c.kind == "memory" else 1.0) for c in problem.constraints())


def _rates(problem, usable: np.ndarray, theta: float, r_ref: float) -> np.ndarray:
    """[L] BAQ's closed-form rate per layer from the `usable` (positive-error) formats; NaN where none."""
    rows = np.arange(problem.shape[0])
    lossy = usable.any(axis=1)
    # L_j from the usable format nearest the budget, brought back to 0 bits
    ref = np.where(usable, np.abs(problem.bits - r_ref), np.inf).argmin(axis=1)
    with np.errstate(divide="ignore"):
        log_l = (np.log2(np.where(lossy, problem.error[rows, ref], 1.0) / np.maximum(problem.params, 1.0))
                 + theta * problem.bits[rows, ref])
    w = problem.params * lossy
    gm = float((w * log_l).sum() / w.sum()) if w.sum() > 0 else 0.0
    return np.where(lossy, r_ref + (log_l - gm) / theta, np.nan)


def _family_thetas(problem, positive: np.ndarray) -> dict:
    """{family: fitted theta} for the families with enough points for a positive slope."""
    out = {}
    for fam in sorted({family(n) for n in problem.format_names}):
        cols = np.array([family(n) == fam for n in problem.format_names])
        usable = positive & cols[None, :]
        dof = int(usable.sum() - usable.any(axis=1).sum())
        value = fit_theta(problem.bits, problem.error, usable)
        if dof >= MIN_FAMILY_DOF and np.isfinite(value) and value > 0:
            out[fam] = value
    return out


def target_rates(problem, r_ref: float, theta: float, by_family: dict) -> np.ndarray:
    """[L, F] the rate each (layer, format) is measured against: the layer's rate in that format's family.

    Families missing from `by_family` use `theta`; a layer with no lossy format in a family
    uses its pooled rate there; a layer lossless everywhere gets -inf (any format is as near).
    """
    positive = problem.mask & (problem.error > 0)
    pooled = np.nan_to_num(_rates(problem, positive, theta, r_ref), nan=-np.inf)
    names = [family(n) for n in problem.format_names]
    out = np.empty(problem.shape)
    for fam in set(names):
        cols = np.array([n == fam for n in names])
        rate = _rates(problem, positive & cols[None, :], by_family.get(fam, theta), r_ref)
        out[:, cols] = np.where(np.isnan(rate), pooled, rate)[:, None]
    return out


def solve(problem) -> SolveResult:
    """BAQ's closed-form allocation: no options."""
    started = time.perf_counter()
    r_ref = _budget_bits(problem)
    positive = problem.mask & (problem.error > 0)
    theta = fit_theta(problem.bits, problem.error, positive)
    by_family = _family_thetas(problem, positive)
    fitted = bool(np.isfinite(theta) and theta > 0)
    if not fitted:
        theta = PAPER_THETA  # no error-vs-bits trend in the table: fall back to the paper's value

    distance = problem.masked(np.abs(problem.bits - target_rates(problem, r_ref, theta, by_family)))
    a = np.lexsort((problem.masked(problem.error), distance), axis=-1)[:, 0]
    rounded = a.copy()
    if problem.violations(a):
        a = greedy.downgrade(problem, a)
    if a is None:
        msg = problem.infeasible_message() or "baq found no assignment within the budget"
        return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - started, "baq", msg)
    a = greedy.upgrade(problem, a)
    info = {"theta": theta, "theta_fitted": fitted, "theta_by_family": by_family, "reference_bits": r_ref,
            "layers_changed_by_fixup": int((a != rounded).sum())}
    return SolveResult("feasible", a, problem.objective(a), float("nan"), time.perf_counter() - started, "baq",
                       info=info)
