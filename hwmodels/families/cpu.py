"""CPUs running low-bit LLM kernels: T-MAC lookup tables or llama.cpp dequantize-then-multiply.

Both kernels are counted in SIMD instructions per core, issued at `simd_issue_per_cycle`,
and bounded by DRAM bandwidth (roofline: cycles = max(compute, memory)).

T-MAC (Wei et al., EuroSys'25, microsoft/T-MAC) splits a b-bit weight into b one-bit
planes. For every token and every group of g = 4 activations it builds a 16-entry table
of all +-sums of the 4 activations (`lut_ctor.cc`); a row's 4 weight bits of one plane
are a 4-bit index into it. One NEON `tbl` (AVX2 `pshufb`) looks up `simd_bytes` indices,
i.e. `simd_bytes` output rows of one (k group, bit plane). The tuned kernel
(`tbl_g4_int8_float_update_impl`) walks chunks of 32 row-planes x 16 k groups; per
chunk it converts and scales the int16 sums once, and adds the zero point only to the
plane-0 vectors. A final pass combines the b planes of each output row. Per thread/op:

    tbl     = m * ceil(ceil(n / simd_bytes) / threads) * ceil(k / 4) * b
    rows    = ceil(ceil(n / simd_bytes) / threads) * simd_bytes   (the busiest thread's row blocks)
    chunks  = m * ceil(rows * b / 32) * ceil(k / 64)
    tables  = m * ceil(k / 4)   (thread 0 builds every table before the others start, see below)
    ops     = tbl * tmac_ops_per_tbl + chunks * (tmac_ops_per_chunk + [asym] 4 / b)
              + m * rows * 2b (plane combine: b converts + b-1 FMAs + 1 convert)
              + tables * tmac_ops_per_table

The table build does not shrink with threads: in T-MAC's llama.cpp fork (kaleid-liner/llama.cpp,
ggml.c `ggml_compute_forward_mul_mat`, GGML_USE_TMAC branch) the GGML_TASK_TYPE_INIT phase that
calls `ggml_tmac_mul_mat_task_init` (the LUT build) returns at once on every thread but thread 0,
and the compute phase starts after it. Only the table build (shared by all planes) and the
zero-point FMAs (plane 0 only) do not grow with b; at batch 1 they are ~3 % of a 2-bit GEMV, so the cost stays close to linear
in the weight bits (the paper's point, and T-MAC's own kernel-level figure: W4/W2 ~ 2.0).
The measured kernel runs faster than this count at `simd_issue_per_cycle`; a spec may
scale the T-MAC time by `tmac_time_scale` (measured / counted, with its source). Every
weight GEMM also pays `op_overhead_s` outside its kernel, for both kernels: the llama.cpp
graph work around it that a kernel benchmark leaves out. T-MAC runs integer weights
of 1..4 bits (int, ggml integer types, ternary as 2 planes, binary); other formats fall
back to the llama.cpp kernels, as in T-MAC's llama.cpp integration.

llama.cpp quantizes activations to int8 and multiplies with `sdot` (or, in a build without the
dot-product extension, `dotprod = false`, ggml's 6-op vmull fallback) after unpacking each
16-byte int8 vector of weights with shifts and masks; each quantization group (block or
k-quant sub-block) then costs a horizontal reduction and a scale multiply-add
(`ggml_vec_dot_*` in ggml-quants.c). Per token:

    ops per row = k * (unpack(b) + offset + mac) / simd_bytes + ceil(k / group) * dequant_ops_per_group
    (mac: 1 sdot, or 6 ops of the fallback without the dot-product extension)

fp16/bf16/fp32 weights take one FMA per `simd_bytes / bytes` lanes. llama.cpp splits the
rows n over threads, and repeats the dequantization for every token (no weight reuse).

Memory: weights at the format's effective bits plus activations in and out, at
min(threads * core_bytes_per_s, dram_bytes_per_s): one core cannot drain unified
memory on its own. Energy: active cores x core power x time + DRAM energy per byte.
"""
from __future__ import annotations

import math

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels.interface import COMPUTE, MEMORY, CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.params import Param
from hwmodels.workload import Workload

