"""HF module names -> GGUF tensor names, as convert_hf_to_gguf.py writes them.

The map is the one the `gguf` package ships (``gguf.get_tensor_name_map(arch, n_blocks)``); on top
of it, the conversions convert_hf_to_gguf.py applies: MoE experts stacked into one tensor per layer,
DeepSeek's ``kv_b_proj`` split in two, a tied lm-head written as ``token_embd``. Shared by the
llama.cpp export (dse.export.llamacpp) and the importance-matrix reader (dse.imatrix).
"""
from __future__ import annotations

import re

from quantcore.errors import QuantDSEError

#: HF model_type -> the GGUF architecture convert_hf_to_gguf.py writes for it
ARCHS = {"llama": "LLAMA", "mistral": "LLAMA", "mixtral": "LLAMA", "qwen2": "QWEN2", "phi": "PHI2",
         "deepseek_v3": "DEEPSEEK2", "bert": "BERT"}
_EXPERT_RE = re.compile(r"\.experts\.\d+\.")
#: tensors convert_hf_to_gguf.py splits: HF suffix -> GGUF names replacing the mapped one
_SPLITS = {"attn_kv_b": ("attn_k_b", "attn_v_b")}


def gguf_names(graph) -> dict:
    """{HF layer name: [GGUF tensor names]} for every layer with weights (empty: not converted)."""
    import gguf

    model_type = graph.config.get("model_type")
    arch = ARCHS.get(model_type)
    if arch is None:
        raise QuantDSEError(f"llama.cpp has no GGUF architecture for model {graph.name} (model_type "
                            f"{model_type!r}); supported: {', '.join(sorted(ARCHS))}")
    mapping = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), int(graph.config["num_layers"]))
    out = {}
    for layer in graph.layers:
        if layer.params == 0:
            continue
        name = mapping.get_name(_EXPERT_RE.sub(".experts.", layer.name) + ".weight", try_suffixes=(".weight",))
        if name is None:
            out[layer.name] = []
            continue
        stem = name.removesuffix(".weight")
        base, _, kind = stem.rpartition(".")
        out[layer.name] = [f"{base}.{k}.weight" for k in _SPLITS[kind]] if kind in _SPLITS else [name]
    for layer in graph.layers:  # a tied lm-head is token_embd (convert_hf_to_gguf.py writes no output.weight)
        tied = layer.attrs.get("tied_to") if layer.kind == "lm-head" else None
        if tied in out:
            out[layer.name], out[tied] = out[tied], []
    return out
