"""One allocation problem made ready for the agent: normalised tables, hulls, the budget-safe projection.

The agent never sees raw errors or costs. Errors are divided by E, the sum over layers
of each layer's error range; every constraint's coefficients by its own range R_k (the
most it can cost minus the least, summed over layers), and summed into one normalised
cost c[l, f] = sum_k coef_k[l, f] / R_k over the limits that bind (those the least-error
plan breaks; all of them if none does). In these units the aggregate error-vs-cost
curve of any model runs over about [0, 1] x [0, 1], so one price scale fits all.

Prices: a number a in [0, 1] stands for the price mu = 10**(MU_HI - (MU_HI - MU_LO) * a)
on cost; at price mu a layer would take the format minimising e[l, f] + mu * c[l, f].
The candidates a layer can take are the points of its lower convex hull of (cost,
error), ordered by cost (so by effective bits for a bits budget), whatever the number
of candidate formats; dominated formats are never taken. `policies.env` maps the
agent's action to a hull point.

Budget-safe projection: a fallback assignment that meets every limit (each layer's
cheapest format; repaired by greedy downgrades when several limits pull apart) is
reserved for the layers still to come. A format is allowed for the current layer only
if the spend so far, plus it, plus the fallback of every later layer fits every limit.
The fallback itself always passes, so no episode can end over budget.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.solvers import greedy

MU_LO, MU_HI = -4.0, 4.0  # log10 of the price range the action spans
#: role groups of the structural one-hot features; everything else is "other" (all zeros)
ROLE_GROUPS = {
    "attn_in": {"q", "k", "v", "qkv", "q_a", "q_b", "kv_a", "kv_b", "query", "key", "value"},
    "attn_out": {"o", "dense", "out_proj"},
    "mlp_in": {"gate", "up", "fc1", "gate_up", "w1", "w3"},
    "mlp_out": {"down", "fc2", "w2"},
}
ROLE_INDEX = {role: i for i, group in enumerate(ROLE_GROUPS.values()) for role in group}  # role -> group


def suffix_sums(x: np.ndarray) -> np.ndarray:
    """out[..., l] = x[..., l:].sum(-1), with one more column 0 at the end (what layers l.. add up to)."""
    x = np.asarray(x, dtype=np.float64)
    tail = np.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
    return np.concatenate([tail, np.zeros(x.shape[:-1] + (1,))], axis=-1)


def action_for_price(mu: float) -> float:
    return float(np.clip((MU_HI - np.log10(mu)) / (MU_HI - MU_LO), 0.0, 1.0))


@dataclass(frozen=True)
class LayerInfo:
    """What the agent knows about a layer beyond its row of the tables."""

    role: str = ""
    k: int = 0  # fan-in (0: unknown)
    n: int = 0  # fan-out
    kurtosis: float = float("nan")  # excess kurtosis of the weights, NaN without weights


def layer_infos(layers, weights=None) -> list[LayerInfo]:
    """LayerInfo from quantcore Layer objects (and their weights, when the model has them)."""
    out = []
    for layer in layers:
        kurt = float("nan")
        if weights is not None:
            w = np.asarray(weights.get(layer.name), dtype=np.float64).ravel()
            var = float(w.var())
            if var > 0:
                kurt = float(np.mean((w - w.mean()) ** 4) / var ** 2 - 3.0)
        out.append(LayerInfo(role=layer.role or "", k=int(layer.k), n=int(layer.n), kurtosis=kurt))
    return out


def lower_hull(cost: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(format indices on the lower convex hull of (cost, error), cheapest first; the slopes between them).

    A slope is the error saved per unit of cost on that segment; they decrease along the hull.
    """
    ok = np.nonzero(np.isfinite(cost) & np.isfinite(err))[0]
    order = ok[np.lexsort((err[ok], cost[ok]))]
    pts = [(cost[order[0]], err[order[0]], order[0])]
    for idx in order[1:]:
        ci, ei = cost[idx], err[idx]
        if ei >= pts[-1][1]:
            continue  # costs at least as much, no less error: never on the hull
        while len(pts) >= 2:
            (c0, e0, _), (c1, e1, _) = pts[-2], pts[-1]
            if (e0 - e1) * (ci - c1) <= (e1 - ei) * (c1 - c0):  # pts[-1] lies on or above the chord
                pts.pop()
            else:
                break
        pts.append((ci, ei, idx))
    slopes = np.array([(pts[i][1] - pts[i + 1][1]) / max(pts[i + 1][0] - pts[i][0], 1e-300)
                       for i in range(len(pts) - 1)])
    return np.array([p[2] for p in pts], dtype=np.int64), slopes


