"""A denoiser's attention on a GPU as one FlashAttention-2 kernel, not two GEMMs.

Diffusion pipelines run their self- and cross-attention through a fused kernel: diffusers'
attention processors call torch's scaled_dot_product_attention, whose flash backend is
FlashAttention-2 on Ampere/Ada/Hopper in bf16/fp16, and Nunchaku calls its own copy of
FlashAttention-2 (src/FluxModel.cpp, `mha_fwd`). The N x N scores stay in registers and
shared memory; nothing of them reaches DRAM. So in the `denoise` phase the QK^T and PV rows
of a layer (hwmodels.diffusion_ops.attention_rows) are costed together, as that kernel runs:

- CTAs: one per BLOCK_M query rows of one head of one sample (grid = q tiles x heads x
  batch), CTAS_PER_SM of them per SM; waves and the tail wave as for a GEMM.
- Each CTA walks the keys in blocks of BLOCK_N. One block: the QK^T and PV MMAs
  (4 BLOCK_M BLOCK_N d FLOPs) on fp16/bf16 tensor cores with fp32 accumulators (the card's
  fp16 rate, whatever the runtime uses for dense GEMMs), then the online softmax: one exp2 per
  score on the SFUs and SOFTMAX_INSTR_PER_SCORE fp32 instructions on the CUDA cores. In
  FlashAttention-2 the softmax of a block waits for its QK^T and the PV waits for the softmax
  (FlashAttention-3 Sec. 3.1 overlaps them only on Hopper), so the three add up.
- Memory: K and V of a head are read from DRAM once and from L2 by each of its q tiles; Q is
  read and O written once. The block step takes the longer of its compute and its L2 time.
"""
from __future__ import annotations

import numpy as np

from hwmodels.ops import Ops

#: FlashAttention-2's forward tile for head dim 128, non-causal (flash_fwd_launch_template.h,
#: run_mha_fwd_hdim128: 128 x 32 with 4 warps on sm86/sm89 "since we get 2 CTAs per SM"; 128 x 64
#: on sm80/sm90, one CTA per SM by shared memory). The Ada tile is used: every GPU target here
#: that runs diffusion is Ada or the A100 class, where the difference is a few percent.
BLOCK_M, BLOCK_N, CTAS_PER_SM = 128, 32, 2
#: exp2f throughput on the SFUs: 16 results per clock per SM on compute capability 8.x and 9.0
#: (CUDA C++ Programming Guide, Arithmetic Instructions throughput table)
SFU_PER_SM_CLK = 16
#: fp32 instructions per score of the online softmax besides the exp (FlashAttention-2 softmax.h:
#: the row max, the scale-and-subtract FFMA, the row-sum add, and the fp32 -> bf16 pack of P)
SOFTMAX_INSTR_PER_SCORE = 4
ACT_BYTES = 2


def fused_attention(model, ops: Ops, workload, table):
    """`table` with each QK^T/PV pair of a denoising step's attention costed as one fused kernel
    (on the QK^T row; the PV row then carries nothing), in place."""
    if workload.phase != "denoise":
        return table
    qk = [i for i, (kd, r) in enumerate(zip(ops.kinds, ops.roles)) if kd == "attention" and r == "qk"]
    pv = [i for i, (kd, r) in enumerate(zip(ops.kinds, ops.roles)) if kd == "attention" and r == "pv"]
    if not qk:
        return table
    cost = attention_kernel(model, ops.m[qk], ops.n[qk], ops.k[qk], ops.count[qk])
    for key in ("latency_s", "energy_j", "bytes"):
        getattr(table, key)[qk, :] = cost[key][:, None]
        getattr(table, key)[pv, :] = 0.0
    clock = model.spec.params["sustained_clock_hz"]
    table.cycles[qk, :] = table.latency_s[qk, :] * clock
    table.cycles[pv, :] = 0.0
    table.bound[qk, :] = 0  # compute: tensor cores and the softmax
    for arr in table.breakdown.values():
        if arr.shape == table.latency_s.shape:
            arr[qk + pv, :] = 0.0
    if "compute_cycles" in table.breakdown:
        table.breakdown["compute_cycles"][qk, :] = table.cycles[qk, :]
    return table


def attention_kernel(model, q, kv, d, count) -> dict:
    """Latency, energy and DRAM bytes of one (head, sample) share of a FlashAttention-2 forward
    over q query and kv key rows of head dim d, `count` of them run by one kernel launch."""
    p = model.spec.params
    q, kv, d = (np.asarray(a, dtype=np.float64) for a in (q, kv, d))
    batch = np.maximum(np.ceil(np.asarray(count, dtype=np.float64)), 1.0)
    sms, clock = float(p["sm_count"]), p["sustained_clock_hz"]
    slots = sms * CTAS_PER_SM
    units = np.ceil(q / BLOCK_M) * batch
    steps = np.ceil(kv / BLOCK_N)
    t_mma = 4.0 * BLOCK_M * BLOCK_N * d / (model.rates["fp16"] / slots)
    scores = float(BLOCK_M * BLOCK_N)
    t_exp = scores / (SFU_PER_SM_CLK * sms * clock / slots)
    t_alu = scores * SOFTMAX_INSTR_PER_SCORE / (model.alu_rate / 2.0 / slots)  # alu_rate counts an FMA as 2 ops
    t_l2 = 2.0 * BLOCK_N * d * ACT_BYTES / (model.l2_rate / slots)           # this block of K and V
    step = np.maximum(t_mma + t_exp + t_alu, t_l2)
    dram_bw = p["dram_bytes_per_s"] * p["dram_efficiency"]
    per_unit = p["dram_latency_s"] + steps * step + BLOCK_M * d * ACT_BYTES * slots / dram_bw
    full = np.floor(units / slots)
    tail = units - full * slots
    latency = (full + (tail > 0)) * per_unit + p["launch_overhead_s"]
    dram = batch * (2.0 * q + 2.0 * kv) * d * ACT_BYTES                     # Q, K, V read, O written
    l2 = units * steps * 2.0 * BLOCK_N * d * ACT_BYTES
    flops = units * steps * 4.0 * BLOCK_M * BLOCK_N * d
    alu = units * steps * scores * (SOFTMAX_INSTR_PER_SCORE * 2.0 + 1.0)
    sm_seconds = full * per_unit * sms + np.where(tail > 0, per_unit * np.minimum(tail, sms), 0.0)
    energy = (p["idle_power_w"] * latency + p["sm_active_power_w"] * sm_seconds + p["dram_j_per_byte"] * dram
              + p["l2_j_per_byte"] * l2 + p["tc_j_per_flop"] * flops + p["cuda_core_j_per_op"] * alu)
    busy = np.clip(units * steps * (t_mma + t_exp + t_alu) / slots / np.maximum(latency, 1e-30), 0.0, 1.0)
    energy = np.maximum(energy, (p["idle_power_w"] + (p["tdp_w"] - p["idle_power_w"]) * busy) * latency)
    return {"latency_s": latency / batch, "energy_j": energy / batch, "bytes": dram / batch}
