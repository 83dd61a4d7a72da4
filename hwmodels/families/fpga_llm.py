"""FlightLLM-style LLM engine on an HBM FPGA (AMD Alveo U280).

Each op runs on the faster of two DSP48E2 units per super logic region (SLR):
a matrix-matrix unit (prefill) tiling M x K x N as mm_m x mm_k x mm_n and a
matrix-vector unit (decode) tiling mv_m x mv_k x mv_n; the output features N
are split over the SLRs. A unit needs (MACs per cycle / MACs per DSP) DSPs,
where low-bit operands pack several MACs into one DSP; a unit larger than the
DSP budget at that precision runs in several passes per tile. Weights (or, for
attention, the KV cache) stream from HBM at the format's effective bits, are
dequantized in the datapath (pipelined, no extra cycles), and overlap with
compute, so per op

    cycles = max(compute, memory) / slr_efficiency + softmax on the special-function units + fill,

where slr_efficiency < 1 is what splitting one op over several SLRs loses (each SLR
computes on its own HBM channel group and all SLRs meet at a barrier after every layer).

FlightLLM (Zeng et al., FPGA'24) adds N:M/block sparsity (`sparsity`: the
fraction of weights skipped by both compute and storage, in the linear ops whose
role is in `sparse_roles`, "*" = all of them); AccLLM adds
Λ-shaped attention (`attention_window` recent + `attention_sink` first tokens).
Energy is a board power model: static power x time + energy per HBM byte + per MAC;
a spec that reproduces a paper may instead give the paper's reported board power
(`board_power_w` > 0): energy = that power x time, the papers' own tokens/J accounting.
"""
from __future__ import annotations

import numpy as np

from hwmodels.interface import COMPUTE, MEMORY, OTHER, CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.spec import Param
from hwmodels.workload import Workload

#: format families whose weights the datapath can dequantize (integer codes with scales)
FAMILY_CHOICES = ("int", "ggml", "ternary", "binary", "float", "fp", "nf", "mx", "nvfp")

SCHEMA = {
    "clock_hz": Param(float, "accelerator clock (Hz)", min=1e6, max=2e9),
    "hbm_channels": Param(int, "HBM pseudo-channels the engine streams from", min=1, max=64),
    "hbm_channel_bytes_per_s": Param(float, "peak bandwidth of one HBM pseudo-channel (B/s)", min=1e6),
    "hbm_channel_efficiency": Param(float, "achieved/peak HBM bandwidth for channel-local streams "
                                           "(weights, KV cache)", min=0.01, max=1.0),
    "hbm_cross_efficiency": Param(float, "achieved/peak HBM bandwidth for accesses across channels "
                                         "(activation spills, embedding gathers)", min=0.01, max=1.0),
    "dsp_count": Param(int, "DSP48E2 slices available to the MAC units", min=1),
    "dsp_macs_4bit": Param(int, "MACs one DSP does per cycle when both operands have <= 4 bits", min=1, max=8),
    "dsp_macs_8bit": Param(int, "MACs one DSP does per cycle when both operands have <= 8 bits", min=1, max=8),
    "dsp_macs_16bit": Param(int, "MACs one DSP does per cycle with 16-bit operands", min=1, max=8),
    "slrs": Param(int, "super logic regions, each with its own MM and MV unit", min=1, max=8),
    "slr_efficiency": Param(float, "achieved fraction of the SLRs' combined compute and HBM rate when one op "
                                   "is split over them (a barrier across all SLRs ends every layer)",
                            min=0.05, max=1.0, default=1.0),
    "mm_m": Param(int, "matrix-matrix unit: tokens per tile (M)", min=1),
    "mm_k": Param(int, "matrix-matrix unit: reduction per tile (K)", min=1),
    "mm_n": Param(int, "matrix-matrix unit: output features per tile (N)", min=1),
    "mv_m": Param(int, "matrix-vector unit: tokens per tile (M)", min=1),
    "mv_k": Param(int, "matrix-vector unit: reduction per tile (K)", min=1),
    "mv_n": Param(int, "matrix-vector unit: output features per tile (N)", min=1),
    "sfu_width": Param(int, "special-function unit lanes per SLR (softmax elements per cycle)", min=1),
    "onchip_buffer_bytes": Param(float, "URAM+BRAM bytes for activations; larger ones spill to HBM", min=0),
    "layer_fill_cycles": Param(int, "fixed pipeline fill/drain cycles per op", min=0),
    "max_weight_bits": Param(float, "widest quantized weight code the dequantizer takes", min=1, max=16,
                             default=8.0),
    "weight_families": Param(list, "format families the datapath supports", default=["int", "ggml", "ternary",
                                                                                       "binary", "float"]),
    "sparsity": Param(float, "fraction of linear weights pruned: skipped by compute and HBM", min=0.0,
                      max=0.95, default=0.0),
    "sparse_roles": Param(list, "op roles (q, k, v, o, gate, up, down, lm_head, ...) whose weights are pruned; "
                                "\"*\" = every linear op", default=["*"]),
    "sparse_index_bits": Param(float, "metadata bits stored per kept weight when sparsity > 0", min=0.0,
                               max=8.0, default=0.0),
    "attention_window": Param(int, "Λ-shaped attention: recent tokens each query reads (0 = all)", min=0,
                              default=0),
    "attention_sink": Param(int, "Λ-shaped attention: initial sink tokens each query also reads", min=0,
                            default=0),
    "static_power_w": Param(float, "board power independent of activity (W)", min=0.0),
    "hbm_energy_j_per_byte": Param(float, "HBM access energy (J/byte)", min=0.0),
    "mac_energy_j": Param(float, "energy of one 8-bit MAC on a DSP incl. routing (J)", min=0.0),
    "board_power_w": Param(float, "reported board power while running (W); > 0 replaces the activity "
                                  "power model above with power x time", min=0.0, default=0.0),
}


