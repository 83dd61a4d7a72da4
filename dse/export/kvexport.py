"""The plan's KV-cache choices (its ``kv`` entries) as each export target can express them.

Every tool here takes one cache type for the whole model: compressed-tensors' ``kv_cache_scheme``
(one QuantizationArgs for K and V, what vLLM reads as ``kv_cache_dtype=fp8``), ModelOpt's
``kv_cache_quant_algo`` (FP8 | INT8, TensorRT-LLM), llama.cpp's ``--cache-type-k`` / ``--cache-type-v``
(global, K and V apart; a quantized V cache needs flash attention, ``-fa``). GPTQModel and
AutoRound write weights only. A plan whose choice a target cannot express stops with one line
naming the cache item, its format and the fix.
"""
from __future__ import annotations

from quantcore.errors import QuantDSEError


def kv_choice(export, target: str, stores: tuple, scope: str = "kv") -> dict | None:
    """{"k": format, "v": format} the plan chose, or None where the cache was not searched or is 16-bit.

    stores: the cache formats `target` expresses (besides fp16/bf16); scope: "kv" (one type for K
    and V) or "k,v" (one each).
    """
    entries = export.plan.get("kv") or []
    if not entries or all(e["format"] in ("fp16", "bf16") for e in entries):
        return None
    fix = (f"search with --kv-formats fp16,{','.join(stores)}" if stores else
           "export to compressed-tensors (kv_cache_scheme) or modelopt (kv_cache_quant_algo), or search without "
           "--kv-formats")
    first: dict = {}
    for e in entries:
        if e["format"] not in stores and e["format"] not in ("fp16", "bf16"):
            raise QuantDSEError(f"layer {e['name']}: {target} cannot express a {e['format']} KV cache"
                                f"{' (it writes weights only)' if not stores else ''}: {fix}")
        key = "kv" if scope == "kv" else e["tensor"]
        if key not in first:
            first[key] = e
        elif first[key]["format"] != e["format"]:
            what = "one type for K and V" if scope == "kv" else f"one {e['tensor'].upper()} type"
            raise QuantDSEError(f"layer {e['name']}: {target} takes {what} for the whole model, the plan has "
                                f"{e['format']} here and {first[key]['format']} at {first[key]['name']}: search "
                                f"with --set runtime=... of your engine (it ties the cache) or --kv-formats one type")
    if scope == "kv":
        return {"k": first["kv"]["format"], "v": first["kv"]["format"]}
    return {t: first[t]["format"] for t in ("k", "v")}
