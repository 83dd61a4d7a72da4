"""Published GPU serving figures, recomputed from each paper's setup with the GPU model.

- QServe (Lin et al., MLSys 2025, arXiv:2405.04532): every Llama-3-8B entry of its absolute
  throughput table (A100 and L40S: TensorRT-LLM FP16, W4A16, W8A8 and QServe W4A8KV4, tokens/s;
  input 1024, output 512) and its "Throughput Increase" row (QServe over the column's best
  baseline: 1.20x on the A100 is over FP16; over W8A8 the table gives 3005/2396 = 1.254x).
  QServe's batch is the table's (256 A100, 128 L40S); the paper gives none for the baselines,
  which ran under the same memory budget, so they run at QServe's batch (each fits the card).
- W4A16 vs FP16 decode at batch 1 on A100 for Llama-2-7B: gpt-fast README (4-bit G=32
  196.80 tok/s vs bf16 104.9 tok/s on A100-80GB) = 1.876x. The anchor: the only published
  same-runtime W4A16/FP16 pair for Llama-2-7B at batch 1 on an A100 we found (Marlin's
  end-to-end vLLM figures are on A10/A6000; TinyChat's tables are A6000/4090/Orin against an
  HF FP16 baseline). gpt-fast runs PyTorch's tinygemm int4 kernel, so we model that kernel
  (`w4a16_kernel=tinygemm`: its dequant instruction count from int4mm.cu), not Marlin.
"""
from __future__ import annotations

import numpy as np

from hwmodels import provenance
from hwmodels.registry import load_model
from hwmodels.wholemodel import model_cost
from hwmodels.workload import Workload

#: the gpt-fast runtime (see experiments/reproductions/gpu_published.json for the reasons)
GPT_FAST = ["runtime=gpt-fast"]


