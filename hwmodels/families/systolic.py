"""A generic systolic-array accelerator: SCALE-Sim v3 compute cycles, double-buffered DRAM,
Accelergy-style energy.

GEMM mapping. An op M x K x N (activations M x K times weights K x N) is SCALE-Sim's GEMM
topology row ``name, M, N, K`` (topology_utils.load_arrays_gemm turns it into a 1 x K filter
over an M x K ifmap with N filters): ifmap operand M x K, filter K x N, ofmap M x N.

Compute cycles, exactly as SCALE-Sim v3 builds its demand matrices
(compute/systolic_compute_{os,ws,is}.py; one demand row per cycle, folds run back to back):

    dataflow  Sr  Sc  T   cycles per fold       folds
    os        M   N   K   R + C + T - 2         ceil(M/R) * ceil(N/C)
    ws        K   N   M   2R + C + T - 2        ceil(K/R) * ceil(N/C)
    is        K   M   N   2R + C + T - 2        ceil(K/R) * ceil(M/C)

with an R x C array (R = rows, C = cols). Partial folds are padded to the full array, as
SCALE-Sim pads them with null requests. SCALE-Sim's COMPUTE_REPORT "Total Cycles" is the
0-based index of the last cycle (max of the serviced cycles), i.e. this count minus one.

Memory. Each SRAM is double buffered (half of it is the active buffer, SCALE-Sim's
active_buf_frac = 0.5). DRAM traffic per operand is its size times the times it must be
re-fetched: an operand reused across the outer fold loop is fetched once when it fits in its
active buffer, else once per outer fold; partial sums that do not fit spill (write + read).
Fold i+1's fill overlaps fold i's compute, so with n folds, per-fold compute c and fill f:
cycles = n*c + f + (n-1)*max(0, f - c) (the first fill is exposed). SRAM port bandwidth below
what the array consumes stretches each fold's compute.

Energy = MACs x E_mac(precision) + SRAM bytes x E(capacity) + DRAM bits x dram_pj_per_bit,
from hwmodels/energy_tables (Horowitz 45 nm, node-scaled as Accelergy does). Idle (padded)
PEs are taken as clock-gated; leakage is not modelled.
"""
from __future__ import annotations

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels.energy_tables import load_table, table_names
from hwmodels.interface import COMPUTE, MEMORY, CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.spec import Param
from hwmodels.workload import Workload

DATAFLOWS = ("os", "ws", "is")

SCHEMA = {
    "rows": Param(int, "PE rows of the array (SCALE-Sim ArrayHeight)", min=1, max=4096),
    "cols": Param(int, "PE columns of the array (SCALE-Sim ArrayWidth)", min=1, max=4096),
    "dataflow": Param(str, "os (output), ws (weight) or is (input) stationary", choices=DATAFLOWS),
    "ifmap_sram_kib": Param(float, "activation (ifmap) SRAM, KiB, double buffered", min=0.0625),
    "filter_sram_kib": Param(float, "weight (filter) SRAM, KiB, double buffered", min=0.0625),
    "ofmap_sram_kib": Param(float, "output (ofmap) SRAM, KiB, double buffered", min=0.0625),
    "sram_bytes_per_cycle": Param(float, "total on-chip SRAM read+write bandwidth, bytes/cycle", min=1e-3),
    "dram_bytes_per_cycle": Param(float, "off-chip (DRAM) bandwidth, bytes per array cycle", min=1e-3),
    "clock_hz": Param(float, "array clock, Hz", min=1e3, max=1e11),
    "tech_nm": Param(float, "technology node, nm (energy scaled from the table's node)", min=7, max=130),
    "vdd_v": Param(float, "supply voltage used in node scaling, V", min=0.3, max=1.5, default=0.8),
    "dram_pj_per_bit": Param(float, "DRAM access energy, pJ per bit (not node scaled)", min=0.0),
    "energy_table": Param(str, "energy table in hwmodels/energy_tables", default="horowitz45"),
}


