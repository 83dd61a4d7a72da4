"""Activations and the K/V cache fake-quantized inside a real torch model, through hooks.

- A layer's activation precision (its format's ``-aN``) quantizes the layer's *input*: a forward
  pre-hook replaces ``args[0]`` by `quantize_activation` of it, one row per token, as a W8A8 or
  W4A4 kernel quantizes the tensor it is handed.
- A K/V choice quantizes what the cache stores: a forward hook replaces the output of the key
  (value) projection by `quantize_heads` of it, grouped along the head dimension. The items are
  named ``<attention module>.k_cache`` / ``.v_cache``, the attention module being the parent of
  the key/value projections (BERT: ``encoder.layer.N.attention.self``, parent of ``key`` and
  ``value``; Llama: ``layers.N.self_attn``, parent of ``k_proj`` / ``v_proj``). For rotary models
  the real cache holds K after RoPE; here K is quantized before it (a rotation of pairs of
  channels), which changes which values share a group's scale only where a group is smaller
  than the head.

Both are numpy reference quantizers (quantcore.quantizers.activation) applied to a detached
copy; where the input needs gradients (calibration sensitivity) the result is straight-through:
x + (Q(x) - x).detach(), so gradients pass as if unquantized.
"""
from __future__ import annotations

from contextlib import contextmanager

#: key / value projection names -> the cache item they fill
KV_PROJECTIONS = {"key": "k_cache", "k_proj": "k_cache", "value": "v_cache", "v_proj": "v_cache"}
KV_SUFFIXES = ("k_cache", "v_cache")


def is_kv_item(name: str) -> bool:
    return isinstance(name, str) and name.rsplit(".", 1)[-1] in KV_SUFFIXES


def kv_items(model) -> dict:
    """{"<attention module>.k_cache" | ".v_cache": (projection nn.Linear, head_dim)} of a transformers model."""
    from torch import nn

    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    default_hd = getattr(config, "head_dim", None) or (hidden // heads if heads and hidden else None)
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or name.rsplit(".", 1)[-1] not in KV_PROJECTIONS:
            continue
        parent, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        parent_mod = model.get_submodule(parent) if parent else model
        hd = getattr(parent_mod, "attention_head_size", None) or getattr(parent_mod, "head_dim", None) or default_hd
        if hd:
            out[f"{parent}.{KV_PROJECTIONS[leaf]}" if parent else KV_PROJECTIONS[leaf]] = (mod, int(hd))
    return out


def fake_quantize(x, fn):
    """fn (numpy [rows, last dim] -> same) applied to torch tensor x; straight-through where x needs gradients."""
    import torch

    k = x.shape[-1]
    y = torch.from_numpy(fn(x.detach().reshape(-1, k).float().cpu().numpy())).reshape(x.shape).to(x.dtype)
    return x + (y - x).detach() if x.requires_grad else y


def input_hook(spec):
    """A forward pre-hook quantizing a module's first input with ActSpec `spec`."""
    from quantcore.quantizers.activation import quantize_activation

    def hook(mod, args):
        return (fake_quantize(args[0], lambda a: quantize_activation(a, spec)),) + tuple(args[1:])
    return hook


def output_hook(fmt, head_dim: int):
    """A forward hook quantizing a projection's output as K/V cache entries in catalog format `fmt`."""
    from quantcore.quantizers.activation import quantize_heads

    def hook(mod, args, out):
        return fake_quantize(out, lambda a: quantize_heads(a, fmt, head_dim))
    return hook


@contextmanager
def runtime_quantization(inputs: dict, kv: dict):
    """While open: inputs {nn.Module: ActSpec} quantize their inputs, kv {nn.Module: (Format, head_dim)}
    their outputs. Hooks are removed on exit, whatever happens."""
    handles = []
    try:
        for mod, spec in inputs.items():
            if spec is not None:
                handles.append(mod.register_forward_pre_hook(input_hook(spec)))
        for mod, (fmt, head_dim) in kv.items():
            handles.append(mod.register_forward_hook(output_hook(fmt, head_dim)))
        yield
    finally:
        for h in handles:
            h.remove()
