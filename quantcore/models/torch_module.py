"""A LayerGraph from a torch `nn.Module`: its Linear, Conv2d and Embedding modules.

Conv output sizes are only known by running the model, so convs need an
`example_input`; forward hooks record each conv's input/output size, and the order in
which modules run becomes the graph order (module definition order without an input).
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.models.graph import Layer, LayerGraph


class TorchWeights:
    """WeightSource over a module's parameters (one tensor copied out per call)."""

    def __init__(self, modules: dict):
        self._modules = modules

    def get(self, layer_name: str) -> np.ndarray:
        if layer_name not in self._modules:
            raise QuantDSEError(f"layer {layer_name!r} is not a Linear/Conv2d/Embedding of this module")
        weight = self._modules[layer_name].weight.detach().float().cpu()
        return weight.reshape(weight.shape[0], -1).numpy().copy()


def graph_from_module(module, name: str = "torch-module", example_input=None) -> LayerGraph:
    import torch
    from torch import nn

    wanted = {n: m for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)) and n}
    convs = [n for n, m in wanted.items() if isinstance(m, nn.Conv2d)]
    if convs and example_input is None:
        raise QuantDSEError(f"module has Conv2d layers ({convs[0]}, ...): pass example_input=<tensor> so their "
                            "output sizes can be measured")
    sizes: dict[str, tuple] = {}
    order: list[str] = []
    if example_input is not None:
        def hook(layer_name):
            def record(_mod, inputs, output):
                if layer_name not in sizes:
                    order.append(layer_name)
                    sizes[layer_name] = (tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))
            return record
        handles = [m.register_forward_hook(hook(n)) for n, m in wanted.items()]
        try:
            with torch.no_grad():
                module(example_input)
        finally:
            for h in handles:
                h.remove()
    order += [n for n in wanted if n not in sizes]  # modules the example did not reach
    layers = []
    for n in order:
        m = wanted[n]
        shape = tuple(int(s) for s in m.weight.shape)
        if isinstance(m, nn.Conv2d):
            in_hw, out_hw = sizes[n] if n in sizes else ((0, 0), (0, 0))
            attrs = {"stride": int(m.stride[0]), "padding": m.padding if isinstance(m.padding, str) else
                     int(m.padding[0]), "groups": int(m.groups), "in_hw": in_hw, "out_hw": out_hw}
            role = "dwconv" if m.groups == m.in_channels > 1 else "conv"
            layers.append(Layer(n, "conv", shape, role, attrs=MappingProxyType(attrs)))
        elif isinstance(m, nn.Embedding):
            layers.append(Layer(n, "embedding", shape, "embed"))
        else:
            last = n.rsplit(".", 1)[-1]
            kind = "lm-head" if last == "lm_head" else "linear"
            layers.append(Layer(n, kind, shape, "lm_head" if kind == "lm-head" else last))
    total = sum(p.numel() for p in module.parameters())
    extra = total - sum(l.params for l in layers)
    config = {"arch": "cnn" if convs else "encoder", "num_experts": 0, "experts_per_token": 0}
    return LayerGraph(name, layers, config, source="torch", weights=TorchWeights(wanted), extra_params=extra)