def _ceil_div(a, b):
    """Integer ceil(a / b) for non-negative integer arrays."""
    return -(-a // b)


class Model(HardwareModel):
    """Cycle-level cost of a FlightLLM-style engine; see the module docstring."""

    ENERGY_PARAMS = ("static_power_w", "hbm_energy_j_per_byte", "mac_energy_j", "board_power_w")
    SCHEMA = SCHEMA
    DESCRIPTION = "cycle-level: FlightLLM-style MM/MV units, HBM streaming, max(compute, memory) + fill"

    @property
    def ENERGY_BASIS(self) -> str:
        """Board power given by a paper, or the activity model (plans: provenance.energy_basis)."""
        if self.spec.params["board_power_w"] > 0:
            return "board power given: the paper's reported board power x modelled time"
        return "estimate: static power x time + HBM pJ/byte + DSP MAC energy"

    def supports(self, fmt) -> bool:
        p = self.spec.params
        if fmt.family not in p["weight_families"]:
            return False
        if fmt.family == "float":
            return fmt.weight_bits <= 16  # fp16/bf16 on one DSP per MAC; fp32 does not fit
        return fmt.weight_bits <= p["max_weight_bits"]

    # --- pieces, each [L, F] or [L, 1] -------------------------------------------------

    def dsp_packing(self, formats: list) -> np.ndarray:
        """MACs per DSP per cycle for each format: set by the wider operand (weight code or activation)."""
        p = self.spec.params
        width = np.array([max(float(f.act_bits), 16.0 if f.family == "float" else float(f.weight_bits))
                          for f in formats])
        return np.where(width <= 4, p["dsp_macs_4bit"],
                        np.where(width <= 8, p["dsp_macs_8bit"], p["dsp_macs_16bit"])).astype(np.int64)

    def context_fraction(self, ops: Ops, workload: Workload) -> np.ndarray:
        """Share of the KV cache each attention op reads under Λ-shaped attention (1 elsewhere)."""
        p = self.spec.params
        frac = np.ones(len(ops))
        window = p["attention_window"] + p["attention_sink"]
        if p["attention_window"] <= 0 or window >= workload.seq:
            return frac
        r = window / workload.seq
        # decode: each query reads `window` of seq tokens; causal prefill: a band of width
        # `window` under the diagonal, area (2r - r^2) of the triangle's seq^2/2
        share = r if workload.phase == "decode" else 2 * r - r * r
        att = np.array([k == "attention" for k in ops.kinds])
        frac[att] = share
        return frac

    def compute_cycles(self, m, k, n, packing) -> np.ndarray:
        """Tile cycles of the faster unit for [L] shapes x [F] packings -> [L, F] integers."""
        p = self.spec.params
        m, k, n = (np.asarray(x, np.int64)[:, None] for x in (m, k, n))
        avail = self.spec["dsp_count"] * packing[None, :]
        n_slr = _ceil_div(n, p["slrs"])
        best = None
        for um, uk, un in ((p["mm_m"], p["mm_k"], p["mm_n"]), (p["mv_m"], p["mv_k"], p["mv_n"])):
            passes = _ceil_div(um * uk * un * p["slrs"], avail)
            tiles = _ceil_div(m, um) * _ceil_div(k, uk) * _ceil_div(n_slr, un)
            cyc = tiles * passes
            best = cyc if best is None else np.minimum(best, cyc)
        return best

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        L, F = len(ops), len(formats)
        kinds = np.array(ops.kinds)
        gemm = kinds != "embedding"
        att = kinds == "attention"
        roles = np.array(ops.roles if len(ops.roles) == L else ("",) * L)
        sparse = np.isin(kinds, ("linear", "lm-head", "conv"))
        if "*" not in p["sparse_roles"]:
            sparse &= np.isin(roles, list(p["sparse_roles"]))
        keep = np.where(sparse, 1.0 - p["sparsity"], 1.0)
        ctx = self.context_fraction(ops, workload)

        # attention: the context dimension (N of QK^T, K of PV) shrinks under a window
        m = ops.m.astype(np.int64)
        k = np.where(att & (roles == "pv"), np.ceil(ops.k * ctx), ops.k).astype(np.int64)
        n = np.where(att & (roles != "pv"), np.ceil(ops.n * ctx), ops.n).astype(np.int64)
        k_eff = np.ceil(k * keep).astype(np.int64)  # the sparse DSP chain skips pruned weights
        packing = self.dsp_packing(formats)
        compute = np.where(gemm[:, None], self.compute_cycles(m, np.maximum(k_eff, 1), n, packing), 0)

        # HBM traffic: weights at effective bits (+ sparse index metadata), activation spills
        bpw = bits_table(ops.k, formats)
        index_bits = np.where(sparse & (p["sparsity"] > 0), p["sparse_index_bits"], 0.0)
        weight_bytes = (ops.weight_elems * keep * ctx)[:, None] * (bpw + index_bits[:, None]) / 8.0
        act_bits = np.array([float(f.act_bits) for f in formats])[None, :]
        act_elems = np.where(gemm, m * ops.k + m * n, 0).astype(np.float64)[:, None]
        spill = np.where(act_elems * act_bits / 8.0 > p["onchip_buffer_bytes"], act_elems * act_bits / 8.0, 0.0)
        peak = p["hbm_channels"] * p["hbm_channel_bytes_per_s"] / p["clock_hz"]  # bytes per cycle
        local_eff = np.where(gemm, p["hbm_channel_efficiency"], p["hbm_cross_efficiency"])[:, None]
        memory = np.ceil(weight_bytes / (peak * local_eff) + spill / (peak * p["hbm_cross_efficiency"]))

        # softmax of QK^T scores on the special-function units, after the matmul
        sfu = np.where(att & (roles == "qk"), _ceil_div(m * n, p["sfu_width"] * p["slrs"]), 0)[:, None]
        # one fill per op; the heads of an attention layer stream back to back, so its
        # fill is shared by the op's `count` executions (one fill per attention layer)
        per_exec = np.where(att, 1.0 / np.maximum(ops.count, 1e-12), 1.0)
        fill = (p["layer_fill_cycles"] * per_exec)[:, None]
        # the SLRs share each op; they reach slr_efficiency of their combined rate
        compute = np.ceil(compute / p["slr_efficiency"])
        memory = np.ceil(memory / p["slr_efficiency"])
        core = np.maximum(compute, memory)
        cycles = core + sfu + fill
        bound = np.where(sfu + fill > core, OTHER, np.where(compute >= memory, COMPUTE, MEMORY))

        latency = cycles / p["clock_hz"]
        nbytes = weight_bytes + spill
        macs = (m * k_eff * n * gemm).astype(np.float64)[:, None]
        mac_width = np.maximum(8.0, act_bits) / 8.0  # a 16-bit MAC takes a whole DSP: twice the energy
        if p["board_power_w"] > 0:
            energy = p["board_power_w"] * latency
        else:
            energy = (p["static_power_w"] * latency + p["hbm_energy_j_per_byte"] * nbytes
                      + p["mac_energy_j"] * macs * mac_width)
        shape = (L, F)
        return CostTable(
            cycles=cycles, latency_s=latency, energy_j=energy, bytes=nbytes,
            bound=bound.astype(np.int8), supported=np.ones(shape, bool),
            breakdown={"compute_cycles": np.broadcast_to(compute, shape).astype(np.float64),
                       "memory_cycles": memory, "sfu_cycles": np.broadcast_to(sfu, shape).astype(np.float64),
                       "fill_cycles": np.broadcast_to(fill, shape).astype(np.float64),
                       "weight_bytes": weight_bytes, "spill_bytes": np.broadcast_to(spill, shape).copy()})
