"""`--method rl`: a deterministic rollout of a shipped SAC policy, then an optional local-search polish.

Rollout: the env of `policies.env` walks the layers; the actor's mean action (no
sampling) picks each format through the budget-safe projection, so the raw plan is
always within every limit.

Polish (on by default; `--set polish=false` turns it off, `--set polish_seconds=S`
bounds it): (1) greedy upgrades (dse.solvers.greedy) spend any room the rollout left;
(2) pair exchanges: one layer moves to a costlier format and another to a cheaper one;
the pair with the largest net error decrease that fits every limit is applied, until
none improves or the time is up (with one limit every pair of moves is searched, in
O(M log M) for M moves; with several, each layer's best upgrade per unit of normalised
cost is paired with each layer's best downgrade per cost saved); (3) greedy upgrades again. Every step keeps the
plan feasible and never raises the total error, so polished <= raw.
"""
from __future__ import annotations

import time

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels.spec import Param
from dse.solvers import greedy
from dse.solvers.result import SolveResult
from policies.env import Rollout
from policies.episode import Episode, layer_infos
from policies.policy import load_policy


#: the longest polish one plan may ask for (`--set polish_seconds=S`)
MAX_POLISH_SECONDS = 3600.0
POLISH_FLAG = Param(bool, "run the local-search polish")  # parses --set polish=true|false like any --set flag
ROLLOUT_DEAD_ZONE = 0.4  # the deterministic rollout leaves the forecast only where |action - 0.5| > this


def rollout(policy, episode: Episode) -> np.ndarray:
    """The policy's deterministic assignment for one episode.

    A confidence gate on top of the env's own dead zone (0.3-0.7, which SAC's sampled
    actions need): the mean action moves off the forecast only below 0.1 or above 0.9,
    i.e. where the actor is near its full deviation target (0.1 / 0.9 in pretraining).
    """
    r = Rollout(episode)
    while not r.done:
        a = policy.act(policy.scaler(r.features()))
        r.step(a if abs(a - 0.5) > ROLLOUT_DEAD_ZONE else 0.5)
    return r.assignment


def _best_moves(ep: Episode, a: np.ndarray):
    """Per layer: best upgrade (target, d_err, d_coef[k]) and best downgrade, in normalised cost units."""
    rows = np.arange(ep.L)
    de = ep.problem.masked(ep.problem.error) - ep.problem.error[rows, a][:, None]
    dc = ep.c - ep.c[rows, a][:, None]
    dk = [coef - coef[rows, a][:, None] for coef in ep.coefs]
    ok = ep.problem.mask.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        up_score = np.where(ok & (de < 0), -de / np.maximum(dc, 1e-300), -np.inf)
        no_rise = np.all([d <= 0 for d in dk], axis=0) if dk else np.ones_like(ok)
        down_score = np.where(ok & (dc < 0) & no_rise, de / -dc, np.inf)
    up = up_score.argmax(1)
    down = down_score.argmin(1)
    has_up = np.isfinite(up_score[rows, up]) & (up_score[rows, up] > -np.inf)
    has_down = np.isfinite(down_score[rows, down])
    return (up, de[rows, up], np.array([d[rows, up] for d in dk]), has_up,
            down, de[rows, down], np.array([d[rows, down] for d in dk]), has_down)


def _best_pair_one_limit(ep: Episode, a: np.ndarray):
    """With one limit, the best pair over every (layer, format) move: ((i, f), (j, g), gain) or None.

    Downgrades sorted by their cost change; for each upgrade the feasible partners are a
    prefix of that order, whose least error increase is a running minimum.
    """
    rows = np.arange(ep.L)
    coef = ep.coefs[0]
    room = ep.rhs[0] - float(coef[rows, a].sum())
    de = ep.problem.masked(ep.problem.error) - ep.problem.error[rows, a][:, None]
    dk = coef - coef[rows, a][:, None]
    ok = ep.problem.mask
    ui, uf = np.nonzero(ok & (de < 0) & (dk > 0))
    di, dg = np.nonzero(ok & (dk < 0))
    if not len(ui) or not len(di):
        return None
    order = np.argsort(dk[di, dg], kind="stable")
    di, dg = di[order], dg[order]
    dk_d, de_d = dk[di, dg], de[di, dg]
    run = np.minimum.accumulate(de_d)
    arg = np.maximum.accumulate(np.where(de_d == run, np.arange(len(de_d)), 0))
    tol = 1e-12 * max(abs(ep.rhs[0]), 1.0)
    n = np.searchsorted(dk_d, room - dk[ui, uf] + tol, side="right")
    has = n > 0
    best_d = arg[np.maximum(n - 1, 0)]
    gain = np.where(has & (di[best_d] != ui), -(de[ui, uf] + de_d[best_d]), -np.inf)
    u = int(np.argmax(gain))
    if not gain[u] > 0:
        return None
    d = best_d[u]
    return (ui[u], uf[u]), (di[d], dg[d]), float(gain[u])


