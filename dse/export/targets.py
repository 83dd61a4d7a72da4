"""Deployment targets (`dse.search --for TARGET`): what a tool writes, what runs it, what it fuses.

A target ties together
- `export`: the dse.export file it reads (`--to`);
- `formats`: the formats that file expresses *and* the runtime's kernels load (a subset of
  the exporter's FORMATS);
- `runtime`: the GPU runtime profile that costs them (`--set runtime=NAME`,
  hwmodels/families/gpu_runtimes.toml; other hardware families keep their own cost model);
- `fuse`: the layers the runtime loads as one module, so one format each (`tied_groups`).

Sources (read from the tools' code):
- vLLM, vllm/model_executor/layers/quantization/gptq_marlin.py (vllm-project/vllm
  00161ce01fe64fdae0ec8ff1ae198c7b9befbdad): ``TYPE_MAP`` has (4, sym) and (8, sym) only, so
  GPTQ checkpoints load through Marlin at 4 or 8 symmetric bits, groups -1/32/64/128
  (marlin_utils ``MARLIN_SUPPORTED_GROUP_SIZES``); 2- and 3-bit ``dynamic`` overrides beside such
  a base are rejected.
- vLLM models' ``packed_modules_mapping`` (e.g. models/llama.py: ``qkv_proj`` <- q/k/v_proj,
  ``gate_up_proj`` <- gate/up_proj; models/bert.py: ``qkv_proj`` <- query/key/value): one module,
  one quantization method; ModelOpt mixed precision raises "Mixed quant_algo within fused layer"
  (quantization/modelopt.py ``_resolve_quant_algo``, 00155cdecca722d98e34234c3d172725b7720b7d),
  GPTQ ``dynamic`` and compressed-tensors targets are matched against the fused name. MoE
  experts of one layer are one FusedMoE with one quantization method.
- vLLM quantization/modelopt.py ``QUANT_ALGOS`` (same commit): FP8, FP8_PER_CHANNEL_PER_TOKEN,
  FP8_PB_WO, NVFP4, W4A16_NVFP4, MXFP8, MIXED_PRECISION: no W4A16_AWQ / W8A16 / W4A8_AWQ.
- vLLM compressed-tensors WNA16 (``WNA16_SUPPORTED_BITS`` = [4, 8]): int weight-only at 4 or 8 bits.
- llama.cpp src/llama-quant.cpp (ggml-org/llama.cpp 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714):
  experts are one 3-D tensor per layer and projection (one type each); k-quants on rows that are
  not a multiple of 256 fall back (``tensor_type_fallback``), which quantcore.formats models.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from quantcore.errors import QuantDSEError


@dataclass(frozen=True)
class Target:
    name: str
    export: str
    runtime: str
    fuse: tuple  # "qkv", "gate_up", "experts" (all experts of a layer), "expert-proj" (per projection)
    formats: tuple = ()  # empty: every format the exporter writes
    description: str = ""


_MARLIN = tuple(f"int{b}" + (f"-g{g}" if g else "") + "-qz" for b in (4, 8) for g in (None, 32, 64, 128)) + ("fp16",)
_WNA16 = tuple(f"int{b}" + (f"-g{g}" if g else "") for b in (4, 8) for g in (None, 32, 64, 128))
_VLLM_CT = _WNA16 + ("int8-a8", "fp8-e4m3", "fp8-e4m3-a8", "nvfp4", "nvfp4-a4", "mxfp4", "fp16")
_VLLM_FUSE = ("qkv", "gate_up", "experts")

TARGETS = {t.name: t for t in (
    Target("llamacpp", "llamacpp", "llama.cpp", ("expert-proj",),
           description="llama-quantize --tensor-type-file; k-quant fallback on rows not a multiple of 256"),
    Target("vllm-gptq", "gptqmodel", "vllm", _VLLM_FUSE, _MARLIN,
           description="GPTQModel checkpoint served by vLLM (gptq_marlin: 4/8-bit symmetric)"),
    Target("vllm-compressed-tensors", "compressed-tensors", "vllm", _VLLM_FUSE, _VLLM_CT,
           description="compressed-tensors quantization_config served by vLLM"),
    Target("llmcompressor", "llmcompressor", "vllm", _VLLM_FUSE, _VLLM_CT,
           description="llm-compressor recipe; its checkpoint is served by vLLM"),
    Target("autoround", "autoround", "vllm", _VLLM_FUSE, _MARLIN + ("mxfp4", "nvfp4"),
           description="AutoRound layer_config; its auto_round/GPTQ checkpoint is served by vLLM"),
    Target("modelopt", "modelopt", "vllm", _VLLM_FUSE, ("fp8-e4m3-a8", "nvfp4", "nvfp4-a4", "fp16"),
           description="ModelOpt hf_quant_config.json (MIXED_PRECISION) served by vLLM"),
    Target("tensorrt-llm", "modelopt", "tensorrt-llm", _VLLM_FUSE,
           description="ModelOpt hf_quant_config.json built into a TensorRT-LLM engine"),
)}


def get_target(name: str) -> Target:
    key = str(name).strip().lower()
    if key not in TARGETS:
        close = difflib.get_close_matches(key, list(TARGETS), n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise QuantDSEError(f"unknown deployment target {name!r}{hint}: use one of {', '.join(TARGETS)}")
    return TARGETS[key]


def target_formats(target: Target) -> tuple:
    """The candidate formats of a search for `target` (bf16/fp32 left out: fp16 is the 16-bit choice)."""
    from dse.export import target_module

    written = [f for f in target_module(target.export).FORMATS if f not in ("bf16", "fp32")]
    return tuple(f for f in written if not target.formats or f in target.formats)


#: fused modules: shard name -> fused kind (vLLM packed_modules_mapping; BERT's query/key/value)
_SHARDS = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "query": "qkv", "key": "qkv", "value": "qkv",
           "gate_proj": "gate_up", "up_proj": "gate_up"}
_EXPERT = re.compile(r"^(.*\.experts)\.\d+\.(.+)$")


def fused_key(name: str, fuse) -> tuple | None:
    """The fused module a layer belongs to under `fuse` (None: loaded on its own)."""
    m = _EXPERT.match(name)
    if m is not None:
        if "experts" in fuse:
            return (m.group(1), "experts")
        if "expert-proj" in fuse:
            return (m.group(1), m.group(2))
        return None
    head, _, leaf = name.rpartition(".")
    kind = _SHARDS.get(leaf)
    return (head, kind) if kind in fuse else None


def tied_groups(names, fuse) -> list:
    """[[row indices]] of layers that must share one format (groups of two or more)."""
    groups: dict = {}
    for i, name in enumerate(names):
        key = fused_key(name, fuse)
        if key is not None:
            groups.setdefault(key, []).append(i)
    return [rows for rows in groups.values() if len(rows) > 1]
