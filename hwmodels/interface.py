"""The cost interface every hardware family implements.

A family model gets a batch of L GEMM-like ops (`Ops`) and F formats and returns
a `CostTable` of [L, F] arrays for *one execution* of each op; the base class
multiplies by each op's expected execution count. Whole tables at once, as
arrays, so a search costs every (layer, format) pair in one call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from hwmodels.ops import Ops
from hwmodels.spec import HardwareSpec, Param
from hwmodels.workload import Workload

BOUND_NAMES = ("compute", "memory", "other")
COMPUTE, MEMORY, OTHER = 0, 1, 2


@dataclass
class CostTable:
    """Predicted cost of L ops x F formats.

    cycles: accelerator clock cycles (the family's own clock), including stalls.
    latency_s, energy_j: seconds and joules. bytes: off-chip bytes moved.
    bound: 0 compute, 1 memory, 2 other (launch/overhead) -- see BOUND_NAMES.
    supported: False where the hardware cannot run that format (costs are inf there).
    breakdown: named [L, F] arrays (e.g. compute_cycles, memory_cycles, dequant_cycles).
    """

    cycles: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    bytes: np.ndarray
    bound: np.ndarray
    supported: np.ndarray
    breakdown: dict = field(default_factory=dict)

    def scaled(self, factor: np.ndarray) -> "CostTable":
        """Costs of `factor[l]` executions of op l (bound and support unchanged)."""
        f = np.asarray(factor, dtype=np.float64)[:, None]
        return CostTable(self.cycles * f, self.latency_s * f, self.energy_j * f, self.bytes * f,
                         self.bound, self.supported,
                         {k: v * f for k, v in self.breakdown.items()})

    def take(self, columns) -> "CostTable":
        """The table restricted to the given format columns (in that order)."""
        c = np.asarray(columns, dtype=np.int64)
        return CostTable(self.cycles[:, c], self.latency_s[:, c], self.energy_j[:, c], self.bytes[:, c],
                         self.bound[:, c], self.supported[:, c], {k: v[:, c] for k, v in self.breakdown.items()})

    def row(self, l: int, f: int) -> dict:
        """One (op, format) cell as a JSON-friendly dict."""
        return {"cycles": float(self.cycles[l, f]), "latency_s": float(self.latency_s[l, f]),
                "energy_j": float(self.energy_j[l, f]), "bytes": float(self.bytes[l, f]),
                "bound": BOUND_NAMES[int(self.bound[l, f])],
                "breakdown": {k: float(v[l, f]) for k, v in self.breakdown.items()}}


class HardwareModel:
    """Base of every family model: holds the spec, costs ops x formats.

    Subclasses set `SCHEMA` (the spec params they read) and implement `_cost`,
    which returns per-execution costs; `supports` says which formats run at all.
    """

    SCHEMA: dict[str, Param] = {}
    #: what kind of model this is, shown in plans' provenance
    DESCRIPTION = "analytic"
    #: params that enter energy and power only, never latency (hwmodels.provenance reads them)
    ENERGY_PARAMS: tuple[str, ...] = ()

    def __init__(self, spec: HardwareSpec):
        from hwmodels import provenance

        self.spec = spec
        provenance.note(spec)  # open recordings learn which constants this computation uses

    @property
    def name(self) -> str:
        return self.spec.name

    def supports(self, fmt) -> bool:
        return True

    def cost(self, ops: Ops, formats: Sequence, workload: Workload) -> CostTable:
        """Cost of every op (times its expected count) in every format."""
        table = self._cost(ops, list(formats), workload)
        mask = np.array([self.supports(f) for f in formats], dtype=bool)[None, :]
        table = table.scaled(ops.count)
        table.supported = np.broadcast_to(mask, table.latency_s.shape) & table.supported
        for arr in (table.cycles, table.latency_s, table.energy_j, table.bytes):
            arr[~table.supported] = np.inf
        return table

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:  # pragma: no cover
        raise NotImplementedError

    @property
    def cost_model_id(self) -> str:
        return f"{self.spec.family}:{self.spec.name}"
