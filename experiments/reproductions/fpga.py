"""Published FPGA figures next to our models: FlightLLM and AccLLM on the U280 (CoDeNet: codenet.py).

LLM workloads follow FlightLLM's profiler: one prefill of the prompt, then single decode
steps whose context grows by one token each, costed per bucket of 16 tokens (at the
bucket's last context, times 16). Throughput has one definition for both designs: generated
tokens / decode time, and tokens / decode joules, as FlightLLM's artifact prints it
(profile/run.py: decode_len / decode time, "Avg throughput"). AccLLM's paper does not say
whether its 164 token/s counts the prefill; each AccLLM row's note gives ours both ways.
"""
from __future__ import annotations

import numpy as np

from hwmodels import provenance

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


def generation(hw: str, format_names: list[str], kv_bits: int, overrides: list[str] | None = None,
               prompt: int = PROMPT, generated: int = GENERATED) -> dict:
    """Llama-2-7B, batch 1: one prefill of `prompt` tokens + `generated` decode steps.

    With two formats, layers alternate between them (FlightLLM-style mixed precision)."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph

    model = load_model(hw, overrides)
    graph = load_graph(LLAMA)
    formats = [get_format(n) for n in format_names]
    n_layers = len(graph.quantizable())
    pick = np.arange(n_layers) % len(formats)
    prefill_s, prefill_j = _pass_cost(model, graph, formats, pick, Workload("prefill", 1, prompt, kv_bits))
    decode_s = decode_j = 0.0
    for start in range(prompt, prompt + generated, DECODE_BUCKET):
        ctx = start + DECODE_BUCKET
        s, j = _pass_cost(model, graph, formats, pick, Workload("decode", 1, ctx, kv_bits))
        decode_s += s * DECODE_BUCKET
        decode_j += j * DECODE_BUCKET
    seconds, joules = prefill_s + decode_s, prefill_j + decode_j
    return {"tokens_per_s": generated / seconds, "tokens_per_j": generated / joules,
            "decode_tokens_per_s": generated / decode_s, "decode_tokens_per_j": generated / decode_j,
            "prefill_s": prefill_s, "decode_s": decode_s, "seconds": seconds, "joules": joules, "model": model}


#: FlightLLM's weights as its artifact costs them: every linear layer's weight load runs at
#: bandwidth_ratio = 2 / sparse_ratio, "2 stands for INT4" (profile/inst_gen/layer_support/
#: IR_linear_mv.py and IR_linear_mm.py; isa.py: "INT8 is 1, INT4 is 2"); the IR's dtype int8 is
#: the datapath's, after dequantization. q/k 30 % sparse (u280-flightllm.toml), KV cache int8.
FLIGHTLLM_FORMAT = "int4-a8"


@provenance.cached
def _flightllm(hw: str = "u280-flightllm", *overrides: str) -> dict:
    """FlightLLM's generation on `hw` (spec overrides as `key=value`), run once per argument set."""
    return generation(hw, [FLIGHTLLM_FORMAT], kv_bits=8, overrides=list(overrides) or None)


def _accllm() -> dict:
    return generation("u280-accllm", ["int2-g128-a8"], kv_bits=4)  # W2A8KV4


#: AccLLM (arXiv 2505.03745 v1; IEEE TVLSI 2026) Table VII, Llama-2-7B on the U280 at batch 1
ACCLLM_TABLE7 = "AccLLM (Liang et al., arXiv 2505.03745 / IEEE TVLSI 2026), Table VII"
PUBLISHED = {"accllm_tokens_per_s": 164.0, "accllm_w": 33.0, "flightllm_tokens_per_s": 55.0, "flightllm_w": 45.0}
SETUP = (f"Llama-2-7B batch 1, prefill {PROMPT} + decode {GENERATED}; u280-accllm W2A8KV4 (int2-g128), 2:4, "
         f"Λ-attention 4+508, vs u280-flightllm int4 weights (its artifact's), q/k 30 % "
         f"N:16 sparse, KV8, 3 SLRs x 8 HBM channels at 0.8 SLR scaling; both as generated tokens / decode time")


