"""Nunchaku / DeepCompressor: a per-layer JSON for SVDQuant's converter (schema ``quantdse.nunchaku/1``).

Nunchaku (mit-han-lab/nunchaku) runs FLUX-class transformers with three kernels per linear
layer (src/FluxModel.h): ``GEMM_W4A4`` (4-bit weights and activations in groups of 64, plus a
16-bit low-rank branch of rank r fused in: our ``int4-g64-rR-a4``; ``nvfp4-rR-a4`` with
``use_fp4``), ``GEMV_AWQ`` (AWQ 4-bit weight-only, groups of 64: ``int4-g64``, used for the
adaLN linears) and ``GEMM_W8A8`` (``int8-a8``); everything else stays BF16. DeepCompressor
(mit-han-lab/deepcompressor) produces the checkpoint from a YAML whose ``quant.wgts`` /
``quant.ipts`` say the dtype and group shape and whose ``skips`` list the layer kinds left
in 16 bits (examples/diffusion/configs/svdquant/int4.yaml, __default__.yaml).

The file holds, per pipeline component (the diffusers folder: transformer, text_encoder, ...),
every layer by its name in that component's checkpoint with its kernel and fields, and the
DeepCompressor ``quant`` settings of the plan's dominant W4A4 format. Layers of other
components than the transformer are listed too (Nunchaku's T5 is AWQ W4A16; the VAE and CLIP
stay 16-bit in its pipelines), so a converter sees the whole plan.
"""
from __future__ import annotations

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from dse.export.base import Export

NAME = "nunchaku"
DEFAULT_OUT = "svdquant.json"
SCHEMA = "quantdse.nunchaku/1"
RANKS = (16, 32, 64, 128)
FORMATS = tuple(f"int4-g64-r{r}-a4" for r in RANKS) + ("nvfp4-r32-a4", "int4-g64", "int8-a8", "fp16", "bf16")


def entry(fmt) -> dict:
    if not fmt.is_quantized:
        return {"kernel": "bf16"}
    if fmt.lowrank:
        dtype = "nvfp4" if fmt.family == "nvfp" else "sint4"
        return {"kernel": "svdq_w4a4", "weights": dtype, "activations": dtype, "group_size": fmt.group_size,
                "rank": fmt.lowrank}
    if fmt.act_bits == 8:
        return {"kernel": "w8a8", "weights": "sint8", "activations": "sint8"}
    return {"kernel": "awq_w4a16", "weights": "uint4", "group_size": fmt.group_size}


def format_of(cfg: dict) -> str:
    kernel = cfg.get("kernel")
    if kernel == "svdq_w4a4":
        if cfg.get("weights") == "nvfp4":
            return f"nvfp4-r{int(cfg['rank'])}-a4"
        return f"int4-g{int(cfg.get('group_size', 64))}-r{int(cfg['rank'])}-a4"
    if kernel == "w8a8":
        return "int8-a8"
    if kernel == "awq_w4a16":
        return f"int4-g{int(cfg.get('group_size', 64))}"
    if kernel == "bf16":
        return "bf16"
    raise QuantDSEError(f"{NAME} file: unknown kernel {kernel!r}: use svdq_w4a4, awq_w4a16, w8a8 or bf16")


def _split(name: str) -> tuple[str, str]:
    stage, _, rest = name.partition(".")
    return stage, rest


def write(export: Export) -> tuple[dict, dict]:
    from dse.export.kvexport import kv_choice

    kv_choice(export, NAME, ())  # weights only: a quantized KV cache stops here
    layers: dict = {}
    for l in export.layers:
        stage, name = _split(l.name)
        layers.setdefault(stage, {})[name] = entry(l.format)
    w4a4 = [l.format for l in export.layers if l.format.lowrank]
    quant = {}
    if w4a4:
        main = max(set(w4a4), key=w4a4.count)
        dtype = "sint4" if main.family == "int" else "nvfp4"
        group = [[1, main.group_size, 1, 1, 1]]
        quant = {"wgts": {"dtype": dtype, "group_shapes": group, "enable_low_rank": True,
                          "low_rank": {"rank": main.lowrank}},
                 "ipts": {"static": False, "dtype": dtype, "group_shapes": group}}
    doc = {"schema": SCHEMA, "model": export.plan["model"], "deepcompressor": {"quant": quant}, "layers": layers}
    return doc, {}


def read(doc, graph) -> dict:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("layers"), dict):
        raise QuantDSEError(f"{NAME} file: not a {SCHEMA} document (needs schema and layers)")
    names = {l.name for l in graph.quantizable()}
    out = {}
    for stage, layers in doc["layers"].items():
        for name, cfg in (layers or {}).items():
            full = f"{stage}.{name}"
            if full in names:
                out[full] = get_format(format_of(cfg)).name
    return out
