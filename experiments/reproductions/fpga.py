"""Published FPGA figures next to our models: FlightLLM and AccLLM on the U280 (CoDeNet: codenet.py).

LLM workloads follow FlightLLM's profiler: one prefill of the prompt, then single decode
steps whose context grows by one token each, costed per bucket of 16 tokens (at the
bucket's last context, times 16). Throughput = generated tokens / total time; energy
efficiency = generated tokens / total joules.
"""
from __future__ import annotations

import numpy as np

from hwmodels.ops import ops_for_graph
from hwmodels.registry import load_model
from hwmodels.wholemodel import fixed_costs
from hwmodels.workload import Workload

LLAMA = "llama-2-7b"
PROMPT, GENERATED = 128, 512  # FlightLLM/AccLLM-style [input, output] lengths (assumed)
DECODE_BUCKET = 16  # FlightLLM profiler: decode steps bucketed per 16 tokens


def _pass_cost(model, graph, formats: list, pick: np.ndarray, workload: Workload) -> tuple[float, float]:
    """(seconds, joules) of one pass with layer i in formats[pick[i]] (mixed precision)."""
    ops = ops_for_graph(graph, workload)
    table = model.cost(ops, formats, workload)
    rows = np.arange(len(ops))
    seconds = float(table.latency_s[rows, pick].sum())
    joules = float(table.energy_j[rows, pick].sum())
    for fixed in fixed_costs(model, graph, workload):
        if fixed is not None:
            seconds += float(fixed.latency_s.sum())
            joules += float(fixed.energy_j.sum())
    return seconds, joules