#: FlightLLM's own profiler output on the VHK158 (profile/README.md, 128 + 512 case): decode
#: 4946.4 ms for 512 tokens, printed as "Avg throughput" 103.5 token/s (decode only, run.py)
VHK158_PROFILER = {"prefill_ms": 289.9, "decode_ms": 4946.4, "tokens_per_s": 103.5}
#: FlightLLM/flightllm_test_demo profile/inst_gen/inst_profiler.py divides every instruction time by this
PROFILER_CORRECTION = 3.2

WHAT_CHANGED = ("An earlier model ran FlightLLM at int8 (the IR's dtype), on all 32 HBM channels at full SLR "
                "scaling, and counted prefill in the throughput: 45.7 token/s on the U280 and 79.7 against the "
                "profiler's 103.5. Its artifact costs int4 weights (IR_linear_mv.py: bandwidth_ratio 2 'stands for "
                "INT4'), feeds each SLR from 8 HBM channels (config.yaml), scales SLRs by 3.2/4 = 0.8 "
                "(inst_profiler.py correction_factor over SLR_NUM 4) and prints decode throughput (run.py).")


def flightllm_vhk158_profiler_tokens_per_s() -> dict:
    ours = _flightllm("vhk158-flightllm")
    no_index = _flightllm("vhk158-flightllm", "sparse_index_bits=0")
    return {"refs": ["flightllm"],
            "ours": ours["decode_tokens_per_s"], "published": VHK158_PROFILER["tokens_per_s"],
            "source": "FlightLLM/flightllm_test_demo profile/README.md output: VHK158 FPGA, Llama-2-7B batch 1, "
                      "prefill 128 + decode 512, avg (decode) throughput 103.5 token/s",
            "setup": "vhk158-flightllm (its profiler's config.yaml: 4 SLRs x 8 HBM channels, 819.2 GB/s, 225 MHz, "
                     "0.8 SLR scaling), int4 weights, q/k 30 % sparse, KV8, prefill 128 + decode 512, tokens / "
                     "decode time",
            "note": f"Our engine against FlightLLM's own simulator, same constants, different composition (theirs: "
                    f"an instruction-level schedule of LD/MV/MM/MISC units; ours: max(compute, memory) per op + "
                    f"SFU + fill). Decode {ours['decode_s'] * 1e3:.0f} ms vs the profiler's "
                    f"{VHK158_PROFILER['decode_ms']}, prefill {ours['prefill_s'] * 1e3:.0f} ms vs "
                    f"{VHK158_PROFILER['prefill_ms']}; the five other cases it prints (prefill 128/512, decode up to 1536) are "
                    f"within 8 % too (tests/test_fpga.py). Decode is mostly bound by the MV units in both. The profiler "
                    f"charges no sparse-index traffic (its IR never selects the fsb path); without it ours gives "
                    f"{no_index['decode_tokens_per_s']:.1f}. The constants are read from the artifact's code, "
                    f"none from its printed figures; the 0.8 SLR scaling is our reading of its undocumented "
                    f"correction_factor = {PROFILER_CORRECTION}. " + WHAT_CHANGED}


def accllm_tokens_per_s() -> dict:
    acc = _accllm()
    return {"refs": ["accllm"], "ours": acc["decode_tokens_per_s"], "published": PUBLISHED["accllm_tokens_per_s"],
            "source": f"{ACCLLM_TABLE7}: 164 token/s (cycle-accurate simulator, 225 MHz)", "setup": SETUP,
            "note": f"Decode is HBM-bound on 2-bit 2:4 weights + 4-bit KV; the Λ window is an estimate. Counting the "
                    f"128-token prefill too: {acc['tokens_per_s']:.1f} token/s."}


def _flight_note(flight: dict) -> str:
    index0 = _flightllm("u280-flightllm", "sparse_index_bits=0")
    return (f"Ours on the U280: {flight['decode_tokens_per_s']:.1f} token/s decode "
            f"({flight['tokens_per_s']:.1f} with the 128-token prefill counted), HBM-bound on 24 channels. "
            f"Sensitivity: without the 4-bit sparse index on q/k (the artifact's profiler charges none) "
            f"{index0['decode_tokens_per_s']:.1f}. The paper's own mixed-precision bit widths are not in the stored "
            f"sources; its artifact costs every weight at int4. Caveat: if the authors set correction_factor = "
            f"{PROFILER_CORRECTION} to match their U280 board, the 0.8 SLR scaling is not independent of this "
            f"figure; the artifact does not say. " + WHAT_CHANGED)


