"""Differentiable search (LPGNAS-style): a softmax over allowed formats per layer.

Each layer holds logits over its formats (disallowed ones masked out); the loss is
the expected error plus lambda times the expected cost, both normalised (error by
the table's typical per-layer spread, each cost by its limit; several limits are
summed under one lambda, a penalty). Adam trains the logits while the softmax
temperature anneals geometrically from `t_start` to `t_end`, so the choice
hardens. lambda is found by bisection: the smallest one whose argmax meets every
limit. The argmax is then repaired (greedy downgrades while over) and filled
(greedy upgrades while room is left), so the result always fits. Seeded: the logits
start from small noise drawn from a local torch.Generator (no global state).
"""

from __future__ import annotations

TORCH_EXTRA = "nas"  # a missing torch here names the nas extra (quantcore.extras); set before torch is imported

import time

import numpy as np
import torch

from dse.solvers import greedy
from dse.solvers.result import SolveResult


def _train(err, cost, mask, lam: float, seed: int, steps: int, lr: float, t_start: float, t_end: float):
    gen = torch.Generator().manual_seed(seed)
    logits = (0.01 * torch.randn(err.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    target = err + lam * cost
    for step in range(steps):
        tau = t_start * (t_end / t_start) ** (step / max(steps - 1, 1))
        p = torch.softmax(torch.where(mask, logits / tau, -1e30), dim=1)
        loss = (p * target).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return torch.where(mask, logits, -torch.inf).argmax(dim=1).numpy()


def solve(problem, seed: int = 0, steps: int = 100, bisections: int = 10, lr: float = 0.1,
          t_start: float = 1.0, t_end: float = 0.05, progress=None) -> SolveResult:
    """:param seed: seed of the logits' initial noise (same seed, same result).
    :param steps: Adam steps per lambda tried.
    :param bisections: bisection steps on lambda after it has been bracketed.
    :param lr: Adam learning rate.
    :param t_start: first softmax temperature; :param t_end: last one.
    :param progress: called as `progress(trainings_done, note)` after each training (each lambda tried),
        so a caller can show that the search is alive (dse.search draws a tqdm bar).
    """
    started = time.perf_counter()
    seconds = lambda: time.perf_counter() - started  # noqa: E731
    cons = problem.constraints()
    message = problem.infeasible_message()
    if message:
        return SolveResult("infeasible", None, float("nan"), float("nan"), seconds(), "nas", message)
    L = problem.shape[0]
    err = problem.masked(problem.error)
    err = np.where(problem.mask, err - err.min(axis=1, keepdims=True), 0.0)
    spread = float(err.max(axis=1).mean()) or 1.0
    cost = sum(np.where(problem.mask, c.coef, 0.0) / max(abs(c.rhs), 1e-300) for c in cons) if cons else 0 * err
    mask_t = torch.from_numpy(problem.mask)
    err_t = torch.from_numpy(err / spread / L)
    cost_t = torch.from_numpy(np.asarray(cost, dtype=np.float64))
    tried = []

    def run(lam: float):
        a = _train(err_t, cost_t, mask_t, lam, seed, steps, lr, t_start, t_end)
        if progress is not None:
            progress(len(tried) + 1, f"lambda {lam:.3g}")
        return a

    lo, hi = 0.0, 1.0
    a = run(0.0)
    tried.append(a)
    if cons and problem.violations(a):
        for _ in range(40):  # bracket: a lambda whose argmax fits
            a = run(hi)
            tried.append(a)
            if not problem.violations(a):
                break
            lo, hi = hi, hi * 4.0
        for _ in range(bisections):
            mid = 0.5 * (lo + hi)
            a = run(mid)
            tried.append(a)
            if problem.violations(a):
                lo = mid
            else:
                hi = mid
    fits = [t for t in tried if not problem.violations(t)]
    if fits:
        a = min(fits, key=problem.objective)
        repaired = False
    else:
        a = greedy.downgrade(problem, tried[-1])
        repaired = True
        if a is None:
            return SolveResult("infeasible", None, float("nan"), float("nan"), seconds(), "nas",
                               "nas found no assignment within every limit at once: try --method ilp, which is exact")
    argmax = a.copy()
    a = greedy.upgrade(problem, a)
    info = {"lambda": hi if cons else 0.0, "lambdas_tried": len(tried), "repaired": repaired,
            "layers_changed_by_fill": int((a != argmax).sum()), "seed": seed}
    return SolveResult("feasible", a, problem.objective(a), float("nan"), seconds(), "nas", info=info)