#: activations per T-MAC table: a 4-bit index addresses the 16 entries of one tbl/pshufb
#: register (T-MAC `tbl.cc`, `lut_ctor_g4_*`: "g4").
TMAC_GROUP = 4
#: widest integer weight T-MAC has kernels for (README: "int1/2/3/4 x int8/fp16/fp32")
TMAC_MAX_BITS = 4
#: T-MAC chunk: 32 row-planes (two 16-lane `tbl` results) x kfactor 16 k groups; the tuned
#: Llama-2-7B kernels use kfactor = 16 at 2 and 4 bits (deploy/tuned/aarch64-llama-2-7b-{2,4}bit/kcfg.ini)
TMAC_CHUNK_ROWS, TMAC_CHUNK_KGROUPS = 32, 16
#: zero-point FMAs per chunk: `add_zero` on the 4 output vectors, only those of bit plane 0
#: (`(ib) % Bits ? cs : cs + zs * partial_sum`), i.e. 4 / b per chunk (tuned kernels.cc, ZeroPoint branch)
TMAC_ZERO_OPS = 4.0
#: format families with a uniform integer grid, which the bit-plane decomposition needs
TMAC_FAMILIES = ("int", "ggml", "ternary", "binary")

#: SIMD ops to unpack one int8 vector from packed b-bit codes (ggml-quants.c, NEON):
#: 4-bit: `and` + `ushr` give two vectors from 16 bytes (q4_0) -> 1 per vector;
#: 2-bit: `and`, then (`ushr`, `and`) x 3 give four vectors (q2_K) -> 7/4;
#: 1-bit: (`ushr`, `and`) x 8 - 1 -> 15/8; 8-bit: none (q8_0).
UNPACK_OPS = {1: 15 / 8, 2: 7 / 4, 4: 1.0, 8: 0.0}
#: 3/5/6-bit codes store the high bit(s) in a separate plane (q3_K hmask, q5_0 qh, q6_K qh):
#: mask, shift into place and `orr` with the low part -> 3 more ops per vector.
HIGH_PLANE_OPS = 3.0
#: ops to decode non-uniform codes (nf4, fp4, fp8, mx) through a `tbl` codebook (llama.cpp
#: iq4_nl decodes 4-bit codes with one `vqtbl1q_s8` per vector).
CODEBOOK_OPS = 1.0
#: ops per 16-byte int8 multiply-accumulate: one `sdot` with the Armv8.2 dot-product extension;
#: without it ggml's `ggml_vdotq_s32` fallback (ggml-quants.c) runs smull + smull2 + 2 saddlp + 2 add
MAC_OPS = {True: 1.0, False: 6.0}

SCHEMA = {
    "clock_hz": Param(float, "core clock of the cores running the kernel (Hz)", min=1e8, max=7e9),
    "cores": Param(int, "cores available to the kernel (threads may not exceed it)", min=1, max=512),
    "threads": Param(int, "threads running each op (one per core)", min=1, max=512, default=1),
    "simd_bytes": Param(int, "SIMD register width in bytes: 16 NEON, 32 AVX2", choices=(16, 32, 64)),
    "simd_issue_per_cycle": Param(float, "SIMD instructions one core issues per cycle", min=0.25, max=16),
    "dram_bytes_per_s": Param(float, "DRAM bandwidth all the chip's cores together reach (B/s): a measured "
                                     "all-core read rate where one is published, else the datasheet peak", min=1e8),
    "core_bytes_per_s": Param(float, "DRAM bandwidth one core can draw on its own (B/s)", min=1e8),
    "kernel": Param(str, "mpGEMM kernel: tmac (LUT, int1..4) or llamacpp (dequantize-then-multiply)",
                    choices=("tmac", "llamacpp"), default="tmac"),
    "tmac_ops_per_tbl": Param(float, "SIMD ops per table-lookup instruction: index unpack, tbl, "
                                     "widening accumulate", min=1.0, max=32.0),
    "tmac_ops_per_chunk": Param(float, "T-MAC ops per chunk of 32 row-planes x 16 k groups: convert, "
                                       "LUT scale, weight scale (zero point counted apart)", min=0.0, max=256.0),
    "tmac_ops_per_table": Param(float, "SIMD/store ops to build one 16-entry table of 4 activations",
                                min=1.0, max=256.0),
    "dequant_ops_per_group": Param(float, "llama.cpp: ops per quantization group (reduce, scale fma)",
                                   min=0.0, max=64.0),
    "dotprod": Param(bool, "llama.cpp was built with the Armv8.2 dot-product instructions (sdot: 1 op per "
                           "16-byte int8 MAC); false = ggml's vmull fallback, 6 ops", default=True),
    "tmac_time_scale": Param(float, "measured T-MAC kernel time over its counted SIMD ops at "
                                    "simd_issue_per_cycle (1 = the count)", min=0.1, max=4.0, default=1.0),
    "op_overhead_s": Param(float, "fixed time per weight GEMM outside its kernel: the llama.cpp graph "
                                  "nodes around it (norms, rope, activation conversion, dispatch) (s)",
                           min=0.0, max=1e-2, default=0.0),
    "core_power_w": Param(float, "power of one busy core (W)", min=0.01, max=100.0),
    "dram_energy_j_per_byte": Param(float, "DRAM access energy (J/B)", min=0.0),
}