def flightllm_tokens_per_s() -> dict:
    flight = _flightllm()
    return {"refs": ["flightllm", "accllm"], "ours": flight["decode_tokens_per_s"],
            "published": PUBLISHED["flightllm_tokens_per_s"],
            "source": f"{ACCLLM_TABLE7}: FlightLLM on the U280, 55 token/s at 45 W (from FlightLLM, FPGA'24; its "
                      f"artifact's board test, fpga_implementation/README.md, 'can verify Figure 1 (55 token/s)')",
            "setup": SETUP, "note": _flight_note(flight)}


def accllm_throughput_vs_flightllm() -> dict:
    acc, flight = _accllm(), _flightllm()
    return {"refs": ["accllm", "flightllm"],
            "ours": acc["decode_tokens_per_s"] / flight["decode_tokens_per_s"], "published": 2.98,
            "source": f"AccLLM abstract and {ACCLLM_TABLE7}: 2.98x throughput vs FlightLLM (164 vs 55 token/s)",
            "setup": SETUP, "note": f"Our AccLLM figure over our FlightLLM figure, both decode throughput (with "
                                    f"AccLLM's prefill counted: {acc['tokens_per_s'] / flight['decode_tokens_per_s']:.2f}). "
                                    + _flight_note(flight)}


def accllm_energy_eff_vs_flightllm() -> dict:
    acc, flight = _accllm(), _flightllm()
    return {"refs": ["accllm", "flightllm"], "quantity": "energy",
            "ours": acc["decode_tokens_per_j"] / flight["decode_tokens_per_j"], "published": 4.07,
            "source": f"AccLLM abstract and {ACCLLM_TABLE7}: 4.07x energy efficiency vs FlightLLM "
                      f"(4.96 token/J at 33 W vs 55 token/s at 45 W)",
            "setup": SETUP + "; energy = each paper's reported board power (33 W, 45 W) x our modelled time",
            "note": "Power is each paper's reported board power (spec board_power_w), not predicted: the ratio "
                    "is our throughput ratio x 45/33. " + _flight_note(flight)}


#: FlightLLM's GPU baselines, from its artifact FlightLLM/flightllm_test_demo profile/run.py:
#: Llama-2-7B (meta-llama/Llama-2-7b-hf) fp16, batch 1, [input, output] = [128, 512] (its first
#: test case; also 128/1024, 128/1536, 512/*), "GPU-opt" = vLLM 0.1.7 fp16 and "GPU-naive" =
#: HF transformers generate() in fp16. SmoothQuant W8A8 needs int8 tensor cores, which the V100S
#: lacks (Volta whitepaper; v100s masks int8-a8), so on the V100S the vLLM baseline is fp16.
#: The artifact's own output (profile/README.md, 128/512 case) gives decode 5727.0 ms (GPU-opt)
#: and 11316.9 ms (GPU-naive) for 512 tokens on its A100.
FLIGHTLLM_GPU_OPT_MS, FLIGHTLLM_GPU_NAIVE_MS = 5727.0 / 512, 11316.9 / 512


