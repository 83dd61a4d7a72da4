"""A LayerGraph from a safetensors checkpoint (file or folder), shapes from the header.

Every 2-D `.weight` is a linear layer (embedding / lm-head by name), every 4-D `.weight`
a conv; other float tensors (norms, biases) count as `extra_params`; integer buffers
(`position_ids`) are not parameters. A `config.json` beside the weights (a supported
model_type) gives the forward order, the attention nodes, roles and `graph.config`; the
shapes always come from the tensors. Without it, layers follow natural name order and
`quantcore.models.infer` says what the tensors allow (kind, attention, positions), with notes.
GPT-2 Conv1D weights ([in, out] on disk) are read as (out, in) like every other layer.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from types import MappingProxyType

from quantcore.io import load_json
from quantcore.models.graph import Layer, LayerGraph
from quantcore.models.hf_config import SUPPORTED_MODEL_TYPES, graph_from_config
from quantcore.models.infer import BLOCK, conv1d_modules, infer_config, role_of
from quantcore.models.registry import model_name
from quantcore.models.safetensors_io import FLOAT_DTYPES, SafetensorsWeights, natural_key, read_tensors

EMBEDDING_NAMES = ("embed_tokens", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings",
                   "embed_positions")
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
        kind, role = "linear", role_of(module)
    block = BLOCK.search(f".{module}.")
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
    folder = path if path.is_dir() else path.parent
    cfg_file = folder / "config.json"
    cfg = load_json(cfg_file, "config file") if cfg_file.is_file() else None
    shapes = {t[: -len(".weight")]: tensors[t].shape for t in tensors
              if t.endswith(".weight") and tensors[t].dtype in FLOAT_DTYPES}
    transposed = conv1d_modules(shapes, cfg)  # GPT-2 Conv1D: stored [in, out]
    found: dict[str, Layer] = {}
    layer_tensors: dict[str, str] = {}
    extra = 0
    for tname in sorted(tensors, key=natural_key):
        info = tensors[tname]
        if info.dtype not in FLOAT_DTYPES:
            continue  # integer buffers such as position_ids are not parameters
        if tname.endswith(".weight") and len(info.shape) in (2, 4):
            module = tname[: -len(".weight")]
            shape = tuple(reversed(info.shape)) if module in transposed else info.shape
            found[module] = _layer_from_tensor(module, shape)
            layer_tensors[module] = tname
        else:
            extra += math.prod(info.shape)

    name = name or model_name(path, cfg)
    source = source or f"safetensors:{path}"
    notes: list[str] = []
    if isinstance(cfg, dict) and cfg.get("model_type") in SUPPORTED_MODEL_TYPES:
        reference = graph_from_config(cfg, name, source, where=str(cfg_file))
        layers, extra = _merge(reference, found, layer_tensors, extra)
        config = reference.config
    else:
        layers, config, notes = infer_config(list(found.values()), cfg, str(path))
        if config["arch"] == "decoder":
            extra = _tie_lm_head(layers, layer_tensors, extra, cfg, notes)
    weights = SafetensorsWeights(tensors, layer_tensors, transposed)
    return LayerGraph(name, layers, config, source=source, weights=weights, extra_params=extra, notes=notes)


def _tie_lm_head(layers: list[Layer], layer_tensors: dict, extra: int, cfg, notes: list) -> int:
    """A decoder with no lm_head tensor ties it to the token embedding (GPT-2 and tie_word_embeddings
    models store it once); appends that lm-head layer and returns the corrected extra_params."""
    if any(l.kind == "lm-head" for l in layers) or (isinstance(cfg, dict) and cfg.get("tie_word_embeddings") is False):
        return extra
    token = [l for l in layers if l.kind == "embedding" and l.name.rsplit(".", 1)[-1] in ("wte", "embed_tokens",
                                                                                          "word_embeddings")]
    if not token:
        return extra
    emb = token[0]
    layers.append(Layer("lm_head", "lm-head", emb.shape, "lm_head", attrs=MappingProxyType({"tied_to": emb.name})))
    layer_tensors["lm_head"] = layer_tensors[emb.name]
    notes.append(f"no lm_head tensor: the lm-head is tied to {emb.name} (stored once)")
    return extra - math.prod(emb.shape)


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
