"""GPTQModel: ``quantize_config.json`` with a ``dynamic`` per-module override dict.

GPTQModel (gptqmodel/quantization/config.py, ``dynamic_get``) walks ``dynamic`` in order and
``re.match``es each key against the full module name (``model.layers.0.self_attn.q_proj``):
a ``-:regex`` key skips the module (left in 16 bits), a ``+:regex`` key overrides the base
``bits`` / ``group_size`` / ``sym``; the first match wins. vLLM reads the same dict
(vllm/model_executor/layers/quantization/utils/gptq_utils.py ``get_dynamic_override``).
We anchor every key (``...$``), so each module matches at most one key.

GPTQModel packs weights for bits in (2, 3, 4, 8) (``QuantizeConfig.bits`` choices) and stores
an fp16 scale and a packed ``bits``-bit zero point (``qzeros``) per group, also when ``sym``:
the ``-qz`` formats count exactly that. ``group_size`` -1 is one group per output channel.
"""
from __future__ import annotations

import re

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from dse.export.base import Export, by_format, dominant_format, grouped_pattern

NAME = "gptqmodel"
DEFAULT_OUT = "quantize_config.json"
BITS = (2, 3, 4, 8)
GROUPS = (None, 32, 64, 128)


def lm_head_here(export: Export, names: list) -> bool:
    return any(n in {l.name for l in export.graph.layers if l.kind == "lm-head"} for n in names)


def format_of(bits: int, group_size: int | None, sym: bool) -> str:
    """The format name of GPTQ {bits, group_size, sym} (the inverse of `fields`)."""
    return f"int{bits}" + (f"-g{group_size}" if group_size and group_size > 0 else "") + \
        ("" if sym else "-asym") + "-qz"


#: the integer formats its packers store (AutoRound's auto_round/auto_gptq packers store the same)
INT_FORMATS = tuple(format_of(n, g, sym) for n in BITS for g in GROUPS for sym in (True, False))
FORMATS = INT_FORMATS + ("fp16", "bf16")


def fields(fmt) -> dict:
    """{bits, group_size, sym} of a GPTQ format."""
    return {"bits": int(fmt.weight_bits), "group_size": fmt.group_size or -1, "sym": bool(fmt.symmetric)}


#: vLLM loads these HF modules as one (packed_modules_mapping, e.g. vllm/model_executor/models/llama.py) and
#: matches `dynamic` against the fused name (quantization/utils/gptq_utils.py get_dynamic_override)
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def with_fused(names: list) -> list:
    """`names` plus vLLM's fused module name wherever every shard of it is among them (one format)."""
    present = set(names)
    extra = []
    for name in names:
        head, _, leaf = name.rpartition(".")
        for fused, shards in FUSED.items():
            if leaf == shards[0] and all(f"{head}.{s}" in present for s in shards):
                extra.append(f"{head}.{fused}")
    return names + extra


def write(export: Export) -> tuple[dict, dict]:
    """(quantize_config.json as a dict, extras)."""
    from dse.export.kvexport import kv_choice

    kv_choice(export, NAME, ())  # weights only: a quantized KV cache stops here
    base = dominant_format(export) or get_format("int4-g128-qz")
    universe = with_fused([l.name for l in export.graph.layers if l.params > 0])
    dynamic: dict = {}
    lm_head = None
    for fmt_name, names in by_format(export).items():
        fmt = get_format(fmt_name)
        for name in names:
            if export.graph.layer(name).kind == "lm-head":
                lm_head = fmt
        names = with_fused(names)
        if fmt.name == base.name and not lm_head_here(export, names):
            continue
        if fmt.name == base.name:  # GPTQModel's lm_head takes its own default unless a rule names it
            names = [n for n in names if lm_head_here(export, [n])]
        if not fmt.is_quantized:
            for pattern in grouped_pattern(names, universe):
                dynamic[f"-:{pattern.lstrip('^')}"] = {}
            continue
        for pattern in grouped_pattern(names, universe):
            dynamic[f"+:{pattern.lstrip('^')}"] = fields(fmt)
    config = {**fields(base), "desc_act": False, "lm_head": bool(lm_head is not None and lm_head.is_quantized),
              "dynamic": dynamic, "quant_method": "gptq", "checkpoint_format": "gptq",
              "meta": {"quantizer": ["quantdse"], "plan_model": export.plan["model"]}}
    return config, {}


def read(config: dict, graph) -> dict:
    """{module: format name} GPTQModel applies to the plan's searchable modules."""
    for key in ("bits", "group_size", "sym", "dynamic"):
        if key not in config:
            raise QuantDSEError(f"quantize_config lacks {key!r}")
    out = {}
    for layer in graph.quantizable():
        if layer.kind == "lm-head" and not config.get("lm_head", False):
            out[layer.name] = "fp16"
            continue
        fields_ = {"bits": config["bits"], "group_size": config["group_size"], "sym": config["sym"]}
        skipped = False
        for pattern, overrides in config["dynamic"].items():
            if pattern.startswith("-:"):
                if re.match(pattern.removeprefix("-:"), layer.name):
                    skipped = True
                    break
            elif re.match(pattern.removeprefix("+:"), layer.name):
                fields_.update(overrides)
                break
        out[layer.name] = "fp16" if skipped else format_of(fields_["bits"], fields_["group_size"], fields_["sym"])
    return out
