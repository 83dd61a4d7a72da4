"""Serving on several GPUs: SmoothQuant+'s Code Llama-34B, and TensorRT-LLM's tensor-parallel tables.

SmoothQuant+ (Pan et al., arXiv:2312.03788): Code Llama-34B W4 on one A100-40GB against FP16 on two.

Published (abstract and README of Adlik/smoothquantplus): with SmoothQuant+'s 4-bit group-wise
weights in vLLM, Code Llama-34B on one A100 40GB reaches 1.9 to 4.0 times the throughput of the
FP16 model on two A100 40GB, at 68 % of its latency per token. The text we could read does not
give the request sets, so the setup here is vLLM's own benchmark defaults of that time (stated,
not fitted): `benchmarks/benchmark_latency.py` (input 32 tokens, output 128, batch 8) for the
per-token latency and the low end of the throughput range (both configurations at the same
batch), and vLLM's engine defaults (`gpu_memory_utilization` 0.9, `max_num_seqs` 256) for the high
end: each configuration serves as many sequences of that shape as its memory holds.

Ours: whole requests (`--phase generate`) through the search's own cost tables
(hwmodels.wholemodel.serving_tables): int4-g128 weights (the vLLM runtime keeps the lm-head in
FP16), FP16 with tensor parallelism over two A100-40GB (NVLink 3 ring all-reduce, 2 per block).

TensorRT-LLM's performance page (docs/source/performance.md, v0.6.1 Peak Throughput, v0.5 Low
Latency): every entry of a model in our catalog run with tensor parallelism (TP 2 and 4; its TP 8
entries are Falcon-180B, which the catalog lacks). gptSessionBenchmark runs static batches: a
prefill of the batch's prompts, then one decode step per output token, which is `--phase generate`;
throughput is output tokens over that time per GPU, and the first-token latency a one-token request.
Per GPU on the A100 table too: the v0.6.1 page heads its A100 column "out tok/s", but the same page
as revised later (commit 77d24b5, same figures) heads it "Throughput (out tok/s/GPU)", as the H100
table always was; the per-GPU reading is also the only one under which LLaMA 70B on 4 A100s (670)
is not 8x slower per GPU than LLaMA 7B on one (5,586) at compute-bound batch sizes. FP8 on H100 is W8A8 FP8 with the FP8 KV cache the build sets
(`--enable_fp8 --fp8_kv_cache`), costed as an 8-bit KV cache.
"""
from __future__ import annotations

import numpy as np

from hwmodels.provenance import cached

SOURCE = "SmoothQuant+ (Pan et al., arXiv:2312.03788), abstract; Adlik/smoothquantplus README"
MODEL, HW = "codellama-34b", "a100-40gb"
#: vLLM benchmarks/benchmark_latency.py defaults (late 2023): --input-len 32 --output-len 128 --batch-size 8
PROMPT, OUTPUT, BATCH = 32, 128, 8
#: vLLM EngineArgs defaults: gpu_memory_utilization 0.9 of the device, at most max_num_seqs 256 sequences a step
MEMORY_UTILIZATION, MAX_NUM_SEQS = 0.9, 256
W4, FP16 = ("int4-g128", 1), ("fp16", 2)


def _hardware(devices: int):
    from hwmodels.registry import load_model

    return load_model(HW, {"runtime": "vllm"})


@cached
def serving(fmt: str, devices: int, batch: int) -> dict:
    """ttft_s, tpot_s, tokens_per_s of one request of `batch` sequences."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from hwmodels.wholemodel import serving_tables, serving_totals
    from hwmodels.workload import Workload

    model, graph = _hardware(devices), load_graph(MODEL)
    layers = graph.quantizable()
    head = model.runtime["lm_head_format"]
    formats = [get_format(fmt), get_format(fmt if head == "same" else head)]
    workload = Workload(phase="generate", batch=batch, seq=PROMPT, output_len=OUTPUT, kv_bits=16, devices=devices)
    cost = serving_tables(model, graph, layers, formats, workload)
    pick = np.array([1 if l.kind == "lm-head" else 0 for l in layers])
    return serving_totals(cost, pick)


def weight_bytes(fmt: str, head: str) -> float:
    """The checkpoint's bytes: the searched layers in `fmt` (the lm-head in `head`), the rest 16-bit."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph

    graph = load_graph(MODEL)
    total = 2.0 * (sum(l.params for l in graph.layers if not l.quantizable) + graph.extra_params)
    for layer in graph.quantizable():
        f = get_format(head if layer.kind == "lm-head" else fmt)
        total += layer.params * f.bits_per_weight(layer.row) / 8.0
    return total


