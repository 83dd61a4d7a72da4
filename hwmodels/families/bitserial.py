"""Bit-serial (and bit-parallel) mixed-datatype PE arrays: BitMoD, ANT, OliVe, FP16.

Follows the BitMoD simulator (abdelfattah-lab/BitMoD-HPCA-25, ``bitmod_sim/accelerator.py``
and ``pe_array.py``) convention by convention, so our numbers can be checked against it:

* an output-stationary array of ``rows x cols`` PEs (rows = output channels, cols =
  tokens), each PE a ``dot_width``-way dot product of FP16 activations with weights;
* tiles = ceil(cin / dot_width) * ceil(cout / rows) * ceil(tokens / cols); each tile
  takes ceil(floor(weight_bits) / bits_per_cycle) cycles on a bit-serial PE (the
  simulator's ``pe_latency``), ceil(weight_bits / pe_weight_bits) on a bit-parallel one;
* DRAM traffic per layer = weights (ceil(cin * bits / 8) bytes per output row) + inputs
  + outputs, with the simulator's refetch rule when both operands overflow their
  buffers; DRAM cycles = floor(bits / dram_bits_per_cycle); layer cycles =
  max(compute, DRAM);
* energy = PE energy x P&R factor x all PEs x compute cycles + one weight-buffer and one
  activation-buffer read per tile + 64-bit buffer writes of everything fetched + DRAM
  energy per bit. Buffer energies per access come from a CACTI table (spec data) at the
  port widths the simulator derives from the array shape and weight precision.

Differences from the simulator, on purpose: the refetch rule is applied per op execution
(per KV head for attention, where the simulator pools all heads), and the buffer port
width is taken per op (the simulator fixes it from the linear layers' precision).
"""
from __future__ import annotations

import math

import numpy as np

from hwmodels.interface import COMPUTE, MEMORY, CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.spec import Param
from hwmodels.workload import Workload

SIM = "BitMoD simulator, abdelfattah-lab/BitMoD-HPCA-25 bitmod_sim/"


def _positive_int(help_text: str, default=None, lo: int = 1) -> Param:
    return Param(int, help_text, min=lo, default=default)


