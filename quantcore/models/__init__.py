"""Model ingestion: catalog names, HF config.json, safetensors, torch modules -> LayerGraph."""
from quantcore.models.registry import DEFAULT_MODEL, list_catalog
from quantcore.models.graph import QUANTIZABLE_KINDS, Layer, LayerGraph, WeightSource
from quantcore.models.load import load_graph

__all__ = ["DEFAULT_MODEL", "QUANTIZABLE_KINDS", "Layer", "LayerGraph", "WeightSource", "list_catalog", "load_graph"]