@cached
def max_batch(fmt: str, devices: int) -> int:
    """The most sequences of the benchmark's shape the devices hold (vLLM's memory share, at most max_num_seqs)."""
    from quantcore.models import load_graph
    from hwmodels.memory import free_memory
    from hwmodels.workload import Workload

    model, graph = _hardware(devices), load_graph(MODEL)
    head = model.runtime["lm_head_format"]
    weights = weight_bytes(fmt, fmt if head == "same" else head)
    spec = {"memory_capacity_bytes": MEMORY_UTILIZATION * float(model.spec.get("memory_capacity_bytes"))}

    def fits(batch: int) -> bool:
        work = Workload(phase="generate", batch=batch, seq=PROMPT, output_len=OUTPUT, kv_bits=16, devices=devices)
        return free_memory(spec, graph, work).free >= weights

    best = 0
    for batch in range(1, MAX_NUM_SEQS + 1):
        if not fits(batch):
            break
        best = batch
    return best


def _setup(what: str) -> str:
    return (f"{MODEL}: int4-g128 (lm-head fp16) on 1x {HW} vs fp16 on 2x {HW} tensor parallel, runtime vllm, "
            f"requests of {PROMPT} prompt + {OUTPUT} output tokens; {what}")


def _latency() -> dict:
    ratio = serving(*W4, BATCH)["tpot_s"] / serving(*FP16, BATCH)["tpot_s"]
    return {"refs": ["smoothquant-plus"], "ours": ratio, "published": 0.68, "source": SOURCE,
            "setup": _setup(f"time per output token, W4 / FP16, batch {BATCH}")}


def _throughput_equal() -> dict:
    ratio = serving(*W4, BATCH)["tokens_per_s"] / serving(*FP16, BATCH)["tokens_per_s"]
    return {"refs": ["smoothquant-plus"], "ours": ratio, "published": 1.9, "source": SOURCE + " (low end of 1.9-4.0x)",
            "setup": _setup(f"output tokens/s, W4 / FP16, both at batch {BATCH}")}


def _throughput_full() -> dict:
    w4, fp16 = max_batch(*W4), max_batch(*FP16)
    ratio = serving(*W4, w4)["tokens_per_s"] / serving(*FP16, fp16)["tokens_per_s"]
    return {"refs": ["smoothquant-plus"], "ours": ratio, "published": 4.0, "source": SOURCE + " (high end of 1.9-4.0x)",
            "setup": _setup(f"output tokens/s, W4 / FP16, each at the most sequences its memory holds "
                            f"(W4: {w4}, FP16: {fp16}; vLLM's 0.9 of memory, at most {MAX_NUM_SEQS})")}


REPRODUCTIONS = {
    "smoothquant_plus_codellama34b_tpot_ratio": _latency,
    "smoothquant_plus_codellama34b_throughput_ratio_batch8": _throughput_equal,
    "smoothquant_plus_codellama34b_throughput_ratio_full": _throughput_full,
}


