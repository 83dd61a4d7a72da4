"""`load_graph`: one entry point for every kind of model source."""
from __future__ import annotations

from pathlib import Path

from quantcore.errors import QuantDSEError
from quantcore.io import load_json
from quantcore.models.registry import catalog_path, load_entry, looks_like_path, model_name, packaged_weights
from quantcore.models.checkpoint import graph_from_safetensors
from quantcore.models.cnn import SPEC_FORMAT, graph_from_cnn_spec
from quantcore.models import diffusion
from quantcore.models.graph import LayerGraph
from quantcore.models.hf_config import graph_from_config
from quantcore.models.torch_module import graph_from_module


def load_graph(source, *, example_input=None) -> LayerGraph:
    """The LayerGraph of `source`.

    source: a catalog name (`list_catalog()`); a path to an HF config.json or a CNN spec
    JSON; a .safetensors file or a folder of them (config.json beside is used when
    present); or a torch nn.Module (convs need `example_input`, a tensor to run once).
    """
    if not isinstance(source, (str, Path)):
        try:
            from torch import nn
        except ImportError:  # pragma: no cover - torch is a dependency
            nn = None
        if nn is not None and isinstance(source, nn.Module):
            return graph_from_module(source, type(source).__name__, example_input)
        raise QuantDSEError(f"cannot load a model from a {type(source).__name__}: pass a catalog name, "
                            "a config.json, a safetensors file or folder, or a torch nn.Module")
    path = Path(source).expanduser()
    if looks_like_path(str(source)) and not path.exists():
        raise QuantDSEError(f"no such file or folder: {source}: check the path (models are read from local files "
                            "only; catalog names: python -m dse.models --list)")
    if diffusion.is_diffusers_folder(path):
        return diffusion.graph_from_diffusers_folder(path, model_name(path))
    if path.is_dir() or path.suffix == ".safetensors":
        return graph_from_safetensors(path)
    if path.suffix == ".json":
        doc = load_json(path, "model file")
        return _from_json(doc, model_name(path, doc), f"config:{path}", str(path))
    if path.exists():
        raise QuantDSEError(f"{path} is not a config.json, .safetensors file or checkpoint folder")
    name = str(source).strip().lower()
    catalog_path(name)  # unknown names fail here with close matches
    weights = packaged_weights(name)
    if weights is not None:
        return graph_from_safetensors(weights, name=name, source=f"safetensors:{weights} (installed package)")
    return _from_json(load_entry(name), name, "catalog", f"catalog entry {name}")


def _from_json(doc, name: str, source: str, where: str) -> LayerGraph:
    if isinstance(doc, dict) and doc.get("format") == SPEC_FORMAT:
        return graph_from_cnn_spec(doc, name, source, where)
    if isinstance(doc, dict) and doc.get("format") == diffusion.SPEC_FORMAT:
        return diffusion.graph_from_diffusers(doc, name, source, where)
    return graph_from_config(doc, name, source, where)
