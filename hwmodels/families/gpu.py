"""NVIDIA GPU GEMM cost: CTA tiles, waves over SMs, a pipelined K loop, HBM and L2.

How one GEMM (M x K x N, weight operand K x N) runs, the way CUTLASS/cuBLAS/Marlin kernels do:

- Kernel choice by format (`kernel_for`): fp16/bf16 -> fp16 tensor cores; int8 per channel
  with 8-bit activations (W8A8) -> int8 tensor cores; weight-only formats (int2..8, nf4,
  fp6, fp4, mx, ggml, ternary, fp8 weight-only) -> dequantize to fp16 on CUDA cores in the
  main loop, then fp16 tensor cores (Marlin/AWQ style); 4-bit (or narrower) weights with
  8-bit activations -> W4A8 (QServe): int8 tensor cores after a register-level 4->8 bit
  unpack; `-a4` int weights -> W4A4 (Atom/QuaRot): int4 tensor cores, group scales applied
  to the int32 partial sums on CUDA cores; fp8 weights with 8-bit activations -> fp8
  tensor cores (Hopper, Ada); NVFP4/MXFP4 weights with 4-bit activations -> block-scaled fp4
  tensor cores (Blackwell), the scales applied inside the MMA. Decision: fp8 W8A8 on a chip without fp8 tensor cores (A100,
  V100) is unsupported (no such kernel); fp8 weight-only runs as dequant-to-fp16 there
  (vLLM's fp8 Marlin does this on Ampere).
- Tiles: the output is cut into tile_m x tile_n CTA tiles; tile_m shrinks to the smallest
  power of two >= M (not below the 16-row MMA) as cuBLAS/Marlin pick small-M configs.
  When tiles cannot fill the SMs, K is split (split-K) so that they can.
- Waves: units = tiles x split run ctas_per_sm per SM at a time; the last wave is partial
  (the tail-wave effect).
- K loop: each unit walks ceil(K_split / tile_k) k-steps. A k-step costs the max of
  compute (tensor-core MMA + CUDA-core dequant + a fixed barrier/ldmatrix overhead),
  its share of HBM bandwidth (weights stream from HBM; each operand tile is charged to
  DRAM once, its reuse by other tiles is served by L2; a tile padded past M or N loads only
  its valid rows and columns), its L2 read, and the memory
  latency a `pipeline_stages`-deep cp.async pipeline can hide (small M is latency bound).
  A wave adds a prologue (first loads: one DRAM latency) and an epilogue (store C).
- Achieved efficiency therefore comes from named mechanisms: tile padding, tail waves,
  prologue/epilogue per K loop, the k-step overhead, the memory latency floor, the DRAM
  efficiency (~0.85-0.9 of the data sheet) and the power-limited sustained clock.
- Co-design knobs: compute is parametrised per SM per clock (tensor FLOP/OP by datatype,
  CUDA-core ops), so a chip rate is per-SM rate x sm_count x sustained_clock_hz and
  `--set sm_count=...` / `--set sustained_clock_hz=...` scale it; boost_clock_hz only
  recomputes the data-sheet peak (`datasheet_peak`). Memory: dram_bytes_per_s; the L2 feed per SM per clock.
- Software stack (`runtime`, gpu_runtimes.toml): besides kernels and launch overhead, a
  stack may charge a fixed time per prefill pass (`request_setup_s`, TensorRT-LLM's
  per-request host work, on the pass's lm-head op) and run llama.cpp's MMQ at a fraction
  of the int8 tensor rate (`mmq_tensor_fraction`).
- Decode attention (`decode_attention`, set by the runtime): "tensor" runs the KV cache as the
  weight operand of tensor-core GEMMs, one tile of a KV head shared by its query heads
  (FlashAttention / XQA class); "mmha" is the masked multi-head attention kernel of
  FasterTransformer / TensorRT-LLM that QServe's fused attention derives from: one CTA per query
  head, dot products on CUDA cores (Q.K as half2 FMAs, softmax.V converted to fp32), so each query
  head of a GQA group dequantizes its KV head's cache and multiplies every element itself, the cache
  read once from DRAM and re-read from L2 by the other query heads of the group. With GQA and a 4-bit KV cache this is CUDA-core
  bound on the A100 where the tensor form is memory bound.
- The W4A16 kernel is a knob: "marlin" (lop3 dequant, Marlin/AWQ class) or "tinygemm"
  (PyTorch's _weight_int4pack_mm, used by gpt-fast: bf16 magic-number convert + an
  fma per weight for scale and zero, `dequant_ops_tinygemm`). tinygemm is built for small M:
  its real (unpadded) FLOP rate has a ceiling, `tinygemm_tensor_fraction` of the fp16 tensor
  rate, so a large-M int4 prefill under gpt-fast/torchao is compute-bound far below the peak.
- Energy: board power has three parts. (1) idle_power_w for the whole time. (2) While a
  kernel runs, every SM holding a CTA draws sm_active_power_w whatever its utilisation:
  the GPU sits in P0 (boost clock and voltage), and warps stalled on loads still clock
  their schedulers, load/store units, L1 and register files; summed over busy SMs and
  wave time (`sm_seconds`). This is why memory-bound batch-1 decode draws far more than
  idle + DRAM energy. (3) Activity: energy per DRAM byte (the DRAM device plus the GPU's
  PHY, memory controller and crossbar), per L2 byte, per tensor FLOP and per CUDA-core op.
  The split of the dynamic budget (TDP - idle) between (2) and the tensor datapath is an
  estimate; each spec's [sources] gives it, and experiments/reproductions/gpu_published.json checks
  the resulting decode power against a published nvidia-smi reading.

tests/test_gpu.py holds the same model written as a plain loop (tile by tile, wave by
wave, k-step by k-step) and checks the vectorised `Model` against it.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np

from hwmodels.interface import CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.params import SET_SOURCE, Param
from hwmodels.workload import Workload

#: tensor-core datatypes a kernel may run on, by name -> the spec param with its dense
#: throughput per SM per clock (data-sheet peak = that x sm_count x boost_clock_hz)
TC_RATE_PARAM = {"fp16": "fp16_flops_per_sm_clk", "tf32": "tf32_flops_per_sm_clk", "int8": "int8_ops_per_sm_clk",
                 "int4": "int4_ops_per_sm_clk", "fp8": "fp8_flops_per_sm_clk", "fp4": "fp4_flops_per_sm_clk"}
#: tensor-core energy relative to one fp16 MMA FLOP (narrower multipliers cost less;
#: Horowitz ISSCC'14: int8 mult 0.2 pJ vs fp16 mult 1.1 pJ, so <= 1/2 is conservative)
TC_ENERGY_SCALE = {"fp16": 1.0, "tf32": 2.0, "int8": 0.5, "int4": 0.25, "fp8": 0.5, "fp4": 0.25}
MMA_M = 16          # rows of one mma.sync / wgmma fragment: the smallest useful tile_m
OUT_BYTES = 2       # fp16 output
PARTIAL_BYTES = 4   # fp32 split-K partial sums
#: query heads per KV head that TensorRT-LLM's precompiled single-query XQA kernels serve (NVIDIA/TensorRT-LLM
#: cpp/tensorrt_llm/kernels/decoderMaskedMultiheadAttention/cubin/xqa_kernel_cubin.h: every single-query-token
#: cubin is nqpkv_8; decoderXQAImplPrecompiled.cpp supportConfig looks the grouping up among them)
XQA_GROUP = 8
#: software stacks (`--set runtime=NAME`): each profile's values and their sources
RUNTIMES = tomllib.loads((Path(__file__).with_name("gpu_runtimes.toml")).read_text(encoding="utf-8"))
RUNTIME_NAMES = tuple(k for k, v in RUNTIMES.items() if isinstance(v, dict))
#: profile keys that are not cost params (read by the reproductions)
RUNTIME_INFO_KEYS = ("description", "sources", "lm_head_format")

SCHEMA = {
    "sm_count": Param(int, "streaming multiprocessors", min=1, max=1024),
    "boost_clock_hz": Param(float, "data-sheet boost clock the vendor's peaks are quoted at; only recomputes "
                            "those peaks (datasheet_peak): the cost runs at sustained_clock_hz", min=1e8, max=1e10),
    "sustained_clock_hz": Param(float, "clock the SMs run at under sustained tensor-core load (the power-limited "
                                "clock): every compute rate is per-SM rate x sm_count x this", min=1e8, max=1e10),
    "fp16_flops_per_sm_clk": Param(float, "dense fp16/bf16 tensor-core FLOP per SM per clock, FP32 accumulate",
                                   min=1.0),
    "tf32_flops_per_sm_clk": Param(float, "dense tf32 tensor-core FLOP per SM per clock (fp32 CUDA-core FLOP "
                                   "without TF32)", min=1.0),
    "int8_ops_per_sm_clk": Param(float, "dense int8 tensor-core OP per SM per clock; 0 = no int8 tensor cores", min=0.0),
    "int4_ops_per_sm_clk": Param(float, "dense int4 tensor-core OP per SM per clock; 0 = no int4 tensor cores", min=0.0),
    "fp8_flops_per_sm_clk": Param(float, "dense fp8 tensor-core FLOP per SM per clock, FP32 accumulate; 0 = no fp8 "
                                  "tensor cores", min=0.0),
    "fp4_flops_per_sm_clk": Param(float, "dense block-scaled fp4 (NVFP4/MXFP4) tensor-core FLOP per SM per clock, "
                                  "FP32 accumulate; 0 = no fp4 tensor cores (before Blackwell)", min=0.0, default=0.0),
    "cuda_core_ops_per_sm_clk": Param(float, "CUDA-core (non-tensor) FP32 ops per SM per clock, an FMA counted as 2",
                                      min=1.0),
    "dram_bytes_per_s": Param(float, "data-sheet HBM/GDDR bandwidth (B/s)", min=1e9),
    "dram_efficiency": Param(float, "achievable fraction of the data-sheet DRAM bandwidth", min=0.05, max=1.0),
    "dram_latency_s": Param(float, "load-to-use latency of a DRAM access", min=0.0, max=1e-5),
    "l2_bytes": Param(float, "L2 cache capacity (B)", min=0.0),
    "l2_bytes_per_sm_clk": Param(float, "L2 -> SM read bandwidth per SM per clock (B); the chip's L2 feed is "
                                 "this x sm_count x sustained_clock_hz", min=0.1),
    "tile_m": Param(int, "CTA tile rows (largest; shrinks for small M)", min=16, max=512),
    "tile_n": Param(int, "CTA tile columns", min=8, max=512),
    "tile_k": Param(int, "k-step depth of the main loop", min=8, max=512),
    "ctas_per_sm": Param(int, "CTAs resident per SM at this tile size", min=1, max=32),
    "pipeline_stages": Param(int, "cp.async / TMA pipeline depth (loads in flight per CTA)", min=1, max=16),
    "kstep_overhead_cycles": Param(float, "non-overlapped cycles per k-step (barrier, ldmatrix, address math)",
                                   min=0.0, max=1e5),
    "launch_overhead_s": Param(float, "fixed time per GEMM kernel: launch gap plus the small fused "
                               "elementwise kernels around it", min=0.0, max=1e-3),
    "request_setup_s": Param(float, "fixed time per prefill pass (one request's host-side setup, input copy, "
                                "context-engine enqueue, sampling), charged once per pass on the lm-head op; set "
                                "by the runtime", min=0.0, max=1.0, default=0.0),
    "idle_power_w": Param(float, "board power when idle/static (W)", min=0.0),
    "sm_active_power_w": Param(float, "power of one SM while it holds a CTA, independent of its utilisation "
                               "(P0 clock/voltage, schedulers, LSU/L1, register file) (W)", min=0.0, default=0.0),
    "tdp_w": Param(float, "board power limit (W)", min=1.0),
    "dram_j_per_byte": Param(float, "DRAM access energy (J/B)", min=0.0),
    "l2_j_per_byte": Param(float, "L2 read energy (J/B)", min=0.0),
    "tc_j_per_flop": Param(float, "tensor-core energy per fp16 FLOP (J)", min=0.0),
    "cuda_core_j_per_op": Param(float, "CUDA-core energy per op (J)", min=0.0),
    # dequantisation cost in CUDA-core ops per weight (counted like cuda_core_ops_per_s),
    # paid once per weight per CTA tile row-block: amortised over the tile's M rows.
    "runtime": Param(str, "software stack (hwmodels/families/gpu_runtimes.toml): its kernels, launch overhead, "
                     "accumulation and quantized prefill path; its values give way to explicit --set",
                     choices=RUNTIME_NAMES, default=RUNTIMES["default"]),
    "fp16_acc16_flops_per_sm_clk": Param(float, "dense fp16 tensor FLOP per SM per clock with FP16 accumulate "
                                         "(GeForce: 2x the FP32-accumulate rate); 0 = same as fp16_flops_per_sm_clk",
                                         min=0.0, default=0.0),
    "fp16_accumulate": Param(bool, "dense fp16 GEMMs accumulate in fp16 (set by the runtime)", default=False),
    "quantized_prefill": Param(str, "how weight-only int/ggml GEMMs run at large M: fused | reconstruct (fp16 "
                               "weights rebuilt, then a dense fp16 GEMM) | int8-mmq (8-bit activations on int8 "
                               "tensor cores); set by the runtime",
                               choices=("fused", "reconstruct", "int8-mmq"), default="fused"),
    "mmq_tensor_fraction": Param(float, "fraction of the int8 tensor rate llama.cpp's MMQ mma loop reaches "
                                   "(quantized_prefill=int8-mmq); set by the runtime", min=0.01, max=1.0, default=1.0),
    "reconstruct_min_m": Param(int, "M above which quantized_prefill=reconstruct applies", min=1, default=33),
    "decode_attention": Param(str, "decode attention kernel: tensor (the KV cache as a GEMM operand on tensor cores, "
                              "a KV head's tile shared by its query heads: FlashAttention/XQA class) or mmha "
                              "(masked multi-head attention: one CTA per query head, dot products on CUDA cores, so "
                              "each query head of a GQA group dequantizes and multiplies its KV head's cache itself, "
                              "re-read from L2), or xqa (TensorRT-LLM's dispatch: its precompiled XQA kernels, the "
                              "tensor form, serve XQA_GROUP query heads per KV head; any other grouping runs mmha); "
                              "set by the runtime", choices=("tensor", "mmha", "xqa"), default="tensor"),
    "mmha_ops_per_element": Param(float, "CUDA-core ops (FMA-counted) per KV element per query head in masked MHA "
                                  "(decode_attention=mmha), besides dequant_ops_int, counted from QServe's kernel "
                                  "(mit-han-lab/qserve kernels/csrc/fused_attention): K side qk_hmma_dot_simple, one "
                                  "fma.rn.f16x2 per 2 elements = 1 op; V side fma(uint16_t, uint4, Float8_) with "
                                  "MMHA_USE_FP32_ACUM_FOR_LOGITS off: half2 -> float2, then fp32 FMAs = 4 ops; mean "
                                  "2.5. Its KV4 dequant (convert_from_4bit_kv_cache: dequantize_s4_to_fp16x2, 1 shift "
                                  "+ 4 lop3 + 2 sub + 2 fma, then 4 __hfma2 for scale and zero = 13 lane-instructions "
                                  "per 8 elements = 3.25 ops) is 1.25 ops above dequant_ops_int's 2, added here: "
                                  "3.75 (every lane-instruction counted at the FP32 issue rate)",
                                  min=0.0, default=3.75),
    "mmha_int8_kv_dequant_ops": Param(float, "CUDA-core ops (FMA-counted) per int8 KV element per query head in "
                                      "masked MHA, in place of dequant_ops_int; 0 = dequant_ops_int. Set by the "
                                      "runtime where its kernel converts int8 through fp32 (I2F, a conversion at a "
                                      "quarter of the FP32 rate on sm_80+)", min=0.0, default=0.0),
    "gemm_activation_bits": Param(str, "activation widths the stack's quantized GEMM kernels take, comma-separated "
                                  "(16: weight-only, 8: W8A8/W4A8, 4: W4A4); a format whose activations the stack "
                                  "has no kernel for is unsupported (without 16, weight-only formats only on the "
                                  "weight GEMMs: the KV cache is still read); set by the runtime", default="16,8,4"),
    "lowrank_kernel": Param(str, "how a low-rank branch (SVDQuant, formats -rN) runs: fused into the 4-bit "
                            "kernels as Nunchaku does, or separate 16-bit GEMMs (hwmodels/families/gpu_lowrank.py)",
                            choices=("fused", "separate"), default="fused"),
    "w4a16_kernel": Param(str, "kernel for 4-bit int weight-only GEMMs: marlin (Marlin/AWQ/exllama class, "
                          "dequant_ops_int) or tinygemm (PyTorch _weight_int4pack_mm as in gpt-fast, "
                          "dequant_ops_tinygemm)", choices=("marlin", "tinygemm"), default="marlin"),
    "tinygemm_tensor_fraction": Param(float, "ceiling of tinygemm (w4a16_kernel=tinygemm) in real FLOP/s, as a fraction of "
                                      "the fp16 tensor rate: its kernel is built for small M and does not reach the "
                                      "tensor rate at large M; set by the runtime", min=0.001, max=1.0, default=1.0),
    "dequant_ops_tinygemm": Param(float, "ops/weight of tinygemm's int4 -> bf16 dequant: per 32-bit word of 8 "
                                  "weights 4 lop3 + 3 shifts + 4 bf16x2 fma (bias) + 4 bf16x2 fma (scale, zero) = "
                                  "15 lane-instructions (pytorch aten/src/ATen/native/cuda/int4mm.cu, "
                                  "convert_i4x8_to_bf16x2x4 and BLayout_TC_int4::load) = 1.875/weight = 3.75 "
                                  "FMA-counted ops", min=0.0, default=3.75),
    "dequant_ops_int": Param(float, "ops/weight to unpack int4/int8 to fp16 and scale: the lop3 magic-"
                             "number trick (Kim et al. 2022, used by Marlin, Frantar et al. 2024) takes ~1 "
                             "half2 lane-instruction per weight = 2 FMA-counted ops", min=0.0, default=2.0),
    "dequant_ops_odd_bits": Param(float, "extra ops/weight for int2/3/5/6/7 fields crossing word "
                                  "boundaries (estimate)", min=0.0, default=1.0),
    "dequant_ops_lut": Param(float, "ops/weight for codebook formats (nf4, fp4, mx, ternary): shuffle/"
                             "LUT lookup + scale (estimate)", min=0.0, default=4.0),
    "dequant_ops_fp6": Param(float, "ops/weight for fp6 bit-level unpack (FP6-LLM, Xia et al. 2024, "
                             "estimate)", min=0.0, default=5.0),
    "dequant_ops_ggml": Param(float, "ops/weight for llama.cpp blocks (sub-block scales, mins; estimate)",
                              min=0.0, default=4.0),
    "dequant_ops_fp8": Param(float, "ops/weight fp8 -> fp16 convert + scale (estimate)", min=0.0, default=1.0),
    "dequant_ops_w4a8": Param(float, "ops/weight 4 -> 8 bit register-level unpack with group scale "
                              "(QServe Sec. 5: 4 weights per 32-bit op, subtraction after multiply)", min=0.0, default=0.5),
    "psum_ops_per_group": Param(float, "ops per output element per weight group to scale int32 partial "
                                "sums (Atom W4A4: convert + FMA)", min=0.0, default=2.0),
}


def kernel_for(fmt, rates: dict, w4a16_kernel: str = "marlin", quantized_prefill: str = "fused") -> tuple | None:
    """(tensor datatype, activation bytes, dequant op kind, grouped partial sums, MMQ) or None.

    `rates` maps tensor datatype -> its rate (0 where the chip lacks it); `w4a16_kernel`
    picks the dequant of 4-bit int weight-only GEMMs; quantized_prefill="int8-mmq" runs
    int/ggml weight-only formats as llama.cpp's MMQ does: activations quantized to 8 bits,
    int8 tensor cores, the weights' block scales applied to the int32 partial sums.
    """
    family, bits, act = fmt.family, float(fmt.weight_bits), int(fmt.act_bits)
    if (quantized_prefill == "int8-mmq" and act >= 16 and family in ("int", "ggml") and bits <= 8
            and rates["int8"] > 0):
        kind = "ggml" if family == "ggml" else "int" if bits in (4, 8) else "odd"
        return ("int8", 1.0, kind, fmt.group_size is not None, True)
    if family == "float":
        tc = "tf32" if bits > 16 else "fp16"
        return (tc, 4.0 if bits > 16 else 2.0, None, False, False)
    if act >= 16:
        if family == "fp" and bits == 8:
            kind = "fp8"
        elif family == "fp" and bits == 6:
            kind = "fp6"
        elif family == "ggml":
            kind = "ggml"
        elif family == "int" and bits == 4 and w4a16_kernel == "tinygemm":
            kind = "tinygemm"
        elif family == "int" or (family == "mx" and fmt.element == "int8"):
            kind = "int" if bits in (4, 8) else "odd"
        else:
            kind = "lut"
        return ("fp16", 2.0, kind, False, False)
    if getattr(fmt, "act_type", "int") == "fp":  # fp8 / fp4 activations (``-afN``): fp tensor cores only
        if act == 8 and family == "fp" and bits == 8:
            return ("fp8", 1.0, None, False, False) if rates["fp8"] > 0 else None
        if act == 8 and family == "int" and bits <= 4:  # TensorRT-LLM W4A8-AWQ: int4 -> fp8 in registers, fp8 MMA
            return ("fp8", 1.0, "w4a8", False, False) if rates["fp8"] > 0 else None
        return None  # fp4 tensor cores (Blackwell) are not in the spec schema
    if act == 8:
        if family == "fp" and bits == 8:
            return ("fp8", 1.0, None, False, False) if rates["fp8"] > 0 else None
        if family == "int" and bits == 8:
            return ("int8", 1.0, None, fmt.group_size is not None, False) if rates["int8"] > 0 else None
        if family == "int" and bits <= 4:
            return ("int8", 1.0, "w4a8", False, False) if rates["int8"] > 0 else None
        return None
    if act == 4 and family in ("nvfp", "mx") and bits == 4:  # block-scaled MMA: the tensor core applies the scales
        return ("fp4", 0.5, None, False, False) if rates.get("fp4", 0) > 0 else None
    if act == 4 and family == "int" and bits <= 4:
        return ("int4", 0.5, None, fmt.group_size is not None, False) if rates["int4"] > 0 else None
    return None


def _next_pow2(x: np.ndarray) -> np.ndarray:
    return 2 ** np.ceil(np.log2(np.maximum(x, 1))).astype(np.int64)


class Model(HardwareModel):
    """Tile-and-wave GEMM model of an NVIDIA GPU (see the module docstring)."""

    ENERGY_PARAMS = ("idle_power_w", "sm_active_power_w", "tdp_w", "dram_j_per_byte", "l2_j_per_byte", "tc_j_per_flop", "cuda_core_j_per_op")
    SCHEMA = SCHEMA
    DESCRIPTION = "analytic tile/wave GEMM model (CTA tiles, split-K, pipelined K loop, HBM/L2)"
    #: where the energy figures come from (plans carry it as provenance.energy_basis)
    ENERGY_BASIS = "estimate: data-sheet TDP split (idle + per-busy-SM power + pJ per DRAM/L2 byte and tensor FLOP)"

    def __init__(self, spec):
        """Apply the runtime profile: its values replace the spec's, except params given by --set."""
        name = spec.params.get("runtime", RUNTIMES["default"])
        profile = RUNTIMES[name]
        params, sources = dict(spec.params), dict(spec.sources)
        for key, value in profile.items():
            if key in RUNTIME_INFO_KEYS or sources.get(key) == SET_SOURCE:
                continue
            params[key] = value
            sources[key] = f"runtime {name}: {profile['sources'].get(key, 'see gpu_runtimes.toml')}"
        from types import MappingProxyType

        super().__init__(dataclasses.replace(spec, params=MappingProxyType(params), sources=MappingProxyType(sources)))
        self.runtime = {"name": name, "description": profile["description"],
                        "lm_head_format": profile.get("lm_head_format", "same")}

    # ----------------------------------------------------------------- helpers
    def _per_chip(self, key: str, clock_hz: float) -> float:
        p = self.spec.params
        return float(p[key]) * p["sm_count"] * clock_hz

    @property
    def rates(self) -> dict:
        """Sustained tensor rate per datatype: per-SM rate x sm_count x sustained clock."""
        clock = self.spec.params["sustained_clock_hz"]
        return {tc: self._per_chip(key, clock) for tc, key in TC_RATE_PARAM.items()}

    @property
    def alu_rate(self) -> float:
        """Sustained CUDA-core rate (ops/s): per-SM ops x sm_count x sustained clock."""
        return self._per_chip("cuda_core_ops_per_sm_clk", self.spec.params["sustained_clock_hz"])

    @property
    def l2_rate(self) -> float:
        """L2 -> SM read bandwidth of the chip (B/s): per-SM port x sm_count x sustained clock."""
        return self._per_chip("l2_bytes_per_sm_clk", self.spec.params["sustained_clock_hz"])

    def datasheet_peak(self, tc: str) -> float:
        """The vendor's dense peak for datatype `tc` ("cuda" = CUDA cores): per-SM rate x SMs x boost clock."""
        key = "cuda_core_ops_per_sm_clk" if tc == "cuda" else TC_RATE_PARAM[tc]
        return self._per_chip(key, self.spec.params["boost_clock_hz"])

    def kernel(self, fmt):
        """The card's kernel for `fmt` (kernel_for), or None where the runtime has no GEMM for its activations."""
        p = self.spec.params
        if int(fmt.act_bits) < 16 and str(int(fmt.act_bits)) not in self._gemm_activation_bits():
            return None
        return kernel_for(fmt, self.rates, p["w4a16_kernel"], p["quantized_prefill"])

    def dense_fp16_rate(self) -> float:
        """Rate of a dense fp16 GEMM: the FP16-accumulate rate where the runtime uses it and the card has one."""
        p = self.spec.params
        if p["fp16_accumulate"] and p["fp16_acc16_flops_per_sm_clk"] > 0:
            return self._per_chip("fp16_acc16_flops_per_sm_clk", p["sustained_clock_hz"])
        return self.rates["fp16"]

    def supports(self, fmt) -> bool:
        return self.kernel(fmt) is not None

    def _dequant_ops(self, kind) -> float:
        p = self.spec.params
        if kind is None:
            return 0.0
        if kind == "odd":
            return p["dequant_ops_int"] + p["dequant_ops_odd_bits"]
        return float(p[f"dequant_ops_{kind}"])

    def format_arrays(self, formats: list) -> dict:
        """Per-format [F] arrays: tensor rate, activation bytes, dequant ops, psum ops, energy scale."""
        rates = self.rates
        p = self.spec.params
        out = {"rate": [], "act_bytes": [], "dequant": [], "psum": [], "tc_energy": [], "real_rate": []}
        for fmt in formats:
            kern = self.kernel(fmt)
            if kern is None:  # unsupported: any finite placeholder, masked to inf by cost()
                kern = ("fp16", 2.0, None, False, False)
            tc, act_bytes, kind, grouped, mmq = kern
            dense = tc == "fp16" and kind is None
            out["rate"].append(self.dense_fp16_rate() if dense else
                               rates[tc] * (p["mmq_tensor_fraction"] if mmq else 1.0))
            out["act_bytes"].append(act_bytes)
            out["dequant"].append(self._dequant_ops(kind))
            out["psum"].append(p["psum_ops_per_group"] / fmt.group_size if grouped else 0.0)
            out["tc_energy"].append(TC_ENERGY_SCALE[tc])
            # a ceiling on real (unpadded) FLOPs: tinygemm's measured large-M rate; none for other kernels
            out["real_rate"].append(rates["fp16"] * p["tinygemm_tensor_fraction"] if kind == "tinygemm" else np.inf)
        return {k: np.array(v, dtype=np.float64) for k, v in out.items()}

    def tiling(self, m: np.ndarray, k: np.ndarray, n: np.ndarray, batch: np.ndarray | None = None) -> dict:
        """Per-op [L] tile shape, tile counts, split-K factor, k-steps and waves.

        batch: independent GEMMs of this shape run by one kernel (attention heads).
        """
        p = self.spec.params
        slots = p["sm_count"] * p["ctas_per_sm"]
        m = np.maximum(m.astype(np.int64), 1)
        k = np.maximum(k.astype(np.int64), 1)
        n = np.maximum(n.astype(np.int64), 1)
        tm = np.clip(_next_pow2(m), MMA_M, p["tile_m"])
        tn = np.full_like(m, p["tile_n"])
        tiles_m = -(-m // tm)
        tiles_n = -(-n // tn)
        batch = np.ones_like(m) if batch is None else np.asarray(batch, dtype=np.int64)
        tiles = tiles_m * tiles_n * batch
        max_split = -(-k // p["tile_k"])
        split = np.clip(slots // tiles, 1, max_split)
        k_split = -(-k // split)
        k_steps = -(-k_split // p["tile_k"])
        units = tiles * split
        full_waves = units // slots
        tail = units - full_waves * slots
        rows = m / tiles_m                     # valid (unpadded) output rows and columns of a tile
        cols = n / tiles_n
        return {"slots": slots, "tm": tm, "tn": tn, "tiles_m": tiles_m, "tiles_n": tiles_n, "tiles": tiles,
                "batch": batch, "rows": rows, "cols": cols,
                "split": split, "k_steps": k_steps, "units": units, "full_waves": full_waves, "tail": tail}

    # -------------------------------------------------------------------- cost
    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        """The GEMM cost (`_cost_gemm`), plus the low-rank branch of SVDQuant formats (gpu_lowrank);
        a denoising step's attention as one fused kernel (gpu_attention)."""
        from hwmodels.families.gpu_attention import fused_attention
        from hwmodels.families.gpu_lowrank import add_lowrank

        table = add_lowrank(self, ops, formats, workload, self._cost_gemm(ops, formats, workload))
        return self._weight_only_kernels(ops, formats, fused_attention(self, ops, workload, table))

    def _gemm_activation_bits(self) -> set[str]:
        """The activation widths ("16", "8", "4") the runtime's GEMM kernels take."""
        return set(self.spec.params["gemm_activation_bits"].split(","))

    def _weight_only_kernels(self, ops: Ops, formats: list, table: CostTable) -> CostTable:
        """`table` with weight-only formats (16-bit activations, quantized weights) unsupported on the weight
        GEMMs of a runtime without such kernels (gemm_activation_bits lacks 16); its attention still reads a
        quantized KV cache, which the model costs as such a format."""
        if "16" in self._gemm_activation_bits():
            return table
        weight_only = np.array([f.family != "float" and int(f.act_bits) >= 16 for f in formats], dtype=bool)
        weights = np.array([kd in ("linear", "lm-head") for kd in ops.kinds], dtype=bool)
        table.supported = table.supported & ~(weights[:, None] & weight_only[None, :])
        return table

    def _cost_gemm(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        """The fused-kernel cost; with quantized_prefill=reconstruct, int (and LUT: NF4) weight-only GEMMs
        above reconstruct_min_m rows instead pay a dense fp16 GEMM plus one pass that rebuilds the fp16
        weights (read the packed weights, write 2 B per weight), as ExLlamaV2 does (and bitsandbytes'
        matmul_4bit above one row)."""
        table = self._cost_fused(ops, formats, workload)
        p = self.spec.params
        if p["quantized_prefill"] != "reconstruct":
            return table
        kinds = [self.kernel(f) for f in formats]
        cols = [i for i, k in enumerate(kinds) if k is not None and k[2] in ("int", "odd", "tinygemm", "lut")]
        rows = (ops.m > p["reconstruct_min_m"]) & np.array([kd == "linear" for kd in ops.kinds], dtype=bool)
        if not cols or not rows.any():
            return table
        from quantcore.formats import get_format

        dense = self._cost_fused(ops, [get_format("fp16")], workload)
        dram_bw = p["dram_bytes_per_s"] * p["dram_efficiency"]
        wbytes = bits_table(ops.k, [formats[i] for i in cols]) / 8.0
        moved = ops.weight_elems[:, None] * (wbytes + 2.0)
        rebuild = p["launch_overhead_s"] + p["dram_latency_s"] + moved / dram_bw
        rebuild_j = (p["idle_power_w"] + p["sm_active_power_w"] * p["sm_count"]) * rebuild + p["dram_j_per_byte"] * moved
        pick = rows[:, None]
        for j, c in enumerate(cols):
            table.latency_s[:, c] = np.where(rows, dense.latency_s[:, 0] + rebuild[:, j], table.latency_s[:, c])
            table.energy_j[:, c] = np.where(rows, dense.energy_j[:, 0] + rebuild_j[:, j], table.energy_j[:, c])
            table.bytes[:, c] = np.where(rows, dense.bytes[:, 0] + moved[:, j], table.bytes[:, c])
            table.cycles[:, c] = table.latency_s[:, c] * p["sustained_clock_hz"]
            for key, arr in table.breakdown.items():
                if arr.shape == table.latency_s.shape:
                    arr[:, c] = np.where(pick[:, 0], dense.breakdown[key][:, 0], arr[:, c])
        return table

    def _cost_fused(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        fa = self.format_arrays(formats)
        # attention: the batch x KV-head GEMMs of a layer run as one batched kernel, so launch,
        # waves and tails are those of the whole batch; the per-execution cost is its 1/batch share
        attn = np.array([kd == "attention" for kd in ops.kinds], dtype=bool)
        batch = np.where(attn, np.maximum(np.ceil(ops.count), 1), 1).astype(np.int64)
        t = self.tiling(ops.m, ops.k, ops.n, batch)
        slots = t["slots"]
        wbytes = bits_table(ops.k, formats, ops.n) / 8.0                  # [L, F] bytes per weight
        col = lambda a: np.asarray(a, dtype=np.float64)[:, None]           # noqa: E731  [L] -> [L, 1]
        tm, tn, tk = col(t["tm"]), col(t["tn"]), float(p["tile_k"])
        tiles_m, tiles_n, split = col(t["tiles_m"]), col(t["tiles_n"]), col(t["split"])
        k_steps, full, tail = col(t["k_steps"]), col(t["full_waves"]), col(t["tail"])
        units = col(t["units"])
        rate, act_b = fa["rate"][None, :], fa["act_bytes"][None, :]
        deq, psum = fa["dequant"][None, :], fa["psum"][None, :]
        clock = p["sustained_clock_hz"]
        dram_bw = p["dram_bytes_per_s"] * p["dram_efficiency"]
        slot_l2_bw = self.l2_rate / slots
        slot_alu = self.alu_rate / slots

        # one k-step of one unit (a CTA tile of one K split): the bytes of its valid rows and columns
        # (a tile padded past N or M computes the padding but loads no memory for it, e.g. the
        # 128-wide V of attention on a 256-wide tile)
        w_step = tk * col(t["cols"]) * wbytes                               # weight tile bytes
        a_step = col(t["rows"]) * tk * act_b                                # activation tile bytes
        dram_step = w_step / tiles_m + a_step / tiles_n                     # DRAM share: reuse hits L2
        t_mma = np.maximum(2.0 * tm * tn * tk / (rate / slots),
                           2.0 * col(t["rows"]) * col(t["cols"]) * tk / (fa["real_rate"][None, :] / slots))
        alu_step = tk * tn * deq + tm * tn * tk * psum                      # CUDA-core ops of one k-step
        # masked MHA in decode: no MMA; each valid row (a query head) dequantizes every KV element
        # of the tile and multiplies it once (mmha_ops_per_element, QServe's count) on CUDA
        # cores, its KV re-read from L2
        # (decode_attention=xqa: masked MHA unless the op's M, the query heads per KV head, is XQA_GROUP)
        grouping = np.where(p["decode_attention"] == "xqa", ops.m != XQA_GROUP, p["decode_attention"] == "mmha")
        mmha = col(attn & (workload.phase == "decode") & grouping) > 0
        t_mma = np.where(mmha, 0.0, t_mma)
        kv8 = np.array([f.family == "int" and f.weight_bits == 8 for f in formats])[None, :]
        deq_mmha = np.where(kv8 & (p["mmha_int8_kv_dequant_ops"] > 0), p["mmha_int8_kv_dequant_ops"], deq)
        alu_step = np.where(mmha, col(t["rows"]) * tk * col(t["cols"]) * (p["mmha_ops_per_element"] + deq_mmha), alu_step)
        t_deq = alu_step / slot_alu
        t_comp = t_mma + t_deq + p["kstep_overhead_cycles"] / clock
        t_l2 = (w_step * np.where(mmha, col(t["rows"]), 1.0) + a_step) / slot_l2_bw
        t_lat = p["dram_latency_s"] / p["pipeline_stages"]
        # epilogue stores the tile's valid outputs; split-K writes fp32 partials and reads them back
        out_tile = col(t["rows"]) * col(t["cols"]) * np.where(split > 1, PARTIAL_BYTES * 2.0, OUT_BYTES)
        # split-K partials that fit in L2 are written and read back there, at the L2 rate (an
        # fp32 partial is reduced by the same kernel moments after it is written)
        in_l2 = (split > 1) & (units * out_tile <= p["l2_bytes"])
        epi_bw = np.where(in_l2, self.l2_rate, dram_bw)
        out_dram = np.where(in_l2, col(t["tiles"]) * col(t["rows"]) * col(t["cols"]) * OUT_BYTES, units * out_tile)

        def wave(active):
            """(total, k-step, memory part of the k-step) of one wave with `active` units."""
            t_dram = active * dram_step / dram_bw
            t_mem = np.maximum(np.maximum(t_dram, t_l2), t_lat)
            step = np.maximum(t_comp, t_mem)
            total = p["dram_latency_s"] + k_steps * step + active * out_tile / epi_bw
            on = active > 0
            return np.where(on, total, 0.0), np.where(on, step, 0.0), np.where(on, t_mem, 0.0)

        t_full, step_full, mem_full = wave(np.broadcast_to(float(slots), tail.shape))
        t_tail, step_tail, mem_tail = wave(tail)
        waves = full + (tail > 0)
        gemm_s = full * t_full + t_tail
        sms = float(p["sm_count"])
        sm_seconds = full * t_full * sms + t_tail * np.minimum(tail, sms)   # busy SM x seconds
        body_s = k_steps * (full * step_full + step_tail)                   # the K loops themselves
        compute_s = k_steps * waves * t_comp                                # busy tensor/CUDA cores
        memory_s = k_steps * (full * mem_full + mem_tail)                   # memory-side step time

        gemm = np.array([kd != "embedding" for kd in ops.kinds], dtype=bool)[:, None]
        # embedding gather: read the rows, write them (no MMA)
        gather_bytes = col(ops.weight_elems) * wbytes + col(ops.weight_elems) * OUT_BYTES
        gather_s = p["dram_latency_s"] + gather_bytes / dram_bw
        latency = np.where(gemm, gemm_s, gather_s) + p["launch_overhead_s"]
        if workload.phase == "prefill" and p["request_setup_s"] > 0:  # once per pass: on its one lm-head op
            latency = latency + col(np.where(np.asarray(ops.kinds) == "lm-head", p["request_setup_s"], 0.0))
        sm_seconds = np.where(gemm, sm_seconds, gather_s * sms)             # a gather spreads over all SMs
        body_s = np.where(gemm, body_s, gather_s)
        compute_s = np.where(gemm, compute_s, 0.0)
        memory_s = np.where(gemm, memory_s, gather_s)
        other_s = latency - body_s                                          # launch, prologues, epilogues
        bound = np.argmax(np.stack(np.broadcast_arrays(compute_s, memory_s, other_s)), axis=0)  # 0 compute, 1 memory, 2 other

        dram_bytes = np.where(gemm, units * k_steps * dram_step + out_dram, gather_bytes)
        l2_bytes = np.where(gemm, units * k_steps * (w_step * np.where(mmha, col(t["rows"]), 1.0) + a_step), 0.0)
        mma_flops = np.where(gemm & ~mmha, units * k_steps * 2.0 * tm * tn * tk, 0.0)
        alu_ops = np.where(gemm, units * k_steps * alu_step, 0.0)
        dequant_s = np.where(gemm, k_steps * waves * t_deq, 0.0)

        energy = (p["idle_power_w"] * latency + p["sm_active_power_w"] * sm_seconds
                  + p["dram_j_per_byte"] * dram_bytes + p["l2_j_per_byte"] * l2_bytes
                  + p["tc_j_per_flop"] * fa["tc_energy"][None, :] * mma_flops + p["cuda_core_j_per_op"] * alu_ops)
        # the power limit: while the tensor/CUDA pipes are busy the card boosts until it draws its TDP
        # (the sustained clock is that power-limited clock), so board power is at least idle + the
        # busy share of (TDP - idle); energy = that power x time when it exceeds the activity sum
        busy = np.clip(np.where(latency > 0, compute_s / np.maximum(latency, 1e-30), 0.0), 0.0, 1.0)
        energy = np.maximum(energy, (p["idle_power_w"] + (p["tdp_w"] - p["idle_power_w"]) * busy) * latency)
        shape = latency.shape
        share = 1.0 / col(batch)
        bc = lambda a: np.broadcast_to(a * share, shape).astype(np.float64)  # noqa: E731  one GEMM's share
        latency, energy = latency * share, energy * share
        return CostTable(
            cycles=latency * clock, latency_s=latency, energy_j=energy, bytes=bc(dram_bytes),
            bound=np.broadcast_to(bound, shape).astype(np.int8), supported=np.ones(shape, dtype=bool),
            breakdown={"compute_cycles": bc(compute_s) * clock, "memory_cycles": bc(memory_s) * clock,
                       "dequant_cycles": bc(dequant_s) * clock,
                       "overhead_cycles": bc(other_s) * clock, "waves": bc(waves * col(batch)),
                       "l2_bytes": bc(l2_bytes), "tensor_ops": bc(mma_flops), "sm_seconds": bc(sm_seconds)})

