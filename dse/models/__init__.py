"""Model ingestion: catalog names, HF config.json, safetensors, torch modules -> LayerGraph."""
from dse.models.registry import DEFAULT_MODEL, list_catalog
from dse.models.graph import QUANTIZABLE_KINDS, Layer, LayerGraph, WeightSource
from dse.models.load import load_graph

__all__ = ["DEFAULT_MODEL", "QUANTIZABLE_KINDS", "Layer", "LayerGraph", "WeightSource", "list_catalog", "load_graph"]