TRTLLM_SOURCE = "NVIDIA/TensorRT-LLM docs/source/performance.md"
#: (hw, format, kv_bits, unit, table) -> [(model, tp, batch, input, output, published)]: every tensor-parallel
#: entry of a model in the catalog. unit: tok_s_gpu (Peak Throughput tables: out tok/s per GPU), ttft_ms
#: (Low Latency tables, batch 1).
TRTLLM_TABLES = {
    ("h100-sxm", "fp8-e4m3-a8", 8, "tok_s_gpu", "v0.6.1 Peak Throughput, H100 (FP8)"): [
        ("llama-2-70b", 2, 1024, 128, 128, 2657), ("llama-2-70b", 4, 480, 128, 2048, 1486),
        ("llama-2-70b", 2, 96, 2048, 128, 306), ("llama-2-70b", 2, 64, 2048, 2048, 547)],
    ("a100-80gb", "fp16", 16, "tok_s_gpu", "v0.6.1 Peak Throughput, A100 (FP16)"): [
        ("llama-2-7b", 2, 64, 2048, 2048, 782), ("llama-2-70b", 4, 1280, 128, 128, 670),
        ("llama-2-70b", 4, 240, 128, 2048, 525), ("llama-2-70b", 4, 120, 2048, 128, 79)],
    ("h100-sxm", "fp8-e4m3-a8", 8, "ttft_ms", "v0.5 Low Latency, H100 (FP8)"): [
        ("llama-2-70b", 4, 1, 128, 1, 26), ("llama-2-70b", 4, 1, 2048, 1, 109)],
    ("a100-80gb", "fp16", 16, "ttft_ms", "v0.5 Low Latency, A100 (FP16)"): [
        ("llama-2-70b", 4, 1, 128, 1, 47), ("llama-2-70b", 4, 1, 2048, 1, 377)],
}
#: (hw, model, format, kv_bits, tp, batch, input, output, published, unit, table), one per entry
TRTLLM_TP = [(hw, model, fmt, kv, tp, batch, prompt, output, published, unit, table)
             for (hw, fmt, kv, unit, table), entries in TRTLLM_TABLES.items()
             for model, tp, batch, prompt, output, published in entries]


@cached
def trtllm_figure(hw, model_name, fmt, kv_bits, tp, batch, prompt, output, unit) -> float:
    """Our figure for one TensorRT-LLM entry: a static batch through the tensorrt-llm runtime on `tp` GPUs."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from hwmodels.registry import load_model
    from hwmodels.wholemodel import model_cost
    from hwmodels.workload import Workload

    model = load_model(hw, {"runtime": "tensorrt-llm"})
    graph = load_graph(model_name)
    if unit == "ttft_ms":
        work = Workload(phase="prefill", batch=batch, seq=prompt, kv_bits=kv_bits, devices=tp)
        return model_cost(model, graph, get_format(fmt), work)["latency_s"] * 1e3
    work = Workload(phase="generate", batch=batch, seq=prompt, output_len=output, kv_bits=kv_bits, devices=tp)
    tokens = model_cost(model, graph, get_format(fmt), work)["tokens_per_s"]
    return tokens / tp


def _trtllm(entry):
    hw, model_name, fmt, kv_bits, tp, batch, prompt, output, published, unit, table = entry

    def fn() -> dict:
        what = {"tok_s_gpu": "output tokens/s per GPU", "ttft_ms": "first-token ms"}[unit]
        ours = trtllm_figure(hw, model_name, fmt, kv_bits, tp, batch, prompt, output, unit)
        return {"refs": ["trtllm-perf-v0.5"], "published": published, "source": f"{TRTLLM_SOURCE} ({table})",
                "ours": ours,
                "setup": (f"{model_name} {fmt} on {tp}x {hw} tensor parallel, runtime tensorrt-llm, batch {batch}, "
                          f"input {prompt}, output {output}, {kv_bits}-bit KV cache: {what}")}
    return fn


def _trtllm_name(entry) -> str:
    hw, model_name, _, _, tp, batch, prompt, output, _, unit, _ = entry
    kind = "ttft" if unit == "ttft_ms" else "tok_s"
    return f"trtllm_tp{tp}_{hw.split('-')[0]}_{model_name.replace('-', '_')}_b{batch}_{prompt}_{output}_{kind}"


REPRODUCTIONS.update({_trtllm_name(e): _trtllm(e) for e in TRTLLM_TP})
