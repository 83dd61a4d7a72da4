"""Energy-per-action tables (Accelergy ERT style) and technology-node scaling.

Tables are TOML data files next to this module: primitive actions with their energy and
source, compound MACs as sums of primitives, SRAM access energy by capacity. Energies are
quoted at the table's node; `EnergyTable.at(tech_nm, vdd_v)` scales them the way
Accelergy's hwcomponents does (Stillmaker & Baas polynomials, tech_scaling.toml).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantcore.errors import QuantDSEError

TABLE_DIR = Path(__file__).parent


def table_names() -> list[str]:
    return sorted(p.stem for p in TABLE_DIR.glob("*.toml") if p.stem != "tech_scaling")


@functools.lru_cache(maxsize=None)
def _read(name: str) -> dict:
    path = TABLE_DIR / f"{name}.toml"
    if not path.is_file():
        raise QuantDSEError(f"unknown energy table {name!r}: use one of {', '.join(table_names())}")
    from quantcore.io import load_toml

    return load_toml(path, "energy table")


def _node_poly(tech_nm: float, vdd_v: float) -> float:
    """a*Vdd^2 + b*Vdd + c of a node, linearly interpolated by position between listed nodes."""
    doc = _read("tech_scaling")
    nodes = doc["nodes_nm"]
    if not nodes[-1] <= tech_nm <= nodes[0]:
        raise QuantDSEError(f"tech_nm {tech_nm} is outside the scaling data ({nodes[-1]} .. {nodes[0]} nm): pick a node in range")
    polys = [a * vdd_v ** 2 + b * vdd_v + c for a, b, c in doc["coefficients"]]
    # nodes decrease along the list; np.interp wants increasing x
    return float(np.interp(-tech_nm, [-n for n in nodes], polys))


def tech_energy_scale(from_nm: float, to_nm: float, vdd_v: float | None = None) -> float:
    """Energy factor from node `from_nm` to node `to_nm` at one Vdd (hwcomponents' rule)."""
    vdd = _read("tech_scaling")["default_vdd_v"] if vdd_v is None else vdd_v
    return _node_poly(to_nm, vdd) / _node_poly(from_nm, vdd)


@dataclass(frozen=True)
class EnergyTable:
    """Energies (pJ) of one table scaled to one node: MACs by precision, SRAM per byte by size."""

    name: str
    tech_nm: float
    scale: float            # factor applied to the table's own node
    mac_pj: dict            # precision -> pJ per MAC
    sram_kib: tuple         # capacity points (KiB)
    sram_64b_pj: tuple      # scaled 64-bit access energy at those points

    def sram_pj_per_byte(self, capacity_kib: float) -> float:
        """Access energy per byte of an SRAM of this capacity (log-log, end slopes extrapolated)."""
        x = np.log(np.asarray(self.sram_kib))
        y = np.log(np.asarray(self.sram_64b_pj))
        c = math.log(max(capacity_kib, 1e-9))
        i = int(np.clip(np.searchsorted(x, c) - 1, 0, len(x) - 2))
        slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
        return float(math.exp(y[i] + slope * (c - x[i]))) / 8.0


def load_table(name: str, tech_nm: float, vdd_v: float | None = None) -> EnergyTable:
    """The table `name` scaled to `tech_nm` (Accelergy-style node scaling)."""
    doc = _read(name)
    scale = tech_energy_scale(float(doc["tech_nm"]), tech_nm, vdd_v)
    prims = {k: float(v["energy_pj"]) for k, v in doc["primitives"].items()}
    macs = {}
    for prec, entry in doc["macs"].items():
        missing = [p for p in entry["parts"] if p not in prims]
        if missing:
            raise QuantDSEError(f"energy table {name}: mac {prec} uses unknown primitives {missing}")
        macs[prec] = scale * sum(prims[p] for p in entry["parts"])
    sram = doc["sram"]
    return EnergyTable(name, tech_nm, scale, macs, tuple(sram["capacity_kib"]),
                       tuple(scale * e for e in sram["access_64b_pj"]))