def generation(hw: str, format_names: list[str], kv_bits: int, overrides: list[str] | None = None) -> dict:
    """Llama-2-7B, batch 1: one prefill of PROMPT tokens + GENERATED decode steps.

    With two formats, layers alternate between them (FlightLLM-style mixed precision)."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph

    model = load_model(hw, overrides)
    graph = load_graph(LLAMA)
    formats = [get_format(n) for n in format_names]
    n_layers = len(graph.quantizable())
    pick = np.arange(n_layers) % len(formats)
    seconds, joules = _pass_cost(model, graph, formats, pick, Workload("prefill", 1, PROMPT, kv_bits))
    for start in range(PROMPT, PROMPT + GENERATED, DECODE_BUCKET):
        ctx = start + DECODE_BUCKET
        s, j = _pass_cost(model, graph, formats, pick, Workload("decode", 1, ctx, kv_bits))
        seconds += s * DECODE_BUCKET
        joules += j * DECODE_BUCKET
    return {"tokens_per_s": GENERATED / seconds, "tokens_per_j": GENERATED / joules,
            "seconds": seconds, "joules": joules, "model": model}


def _flightllm() -> dict:
    # the model FlightLLM's public compiler emits for Llama-2-7B (int8 weights, KV int8); see u280-flightllm.toml
    return generation("u280-flightllm", ["int8-a8"], kv_bits=8)


def _accllm() -> dict:
    return generation("u280-accllm", ["int2-g128-a8"], kv_bits=4)  # W2A8KV4


#: AccLLM (arXiv 2505.03745 v1; IEEE TVLSI 2026) Table VII, Llama-2-7B on the U280 at batch 1
ACCLLM_TABLE7 = "AccLLM (Liang et al., arXiv 2505.03745 / IEEE TVLSI 2026), Table VII"
PUBLISHED = {"accllm_tokens_per_s": 164.0, "accllm_w": 33.0, "flightllm_tokens_per_s": 55.0, "flightllm_w": 45.0}
SETUP = (f"Llama-2-7B batch 1, prefill {PROMPT} + decode {GENERATED}; u280-accllm W2A8KV4 (int2-g128), 2:4, "
         f"Λ-attention 4+508 vs u280-flightllm int8 weights, q/k 30 % N:16 sparse, KV8")


#: FlightLLM's own profiler output for its int8 IR on the VHK158 (profile/README.md, 128 + 512 case)
VHK158_PROFILER = {"total_s": 5.2363, "tokens_per_s": 103.5}
#: FlightLLM/flightllm_test_demo profile/inst_gen/inst_profiler.py divides every instruction time by this
PROFILER_CORRECTION = 3.2


def _gap_note(flight_tokens_per_s: float) -> str:
    return (f"AccLLM's own side lands on its Table VII figure; the gap is FlightLLM's, and it is the same gap as "
            f"between our engine and FlightLLM's own profiler: on the VHK158 configuration of that profiler "
            f"(profile/config.yaml) and the int8 IR its compiler emits, our engine gives "
            f"{_vhk158_tokens_per_s():.1f} token/s where the profiler prints {VHK158_PROFILER['tokens_per_s']} "
            f"(row flightllm_vhk158_profiler_tokens_per_s), and the profiler divides every instruction's time by an "
            f"undocumented correction_factor = {PROFILER_CORRECTION} (inst_gen/inst_profiler.py) on top of the 0.7/0.35 "
            f"HBM efficiencies our engine takes from its config. Ours on the U280: {flight_tokens_per_s:.0f} token/s "
            f"against 55; the paper's ~W3.5 weights would give 84-88 token/s here, so 55 sits between the two "
            f"formats and the exact one is not in the sources. AccLLM's engine (array sizes, DSP packing) is not "
            f"public either: it runs on the u280 MM/MV units, HBM-bound in decode. The Λ window (508 + 4) is an "
            f"estimate.")


def _vhk158_tokens_per_s() -> float:
    return generation("vhk158-flightllm", ["int8-a8"], kv_bits=8)["tokens_per_s"]


def flightllm_vhk158_profiler_tokens_per_s() -> dict:
    ours = _vhk158_tokens_per_s()
    return {"check": "independent", "tolerance": 0.25,
            "miss": f"FlightLLM's profiler divides every instruction time by correction_factor = {PROFILER_CORRECTION} "
                    "(not derivable from its stated HBM efficiencies, which our engine uses); ours is 23 % slower",
            "ours": ours, "published": VHK158_PROFILER["tokens_per_s"],
            "source": "FlightLLM/flightllm_test_demo profile/README.md output: VHK158 FPGA, Llama-2-7B batch 1, "
                      "prefill 128 + decode 512, avg throughput 103.5 token/s (int8 IR of its compiler)",
            "setup": "vhk158-flightllm (its profiler's config.yaml: 4 SLRs, 819.2 GB/s in 32 channels, 225 MHz), "
                     "int8 weights, q/k 30 % sparse, KV8, prefill 128 + decode 512",
            "note": "A check of our FlightLLM engine against FlightLLM's own simulator on the configuration it ships: "
                    "same direction and size as the U280 gap (45.7 vs 55 token/s)."}


def accllm_tokens_per_s() -> dict:
    return {"check": "independent", "ours": _accllm()["tokens_per_s"], "published": PUBLISHED["accllm_tokens_per_s"],
            "source": f"{ACCLLM_TABLE7}: 164 token/s (cycle-accurate simulator, 225 MHz)", "setup": SETUP,
            "note": "Decode is HBM-bound on 2-bit 2:4 weights + 4-bit KV; the Λ window is an estimate."}


def flightllm_tokens_per_s() -> dict:
    ours = _flightllm()["tokens_per_s"]
    return {"check": "independent", "tolerance": 0.2, "miss": "FlightLLM's weight format behind 55 token/s is not "
                                                              "in the sources (see note)",
            "ours": ours, "published": PUBLISHED["flightllm_tokens_per_s"],
            "source": f"{ACCLLM_TABLE7}: FlightLLM on the U280, 55 token/s at 45 W (from FlightLLM, FPGA'24)",
            "setup": SETUP, "note": _gap_note(ours)}


def accllm_throughput_vs_flightllm() -> dict:
    acc, flight = _accllm(), _flightllm()
    return {"check": "independent", "tolerance": 0.25, "miss": "carries the FlightLLM tokens/s miss",
            "ours": acc["tokens_per_s"] / flight["tokens_per_s"], "published": 2.98,
            "source": f"AccLLM abstract and {ACCLLM_TABLE7}: 2.98x throughput vs FlightLLM (164 vs 55 token/s)",
            "setup": SETUP, "note": _gap_note(flight["tokens_per_s"])}


def accllm_energy_eff_vs_flightllm() -> dict:
    acc, flight = _accllm(), _flightllm()
    return {"check": "calibration", "tolerance": 0.25, "miss": "carries the FlightLLM tokens/s miss",
            "why_calibration": "board power is given (33 W and 45 W from the same Table VII), not predicted",
            "ours": acc["tokens_per_j"] / flight["tokens_per_j"], "published": 4.07,
            "source": f"AccLLM abstract and {ACCLLM_TABLE7}: 4.07x energy efficiency vs FlightLLM "
                      f"(4.96 token/J at 33 W vs 55 token/s at 45 W)",
            "setup": SETUP + "; energy = each paper's reported board power (33 W, 45 W) x our modelled time",
            "note": "Power is each paper's reported board power (spec board_power_w), not predicted: the ratio "
                    "is our throughput ratio x 45/33, so it carries the throughput gap. " + _gap_note(flight["tokens_per_s"])}


#: FlightLLM's GPU baselines, from its artifact FlightLLM/flightllm_test_demo profile/run.py:
#: Llama-2-7B (meta-llama/Llama-2-7b-hf) fp16, batch 1, [input, output] = [128, 512] (its first
#: test case; also 128/1024, 128/1536, 512/*), "GPU-opt" = vLLM 0.1.7 fp16 and "GPU-naive" =
#: HF transformers generate() in fp16. SmoothQuant W8A8 needs int8 tensor cores, which the V100S
#: lacks (Volta whitepaper; v100s masks int8-a8), so on the V100S the vLLM baseline is fp16.
#: The artifact's own output (profile/README.md, 128/512 case) gives decode 5727.0 ms (GPU-opt)
#: and 11316.9 ms (GPU-naive) for 512 tokens on its A100.
FLIGHTLLM_GPU_OPT_MS, FLIGHTLLM_GPU_NAIVE_MS = 5727.0 / 512, 11316.9 / 512


def _gpu_generation(hw: str, overrides: list[str] | None = None) -> dict:
    """(seconds, joules) of FlightLLM's GPU case: one prefill of PROMPT + GENERATED fp16 decode steps."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from hwmodels.wholemodel import model_cost

    gpu, graph, fp16 = load_model(hw, overrides), load_graph(LLAMA), get_format("fp16")
    first = model_cost(gpu, graph, fp16, Workload("prefill", 1, PROMPT, 16))
    seconds, joules, decode_s = first["latency_s"], first["energy_j"], 0.0
    for start in range(PROMPT, PROMPT + GENERATED, DECODE_BUCKET):
        step = model_cost(gpu, graph, fp16, Workload("decode", 1, start + DECODE_BUCKET, 16))
        seconds += DECODE_BUCKET * step["latency_s"]
        joules += DECODE_BUCKET * step["energy_j"]
        decode_s += DECODE_BUCKET * step["latency_s"]
    return {"tokens_per_j": GENERATED / joules, "watts": joules / seconds, "decode_ms": decode_s / GENERATED * 1e3}