def _tmac_bits(fmt) -> int | None:
    """Bit planes T-MAC needs for this format, or None when it runs on the llama.cpp path."""
    if fmt.family not in TMAC_FAMILIES:
        return None
    bits = math.ceil(fmt.weight_bits - 1e-9)
    return bits if 1 <= bits <= TMAC_MAX_BITS else None


def _unpack_ops(bits: int) -> float:
    """SIMD ops to turn packed b-bit codes into one int8 vector."""
    if bits >= 8:
        return 0.0
    low = max(p for p in (1, 2, 4) if p <= bits)
    return UNPACK_OPS[low] + (0.0 if low == bits else HIGH_PLANE_OPS)


def _runs_as(fmt, k: int):
    """The format llama.cpp really stores rows of length k in (ggml block fallback)."""
    return fmt.fallback_for(k) if hasattr(fmt, "fallback_for") else fmt


def dequant_ops_per_row(fmt, k: int, simd_bytes: int, group_ops: float, dotprod: bool = True) -> float:
    """llama.cpp SIMD ops for one row of k weights and one token in `fmt`."""
    if not fmt.is_quantized:
        bf16 = fmt.name.startswith("bf16")          # widened to fp32 (one shift) before the FMA
        lane_bytes = 4 if (bf16 or fmt.weight_bits >= 32) else 2
        return k * (2.0 if bf16 else 1.0) / (simd_bytes / lane_bytes)
    bits = math.ceil(fmt.weight_bits - 1e-9)
    uniform = fmt.family in TMAC_FAMILIES
    unpack = _unpack_ops(bits) + (0.0 if uniform else CODEBOOK_OPS)
    offset = 1.0 if (fmt.symmetric and uniform and bits < 8) else 0.0  # q4_0's `sub 8`; zero points fold into mins
    groups = 1 if fmt.group_size is None else -(-k // fmt.group_size)
    return k * (unpack + offset + MAC_OPS[dotprod]) / simd_bytes + groups * group_ops


class Model(HardwareModel):
    """A multi-core CPU with SIMD, running T-MAC or llama.cpp low-bit kernels."""

    ENERGY_PARAMS = ("core_power_w", "dram_energy_j_per_byte")
    SCHEMA = SCHEMA
    DESCRIPTION = "analytic SIMD-instruction roofline (T-MAC LUT / llama.cpp dequant)"
    #: where the energy figures come from (plans carry it as provenance.energy_basis)
    ENERGY_BASIS = "estimate: per-core power x time + DRAM pJ/byte"

    def __init__(self, spec):
        super().__init__(spec)
        if spec["threads"] > spec["cores"]:
            raise QuantDSEError(f"threads={spec['threads']} exceeds cores={spec['cores']} of {spec.name}: "
                                f"use --set threads=1..{spec['cores']}")

    def kernel_for(self, fmt) -> str:
        """The kernel that runs `fmt`: tmac for int1..4 weights when the spec picks tmac."""
        return "tmac" if self.spec["kernel"] == "tmac" and _tmac_bits(fmt) is not None else "llamacpp"

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        L, F = len(ops), len(formats)
        m = ops.m.astype(np.float64)[:, None]
        k = ops.k.astype(np.int64)
        n = ops.n.astype(np.float64)[:, None]
        gemm = np.array([kind != "embedding" for kind in ops.kinds], dtype=bool)[:, None]
        # T-MAC replaces weight GEMMs only; attention over the KV cache stays on llama.cpp
        weights = np.array([kind not in ("embedding", "attention") for kind in ops.kinds], dtype=bool)[:, None]
        threads, simd = p["threads"], p["simd_bytes"]

        # per-format columns
        lut = np.array([self.kernel_for(f) == "tmac" for f in formats], dtype=bool)[None, :] & weights
        planes = np.array([_tmac_bits(f) or 0 for f in formats], dtype=np.float64)[None, :]
        asym = np.array([not f.symmetric for f in formats], dtype=bool)[None, :]
        act_bytes = np.array([f.act_bits / 8 for f in formats], dtype=np.float64)[None, :]
        uniq, inverse = np.unique(k, return_inverse=True)
        bpw = bits_table(k, formats)
        deq = np.empty((L, F))
        for j, f in enumerate(formats):
            col_d = np.array([dequant_ops_per_row(_runs_as(f, int(kk)), int(kk), simd, p["dequant_ops_per_group"],
                                                  p["dotprod"])
                              for kk in uniq])
            deq[:, j] = col_d[inverse]

        kf = k.astype(np.float64)[:, None]
        kgroups = np.ceil(kf / TMAC_GROUP)
        blocks = np.ceil(np.ceil(n / simd) / threads)
        tbl = m * blocks * kgroups * planes
        tables = m * kgroups                          # built by thread 0 alone (INIT phase), see docstring
        tmac_rows = blocks * simd                     # rows of the busiest thread (whole row blocks)
        chunks = m * np.ceil(tmac_rows * planes / TMAC_CHUNK_ROWS) * np.ceil(kgroups / TMAC_CHUNK_KGROUPS)
        zero_ops = np.where(asym & (planes > 0), TMAC_ZERO_OPS / np.maximum(planes, 1.0), 0.0)
        tmac_ops = (tbl * p["tmac_ops_per_tbl"] + chunks * (p["tmac_ops_per_chunk"] + zero_ops)
                    + m * tmac_rows * 2.0 * planes + tables * p["tmac_ops_per_table"])
        rows = np.ceil(n / threads)
        llama_ops = m * rows * deq
        simd_ops = np.where(gemm, np.where(lut, tmac_ops, llama_ops), 0.0)
        compute = simd_ops / p["simd_issue_per_cycle"] * np.where(lut, p["tmac_time_scale"], 1.0)

        weight_bytes = ops.weight_elems[:, None] * bpw / 8.0
        acts = np.where(gemm, m * kf + m * n, m * n) * act_bytes
        nbytes = weight_bytes + acts
        bandwidth = min(threads * p["core_bytes_per_s"], p["dram_bytes_per_s"])
        memory = nbytes / bandwidth * p["clock_hz"]

        overhead = np.where(weights, p["op_overhead_s"] * p["clock_hz"], 0.0)
        cycles = np.maximum(compute, memory) + overhead
        latency = cycles / p["clock_hz"]
        energy = threads * p["core_power_w"] * latency + p["dram_energy_j_per_byte"] * nbytes
        return CostTable(
            cycles=cycles, latency_s=latency, energy_j=energy, bytes=nbytes,
            bound=np.where(compute >= memory, COMPUTE, MEMORY).astype(np.int8),
            supported=np.ones((L, F), dtype=bool),
            breakdown={"compute_cycles": compute, "memory_cycles": memory,
                       "lut_lookups": np.where(lut, m * n * kgroups * planes, 0.0),
                       "lut_tables": np.where(lut, m * kgroups, 0.0),
                       "dequant_cycles": np.where(gemm & ~lut, compute, 0.0)})
