"""llm-compressor: a recipe YAML with one ``QuantizationModifier``.

``config_groups`` hold the plan's formats, each with ``re:`` targets over module names and
``weights: {num_bits, type, strategy, group_size, symmetric}``; ``ignore`` lists the layers kept
in 16 bits. The modifier builds compressed-tensors ``QuantizationScheme``s from these groups,
so they are the same groups as ``--to compressed-tensors`` (dse.export.ctensors), and the
checkpoint llm-compressor saves is stored as that module describes.
"""
from __future__ import annotations

from dse.export import ctensors
from dse.export.base import Export, need

NAME = "llmcompressor"
DEFAULT_OUT = "recipe.yaml"
FORMATS = ctensors.FORMATS


#: formats whose fused groups llm-compressor's oneshot joins (a shared NVFP4 global scale, fused FP8/MXFP4
#: scales: modifiers/utils/helpers.py update_fused_layer_weight_global_scales, "a requirement currently
#: being set by vLLM"); a q/k/v or gate/up group mixing them with another scheme stops oneshot
JOINED = ("nvfp4", "nvfp4-a4", "mxfp4", "fp8-e4m3", "fp8-e4m3-a8")


def write(export: Export) -> tuple[str, dict]:
    from dse.export.base import check_fused

    check_fused(export, "llmcompressor", only=JOINED)
    config_groups, ignore, _ = ctensors.groups(export)
    for group in config_groups.values():
        group.pop("format", None)  # llm-compressor infers the compression format when it saves
    modifier = {"ignore": ignore, "config_groups": config_groups}
    kv = ctensors.kv_scheme(export, NAME)
    if kv is not None:  # QuantizationModifier's kv_cache_scheme: calibrated K/V scales, as vLLM reads them
        modifier["kv_cache_scheme"] = kv
    recipe = {"quant_stage": {"quant_modifiers": {"QuantizationModifier": modifier}}}
    return need("yaml", NAME).safe_dump(recipe, sort_keys=False, width=120), {}


def read(text: str, graph) -> dict:
    """{module: format name} the recipe gives the plan's searchable modules."""
    doc = need("yaml", NAME).safe_load(text)
    modifier = doc["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    return ctensors.read({"config_groups": modifier["config_groups"], "ignore": modifier.get("ignore", [])}, graph)
