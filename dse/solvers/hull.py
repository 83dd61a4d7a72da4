"""Lower convex hull of each layer's (cost, error) points, for all layers at once.

The LP relaxation of the multiple-choice knapsack only ever uses hull vertices
(Sinha & Zoltners 1979): walking a layer's hull from its cheapest point, each
step ("segment") buys an error decrease for a cost increase, with decreasing
slope. Sorting all segments by slope gives the LP optimum (Dantzig's greedy) and
HAWQ-style greedy upgrades in one pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def lower_hull(cost: np.ndarray, error: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [L, F] format indices, padded with the last vertex; count [L]).

    Gift wrapping, vectorised over layers: from the current vertex the next one is
    the allowed point of higher cost and lower error with the steepest error
    decrease per cost; ties go to the nearest point so collinear points are kept.
    """
    L, F = cost.shape
    rows = np.arange(L)
    c = np.where(mask, cost, np.inf)
    e = np.where(mask, error, np.inf)
    cmin = c.min(axis=1, keepdims=True)
    cur = np.where(c == cmin, e, np.inf).argmin(axis=1)  # cheapest, then lowest error
    vertices = np.empty((L, F), dtype=np.int64)
    vertices[:, 0] = cur
    count = np.ones(L, dtype=np.int64)
    for k in range(1, F):
        cc, ec = c[rows, cur][:, None], e[rows, cur][:, None]
        cand = mask & (c > cc) & (e < ec)
        has = cand.any(axis=1)
        if not has.any():
            vertices[:, k:] = cur[:, None]
            break
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(cand, (ec - e) / (c - cc), -np.inf)
        best = slope.max(axis=1, keepdims=True)
        nxt = np.where(cand & (slope == best), c, np.inf).argmin(axis=1)
        cur = np.where(has, nxt, cur)
        count += has
        vertices[:, k] = cur
    return vertices, count


@dataclass(frozen=True)
class Segments:
    """Hull steps of all layers: step k of `layer` goes from vertex k to k+1."""

    layer: np.ndarray
    step: np.ndarray
    dcost: np.ndarray
    derr: np.ndarray

    @property
    def slope(self) -> np.ndarray:
        return self.derr / self.dcost

    def order(self) -> np.ndarray:
        """Steepest first; within a layer in hull order (its slopes never increase)."""
        return np.lexsort((self.step, -self.slope))


def segments(cost: np.ndarray, error: np.ndarray, vertices: np.ndarray, count: np.ndarray) -> Segments:
    layer, step = np.nonzero(np.arange(vertices.shape[1] - 1)[None, :] < (count - 1)[:, None])
    a, b = vertices[layer, step], vertices[layer, step + 1]
    return Segments(layer, step, cost[layer, b] - cost[layer, a], error[layer, a] - error[layer, b])


def lp_relaxation(cost: np.ndarray, error: np.ndarray, mask: np.ndarray, rhs: float) -> tuple[np.ndarray, float, int, int]:
    """The LP relaxation of one budget: hull steps, steepest first, while they fit (Dantzig's greedy).

    Returns (the steps taken as whole-format choices [L], the multiplier lambda: the slope of the
    first step that does not fit, 0 when all fit; steps taken; hull steps in all).
    """
    L = cost.shape[0]
    rows = np.arange(L)
    vertices, count = lower_hull(cost, error, mask)
    seg = segments(cost, error, vertices, count)
    order = seg.order()
    spent = np.cumsum(seg.dcost[order])
    residual = rhs - float(cost[rows, vertices[:, 0]].sum())
    k = int(np.searchsorted(spent, residual, side="right"))
    taken = np.bincount(seg.layer[order[:k]], minlength=L)
    lam = float(seg.slope[order[k]]) if k < len(order) else 0.0
    return vertices[rows, taken], lam, k, len(order)