def scalesim_dims(m, k, n, dataflow: str):
    """SCALE-Sim's (Sr, Sc, T) for the GEMM M x K x N under a dataflow (see module doc)."""
    if dataflow == "os":
        return m, n, k
    if dataflow == "ws":
        return k, n, m
    return k, m, n


def compute_cycles(m, k, n, rows: int, cols: int, dataflow: str):
    """SCALE-Sim v3 compute cycles (no stalls) of GEMMs M x K x N; numpy-vectorised."""
    sr, sc, t = scalesim_dims(np.asarray(m, np.int64), np.asarray(k, np.int64),
                              np.asarray(n, np.int64), dataflow)
    folds = -(-sr // rows) * -(-sc // cols)
    fill = rows + cols - 2 if dataflow == "os" else 2 * rows + cols - 2
    return folds * (fill + t)


def mac_precision(fmt) -> str:
    """Which MAC the PEs run for a format: activations at 16 bits mean weights are dequantized
    to fp16 (fp32 for fp32); with 4/8-bit activations the MAC is integer (or fp8 for float
    element formats) at the wider of the two operands."""
    act = int(getattr(fmt, "act_bits", 16))
    if act >= 32 or fmt.weight_bits >= 32:
        return "fp32"
    if act >= 16:
        return "fp16"
    if fmt.family in ("fp", "mx", "nvfp", "float"):
        return "fp8"
    return "int4" if max(fmt.weight_bits, act) <= 4 else "int8"


class Model(HardwareModel):
    """Systolic array (SCALE-Sim v3 compute model) with a double-buffered memory system."""

    ENERGY_PARAMS = ("dram_pj_per_bit", "energy_table")
    SCHEMA = SCHEMA
    DESCRIPTION = "analytic: SCALE-Sim v3 compute cycles + double-buffered DRAM stalls + Accelergy-style energy"
    #: where the energy figures come from (plans carry it as provenance.energy_basis)
    ENERGY_BASIS = "per-op energy tables: Horowitz 45 nm with Accelergy node scaling, DRAM pJ/bit"

    def __init__(self, spec):
        super().__init__(spec)
        p = spec.params
        if p["energy_table"] not in table_names():
            raise QuantDSEError(f"energy_table {p['energy_table']!r} unknown: use one of {', '.join(table_names())}")
        self.energy = load_table(p["energy_table"], p["tech_nm"], p["vdd_v"])
        self.sram_pj_per_byte = {b: self.energy.sram_pj_per_byte(p[f"{b}_sram_kib"])
                                 for b in ("ifmap", "filter", "ofmap")}

    def _traffic(self, m, k, n, w_elems, a, w, o):
        """(DRAM bytes, SRAM bytes per buffer) of one execution; a/o activation/output bytes
        per element [1, F], w weight bytes per element [L, F]."""
        p = self.spec.params
        R, C, df = p["rows"], p["cols"], p["dataflow"]
        half = {b: p[f"{b}_sram_kib"] * 1024 / 2 for b in ("ifmap", "filter", "ofmap")}
        m, k, n = (x[:, None].astype(np.float64) for x in (m, k, n))
        wb = w_elems[:, None] * w                 # unique weight bytes
        ab = m * k * a                            # unique activation bytes
        ob = m * n * o                            # output bytes
        if df == "os":       # outer loop over N blocks (filter tile K x C), inner over M blocks
            outer, inner = np.ceil(n / C), np.ceil(m / R)
            d_f = wb * np.where(k * np.minimum(n, C) * w <= half["filter"], 1.0, inner)
            d_i = ab * np.where(ab <= half["ifmap"], 1.0, outer)
            d_o = ob
            s_i, s_f, s_o = ab * outer, wb * inner, ob
        elif df == "ws":     # outer over N blocks, inner over K blocks (filter tile R x C used once)
            outer, inner = np.ceil(n / C), np.ceil(k / R)
            d_f = wb
            d_i = ab * np.where(ab <= half["ifmap"], 1.0, outer)
            psum = 2.0 * inner - 1.0
            d_o = ob * np.where(m * np.minimum(n, C) * o <= half["ofmap"], 1.0, psum)
            s_i, s_f, s_o = ab * outer, wb, ob * psum
        else:                # is: outer over M blocks, inner over K blocks (ifmap tile R x C used once)
            outer, inner = np.ceil(m / C), np.ceil(k / R)
            d_i = ab
            d_f = wb * np.where(wb <= half["filter"], 1.0, outer)
            psum = 2.0 * inner - 1.0
            d_o = ob * np.where(np.minimum(m, C) * n * o <= half["ofmap"], 1.0, psum)
            s_i, s_f, s_o = ab, wb * outer, ob * psum
        # DRAM fills are written into the SRAMs too
        return d_i + d_f + d_o, (s_i + d_i, s_f + d_f, s_o)

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        R, C, df = p["rows"], p["cols"], p["dataflow"]
        L, F = len(ops), len(formats)
        gather = np.array([kind == "embedding" for kind in ops.kinds], dtype=bool)[:, None]

        a = np.array([f.act_bits / 8.0 for f in formats])[None, :]
        w = bits_table(ops.k, formats) / 8.0
        o = a

        comp = np.where(gather, 0.0, compute_cycles(ops.m, ops.k, ops.n, R, C, df)[:, None].astype(np.float64))
        sr, sc, _ = scalesim_dims(ops.m, ops.k, ops.n, df)
        folds = np.where(gather, 1.0, (-(-sr // R) * -(-sc // C))[:, None].astype(np.float64))

        dram, (s_i, s_f, s_o) = self._traffic(ops.m, ops.k, ops.n, ops.weight_elems, a, w, o)
        # a gather reads its rows from DRAM and writes them out: no array work, no reuse
        wb = ops.weight_elems[:, None] * w
        ob = (ops.m * ops.n)[:, None] * o
        dram = np.where(gather, wb + ob, dram)
        s_i = np.where(gather, 0.0, s_i)
        s_f = np.where(gather, wb, s_f)
        s_o = np.where(gather, ob, s_o)
        sram = s_i + s_f + s_o

        c = comp / folds                                        # per-fold compute
        c_eff = np.maximum(c, sram / folds / p["sram_bytes_per_cycle"])
        fill = dram / folds / p["dram_bytes_per_cycle"]          # per-fold DRAM time
        sram_stall = folds * (c_eff - c)
        dram_stall = fill + (folds - 1) * np.maximum(0.0, fill - c_eff)
        cycles = comp + sram_stall + dram_stall

        macs = ops.macs[:, None]
        e = self.energy
        mac_pj = np.array([e.mac_pj[mac_precision(f)] for f in formats])[None, :]
        sp = self.sram_pj_per_byte
        e_mac = macs * mac_pj * 1e-12
        e_sram = (s_i * sp["ifmap"] + s_f * sp["filter"] + s_o * sp["ofmap"]) * 1e-12
        e_dram = dram * 8.0 * p["dram_pj_per_bit"] * 1e-12
        bound = np.where((fill > c_eff) | (c_eff > c) | gather, MEMORY, COMPUTE).astype(np.int8)
        shape = (L, F)
        return CostTable(
            cycles=cycles, latency_s=cycles / p["clock_hz"], energy_j=e_mac + e_sram + e_dram,
            bytes=np.broadcast_to(dram, shape).copy(), bound=bound, supported=np.ones(shape, bool),
            breakdown={
                "compute_cycles": np.broadcast_to(comp, shape).copy(),
                "sram_stall_cycles": np.broadcast_to(sram_stall, shape).copy(),
                "dram_stall_cycles": np.broadcast_to(dram_stall, shape).copy(),
                "memory_cycles": np.broadcast_to(dram / p["dram_bytes_per_cycle"], shape).copy(),
                "mac_energy_j": np.broadcast_to(e_mac, shape).copy(),
                "sram_energy_j": e_sram, "dram_energy_j": e_dram,
            })