def fallback_assignment(problem) -> np.ndarray | None:
    """Each layer's cheapest format, repaired by greedy downgrades if it breaks a limit; None if infeasible."""
    a = greedy.cheapest(problem)
    if problem.violations(a):
        a = greedy.downgrade(problem, a)
    return a


class Episode:
    """A Problem plus everything the env precomputes for it once."""

    def __init__(self, problem, infos: list[LayerInfo] | None = None, reference: float | None = None):
        self.problem = problem
        L, F = problem.shape
        self.L, self.F = L, F
        self.infos = infos if infos is not None else [LayerInfo() for _ in range(L)]
        mask = problem.mask
        cons = problem.constraints()
        self.coefs = [np.where(mask, c.coef, 0.0) for c in cons]
        self.rhs = np.array([c.rhs for c in cons])
        err = problem.masked(problem.error)
        err_lo = err.min(axis=1)
        err_hi = np.where(mask, problem.error, -np.inf).max(axis=1)
        self.err_range = err_hi - err_lo
        self.E = max(float(self.err_range.sum()), 1e-300)
        self.e = err / self.E
        ranges = []
        for c in cons:
            cc = problem.masked(c.coef)
            ranges.append(max(float((np.where(mask, c.coef, -np.inf).max(1) - cc.min(1)).sum()), 1e-300))
        self.R = np.array(ranges)
        # limits that bind (the least-error plan breaks them) set the cost; loose ones would only blur it
        best = np.argmin(err, axis=1)
        binding = [float(c.coef[np.arange(L), best].sum()) > c.rhs for c in cons]
        if not any(binding):
            binding = [True] * len(cons)
        cost = sum(np.where(mask, c.coef, 0.0) / r for c, r, b in zip(cons, ranges, binding) if b) \
            if cons else np.zeros((L, F))
        self.c = np.where(mask, cost, np.inf)
        self.c0 = np.where(mask, cost, 0.0)
        self.cost_range = np.where(mask, cost, -np.inf).max(1) - self.c.min(1)
        fb = fallback_assignment(problem)
        self.fallback = fb
        rows = np.arange(L)
        if fb is not None:
            per_layer = np.array([coef[rows, fb] for coef in self.coefs]).reshape(len(cons), L)
            # reserve[k, l] = what layers l.. need at the fallback, for constraint k
            self.reserve = suffix_sums(per_layer)
            most = np.array([np.where(mask, coef, -np.inf).max(1) for coef in self.coefs]).reshape(len(cons), L)
            self.most = suffix_sums(most)
        # cost-share of each layer's hull segments, and their slopes (log10 price at which the layer moves)
        self.first_slope = np.zeros(L)
        self.last_slope = np.zeros(L)
        self.hull_points = np.ones(L)
        seg_slopes, seg_weights = [], []
        self.hull = []
        seg = ([], [], [])  # layer, slope, hull step (from, to)
        for i in range(L):
            idx, s = lower_hull(self.c[i], self.e[i])
            self.hull.append(idx)
            seg[0].extend([i] * len(s))
            seg[1].extend(s)
            seg[2].extend(zip(idx[:-1], idx[1:]))
            self.hull_points[i] = len(s) + 1
            if len(s):
                ls = np.log10(np.maximum(s, 1e-12))
                self.first_slope[i], self.last_slope[i] = ls[0], ls[-1]
                seg_slopes.append(ls)
                seg_weights.append(np.full(len(s), self.cost_range[i] / max(len(s), 1)))
        # every hull segment, steepest first, with what it adds to each limit (for balance_price)
        order = np.argsort(-np.array(seg[1]), kind="stable")
        self.seg_layer = np.array(seg[0], dtype=np.int64)[order]
        self.seg_slope = np.array(seg[1], dtype=np.float64)[order]
        steps = np.array(seg[2], dtype=np.int64).reshape(-1, 2)[order]
        self.seg_dcoef = np.array([coef[self.seg_layer, steps[:, 1]] - coef[self.seg_layer, steps[:, 0]]
                                   for coef in self.coefs]).reshape(len(self.coefs), len(order))
        first = np.array([h[0] for h in self.hull], dtype=np.int64)
        base = np.array([coef[rows, first] for coef in self.coefs]).reshape(len(self.coefs), L)
        self.base = suffix_sums(base)
        if seg_slopes:
            s, w = np.concatenate(seg_slopes), np.concatenate(seg_weights)
            order = np.argsort(s)
            cw = np.cumsum(w[order]) / max(w.sum(), 1e-300)
            self.slope_quantiles = np.array([s[order][min(np.searchsorted(cw, q), len(s) - 1)]
                                             for q in (0.25, 0.5, 0.75)])
        else:
            self.slope_quantiles = np.zeros(3)
        self.reference = reference if reference is not None else self._reference()

    def _reference(self) -> float:
        """Error scale of the reward: the greedy plan's total error (a normalisation, nothing more)."""
        res = greedy.solve(self.problem)
        obj = res.objective if res.success else float(np.nansum(self.problem.masked(self.problem.error, np.nan).min(1)))
        return max(float(obj), 1e-12 * self.E, 1e-300)

    @property
    def feasible(self) -> bool:
        return self.fallback is not None

    def allowed(self, l: int, used: np.ndarray) -> np.ndarray:
        """Formats layer l may take so that the fallback of layers l+1.. still fits every limit."""
        ok = self.problem.mask[l].copy()
        for k, coef in enumerate(self.coefs):
            room = self.rhs[k] - used[k] - self.reserve[k, l + 1]
            ok &= coef[l] <= room + 1e-12 * max(abs(self.rhs[k]), 1.0)
        ok[self.fallback[l]] = True  # always fits by the invariant (guards float round-off)
        return ok

    def hull_position(self, l: int, mu: float) -> int:
        """Index, on layer l's hull, of the point it takes at price mu (limits ignored)."""
        h = self.hull[l]
        return int(np.argmin(self.e[l, h] + mu * self.c[l, h]))

    def project(self, l: int, target: int, used: np.ndarray) -> int:
        """The budget-safe projection: the least-error allowed format costing no more than `target`."""
        ok = self.allowed(l, used) & (self.c[l] <= self.c[l, target] * (1 + 1e-12) + 1e-300)
        if not ok.any():
            return int(self.fallback[l])
        err = np.where(ok, self.e[l], np.inf)
        tie = ok & (err <= err.min())
        return int(np.argmin(np.where(tie, self.c[l], np.inf)))

    def choices_at(self, mu: float, start: int) -> np.ndarray:
        """Unconstrained price choices of layers start.. (what the rest would take at price mu)."""
        score = self.e[start:] + mu * self.c0[start:]  # c0: 0 where masked (e is inf there), so mu = 0 is safe
        return np.argmin(score, axis=1)

    def slack(self, l: int, used: np.ndarray) -> float:
        """Fraction of the headroom above the fallback still left for layers l.. (min over limits), in [0, 1]."""
        if not len(self.rhs):
            return 1.0
        room = self.rhs - used - self.reserve[:, l]
        span = np.maximum(self.most[:, l] - self.reserve[:, l], 1e-12 * np.maximum(np.abs(self.rhs), 1.0))
        return float(np.clip((room / span).min(), 0.0, 1.0))

    def balance_price(self, l: int, used: np.ndarray) -> float:
        """The lowest price at which layers l.., priced alike, would fit the room left (exact).

        At price mu a layer climbs every hull segment steeper than mu, so the spend is a
        step function of mu: walk all segments of layers l.. from the steepest down and
        stop at the first that would break a limit; the balance price is its slope (nudged
        up so that a whole group of equal slopes stays out). 0 when everything fits;
        10**MU_HI when even the cheapest hull points do not.
        A forecast, not a decision: the projection still guards every step.
        """
        if l >= self.L or not len(self.rhs):
            return 0.0
        room = self.rhs - used - self.base[:, l]
        if (room < -1e-12 * np.maximum(np.abs(self.rhs), 1.0)).any():
            return 10.0 ** MU_HI
        live = self.seg_layer >= l
        cum = np.cumsum(np.where(live, self.seg_dcoef, 0.0), axis=1)
        bad = (cum > room[:, None] + 1e-12 * np.maximum(np.abs(self.rhs), 1.0)[:, None]).any(axis=0)
        if not bad.any():
            return 0.0
        return float(self.seg_slope[int(np.argmax(bad))]) * (1.0 + 1e-9)
