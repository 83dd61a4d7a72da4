"""A LayerGraph from a torch `nn.Module`: its Linear, Conv2d and Embedding modules.

transformers' GPT-2 `Conv1D` counts as a linear layer, read as (out, in) (it stores [in, out]).
Attention, the model kind and positions are inferred as for a checkpoint without a config
(`quantcore.models.infer`; a transformers model's own config is used when it has one).
Conv output sizes are only known by running the model, so convs need an
`example_input`; forward hooks record each conv's input/output size, and the order in
which modules run becomes the graph order (module definition order without an input).
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.models.graph import Layer, LayerGraph
from quantcore.models.infer import BLOCK, infer_config, role_of


def is_conv1d(module) -> bool:
    """transformers' GPT-2 `Conv1D`: a linear layer whose weight is stored [in, out] (nx, nf)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


class TorchWeights:
    """WeightSource over a module's parameters (one tensor copied out per call), as [out, in]."""

    def __init__(self, modules: dict):
        self._modules = modules

    def get(self, layer_name: str) -> np.ndarray:
        if layer_name not in self._modules:
            raise QuantDSEError(f"layer {layer_name!r} is not a Linear/Conv1D/Conv2d/Embedding of this module")
        module = self._modules[layer_name]
        weight = module.weight.detach().float().cpu()
        if is_conv1d(module):
            weight = weight.t()
        return weight.reshape(weight.shape[0], -1).numpy().copy()


def graph_from_module(module, name: str = "torch-module", example_input=None) -> LayerGraph:
    import torch
    from torch import nn

    wanted = {n: m for n, m in module.named_modules()
              if (isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)) or is_conv1d(m)) and n}
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
        if is_conv1d(m):
            shape = shape[::-1]  # stored (in, out): the layer is (out, in) like nn.Linear
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
            block = BLOCK.search(f".{n}.")
            layers.append(Layer(n, kind, shape, "lm_head" if kind == "lm-head" else role_of(n),
                                int(block.group(1)) if block else None))
    total = sum(p.numel() for p in module.parameters())
    extra = total - sum(l.params for l in layers)
    hf = getattr(module, "config", None)
    cfg = hf.to_dict() if hasattr(hf, "to_dict") else None  # a transformers model says what it is
    layers, config, notes = infer_config(layers, cfg, f"torch module {name}")
    return LayerGraph(name, layers, config, source="torch", weights=TorchWeights(wanted), extra_params=extra,
                      notes=notes)
