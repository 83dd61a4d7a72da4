"""SVDQuant's low-rank branch on a GPU: X W ~ X L1 L2 + Q(X) Q(R), r = the branch's rank.

The branch adds two thin 16-bit GEMMs per layer: the down projection X L1 (M x K x r) and
the up projection (X L1) L2 (M x r x N), 2 M r (K + N) FLOPs in all, and r (K + N) 16-bit
weights. How they run is the `lowrank_kernel` knob (Li et al. 2024, SVDQuant Sec. 4.3, Fig. 6):

- "fused" (Nunchaku): the down projection runs inside the kernel that quantizes X (which
  reads X anyway) and the up projection inside the 4-bit GEMM's epilogue. The branch's
  weights stream with the 4-bit weights (they are counted in the format's bits, so the
  main GEMM already moves them); what is added is the branch's tensor-core time at the
  16-bit rate, in series with the main loop, and the M x r intermediate written and read back.
- "separate": the branch runs as its own kernels, as a LoRA would: the main GEMM moves only
  the 4-bit weights, and two 16-bit GEMMs plus an elementwise add (read both outputs, write
  one) run beside it, each with its launch, reading X again and its outputs from memory.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwmodels.ops import Ops

INTERMEDIATE_BYTES = 4  # X L1 leaves the quantize kernel in fp32 (Nunchaku keeps the low-rank partials in fp32)
OUT_BYTES = 2


def base_format(fmt):
    """The format without its low-rank branch."""
    from quantcore.formats import get_format

    return get_format(fmt.name.replace(f"-r{fmt.lowrank}", ""))


def add_lowrank(model, ops: Ops, formats: list, workload, table):
    """`table` (the main GEMMs' cost) with each low-rank format's branch added, in place."""
    cols = [j for j, f in enumerate(formats) if getattr(f, "lowrank", 0)]
    gemm = np.array([kd not in ("embedding", "attention") for kd in ops.kinds], dtype=bool)
    if not cols or not gemm.any():
        return table
    p = model.spec.params
    m, k, n = (a.astype(np.float64) for a in (ops.m, ops.k, ops.n))
    for j in cols:
        r = float(formats[j].lowrank)
        if p["lowrank_kernel"] == "fused":
            flops = 2.0 * m * r * (k + n)
            moved = 2.0 * m * r * INTERMEDIATE_BYTES
            extra_s = flops / model.dense_fp16_rate() + moved / (p["dram_bytes_per_s"] * p["dram_efficiency"])
            extra_j = ((p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * extra_s
                       + p["tc_j_per_flop"] * flops + p["dram_j_per_byte"] * moved)
            extra_b = moved
            base = None
        else:
            base = model._cost_fused(ops, [base_format(formats[j])], workload)
            down = _fp16_gemm(model, ops, m, k, np.full_like(m, r), workload)
            up = _fp16_gemm(model, ops, m, np.full_like(m, r), n, workload)
            add_bytes = 3.0 * m * n * OUT_BYTES  # read both outputs, write the sum
            add_s = p["launch_overhead_s"] + add_bytes / (p["dram_bytes_per_s"] * p["dram_efficiency"])
            add_j = (p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * add_s + p["dram_j_per_byte"] * add_bytes
            extra_s = down.latency_s[:, 0] + up.latency_s[:, 0] + add_s
            extra_j = down.energy_j[:, 0] + up.energy_j[:, 0] + add_j
            extra_b = down.bytes[:, 0] + up.bytes[:, 0] + add_bytes
        main_s = table.latency_s[:, j] if base is None else base.latency_s[:, 0]
        main_j = table.energy_j[:, j] if base is None else base.energy_j[:, 0]
        main_b = table.bytes[:, j] if base is None else base.bytes[:, 0]
        table.latency_s[:, j] = np.where(gemm, main_s + extra_s, table.latency_s[:, j])
        table.energy_j[:, j] = np.where(gemm, main_j + extra_j, table.energy_j[:, j])
        table.bytes[:, j] = np.where(gemm, main_b + extra_b, table.bytes[:, j])
        table.cycles[:, j] = table.latency_s[:, j] * p["sustained_clock_hz"]
        key = "lowrank_cycles"
        table.breakdown.setdefault(key, np.zeros_like(table.latency_s))[:, j] = np.where(
            gemm, extra_s * p["sustained_clock_hz"], 0.0)
    return table


def _fp16_gemm(model, ops: Ops, m, k, n, workload):
    """The cost of fp16 GEMMs of the given shapes, one per op (16-bit weights of k x n)."""
    from quantcore.formats import get_format

    shaped = dataclasses.replace(ops, m=np.maximum(m, 1).astype(np.int64), k=np.maximum(k, 1).astype(np.int64),
                                 n=np.maximum(n, 1).astype(np.int64), weight_elems=k * n,
                                 kinds=tuple("linear" for _ in ops.kinds))
    return model._cost_fused(shaped, [get_format("fp16")], workload)