class Model(HardwareModel):
    """Output-stationary PE array with bit-serial or bit-parallel weights (BitMoD family)."""

    DESCRIPTION = "analytic, tile-level (BitMoD simulator conventions)"
    #: where the energy figures come from (plans carry it as provenance.energy_basis)
    ENERGY_BASIS = "per-op energy tables: the simulator's PE energies, CACTI 7 buffer energies, DRAM pJ/bit (estimate)"
    ENERGY_PARAMS = ("pe_energy_j", "dram_energy_j_per_bit", "sram_read_j", "sram_write_j")
    SCHEMA = {
        "clock_hz": Param(float, "clock frequency", min=1e6),
        "rows": _positive_int("PE rows (output channels per tile) in prefill"),
        "cols": _positive_int("PE columns (tokens per tile) in prefill"),
        "decode_rows": _positive_int("PE rows in decode (0 = rows)", default=0, lo=0),
        "decode_cols": _positive_int("PE columns in decode (0 = cols)", default=0, lo=0),
        "dot_width": _positive_int("multiply lanes per PE (dot-product size)"),
        "bit_serial": Param(bool, "weights processed bit-plane by bit-plane"),
        "bits_per_cycle": _positive_int("weight bits a bit-serial PE consumes per cycle", default=2),
        "pe_weight_bits": _positive_int("widest weight a bit-parallel PE takes in one cycle", default=16),
        "act_bits": _positive_int("activation precision on chip (FP16 in every design here)", default=16),
        "weight_buffer_bytes": _positive_int("on-chip weight buffer"),
        "act_buffer_bytes": _positive_int("on-chip activation buffer"),
        "dram_bits_per_cycle": _positive_int("off-chip bandwidth per clock (DDR counted)"),
        "pe_energy_j": Param(float, "energy of one PE per cycle (synthesis)", min=0.0),
        "pr_scaling": Param(float, "place-and-route factor on PE energy", min=1.0, default=1.0),
        "dram_energy_j_per_bit": Param(float, "DRAM read/write energy per bit", min=0.0),
        "sram_port_bits": Param(list, "CACTI table: buffer port widths (bits), ascending"),
        "sram_read_j": Param(list, "CACTI table: read energy per access at each port width"),
        "sram_write_j": Param(list, "CACTI table: write energy per access at each port width"),
        "dequant_cycles_per_group": Param(int, "extra cycles per weight group to rescale the partial sum "
                                          "(0 = hidden behind the next group)", min=0, default=0),
        "datatypes": Param(list, "format families the PE decodes ('*' = all)", default=["*"]),
    }

    # ----------------------------------------------------------------- helpers
    def supports(self, fmt) -> bool:
        allowed = self.spec["datatypes"]
        return "*" in allowed or fmt.family in allowed

    def array_shape(self, workload: Workload) -> tuple[int, int]:
        """(rows, cols) of the array for this phase (BitMoD reshapes it for decode)."""
        p = self.spec.params
        if workload.phase == "decode":
            return p["decode_rows"] or p["rows"], p["decode_cols"] or p["cols"]
        return p["rows"], p["cols"]

    def weight_passes(self, weight_bits: float) -> int:
        """Cycles one tile takes for weights of `weight_bits` payload bits."""
        p = self.spec.params
        if p["bit_serial"]:  # pe_array.py: ceil(floor(w_prec) / 2)
            return max(1, math.ceil(math.floor(weight_bits) / p["bits_per_cycle"]))
        return max(1, math.ceil(weight_bits / p["pe_weight_bits"]))

    def port_bits(self, weight_bits: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, float]:
        """Buffer port widths (accelerator.py `_init_mem`): weight port, activation port."""
        p = self.spec.params
        half = 0.5 if p["bit_serial"] else 1.0
        w = p["dot_width"] * np.ceil(weight_bits / 4.0) * 4.0 * rows * half
        a = p["dot_width"] * p["act_bits"] * cols * half
        return w, a

    def sram_energy(self, bits: np.ndarray, table: str) -> np.ndarray:
        """Energy per access of a `bits`-wide port, interpolated in the CACTI table."""
        xs = np.asarray([float(x) for x in self.spec["sram_port_bits"]])
        ys = np.asarray([float(y) for y in self.spec[table]])
        return np.interp(bits, xs, ys)

    # -------------------------------------------------------------------- cost
    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        rows, cols = self.array_shape(workload)
        L, F = len(ops), len(formats)
        m = ops.m.astype(np.float64)[:, None]
        k = ops.k.astype(np.float64)[:, None]
        n = ops.n.astype(np.float64)[:, None]
        gather = np.array([kd == "embedding" for kd in ops.kinds], dtype=bool)[:, None]
        # per format: storage bits (depend on k through groups) and payload bits
        eff = bits_table(ops.k, formats)
        passes = np.array([self.weight_passes(f.weight_bits) for f in formats], dtype=np.float64)[None, :]
        gsize = np.array([(f.group_size or 0) if f.is_quantized else -1 for f in formats], dtype=np.float64)
        kk = ops.k.astype(np.float64)[:, None]
        groups = np.where(gsize > 0, np.ceil(kk / np.maximum(gsize, 1.0)), np.where(gsize == 0, 1.0, 0.0))

        # compute: tiles x bit-planes (+ optional per-group rescale cycles)
        out_tiles = np.ceil(n / rows) * np.ceil(m / cols)
        tiles = np.where(gather, 0.0, np.ceil(k / p["dot_width"]) * out_tiles)
        dequant = np.where(gather, 0.0, out_tiles * groups * p["dequant_cycles_per_group"])
        compute = tiles * passes + dequant

        # DRAM traffic (bytes), the simulator's _check_layer_mem_size and refetch rule
        act = p["act_bits"]
        w_bytes = np.where(gather, ops.weight_elems[:, None] * eff / 8.0, np.ceil(k * eff / 8.0) * n)
        i_bytes = np.where(gather, 0.0, np.ceil(k * act / 8.0) * m) + 0.0 * eff
        o_bytes = np.where(gather, 0.0, np.ceil(n * act / 8.0) * m) + 0.0 * eff
        sw, si = float(p["weight_buffer_bytes"]), float(p["act_buffer_bytes"])
        overflow = (w_bytes > sw) & (i_bytes > si)
        refetch_i = np.ceil(w_bytes / sw)
        refetch_w = np.ceil(i_bytes / si)
        weights_again = refetch_w * w_bytes + i_bytes < refetch_i * i_bytes + w_bytes
        fetch_w = np.where(overflow & weights_again, refetch_w, 1.0)
        fetch_i = np.where(overflow & ~weights_again, refetch_i, 1.0)
        read_bytes = w_bytes * fetch_w + i_bytes * fetch_i
        dram_bytes = read_bytes + o_bytes
        memory = np.floor(dram_bytes * 8.0 / p["dram_bits_per_cycle"])

        cycles = np.maximum(compute, memory)
        bound = np.where(compute >= memory, COMPUTE, MEMORY).astype(np.int8)

        # energy
        pe = p["pe_energy_j"] * p["pr_scaling"] * rows * cols * compute
        w_port, a_port = self.port_bits(np.array([f.weight_bits for f in formats], dtype=np.float64), rows, cols)
        w_port = np.broadcast_to(w_port[None, :], (L, F))
        sram_read = tiles * (self.sram_energy(w_port, "sram_read_j") + self.sram_energy(a_port, "sram_read_j"))
        w_write64 = self.sram_energy(w_port, "sram_write_j") * 64.0 / w_port
        a_write64 = float(self.sram_energy(np.array(a_port), "sram_write_j")) * 64.0 / a_port
        words_w = np.where(gather, np.ceil(w_bytes * 8.0 / 64.0), np.ceil(k * eff / 64.0) * n)
        words_i = np.where(gather, 0.0, np.ceil(k * act / 64.0) * m)
        words_o = np.where(gather, 0.0, np.ceil(n * act / 64.0) * m)
        sram_write = words_w * fetch_w * w_write64 + (words_i * fetch_i + words_o) * a_write64
        dram = dram_bytes * 8.0 * p["dram_energy_j_per_bit"]
        energy = pe + sram_read + sram_write + dram

        return CostTable(
            cycles=cycles, latency_s=cycles / p["clock_hz"], energy_j=energy, bytes=dram_bytes,
            bound=bound, supported=np.ones((L, F), dtype=bool),
            breakdown={"compute_cycles": compute, "memory_cycles": memory, "dequant_cycles": dequant,
                       "pe_energy_j": pe, "sram_read_energy_j": sram_read, "sram_write_energy_j": sram_write,
                       "dram_energy_j": dram, "weight_bytes": w_bytes * fetch_w, "act_bytes": i_bytes * fetch_i,
                       "out_bytes": o_bytes})