def _serving_throughput(hw: str, model_name: str, fmt_name: str, kv_bits: int, batch: int,
                        prompt: int = 1024, output: int = 512, samples: int = 8, runtime: str = "vllm") -> float:
    """Generated tokens/s of a batch: one prefill of `prompt` tokens, then `output` decode
    steps whose context grows from prompt to prompt+output (mean over `samples` contexts)."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph

    model, graph, fmt = load_model(hw, [f"runtime={runtime}"]), load_graph(model_name), get_format(fmt_name)
    prefill = model_cost(model, graph, fmt, Workload("prefill", batch, prompt, kv_bits))["latency_s"]
    contexts = np.linspace(prompt, prompt + output - 1, samples).round().astype(int)
    step = np.mean([model_cost(model, graph, fmt, Workload("decode", batch, int(c), kv_bits))["latency_s"]
                    for c in contexts])
    return batch * output / (prefill + output * step)


#: QServe's absolute throughput table, Llama-3-8B column (tokens/s; input 1024, output 512, maximum
#: achievable throughput under one device-memory budget), and QServe's batch per card
QSERVE_TABLE = {"a100-80gb": {"fp16": 2503, "w4a16": 2370, "w8a8": 2396, "qserve": 3005},
                "l40s": {"fp16": 1326, "w4a16": 1431, "w8a8": 2634, "qserve": 3656}}
QSERVE_BATCH = {"a100-80gb": 256, "l40s": 128}
#: the table's "Throughput Increase" row: QServe over the best baseline of the column
QSERVE_INCREASE = {"a100-80gb": 1.20, "l40s": 1.39}
#: (format, KV bits, runtime) of each system: TensorRT-LLM FP16, W4A16 (AWQ-style int4 g128, its CUTLASS
#: fpA_intB GEMM), W8A8 (SmoothQuant, int8 KV); QServe W4A8 g128 with a 4-bit KV cache
QSERVE_SYSTEMS = {"fp16": ("fp16", 16, "tensorrt-llm"), "w4a16": ("int4-g128", 16, "tensorrt-llm"),
                  "w8a8": ("int8-a8", 8, "tensorrt-llm"), "qserve": ("int4-g128-a8", 4, "vllm")}
QSERVE_SOURCE = ("QServe (Lin et al., MLSys 2025, arXiv:2405.04532), absolute throughput table as in the "
                 "mit-han-lab/qserve README: Llama-3-8B, input 1024, output 512")


@provenance.cached
def _qserve_system(hw: str, system: str) -> float:
    fmt, kv, runtime = QSERVE_SYSTEMS[system]
    return _serving_throughput(hw, "llama-3-8b", fmt, kv, QSERVE_BATCH[hw], runtime=runtime)


def _qserve_absolute(hw: str, system: str):
    def run() -> dict:
        fmt, kv, runtime = QSERVE_SYSTEMS[system]
        return {"refs": ["qserve"], "ours": _qserve_system(hw, system), "published": QSERVE_TABLE[hw][system],
                "source": f"{QSERVE_SOURCE}, {hw}, {'QServe-W4A8KV4' if system == 'qserve' else 'TRT-LLM-' + system.upper()}",
                "setup": f"{hw}, Llama-3-8B, batch {QSERVE_BATCH[hw]} (QServe's; the paper gives no batch for the "
                         f"baselines, which ran under the same memory budget), {fmt} weights, KV{kv}, runtime "
                         f"{runtime}; generated tokens / (one prefill + 512 decode steps)"}
    return run


def _qserve_increase(hw: str):
    def run() -> dict:
        ours = {s: _qserve_system(hw, s) for s in QSERVE_SYSTEMS}
        best = max((s for s in ours if s != "qserve"), key=ours.get)
        paper_best = max((s for s in QSERVE_TABLE[hw] if s != "qserve"), key=QSERVE_TABLE[hw].get)
        return {"refs": ["qserve"], "ours": ours["qserve"] / ours[best], "published": QSERVE_INCREASE[hw],
                "source": f"{QSERVE_SOURCE}, {hw}: 'Throughput Increase' over the best baseline",
                "setup": f"our QServe over our best TensorRT-LLM baseline ({best}); the paper's best is {paper_best}",
                "note": f"QServe over W8A8: ours {ours['qserve'] / ours['w8a8']:.3f}, the paper's "
                        f"{QSERVE_TABLE[hw]['qserve'] / QSERVE_TABLE[hw]['w8a8']:.3f}; over FP16: ours "
                        f"{ours['qserve'] / ours['fp16']:.3f}, the paper's "
                        f"{QSERVE_TABLE[hw]['qserve'] / QSERVE_TABLE[hw]['fp16']:.3f}"}
    return run


def w4a16_decode_speedup_a100_llama2_7b() -> dict:
    from quantcore.formats import get_format
    from quantcore.models import load_graph

    model, graph = load_model("a100-80gb", GPT_FAST), load_graph("llama-2-7b")
    work = Workload("decode", 1, 105)
    bf16 = model_cost(model, graph, get_format("bf16"), work)["latency_s"]
    w4 = model_cost(model, graph, get_format("int4-g32-asym"), work)["latency_s"]
    marlin = model_cost(load_model("a100-80gb", GPT_FAST + ["w4a16_kernel=marlin"]), graph, get_format("int4-g32-asym"), work)["latency_s"]
    return {"refs": ["gpt-fast"], "ours": bf16 / w4, "published": 196.80 / 104.9,
            "source": "pytorch-labs/gpt-fast README, Benchmarks: Llama-2-7B 4-bit (G=32) 196.80 tok/s vs Base "
                      "104.9 tok/s, A100-80GB, batch 1",
            "setup": "a100-80gb with gpt-fast's runtime overheads, Llama-2-7B decode at batch 1, context ~105 "
                     "(5-token prompt + 200 new tokens), int4-g32-asym (bf16 scale + zero per 32) vs bf16",
            "note": f"tinygemm dequant (1.875 lane-instructions/weight, int4mm.cu) modelled; with a Marlin-class "
                    f"dequant the model gives {bf16 / marlin:.2f}x. Still above 1.876: gpt-fast's int4 run reaches "
                    "863 GB/s vs 1397 GB/s for bf16 (its README), a gap our model attributes only in part to the "
                    "dequant (tinygemm's synchronous loads and 8-column CTAs are not modelled)"}


REPRODUCTIONS = {
    **{f"qserve_{hw.split('-')[0]}_llama3_8b_{system}_tok_s": _qserve_absolute(hw, system)
       for hw in QSERVE_TABLE for system in QSERVE_SYSTEMS},
    **{f"qserve_{hw.split('-')[0]}_llama3_8b_throughput_increase": _qserve_increase(hw) for hw in QSERVE_TABLE},
    "w4a16_decode_speedup_a100_llama2_7b": w4a16_decode_speedup_a100_llama2_7b,
}
