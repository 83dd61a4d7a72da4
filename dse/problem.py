"""The allocation problem as dense arrays: choose one format per layer.

minimise    sum_l error[l, f_l]
subject to  sum_l coef_c[l, f_l] <= rhs_c   for every constraint c
            f_l allowed by mask[l]

Constraints are linear in the one-hot choice, so every solver (ILP, Lagrangian,
greedy, ...) reads the same `constraints()` list. Costs that no choice changes
(embeddings, attention, norms) are `fixed_*` and are taken off the right-hand side.

A row need not be a weight: a KV-cache tensor (``<attention>.k_cache``) is a row with no
parameters (it adds nothing to the average bits) whose `item_memory` is the cache's bytes in
each format, and whose latency is the attention matmul that reads it (dse.kvcache).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dse.budget import SHOWN_UNITS
from quantcore.errors import QuantDSEError

#: constraint kinds and their units
CONSTRAINT_UNITS = {"bits": "bits", "memory": "bytes", "latency": "s", "energy": "J", "ttft": "s", "tpot": "s"}


@dataclass(frozen=True)
class Constraint:
    """sum_l coef[l, f_l] <= rhs (already net of fixed costs)."""

    kind: str
    coef: np.ndarray
    rhs: float
    limit: float  # the user's limit, in CONSTRAINT_UNITS[kind]


@dataclass
class Problem:
    """Errors and costs of L layers x F formats, with limits.

    bits: effective bits per weight of each (layer, format); memory: bytes of the
    layer's weights in that format; latency_s / energy_j: predicted cost.
    limits: {"bits": average effective bits, "memory": bytes, "latency": s, "energy": J};
    memory, latency and energy limits are totals including the fixed parts.
    """

    layer_names: list
    format_names: list
    error: np.ndarray
    params: np.ndarray
    bits: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    mask: np.ndarray
    limits: dict = field(default_factory=dict)
    fixed_memory: float = 0.0
    fixed_latency_s: float = 0.0
    fixed_energy_j: float = 0.0
    sources: dict = field(default_factory=dict)  # where a limit came from when not the user: {"memory": "device"}
    item_memory: np.ndarray | None = None  # [L, F] bytes a row holds besides its weights (a KV cache); None: 0
    serving: dict = field(default_factory=dict)  # "ttft" / "tpot" -> (seconds [L, F], fixed seconds) of a request

    def __post_init__(self):
        L, F = len(self.layer_names), len(self.format_names)
        for name in ("error", "bits", "latency_s", "energy_j", "mask"):
            arr = getattr(self, name)
            if arr.shape != (L, F):
                raise ValueError(f"Problem.{name} has shape {arr.shape}, expected {(L, F)}")
        unknown = set(self.limits) - set(CONSTRAINT_UNITS)
        if unknown:
            raise QuantDSEError(f"unknown constraint {sorted(unknown)}: use {', '.join(CONSTRAINT_UNITS)}")
        self.params = np.asarray(self.params, dtype=np.float64)
        if self.item_memory is not None and self.item_memory.shape != (L, F):
            raise ValueError(f"Problem.item_memory has shape {self.item_memory.shape}, expected {(L, F)}")
        finite = np.isfinite(self.error) & np.isfinite(self.bits)
        for kind in self.limits:
            finite &= np.isfinite(self.coef(kind))
        self.mask = self.mask & finite
        empty = ~self.mask.any(axis=1)
        if empty.any():
            first = self.layer_names[int(np.argmax(empty))]
            raise QuantDSEError(f"layer {first} has no allowed format (none in the candidate list is supported "
                                f"for it on this hardware): widen --formats")

    @property
    def shape(self) -> tuple[int, int]:
        return self.error.shape

    @property
    def memory(self) -> np.ndarray:
        """Bytes of each row in each format: a layer's weights, a KV item's cache."""
        weights = self.params[:, None] * self.bits / 8.0
        return weights if self.item_memory is None else weights + self.item_memory

    def coef(self, kind: str) -> np.ndarray:
        if kind == "bits":
            return self.params[:, None] * self.bits
        if kind == "memory":
            return self.memory
        if kind == "latency":
            return self.latency_s
        if kind == "energy":
            return self.energy_j
        return self.serving[kind][0]

    def _fixed(self, kind: str) -> float:
        if kind in self.serving:
            return float(self.serving[kind][1])
        return {"memory": self.fixed_memory, "latency": self.fixed_latency_s, "energy": self.fixed_energy_j}[kind]

    def rhs(self, kind: str) -> float:
        limit = float(self.limits[kind])
        if kind == "bits":
            return limit * float(self.params.sum())
        return limit - self._fixed(kind)

    def constraints(self) -> list[Constraint]:
        return [Constraint(kind, self.coef(kind), self.rhs(kind), float(self.limits[kind]))
                for kind in self.limits]

    def masked(self, arr: np.ndarray, fill: float = np.inf) -> np.ndarray:
        return np.where(self.mask, arr, fill)

    def smallest_limit(self, kind: str) -> float:
        """The tightest limit of this kind any assignment can meet (each layer at its cheapest format)."""
        low = self.masked(self.coef(kind)).min(axis=1).sum()
        if kind == "bits":
            return float(low / self.params.sum())
        return float(low + self._fixed(kind))

    def totals(self, assignment: np.ndarray) -> dict:
        """Totals of an assignment (one format index per layer), fixed parts included."""
        rows = np.arange(len(assignment))
        pick = lambda a: a[rows, assignment]  # noqa: E731
        return {
            "effective_bits": float((self.params * pick(self.bits)).sum() / self.params.sum()),
            "memory_bytes": float(pick(self.memory).sum() + self.fixed_memory),
            "latency_s": float(pick(self.latency_s).sum() + self.fixed_latency_s),
            "energy_j": float(pick(self.energy_j).sum() + self.fixed_energy_j),
            "error": float(pick(self.error).sum()),
        }

    def violations(self, assignment: np.ndarray, rtol: float = 1e-9) -> list[str]:
        """Constraints the assignment breaks (empty when feasible)."""
        rows = np.arange(len(assignment))
        out = []
        if not self.mask[rows, assignment].all():
            out.append("disallowed format")
        for c in self.constraints():
            used = float(c.coef[rows, assignment].sum())
            if used > c.rhs + rtol * max(abs(c.rhs), 1.0):
                out.append(f"{c.kind}: {used:.6g} > {c.rhs:.6g}")
        return out

    def objective(self, assignment: np.ndarray) -> float:
        return float(self.error[np.arange(len(assignment)), assignment].sum())

    def infeasible_message(self, hint=None) -> str | None:
        """A one-line message naming each limit below its smallest feasible value, or None.

        hint: a function of the infeasible kinds returning how to fix it (default: raise
        the budget or allow lower-bit formats).
        """
        parts, kinds = [], []
        for kind, limit in self.limits.items():
            least = self.smallest_limit(kind)
            if limit < least * (1 - 1e-12):
                unit, factor = SHOWN_UNITS[kind].unit, SHOWN_UNITS[kind].factor
                shown_limit, shown_least = _distinct(limit * factor, least * factor)
                parts.append(f"{kind} limit {shown_limit}{unit} is below the smallest feasible {shown_least}{unit}")
                kinds.append(kind)
        if not parts:
            return None
        return "; ".join(parts) + ": " + (hint(kinds) if hint else "raise the budget or allow lower-bit --formats")


def _distinct(a: float, b: float) -> tuple[str, str]:
    """a and b with 4 decimals, or as many more as it takes to tell them apart."""
    for digits in range(4, 16):
        x, y = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if x != y:
            return x, y
    return f"{a:.17g}", f"{b:.17g}"


def tie(problem: Problem, groups: list) -> tuple[Problem, np.ndarray]:
    """(a Problem with each group of rows merged into one decision, rows: original row -> merged row).

    Layers a runtime fuses into one module take one format: merging them into one row (errors,
    costs and parameters summed; bits weighted by parameters; a format allowed only where it is
    allowed for every member) lets every solver run unchanged. `merged_assignment[rows]` is the
    assignment of the original problem.
    """
    L = len(problem.layer_names)
    rows = np.arange(L)
    if not groups:
        return problem, rows
    leader = np.arange(L)
    for group in groups:
        leader[list(group)] = min(group)
    keep = np.flatnonzero(leader == np.arange(L))
    index = np.full(L, -1)
    index[keep] = np.arange(len(keep))
    rows = index[leader]
    M, F = len(keep), len(problem.format_names)

    def add(arr):
        out = np.zeros((M, F))
        np.add.at(out, rows, arr)
        return out

    params = np.zeros(M)
    np.add.at(params, rows, problem.params)
    bit_weight = add(problem.params[:, None] * problem.bits)
    mask = np.ones((M, F), dtype=bool)
    np.logical_and.at(mask, rows, problem.mask)
    names = [" + ".join(problem.layer_names[i] for i in np.flatnonzero(rows == r)) for r in range(M)]
    merged = Problem(layer_names=names, format_names=list(problem.format_names), error=add(problem.error),
                     params=params, bits=bit_weight / np.where(params > 0, params, 1.0)[:, None],
                     latency_s=add(problem.latency_s), energy_j=add(problem.energy_j), mask=mask,
                     limits=dict(problem.limits), fixed_memory=problem.fixed_memory,
                     fixed_latency_s=problem.fixed_latency_s, fixed_energy_j=problem.fixed_energy_j,
                     sources=dict(problem.sources),
                     item_memory=None if problem.item_memory is None else add(problem.item_memory),
                     serving={k: (add(coef), fixed) for k, (coef, fixed) in problem.serving.items()})
    return merged, rows