def _naive_launch_overhead() -> float:
    """Per-kernel overhead (s) that makes our A100-40GB match the artifact's GPU-naive decode time.

    Decode time is linear in launch_overhead_s (a fixed number of kernels per step), so two
    evaluations give the slope."""
    lo, hi = 3e-6, 40e-6
    t_lo = _gpu_generation("a100-40gb", [f"launch_overhead_s={lo}"])["decode_ms"]
    t_hi = _gpu_generation("a100-40gb", [f"launch_overhead_s={hi}"])["decode_ms"]
    return lo + (FLIGHTLLM_GPU_NAIVE_MS - t_lo) * (hi - lo) / (t_hi - t_lo)


def flightllm_energy_eff_vs_v100s() -> dict:
    flight = _flightllm()
    opt = _gpu_generation("v100s")
    a100 = _gpu_generation("a100-40gb")
    naive_lo = _naive_launch_overhead()
    naive = _gpu_generation("v100s", [f"launch_overhead_s={naive_lo}"])
    return {"check": "calibration", "tolerance": 0.6,
            "why_calibration": "FlightLLM's board power (45 W) is given, and the GPU's sm_active_power_w and "
                               "dram_j_per_byte were set with a V100 power reading in view",
            "miss": "the V100S side draws 1.6-1.9x less energy per token than the 6.0x implies (see note)",
            "ours": flight["tokens_per_j"] / opt["tokens_per_j"], "published": 6.0,
            "source": "FlightLLM (Zeng et al., FPGA'24), abstract: 6.0x energy efficiency vs NVIDIA V100S "
                      "(LLaMA2-7B, vLLM and SmoothQuant, batch 1)",
            "setup": f"Llama-2-7B batch 1, prefill {PROMPT} + decode {GENERATED} (FlightLLM artifact profile/run.py, "
                     f"first test case); u280-flightllm (int8, q/k 30 % sparse, 45 W board power) vs v100s fp16 with "
                     f"vLLM's fused runtime (SmoothQuant W8A8 cannot run: no int8 tensor cores on Volta)",
            "note": f"FlightLLM side {flight['tokens_per_j']:.2f} token/J here vs 55/45 = 1.22 in its paper. V100S "
                    f"(vLLM fp16): {opt['decode_ms']:.1f} ms/token at {opt['watts']:.0f} W average board power = "
                    f"{opt['tokens_per_j']:.2f} token/J; the 6.0x implies 1.22/6.0 = 0.20 token/J, i.e. 4.9 J/token, "
                    f"which a V100S at vLLM speed could only reach above its 250 W limit. Cross-check of the runtime: "
                    f"the same model gives {a100['decode_ms']:.1f} ms/token on an A100-40GB against the "
                    f"{FLIGHTLLM_GPU_OPT_MS:.1f} of the artifact's GPU-opt (vLLM 0.1.7) output. With the artifact's "
                    f"GPU-naive runtime (HF generate, {FLIGHTLLM_GPU_NAIVE_MS:.1f} ms/token on its A100, i.e. "
                    f"{naive_lo * 1e6:.0f} us per kernel) the V100S gives {naive['decode_ms']:.1f} ms/token at "
                    f"{naive['watts']:.0f} W = {naive['tokens_per_j']:.2f} token/J and a ratio of "
                    f"{flight['tokens_per_j'] / naive['tokens_per_j']:.1f}x. Neither runtime reaches 6.0x: it needs "
                    f"4.9 J/token, e.g. the naive runtime's time at {4.9 / naive['decode_ms'] * 1e3:.0f} W, so the "
                    f"paper's GPU power (its measurement method is not in the sources we have) is about "
                    f"{4.9 / (naive['decode_ms'] * 1e-3 * naive['watts']):.1f}-{4.9 / (opt['decode_ms'] * 1e-3 * opt['watts']):.1f}x "
                    f"what our model draws per token. The speed side is checked: our vllm runtime gives "
                    f"{a100['decode_ms']:.1f} ms/token against the artifact's {FLIGHTLLM_GPU_OPT_MS:.1f} (GPU-opt) on "
                    f"the A100 (tests/data/gpu_measurements.json). So the gap is the GPU's energy per token: at most "
                    f"250 W x {opt['decode_ms']:.1f} ms = {0.25 * opt['decode_ms']:.1f} J/token at vLLM speed, below the 4.9 J "
                    f"the 6.0x needs, so the paper's V100S "
                    f"ran slower than vLLM's fp16 here (SmoothQuant W8A8 has no int8 tensor cores on Volta) or its "
                    f"power was read differently. GPU energy model: idle + per-busy-SM active power + pJ/B "
                    f"(v100s.toml), an estimate set with a V100 SXM2 decode power reading in view (calibration)."}


REPRODUCTIONS = {
    "accllm_tokens_per_s": accllm_tokens_per_s,
    "flightllm_tokens_per_s": flightllm_tokens_per_s,
    "accllm_throughput_vs_flightllm": accllm_throughput_vs_flightllm,
    "accllm_energy_eff_vs_flightllm": accllm_energy_eff_vs_flightllm,
    "flightllm_energy_eff_vs_v100s": flightllm_energy_eff_vs_v100s,
    "flightllm_vhk158_profiler_tokens_per_s": flightllm_vhk158_profiler_tokens_per_s,
}