def exchange(ep: Episode, a: np.ndarray, deadline: float) -> np.ndarray:
    """Pair exchanges (one layer up, another down) while one lowers the total error and fits."""
    a = a.copy()
    if len(ep.coefs) == 1:
        while time.perf_counter() < deadline:
            pair = _best_pair_one_limit(ep, a)
            if pair is None or pair[2] <= 1e-12 * ep.problem.objective(a):
                break
            (i, f), (j, g), _ = pair
            a[i], a[j] = f, g
        return a
    rows = np.arange(ep.L)
    while time.perf_counter() < deadline:
        used = np.array([float(coef[rows, a].sum()) for coef in ep.coefs])
        up, de_up, dk_up, has_up, down, de_down, dk_down, has_down = _best_moves(ep, a)
        iu, jd = np.nonzero(has_up)[0], np.nonzero(has_down)[0]
        if not len(iu) or not len(jd):
            break
        gain = -(de_up[iu][:, None] + de_down[jd][None, :])
        fit = iu[:, None] != jd[None, :]
        for k in range(len(ep.coefs)):
            tol = 1e-12 * max(abs(ep.rhs[k]), 1.0)
            fit &= used[k] + dk_up[k, iu][:, None] + dk_down[k, jd][None, :] <= ep.rhs[k] + tol
        gain = np.where(fit, gain, -np.inf)
        best = np.unravel_index(np.argmax(gain), gain.shape)
        if not gain[best] > 1e-12 * max(ep.reference, 1e-300):
            break
        i, j = iu[best[0]], jd[best[1]]
        a[i], a[j] = up[i], down[j]
    return a


def polish(ep: Episode, a: np.ndarray, seconds: float = 2.0) -> np.ndarray:
    """Greedy upgrades, pair exchanges, greedy upgrades (module docstring); never worse, always feasible."""
    deadline = time.perf_counter() + seconds
    p = ep.problem
    b = greedy.upgrade(p, a, max(deadline - time.perf_counter(), 0.0))
    b = exchange(ep, b, deadline)
    b = greedy.upgrade(p, b, max(deadline - time.perf_counter(), 0.01))
    return b if p.objective(b) <= p.objective(a) and not p.violations(b) else a


def solve(problem, policy=None, polish_plan=True, polish_seconds: float = 2.0, layers=None, weights=None,
          **options) -> SolveResult:
    """:param policy: a Policy, a path or a zoo name (default: policies/zoo/ramp-sac).
    :param polish_plan: run the local-search polish (also read from the option ``polish``).
    :param polish_seconds: time bound of the polish.
    :param layers: quantcore Layer objects of the problem's rows (structural features);
        :param weights: their weight source (weight-statistics features), both optional.
    Options of other methods (seed, ...) are accepted and ignored: the rollout is deterministic.
    """
    started = time.perf_counter()
    if "polish" in options:
        value = options["polish"]
        polish_plan = POLISH_FLAG.parse_text("polish", value) if isinstance(value, str) else bool(value)
    try:
        polish_seconds = float(polish_seconds)
    except (TypeError, ValueError):
        polish_seconds = float("nan")
    if not 0 <= polish_seconds <= MAX_POLISH_SECONDS:
        raise QuantDSEError(f"polish_seconds={polish_seconds}: use a number of seconds in [0, {MAX_POLISH_SECONDS}]")
    pol = policy if hasattr(policy, "act") else load_policy(policy)
    message = problem.infeasible_message()
    ep = Episode(problem, layer_infos(layers, weights) if layers is not None else None, reference=1.0)
    if message or not ep.feasible:
        return SolveResult("infeasible", None, float("nan"), float("nan"), time.perf_counter() - started, "rl",
                           message or "no assignment meets every limit at once: try --method ilp")
    raw = rollout(pol, ep)
    raw_seconds = time.perf_counter() - started
    final = polish(ep, raw, float(polish_seconds)) if polish_plan else raw
    training = pol.meta.get("training") if isinstance(pol.meta.get("training"), dict) else {}
    info = {"policy": pol.name, "policy_hash": pol.hash, "raw_objective": problem.objective(raw),
            "polished_objective": problem.objective(final) if polish_plan else None,
            "polish": bool(polish_plan), "rollout_seconds": round(raw_seconds, 6),
            "training_seed": training.get("seed"), "training_timesteps": training.get("timesteps"),
            "raw_assignment": raw}
    return SolveResult("feasible", final, problem.objective(final), float("nan"), time.perf_counter() - started,
                       "rl", f"SAC policy {pol.name}" + (", polished" if polish_plan else ", raw rollout"),
                       info={k: v for k, v in info.items() if v is not None})
