"""T-MAC (Wei et al., EuroSys'25): decode of Llama-2-7B on CPUs, LUT vs llama.cpp, every table entry.

Published figures, two tables of the same repository (microsoft/T-MAC), tokens/s of llama-bench
`-n 128 -p 0 -b 1` (`tools/bench_e2e.py`):

- `docs/profiling_data.md` (July 2024): 1 and 8 threads on M2-Ultra, 1 and 2 on Raspberry Pi 5;
- `assets/e2e_threads.zip`, the per-thread data behind the README's figure `assets/e2e_threads.png`
  (re-profiled a week later; "T-MAC ... without fast-aggregation"): M2-Ultra at 1..16 threads, of
  which we reproduce 1, 2, 4, 8 and 16 (16 = every P-core). It has no Raspberry Pi 5 data. At
  1 and 8 threads the two tables measure the same setup and differ by 2-35 %: rows of the second
  are marked `same_setup_as` there and counted once.

W2 models are BitDistiller 2-bit
g128 (asymmetric) run by T-MAC and Q2_K by llama.cpp; W4 models are GPTQ 4-bit g128
by T-MAC and Q4_0 by llama.cpp (README: "We evaluate ... Llama-2-7B (W2) with T-MAC
2-bit and llama.cpp Q2_K, and ... (W4) with T-MAC 4-bit and llama.cpp Q4_0").

Ours: one decode step of llama-2-7b (batch 1) through `hwmodels.wholemodel.model_cost`,
with the average context of a 128-token generation from an empty prompt (64 tokens).
llama.cpp files are costed tensor by tensor in the types `llama-quantize` writes
(`LLAMACPP_MIX`), not as if every tensor were Q2_K / Q4_0.
"""
from __future__ import annotations

import numpy as np

from quantcore.formats import get_format
from quantcore.models import load_graph
from hwmodels.ops import ops_for_graph
from hwmodels.registry import load_model
from hwmodels.wholemodel import fixed_costs, model_cost
from hwmodels.workload import Workload

SOURCE = "T-MAC (EuroSys'25), microsoft/T-MAC docs/profiling_data.md (README Fig. e2e_threads)"
#: llama-bench -n 128 -p 0: contexts 1..128, mean 64 (tools/bench_e2e.py)
DECODE = Workload(phase="decode", batch=1, seq=64, kv_bits=16)
#: (device, threads, weights) -> (T-MAC tokens/s, llama.cpp tokens/s): every Llama-2-7B entry of
#: docs/profiling_data.md on the two devices we have targets for (AGX Orin and Surface Book 3 have
#: none; BitNet-3B is not in our model catalog)
PUBLISHED = {
    ("M2-Ultra", 1, "W2"): (16.68, 3.82),
    ("M2-Ultra", 8, "W2"): (51.01, 22.06),
    ("M2-Ultra", 1, "W4"): (8.97, 5.65),
    ("M2-Ultra", 8, "W4"): (35.65, 31.57),
    ("Raspberry Pi 5", 1, "W2"): (4.40, 0.66),
    ("Raspberry Pi 5", 2, "W2"): (5.92, 1.31),
    ("Raspberry Pi 5", 1, "W4"): (2.42, 0.85),
    ("Raspberry Pi 5", 2, "W4"): (3.35, 1.63),
}
#: (threads, weights) -> (T-MAC tokens/s, llama.cpp tokens/s): assets/e2e_threads.zip, M2-Ultra
#: (m2_llama-2-7b-{w2,w4}_{tmac,llamacpp}.csv, column `mean`), threads 1, 2, 4, 8, 16
PUBLISHED_THREADS = {
    (1, "W2"): (12.31, 3.14), (2, "W2"): (21.54, 6.07), (4, "W2"): (34.41, 11.0),
    (8, "W2"): (44.85, 20.1), (16, "W2"): (37.9, 29.45),
    (1, "W4"): (7.22, 5.11), (2, "W4"): (13.12, 10.0), (4, "W4"): (22.79, 18.51),
    (8, "W4"): (31.8, 31.23), (16, "W4"): (31.7, 34.53),
}
SOURCE_THREADS = "T-MAC (EuroSys'25), microsoft/T-MAC assets/e2e_threads.zip (README Fig. e2e_threads), M2-Ultra"
SPECS = {"M2-Ultra": "m2-ultra", "Raspberry Pi 5": "rpi5"}
#: formats of the two systems per weight width (README, see module docstring)
FORMATS = {"W2": ("int2-g128-asym", "q2_k"), "W4": ("int4-g128-asym", "q4_0")}


#: tensors `llama-quantize` stores at other types than the file type (llama.cpp
#: llama_tensor_get_type, b2794 and later): output.weight -> Q6_K for every k-quant and
#: Q4_0 file; with ftype Q2_K, attn_v.weight -> Q3_K (n_gqa < 4, as Llama-2-7B) and
#: ffn_down -> Q3_K. Checked against the code of later versions (src/llama-quant.cpp),
#: where these rules are unchanged.
LLAMACPP_MIX = {"q2_k": {"lm_head": "q6_k", "v_proj": "q3_k", "down_proj": "q3_k"},
                "q4_0": {"lm_head": "q6_k"}}


def _layer_formats(names, fmt: str) -> list[str]:
    mix = LLAMACPP_MIX.get(fmt, {})
    return [next((f for key, f in mix.items() if name.endswith(key)), fmt) for name in names]


