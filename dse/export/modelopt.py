"""TensorRT Model Optimizer (ModelOpt): ``hf_quant_config.json`` with ``quant_algo: MIXED_PRECISION``.

The layout is the one modelopt.torch.export.quant_utils ``process_layer_quant_config`` writes
and modelopt.torch.export.convert_hf_config ``convert_hf_quant_config_format`` reads:
``{"producer": {...}, "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": null,
"quantized_layers": {module: {"quant_algo": ..., "group_size": ...}}, "exclude_modules": [...]}}``.

W4A8_AWQ is not written: ModelOpt's own reader (modelopt/torch/export/convert_hf_config.py
``_quant_algo_to_group_config``, nvidia-modelopt 0.47.0) reads it as 4-bit *float* weights with fp8
activations, not int4 (so int4-g128-a8 has no exact ModelOpt algorithm).
Per-layer algorithms and the formats they store: W4A16_AWQ (int4, fp16 scale per
group of 128, ``has_zero_point`` false; AWQ's per-channel ``pre_quant_scale`` is k fp16 values
per layer, not counted), W8A16 and W8A8_SQ_PER_CHANNEL (int8, a scale per channel),
FP8_PER_CHANNEL_PER_TOKEN (fp8 e4m3 weights with a scale per channel, fp8 activations per
token), W4A16_NVFP4 / NVFP4 (e2m1, fp8 scale per 16). 16-bit layers go to ``exclude_modules``.
"""
from __future__ import annotations

from dse.version import __version__
from quantcore.formats import get_format
from dse.export.base import Export

NAME = "modelopt"
DEFAULT_OUT = "hf_quant_config.json"
_ALGOS = {
    "int4-g128": {"quant_algo": "W4A16_AWQ", "group_size": 128, "has_zero_point": False, "pre_quant_scale": True},
    "int8": {"quant_algo": "W8A16"},
    "int8-a8": {"quant_algo": "W8A8_SQ_PER_CHANNEL"},
    "fp8-e4m3-a8": {"quant_algo": "FP8_PER_CHANNEL_PER_TOKEN"},
    "nvfp4": {"quant_algo": "W4A16_NVFP4", "group_size": 16},
    "nvfp4-a4": {"quant_algo": "NVFP4", "group_size": 16},
}
FORMATS = tuple(_ALGOS) + ("fp16", "bf16")
#: the plan's KV formats as ``kv_cache_quant_algo`` (TensorRT-LLM's FP8 and INT8 caches, one for K and V)
KV_ALGOS = {"fp8-e4m3": "FP8", "int8": "INT8"}


def write(export: Export) -> tuple[dict, dict]:
    from dse.export.kvexport import kv_choice

    kv = kv_choice(export, NAME, tuple(KV_ALGOS))
    if kv:
        export.notes.append(f"KV cache {kv['k']}: kv_cache_quant_algo {KV_ALGOS[kv['k']]} (one for every layer, K and V; "
                            "TensorRT-LLM builds the engine's cache in it)")
    quantized, exclude = {}, []
    for l in export.layers:
        if l.format.is_quantized:
            quantized[l.name] = dict(_ALGOS[l.format.name])
        else:
            exclude.append(l.name)
    doc = {"producer": {"name": "quantdse", "version": __version__},
           "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": KV_ALGOS[kv["k"]] if kv else None,
                            "quantized_layers": quantized, "exclude_modules": exclude}}
    return doc, {}


def read(doc: dict, graph) -> dict:
    q = doc["quantization"]
    by_algo = {v["quant_algo"]: k for k, v in _ALGOS.items()}
    names = {l.name for l in graph.quantizable()}
    out = {name: get_format(by_algo[cfg["quant_algo"]]).name for name, cfg in q["quantized_layers"].items()}
    out.update({name: "fp16" for name in q.get("exclude_modules", []) if name in names})
    return out
