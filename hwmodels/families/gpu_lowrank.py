"""SVDQuant's W4A4 on a GPU: the activation-quantize pass and the low-rank branch X W ~ X L1 L2 + Q(X) Q(R).

A W4A4 GEMM reads 4-bit activations, so in Nunchaku a pass before it reads X (16-bit) and writes
Q(X) with one scale per group of the format (16-bit for int4, e4m3 for NVFP4) (quantize_w4a4_act_fuse_lora: `ascales` of
K / 64 x M). Plain W4A4 formats (no branch: Atom, QuaRot) are taken to quantize inside the kernel
before them (Atom fuses it into the norm), so they pay no pass here. The branch of rank r adds the down projection X L1 (M x K x r), the up
projection (X L1) L2 (M x r x N) and r (K + N) 16-bit weights. How they run is the
`lowrank_kernel` knob (Li et al. 2024, SVDQuant Sec. 4.3, Fig. 6; mit-han-lab/nunchaku src/Linear.cpp):

- "fused" (Nunchaku): the down projection runs inside the quantize pass (which reads X anyway;
  the pass takes the longer of its memory traffic and those FLOPs) and writes the M x r fp32
  intermediate; the up projection runs in the 4-bit GEMM's epilogue, in series with its main
  loop, reading the intermediate back. The branch's weights stream with the 4-bit weights
  (they are counted in the format's bits). Nunchaku quantizes one input once for the fused
  QKV GEMM (roles q, k, v share one pass: a third each) and quantizes the MLP's hidden
  activations in the up projection's epilogue (GELU_QUANT: role "down" has no pass of its own).
- "separate": every W4A4 layer runs its own quantize pass, and the branch runs as its own
  kernels, as a LoRA would: two 16-bit GEMMs plus an elementwise add (read both outputs, write
  one), each with its launch, reading X again and its outputs from memory.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwmodels.ops import Ops

INTERMEDIATE_BYTES = 4  # X L1 leaves the quantize kernel in fp32 (Nunchaku keeps the low-rank partials in fp32)
OUT_BYTES = 2
IN_BYTES = 2            # X arrives in 16 bits
#: the share of one quantize pass a layer pays when Nunchaku fuses (see the module docstring)
FUSED_PASS_SHARE = {"q": 1 / 3, "k": 1 / 3, "v": 1 / 3, "down": 0.0}


def base_format(fmt):
    """The format without its low-rank branch."""
    from quantcore.formats import get_format

    return get_format(fmt.name.replace(f"-r{fmt.lowrank}", ""))


def quantize_pass(model, ops: Ops, fmt, down_flops=None) -> tuple:
    """(seconds, joules, DRAM bytes) [L] of the pass that quantizes each layer's input for a W4A4
    format, at each layer's share of it; `down_flops` run inside it (the fused low-rank down projection)."""
    p = model.spec.params
    m, k = ops.m.astype(np.float64), ops.k.astype(np.float64)
    group = float(fmt.group_size or 0) or k
    moved = m * k * (IN_BYTES + fmt.act_bits / 8.0) + m * k / group * fmt.scale_bits / 8.0
    flops = np.zeros_like(m) if down_flops is None else down_flops
    busy = np.maximum(moved / (p["dram_bytes_per_s"] * p["dram_efficiency"]), flops / model.dense_fp16_rate())
    seconds = p["launch_overhead_s"] + busy
    joules = ((p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * seconds
              + p["dram_j_per_byte"] * moved + p["tc_j_per_flop"] * flops)
    share = np.ones_like(m)
    if p["lowrank_kernel"] == "fused" and ops.roles:
        share = np.array([FUSED_PASS_SHARE.get(r, 1.0) for r in ops.roles])
    return seconds * share, joules * share, moved * share


def add_lowrank(model, ops: Ops, formats: list, workload, table):
    """`table` (the main GEMMs' cost) with each low-rank format's branch and, where it is W4A4, its
    quantize pass added, in place."""
    cols = [j for j, f in enumerate(formats) if getattr(f, "lowrank", 0)]
    gemm = np.array([kd not in ("embedding", "attention") for kd in ops.kinds], dtype=bool)
    if not cols or not gemm.any():
        return table
    p = model.spec.params
    m, k, n = (a.astype(np.float64) for a in (ops.m, ops.k, ops.n))
    zero = np.zeros_like(m)
    for j in cols:
        r = float(formats[j].lowrank)
        fused = p["lowrank_kernel"] == "fused"
        q_s = q_j = q_b = zero
        if fused:  # no pass (16-bit activations, or a conv): the down projection in series on the 16-bit tensor cores
            down_flops = 2.0 * m * r * k
            q_s = down_flops / model.dense_fp16_rate()
            q_j = (p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * q_s + p["tc_j_per_flop"] * down_flops
        if int(formats[j].act_bits) == 4:
            # a conv's K is its im2col width (C_in x kh x kw): its pass would read the feature map once, not
            # K / C_in times, and the ops do not carry C_in, so a conv's pass is not charged (an undercount)
            pass_s, pass_j, pass_b = quantize_pass(model, ops, formats[j], 2.0 * m * r * k if fused else None)
            conv = np.array([kd == "conv" for kd in ops.kinds], dtype=bool)
            q_s, q_j, q_b = (np.where(conv, a, b) for a, b in ((q_s, pass_s), (q_j, pass_j), (q_b, pass_b)))
        if fused:
            flops = 2.0 * m * r * n
            moved = 2.0 * m * r * INTERMEDIATE_BYTES
            up_s = flops / model.dense_fp16_rate() + moved / (p["dram_bytes_per_s"] * p["dram_efficiency"])
            extra_s = up_s + q_s
            extra_j = ((p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * up_s
                       + p["tc_j_per_flop"] * flops + p["dram_j_per_byte"] * moved) + q_j
            extra_b = moved + q_b
            base = None
        else:
            base = model._cost_fused(ops, [base_format(formats[j])], workload)
            down = _fp16_gemm(model, ops, m, k, np.full_like(m, r), workload)
            up = _fp16_gemm(model, ops, m, np.full_like(m, r), n, workload)
            add_bytes = 3.0 * m * n * OUT_BYTES  # read both outputs, write the sum
            add_s = p["launch_overhead_s"] + add_bytes / (p["dram_bytes_per_s"] * p["dram_efficiency"])
            add_j = (p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * add_s + p["dram_j_per_byte"] * add_bytes
            extra_s = down.latency_s[:, 0] + up.latency_s[:, 0] + add_s + q_s
            extra_j = down.energy_j[:, 0] + up.energy_j[:, 0] + add_j + q_j
            extra_b = down.bytes[:, 0] + up.bytes[:, 0] + add_bytes + q_b
        main_s = table.latency_s[:, j] if base is None else base.latency_s[:, 0]
        main_j = table.energy_j[:, j] if base is None else base.energy_j[:, 0]
        main_b = table.bytes[:, j] if base is None else base.bytes[:, 0]
        table.latency_s[:, j] = np.where(gemm, main_s + extra_s, table.latency_s[:, j])
        table.energy_j[:, j] = np.where(gemm, main_j + extra_j, table.energy_j[:, j])
        table.bytes[:, j] = np.where(gemm, main_b + extra_b, table.bytes[:, j])
        table.cycles[:, j] = table.latency_s[:, j] * p["sustained_clock_hz"]
        key = "w4a4_extra_cycles"  # the quantize pass and the low-rank branch
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
