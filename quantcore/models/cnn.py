"""A LayerGraph from a CNN layer spec (`catalog/*.json` with format quantdse.cnn/1).

A spec lists conv and linear layers with their channels, kernel, stride, groups and
input/output feature-map sizes; `catalog/make_cnn_specs.py` generates the shipped ones.
"""
from __future__ import annotations

from types import MappingProxyType

from quantcore.errors import QuantDSEError
from quantcore.limits import check_cap
from quantcore.models.graph import Layer, LayerGraph

SPEC_FORMAT = "quantdse.cnn/1"
_CONV_KEYS = ("name", "in_channels", "out_channels", "kernel", "stride", "groups", "in_hw", "out_hw")


def _layer(entry: dict, where: str) -> Layer:
    kind = entry.get("kind")
    if kind == "linear":
        missing = [k for k in ("name", "in_features", "out_features") if k not in entry]
        if missing:
            raise QuantDSEError(f"{where}: linear layer {entry.get('name', '?')!r} is missing key {missing[0]!r}")
        return Layer(entry["name"], "linear", (int(entry["out_features"]), int(entry["in_features"])),
                     entry.get("role", "fc"))
    if kind not in ("conv", "deform-conv"):
        raise QuantDSEError(f"{where}: layer kind {kind!r} is not conv, deform-conv or linear: fix the spec")
    missing = [k for k in _CONV_KEYS if k not in entry]
    if missing:
        raise QuantDSEError(f"{where}: conv layer {entry.get('name', '?')!r} is missing key {missing[0]!r}")
    cin, cout, groups = int(entry["in_channels"]), int(entry["out_channels"]), int(entry["groups"])
    if groups < 1 or cin % groups or cout % groups:
        raise QuantDSEError(f"{where}: layer {entry['name']!r} has groups={groups} not dividing its channels")
    kh, kw = (int(k) for k in entry["kernel"])
    attrs = {"stride": int(entry["stride"]), "padding": int(entry.get("padding", 0)), "groups": groups,
             "in_hw": tuple(entry["in_hw"]), "out_hw": tuple(entry["out_hw"])}
    if entry.get("on_cpu"):
        attrs["on_cpu"] = True
    return Layer(entry["name"], kind, (cout, cin // groups, kh, kw), entry.get("role", "conv"),
                 attrs=MappingProxyType(attrs))


def graph_from_cnn_spec(spec: dict, name: str, source: str, where: str) -> LayerGraph:
    if spec.get("format") != SPEC_FORMAT or not isinstance(spec.get("layers"), list):
        raise QuantDSEError(f"{where} is not a {SPEC_FORMAT} spec (needs 'format' and a 'layers' list)")
    check_cap("layers", len(spec["layers"]), f"{where} layers")
    layers = []
    for i, entry in enumerate(spec["layers"]):
        try:
            layer = _layer(entry, where) if isinstance(entry, dict) else None
        except QuantDSEError:
            raise
        except (TypeError, ValueError, OverflowError):
            layer = None
        if layer is None or not all(0 < d <= 1 << 20 for d in layer.shape):
            raise QuantDSEError(f"{where}: layer {i} has missing, non-integer or out-of-range sizes "
                                "(each in [1, 1,048,576]): fix the spec")
        layers.append(layer)
    config = {"arch": "cnn", "input_hw": tuple(spec.get("input_hw", ())), "num_layers": len(layers),
              "num_experts": 0, "experts_per_token": 0, "spec_source": spec.get("source", "")}
    return LayerGraph(name, layers, config, source=source, extra_params=int(spec.get("extra_params", 0)))


def macs(graph: LayerGraph) -> int:
    """Multiply-accumulates of one image: conv k*n*out_h*out_w, linear k*n."""
    total = 0
    for layer in graph.quantizable():
        out_h, out_w = layer.attrs.get("out_hw", (1, 1))
        total += layer.k * layer.n * int(out_h) * int(out_w)
    return total
