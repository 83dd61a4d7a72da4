"""compressed-tensors: the ``quantization_config`` block vLLM reads from a checkpoint's config.json.

Built from the plan as ``config_groups`` (one group per format, its ``targets`` anchored
``re:`` regexes over module names, as compressed_tensors.utils.match ``match_name`` applies
them with ``re.match``) plus ``ignore`` for the layers the plan keeps in 16 bits, then
validated by the package's own pydantic model (``QuantizationConfig``), whose JSON dump is
what we write. llm-compressor's recipe (dse.export.llmcompressor) uses the same groups.

Storage, as the package's compressors write it: pack-quantized packs integer weights and, for
asymmetric schemes only, a ``num_bits`` zero point (compressors/pack_quantized ``pack_to_int32``),
so symmetric ints are the plain formats and asymmetric ones the ``-asym-qz`` formats; NVFP4
keeps an fp8 scale per 16 (plus one fp32 global scale), MXFP4 a uint8 (e8m0) scale per 32,
fp8 channel-wise a 16-bit scale per row.
"""
from __future__ import annotations

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from dse.export.base import Export, by_format, grouped_pattern, need

NAME = "compressed-tensors"
DEFAULT_OUT = "quantization_config.json"
_INT_GROUPS = (None, 32, 64, 128)
FORMATS = tuple(f"int{n}" + (f"-g{g}" if g else "") + sym
                for n in range(2, 9) for g in _INT_GROUPS for sym in ("", "-asym-qz")) + \
    ("int8-a8", "fp8-e4m3", "fp8-e4m3-a8", "nvfp4", "nvfp4-a4", "mxfp4", "fp16", "bf16")

_TOKEN_ACT = {"strategy": "token", "symmetric": True, "dynamic": True}
_NVFP4 = {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": True,
          "dynamic": False, "scale_dtype": "torch.float8_e4m3fn"}


def scheme(fmt) -> tuple[dict, str]:
    """({weights, input_activations?} of a format, its compression format name)."""
    if fmt.family == "int":
        weights = {"num_bits": int(fmt.weight_bits), "type": "int",
                   "strategy": "group" if fmt.group_size else "channel", "symmetric": bool(fmt.symmetric),
                   "dynamic": False}
        if fmt.group_size:
            weights["group_size"] = fmt.group_size
        if fmt.act_bits == 8:
            return {"weights": weights, "input_activations": {"num_bits": 8, "type": "int", **_TOKEN_ACT}}, \
                "int-quantized"
        return {"weights": weights}, "pack-quantized"
    if fmt.element == "e4m3":
        weights = {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True, "dynamic": False}
        if fmt.act_bits == 8:
            return {"weights": weights, "input_activations": {"num_bits": 8, "type": "float", **_TOKEN_ACT}}, \
                "float-quantized"
        return {"weights": weights}, "float-quantized"
    if fmt.family == "nvfp":
        out = {"weights": dict(_NVFP4)}
        if fmt.act_bits == 4:
            out["input_activations"] = {**_NVFP4, "dynamic": "local", "observer": "static_minmax"}
        return out, "nvfp4-pack-quantized"
    if fmt.family == "mx" and fmt.element == "e2m1":
        return {"weights": {"num_bits": 4, "type": "float", "strategy": "group", "group_size": 32,
                            "symmetric": True, "dynamic": False, "scale_dtype": "torch.uint8"}}, \
            "mxfp4-pack-quantized"
    raise QuantDSEError(f"compressed-tensors has no scheme for {fmt.name}")


def format_of(weights: dict, acts: dict | None) -> str:
    """The catalog format of a scheme (the inverse of `scheme`)."""
    kind, bits, strategy = weights["type"], int(weights["num_bits"]), weights.get("strategy")
    if kind == "int":
        group = weights.get("group_size") if strategy == "group" else None
        name = f"int{bits}" + (f"-g{group}" if group else "") + ("" if weights.get("symmetric", True) else "-asym-qz")
        return name + ("-a8" if acts else "")
    if bits == 8:
        return "fp8-e4m3" + ("-a8" if acts else "")
    if strategy == "tensor_group":
        return "nvfp4" + ("-a4" if acts else "")
    return "mxfp4"


def groups(export: Export) -> tuple[dict, list, set]:
    """(config_groups as plain dicts, ignore list, compression formats used)."""
    universe = [l.name for l in export.graph.layers if l.params > 0]
    config_groups, ignore, used = {}, [], set()
    for fmt_name, names in by_format(export).items():
        fmt = get_format(fmt_name)
        if not fmt.is_quantized:
            ignore += [f"re:{p}" for p in grouped_pattern(names, universe)]
            continue
        args, compression = scheme(fmt)
        used.add(compression)
        config_groups[f"group_{len(config_groups)}"] = {
            "targets": [f"re:{p}" for p in grouped_pattern(names, universe)], **args, "format": compression}
    return config_groups, ignore, used


#: the plan's KV formats compressed-tensors writes as ``kv_cache_scheme`` (vLLM reads fp8 only:
#: ``kv_cache_dtype=fp8`` with the per-tensor scales llm-compressor calibrates)
KV_SCHEMES = {"fp8-e4m3": {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True}}


def kv_scheme(export: Export, target: str = NAME) -> dict | None:
    """The ``kv_cache_scheme`` of the plan's KV choice (one for K and V), or None (16-bit cache)."""
    from dse.export.kvexport import kv_choice

    choice = kv_choice(export, target, tuple(KV_SCHEMES))
    if choice is None:
        return None
    export.notes.append(f"KV cache {choice['k']}: kv_cache_scheme (per-tensor scales, one for every layer; "
                        "vLLM serves it as kv_cache_dtype=fp8)")
    return dict(KV_SCHEMES[choice["k"]])


def build(export: Export):
    """The validated compressed_tensors.QuantizationConfig of the plan."""
    QuantizationConfig = need("compressed_tensors.quantization", NAME).QuantizationConfig
    config_groups, ignore, used = groups(export)
    return QuantizationConfig.model_validate({
        "config_groups": config_groups, "quant_method": "compressed-tensors",
        "format": used.pop() if len(used) == 1 else "mixed-precision",
        "quantization_status": "compressed", "ignore": ignore, "kv_cache_scheme": kv_scheme(export)})


def write(export: Export) -> tuple[dict, dict]:
    config = build(export)
    return {"quantization_config": config.model_dump(mode="json", exclude_none=True)}, {}


def read(doc: dict, graph) -> dict:
    """{module: format name} the config gives the plan's searchable modules (first group that matches)."""
    import re

    block = doc.get("quantization_config", doc)
    ignore = [re.compile(t.removeprefix("re:")) for t in block.get("ignore", []) if t.startswith("re:")]
    rules = []
    for group in block["config_groups"].values():
        fmt = format_of(group["weights"], group.get("input_activations"))
        rules += [(re.compile(t.removeprefix("re:")), fmt) for t in group["targets"]]
    out = {}
    for layer in graph.quantizable():
        if any(rx.match(layer.name) for rx in ignore):
            out[layer.name] = "fp16"
            continue
        hit = next((fmt for rx, fmt in rules if rx.match(layer.name)), None)
        out[layer.name] = hit if hit is not None else "fp16"
    return out
