"""AutoRound: a ``layer_config`` JSON ``{module: {bits, group_size, data_type, sym}}``.

Keys are exact HF module names (auto_round/compressors/layer_config_resolver.py takes a key
that names a supported module as is, and treats any other key as a regex). The keys of each
entry are fields of ``auto_round.schemes.QuantizationScheme``. ``data_type`` ``int`` for
integers (bits 2, 3, 4, 8 for the auto_round/auto_gptq packers, which store a packed ``bits``-bit
``qzeros`` per group, also when symmetric: the ``-qz`` formats), ``mx_fp`` for MXFP4 (group 32),
``nv_fp`` for NVFP4 (group 16), and ``bits: 16, data_type: float`` for a layer kept in 16 bits
(as AutoRound writes ignored layers). ``group_size`` -1 is one group per output channel.

Use it as ``AutoRound(model, tokenizer, layer_config=json.load(open(PATH)))``.
"""
from __future__ import annotations

from quantcore.formats import get_format
from dse.export import gptqmodel
from dse.export.base import Export

NAME = "autoround"
DEFAULT_OUT = "layer_config.json"
#: 8-bit asymmetric ints are refused: auto_round/compressors/layer_config_resolver.py (auto-round 0.16.1)
#: rejects "8-bit asymmetric weight quantization" for formats without a W8-asym path (GPTQ/auto_round)
FORMATS = tuple(f for f in gptqmodel.INT_FORMATS if not f.startswith("int8") or "-asym" not in f) + \
    ("mxfp4", "nvfp4", "fp16", "bf16")


def entry(fmt) -> dict:
    if not fmt.is_quantized:
        return {"bits": 16, "data_type": "float"}
    if fmt.family == "mx":
        return {"bits": 4, "group_size": 32, "data_type": "mx_fp", "sym": True}
    if fmt.family == "nvfp":
        return {"bits": 4, "group_size": 16, "data_type": "nv_fp", "sym": True}
    return {"bits": int(fmt.weight_bits), "group_size": fmt.group_size or -1, "data_type": "int",
            "sym": bool(fmt.symmetric)}


def format_of(cfg: dict) -> str:
    kind = cfg.get("data_type", "int")
    if cfg.get("bits", 16) >= 16 or kind == "float":
        return "fp16"
    if kind == "mx_fp":
        return "mxfp4"
    if kind == "nv_fp":
        return "nvfp4"
    return gptqmodel.format_of(cfg["bits"], cfg.get("group_size", 128), cfg.get("sym", True))


def write(export: Export) -> tuple[dict, dict]:
    from dse.export.kvexport import kv_choice

    kv_choice(export, NAME, ())  # weights only: a quantized KV cache stops here
    return {l.name: entry(l.format) for l in export.layers}, {}


def read(doc: dict, graph) -> dict:
    names = {l.name for l in graph.quantizable()}
    return {name: get_format(format_of(cfg)).name for name, cfg in doc.items() if name in names}
