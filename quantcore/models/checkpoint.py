"""A LayerGraph from a safetensors checkpoint (file or folder), shapes from the header.

Every 2-D `.weight` is a linear layer (embedding / lm-head by name), every 4-D `.weight`
a conv; other float tensors (norms, biases) count as `extra_params`; integer buffers
(`position_ids`) are not parameters. A `config.json` beside the weights (a supported
model_type) gives the forward order, the attention nodes, roles and `graph.config`; the
shapes always come from the tensors. Without it, layers follow natural name order.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from types import MappingProxyType

from quantcore.io import load_json
from quantcore.models.graph import Layer, LayerGraph
from quantcore.models.hf_config import SUPPORTED_MODEL_TYPES, graph_from_config
from quantcore.models.safetensors_io import FLOAT_DTYPES, SafetensorsWeights, natural_key, read_tensors

EMBEDDING_NAMES = ("embed_tokens", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings",
                   "embed_positions")
_ROLES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "out_proj": "o", "query": "q", "key": "k",
          "value": "v", "gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up",
          "w2": "down", "lm_head": "lm_head"}
_BLOCK = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")
_EXPERT = re.compile(r"\.experts\.(\d+)\.")


def _layer_from_tensor(module: str, shape: tuple) -> Layer:
    last = module.rsplit(".", 1)[-1]
    if len(shape) == 4:
        kind, role = "conv", "conv"
    elif last == "lm_head":
        kind, role = "lm-head", "lm_head"
    elif last in EMBEDDING_NAMES:
        kind, role = "embedding", "embed"
    else:
        kind, role = "linear", _ROLES.get(last, last)
    block = _BLOCK.search(f".{module}.")
    expert = _EXPERT.search(f".{module}.")
    return Layer(module, kind, tuple(shape), role, int(block.group(1)) if block else None,
                 int(expert.group(1)) if expert else None)


def _prefix(found: dict[str, Layer], expected: list[str]) -> str:
    """The prefix the checkpoint puts before HF module names (`bert.`, or none)."""
    for name in expected:
        if name in found:
            return ""
    for name in expected:
        for module in found:
            if module.endswith("." + name):
                return module[: -len(name)]
    return ""


def graph_from_safetensors(path: str | Path, name: str | None = None, source: str | None = None) -> LayerGraph:
    """Read only the headers of the checkpoint at `path` and build its graph with a streaming WeightSource."""
    path = Path(path)
    tensors = read_tensors(path)
    found: dict[str, Layer] = {}
    layer_tensors: dict[str, str] = {}
    extra = 0
    for tname in sorted(tensors, key=natural_key):
        info = tensors[tname]
        if info.dtype not in FLOAT_DTYPES:
            continue  # integer buffers such as position_ids are not parameters
        if tname.endswith(".weight") and len(info.shape) in (2, 4):
            module = tname[: -len(".weight")]
            found[module] = _layer_from_tensor(module, info.shape)
            layer_tensors[module] = tname
        else:
            extra += math.prod(info.shape)

    folder = path if path.is_dir() else path.parent
    cfg_file = folder / "config.json"
    cfg = load_json(cfg_file, "config file") if cfg_file.is_file() else None
    name = name or (path.name if path.is_dir() else path.stem)
    source = source or f"safetensors:{path}"
    if isinstance(cfg, dict) and cfg.get("model_type") in SUPPORTED_MODEL_TYPES:
        reference = graph_from_config(cfg, name, source, where=str(cfg_file))
        layers, extra = _merge(reference, found, layer_tensors, extra)
        config = reference.config
    else:
        layers = list(found.values())
        convs = any(l.kind == "conv" for l in layers)
        lm = any(l.kind == "lm-head" for l in layers)
        config = {"arch": "cnn" if convs else ("decoder" if lm else "encoder")}
        if isinstance(cfg, dict) and cfg.get("model_type"):
            config["model_type"] = cfg["model_type"]
    return LayerGraph(name, layers, config, source=source, weights=SafetensorsWeights(tensors, layer_tensors),
                      extra_params=extra)


def _merge(reference: LayerGraph, found: dict[str, Layer], layer_tensors: dict[str, str], extra: int):
    """Config order and tags, checkpoint names and shapes; checkpoint-only tensors are appended."""
    prefix = _prefix(found, [l.name for l in reference if l.kind != "attention"])
    layers, used = [], set()
    for ref in reference:
        full = prefix + ref.name
        if ref.kind == "attention":
            layers.append(Layer(full, ref.kind, ref.shape, ref.role, ref.block, ref.expert, ref.attrs))
        elif full in found:
            layers.append(Layer(full, ref.kind, found[full].shape, ref.role, ref.block, ref.expert, ref.attrs))
            used.add(full)
        elif "tied_to" in ref.attrs and prefix + ref.attrs["tied_to"] in found:
            tied = prefix + ref.attrs["tied_to"]
            shape = found[tied].shape
            attrs = MappingProxyType({**ref.attrs, "tied_to": tied})
            layers.append(Layer(full, ref.kind, shape, ref.role, ref.block, ref.expert, attrs))
            layer_tensors[full] = layer_tensors[tied]
            extra -= math.prod(shape)  # stored once, under the embedding's name
    layers += [layer for module, layer in found.items() if module not in used]
    return layers, extra