def _gpu_generation(hw: str, overrides: list[str] | None = None) -> dict:
    """FlightLLM's GPU case: GENERATED fp16 decode steps after a PROMPT prompt; decode token/J, W and ms/token."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from hwmodels.wholemodel import model_cost

    gpu, graph, fp16 = load_model(hw, overrides), load_graph(LLAMA), get_format("fp16")
    decode_s = decode_j = 0.0
    for start in range(PROMPT, PROMPT + GENERATED, DECODE_BUCKET):
        step = model_cost(gpu, graph, fp16, Workload("decode", 1, start + DECODE_BUCKET, 16))
        decode_s += DECODE_BUCKET * step["latency_s"]
        decode_j += DECODE_BUCKET * step["energy_j"]
    return {"tokens_per_j": GENERATED / decode_j, "watts": decode_j / decode_s, "decode_ms": decode_s / GENERATED * 1e3}


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
    paper_fpga = PUBLISHED["flightllm_tokens_per_s"] / PUBLISHED["flightllm_w"]  # 1.22 token/J
    need_j = 6.0 / paper_fpga  # J per V100S token that the 6.0x implies: 4.9
    tdp = load_model("v100s").spec.params["tdp_w"]
    at_tdp = flight["decode_tokens_per_j"] / (1e3 / opt["decode_ms"] / tdp)
    return {"refs": ["flightllm"], "quantity": "energy",
            "ours": flight["decode_tokens_per_j"] / opt["tokens_per_j"], "published": 6.0,
            "source": "FlightLLM (Zeng et al., FPGA'24), abstract: 6.0x energy efficiency vs NVIDIA V100S "
                      "(LLaMA2-7B, vLLM and SmoothQuant, batch 1)",
            "setup": f"Llama-2-7B batch 1, prefill {PROMPT} + decode {GENERATED} (FlightLLM artifact profile/run.py, "
                     f"first test case), decode token/J on both sides; u280-flightllm (int4, q/k 30 % sparse, 45 W "
                     f"board power) vs v100s fp16 with vLLM's fused runtime (SmoothQuant W8A8 cannot run: no int8 "
                     f"tensor cores on Volta)",
            "note": f"FlightLLM side {flight['decode_tokens_per_j']:.2f} token/J here vs 55/45 = {paper_fpga:.2f} in "
                    f"its paper: the FPGA side is not where the gap is. V100S (vLLM fp16): {opt['decode_ms']:.1f} "
                    f"ms/token at {opt['watts']:.0f} W average board power = {opt['tokens_per_j']:.2f} token/J. The "
                    f"6.0x implies {paper_fpga:.2f}/6.0 = {paper_fpga / 6.0:.2f} token/J, i.e. {need_j:.1f} J/token: at "
                    f"vLLM speed that is {need_j / opt['decode_ms'] * 1e3:.0f} W, above the V100S's {tdp:.0f} W limit, "
                    f"so the paper's V100S ran slower than {need_j / tdp * 1e3:.1f} ms/token or its energy was counted "
                    f"differently. Charging the GPU its {tdp:.0f} W TDP (a common convention; the paper's method is "
                    f"not in the sources) gives {at_tdp:.1f}x. The speed side is checked: the same runtime model "
                    f"gives {a100['decode_ms']:.1f} ms/token on an A100-40GB against the {FLIGHTLLM_GPU_OPT_MS:.1f} of "
                    f"the artifact's GPU-opt (vLLM 0.1.7) output (experiments/reproductions/gpu_published.json). With the "
                    f"artifact's GPU-naive runtime (HF generate, {FLIGHTLLM_GPU_NAIVE_MS:.1f} ms/token on its A100, "
                    f"i.e. {naive_lo * 1e6:.0f} us per kernel) the V100S gives {naive['decode_ms']:.1f} ms/token at "
                    f"{naive['watts']:.0f} W = {naive['tokens_per_j']:.2f} token/J and a ratio of "
                    f"{flight['decode_tokens_per_j'] / naive['tokens_per_j']:.1f}x; the 6.0x at that speed needs "
                    f"{need_j / naive['decode_ms'] * 1e3:.0f} W. GPU energy model: idle + per-busy-SM active power + "
                    f"pJ/B (v100s.toml), an estimate set with a V100 SXM2 decode power reading in view (calibration)."}


REPRODUCTIONS = {
    "accllm_tokens_per_s": accllm_tokens_per_s,
    "flightllm_tokens_per_s": flightllm_tokens_per_s,
    "accllm_throughput_vs_flightllm": accllm_throughput_vs_flightllm,
    "accllm_energy_eff_vs_flightllm": accllm_energy_eff_vs_flightllm,
    "flightllm_energy_eff_vs_v100s": flightllm_energy_eff_vs_v100s,
    "flightllm_vhk158_profiler_tokens_per_s": flightllm_vhk158_profiler_tokens_per_s,
}