def tokens_per_s(hw: str, fmt: str, threads: int) -> float:
    """Decode tokens/s; llama.cpp files get the per-tensor types `llama-quantize` really writes."""
    model = load_model(hw, [f"threads={threads}"])
    graph = load_graph("llama-2-7b")
    if fmt not in LLAMACPP_MIX:
        return 1.0 / model_cost(model, graph, get_format(fmt), DECODE)["latency_s"]
    ops = ops_for_graph(graph, DECODE)
    per_op = _layer_formats(ops.names, fmt)
    names = sorted(set(per_op))
    table = model.cost(ops, [get_format(n) for n in names], DECODE)
    column = np.array([names.index(n) for n in per_op])
    latency = float(table.latency_s[np.arange(len(ops)), column].sum())
    latency += sum(float(t.latency_s.sum()) for t in fixed_costs(model, graph, DECODE) if t is not None)
    return 1.0 / latency


def _setup(device, threads, width, system, fmt):
    return (f"Llama-2-7B {width} decode, batch 1, mean context 64, {threads} thread(s) on {device}, "
            f"{system} kernel, format {fmt}")


def _row(device, threads, width, system, note, published, source, twin=None):
    """One table entry: our decode tokens/s for `system` (T-MAC or llama.cpp) against `published`."""
    def fn():
        tmac = system == "T-MAC"
        fmt = FORMATS[width][0 if tmac else 1]
        hw = SPECS[device] + ("" if tmac else "-llamacpp")
        row = {"refs": ["tmac"], "ours": tokens_per_s(hw, fmt, threads), "published": published,
               "source": source + ("" if tmac else ", llama.cpp column"),
               "setup": _setup(device, threads, width, "T-MAC" if tmac else "llama.cpp b2794", fmt), "note": note}
        return {**row, "same_setup_as": twin} if twin else row
    return fn


_M2 = ("compute-bound at 1 thread: T-MAC SIMD ops counted from the tuned kernels (tbl_g4_int8_float_update_impl, "
       "lut_ctor_g4_int8_impl, qgemm_lut plane combine) at 4 NEON ops/cycle, 3.49 GHz, times the measured/counted "
       "ratio of T-MAC's kernel-level figure (0.76, gemv_t1.png: the kernel is linear in bit planes at 2 and 4 "
       "bits); plus 48 us per weight GEMM of llama.cpp graph work outside the kernels (fitted to the Q4_0 row). "
       "W4/W2 time is 1.86 published, 1.80 ours: the bit-independent part is that per-token time, not the kernel")
_M2_LLAMA = ("llama.cpp ops counted from ggml_vec_dot_q4_0_q8_0 (NEON), the same per-group count for k-quants "
             "(our Q4_0 GEMVs match T-MAC's kernel-level figure within 1.5 %); the "
             "files carry llama-quantize's per-tensor types (Q2_K: attn_v and ffn_down in Q3_K, output in Q6_K; "
             "Q4_0: output in Q6_K); plus the 48 us per weight GEMM outside the kernels")
_PI = ("T-MAC memory-bound at one Cortex-A76 core's 9.26 GB/s and two cores' 13.23 GB/s, a read-only kernel "
       "measured on a Pi 5 (llama.cpp issue #26484; rpi5.toml), not taken from T-MAC's documents: these rows are "
       "independent. llama.cpp compute-bound on ggml's vmull fallback (no dot-product extension in T-MAC's "
       "build), its per-block ops counted in A76 micro-ops (rpi5.dequant_ops_per_group). The llama.cpp graph work outside the GEMMs (48 us per GEMM on M2-Ultra, fitted to T-MAC's table) "
       "is not known for the A76 and is left out, so ours is fast")

_THREADS = ("per-token work outside the GEMMs does not shrink with threads: the table's own 1- and 8-thread "
            "rows give a serial part of 9-16 ms per token on M2-Ultra (Amdahl fit per column); the model charges "
            "op_overhead_s serially (fitted to T-MAC's 1-thread Q4_0 row, so M2 rows are calibration) and T-MAC's "
            "table build on thread 0 alone (the INIT phase of T-MAC's llama.cpp fork); bandwidth is "
            "min(threads x core_bytes_per_s, dram_bytes_per_s)")
_NOTES = {("M2-Ultra", "T-MAC"): _M2, ("M2-Ultra", "llama.cpp"): _M2_LLAMA,
          ("Raspberry Pi 5", "T-MAC"): _PI, ("Raspberry Pi 5", "llama.cpp"): _PI}
_SHORT = {"M2-Ultra": "m2ultra", "Raspberry Pi 5": "rpi5"}


def _name(device, threads, width, system, table=""):
    kernel = "tmac" if system == "T-MAC" else "llamacpp"
    return f"tmac_{table}{_SHORT[device]}_llama2_7b_{width.lower()}_{threads}thread_{kernel}_tok_s"


def _note(device, threads, system):
    return _NOTES[(device, system)] + ("" if threads == 1 else "; " + _THREADS)


SYSTEMS = ("T-MAC", "llama.cpp")
REPRODUCTIONS = {
    _name(device, threads, width, system): _row(device, threads, width, system, _note(device, threads, system),
                                                PUBLISHED[(device, threads, width)][SYSTEMS.index(system)], SOURCE)
    for (device, threads, width) in PUBLISHED for system in SYSTEMS}
REPRODUCTIONS.update({
    _name("M2-Ultra", threads, width, system, "e2e_"): _row(
        "M2-Ultra", threads, width, system, _note("M2-Ultra", threads, system),
        PUBLISHED_THREADS[(threads, width)][SYSTEMS.index(system)], SOURCE_THREADS,
        _name("M2-Ultra", threads, width, system) if ("M2-Ultra", threads, width) in PUBLISHED else None)
    for (threads, width) in PUBLISHED_THREADS for system in SYSTEMS})
