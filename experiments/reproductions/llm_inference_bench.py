"""Tensor-parallel scaling on A100s: LLM-Inference-Bench's TensorRT-LLM table (TP 1, 2 and 4).

Published (argonne-lcf/LLM-Inference-Bench, the data of the paper's parallelism figure,
llm_inference_bench.json): TensorRT-LLM 0.11 engines (fp16, gemm and attention plugins) on the
A100-SXM4-40GB nodes of ALCF's Polaris (four GPUs per node, every pair joined by four NVLink 3
links), one `generate()` call of a static batch whose prompts and outputs are both
`input_output_length` tokens; the latency is that call's seconds. Every tensor-parallel row
(TP 1, 2, 4; batch 1, 16, 32, 64; lengths 128 to 2048) of the five models it ran that the
catalog has (Qwen2-7B as qwen2.5-7b, whose shapes it shares; Llama-3-70B is not in the catalog)
is a row here, unless the batch's KV cache and the weights overflow the GPUs' 40 GB: TensorRT-LLM
then serves the batch in turns through its paged cache, which a static batch does not model.

Ours: the same request (`--phase generate`) through the tensorrt-llm runtime on `tp` a100-40gb,
absolute seconds, and the scaling ratio latency(TP N) / latency(TP 1) where both fit. No constant
of ours names this document.
"""
from __future__ import annotations

import json
from pathlib import Path

from hwmodels.provenance import cached

DATA = json.loads(Path(__file__).with_name("llm_inference_bench.json").read_text(encoding="utf-8"))
REFS = ["llm-inference-bench"]
HW, RUNTIME = "a100-40gb", "tensorrt-llm"
#: the benchmark's model -> the catalog's (None: not in the catalog)
MODELS = {"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-2-70b-hf": "llama-2-70b",
          "meta-llama/Meta-Llama-3-8B": "llama-3-8b", "mistralai/Mistral-7B-v0.1": "mistral-7b",
          "Qwen/Qwen2-7B": "qwen2.5-7b", "meta-llama/Meta-Llama-3-70B": None}


def _workload(batch: int, length: int, tp: int):
    from hwmodels.workload import Workload

    return Workload(phase="generate", batch=batch, seq=length, output_len=length, kv_bits=16, devices=tp)


@cached
def fits(model_name: str, tp: int, length: int, batch: int) -> bool:
    """The fp16 weights, the batch's KV cache and activations fit the `tp` GPUs' memory."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from hwmodels.memory import free_memory, weight_bytes
    from hwmodels.spec import load_spec

    graph = load_graph(model_name)
    fm = free_memory(load_spec(HW).params, graph, _workload(batch, length, tp))
    return fm.free >= weight_bytes(graph, get_format("fp16"))


@cached
def latency(model_name: str, tp: int, length: int, batch: int) -> float:
    """Seconds of the static batch's request on `tp` GPUs."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from hwmodels.registry import load_model
    from hwmodels.wholemodel import model_cost

    model = load_model(HW, {"runtime": RUNTIME})
    return model_cost(model, load_graph(model_name), get_format("fp16"), _workload(batch, length, tp))["latency_s"]


def entries() -> list[tuple]:
    """(catalog model, tp, length, batch, published seconds) of every row the model can express."""
    return [(MODELS[m], tp, length, batch, seconds) for m, tp, length, batch, seconds, _ in DATA["rows"]
            if MODELS[m] and fits(MODELS[m], tp, length, batch)]


def _name(model_name, tp, length, batch, what) -> str:
    return f"lib_a100_trtllm_{model_name.replace('-', '_').replace('.', '')}_tp{tp}_{length}_b{batch}_{what}"


def _setup(model_name, tp, length, batch) -> str:
    return (f"{model_name} fp16 on {tp}x {HW} tensor parallel, runtime {RUNTIME}, batch {batch}, "
            f"input {length}, output {length}, 16-bit KV cache")


def _absolute(model_name, tp, length, batch, seconds):
    def fn() -> dict:
        return {"refs": REFS, "published": seconds, "ours": latency(model_name, tp, length, batch),
                "source": f"{DATA['source']}: latency (s)", "setup": _setup(model_name, tp, length, batch)}
    return fn


def _scaling(model_name, tp, length, batch, seconds, single):
    """The ratio of two rows' figures: listed and tested, counted once in the strict counts (same_setup_as)."""
    def fn() -> dict:
        ours = latency(model_name, tp, length, batch) / latency(model_name, 1, length, batch)
        return {"refs": REFS, "published": seconds / single, "ours": ours,
                "source": f"{DATA['source']}: latency at TP {tp} / latency at TP 1",
                "same_setup_as": _name(model_name, tp, length, batch, "s"),
                "setup": _setup(model_name, tp, length, batch) + "; over the same request on one GPU"}
    return fn


def _rows() -> dict:
    found = entries()
    single = {(m, length, batch): s for m, tp, length, batch, s in found if tp == 1}
    rows = {}
    for m, tp, length, batch, seconds in found:
        rows[_name(m, tp, length, batch, "s")] = _absolute(m, tp, length, batch, seconds)
        if tp > 1 and (m, length, batch) in single:
            rows[_name(m, tp, length, batch, "over_tp1")] = _scaling(m, tp, length, batch, seconds,
                                                                     single[(m, length, batch)])
    return rows


REPRODUCTIONS = _rows()
