"""llama.cpp: a file for ``llama-quantize --tensor-type-file``.

llama-quantize reads whitespace-separated ``pattern=type`` tokens (tools/quantize/quantize.cpp
``parse_tensor_type_file``; the pattern is lower-cased, the type is a ggml type name matched
case-insensitively, no comments) and gives each GGUF tensor the type of the first pattern that
``std::regex_search`` finds in its name (src/llama-quant.cpp; older builds let the last match
win). We write one anchored rule per (tensor kind, type), so every tensor matches exactly one
rule and the order does not matter.

HF module names become GGUF tensor names through the map the `gguf` package ships
(``gguf.get_tensor_name_map(arch, n_blocks)``), never a table of ours. Two conversions
convert_hf_to_gguf.py does on top of that map are applied here:

- MoE experts are stacked into one tensor per layer (``blk.N.ffn_{gate,up,down}_exps``), which
  takes one type: a plan that gives the experts of one layer different formats is folded to the
  widest of them (most bits; no expert loses precision) and the export reports the change.
- DeepSeek's ``kv_b_proj`` is split into ``attn_k_b`` and ``attn_v_b`` (both take its type);
  BERT's pooler is not converted (the export says so).
"""
from __future__ import annotations

import re

from quantcore.errors import QuantDSEError
from dse.export.base import Change, Export, dominant_format, grouped_pattern
from quantcore.models.gguf import gguf_names

NAME = "llamacpp"
DEFAULT_OUT = "tensor_types.txt"
#: ggml types the format catalog models, by format name -> ggml type name (ggml_type_name)
GGML_TYPES = {"q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "q8_0": "q8_0",
              "q2_k": "q2_K", "q3_k": "q3_K", "q4_k": "q4_K", "q5_k": "q5_K", "q6_k": "q6_K",
              "fp16": "f16", "bf16": "bf16", "fp32": "f32"}
FORMATS = tuple(GGML_TYPES)
#: the plan's KV formats llama.cpp's --cache-type-k / --cache-type-v take (common/arg.cpp kv_cache_types)
KV_TYPES = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
#: llama-quantize quantizes token_embd.weight like any other tensor
EMBEDDINGS = True


def quantizable(tensor: str) -> bool:
    """Whether llama-quantize may change this tensor's type: ``tensor_allows_quantization`` in
    src/llama-quant.cpp (ggml-org/llama.cpp 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714) keeps norms,
    expert routers (ffn_gate_inp), position embeddings and BERT's token types as converted."""
    return (tensor.endswith("weight") and "_norm.weight" not in tensor and "ffn_gate_inp.weight" not in tensor
            and tensor not in ("position_embd.weight", "token_types.weight"))


def apply_fallbacks(export: Export) -> None:
    """Write the type llama-quantize applies: a k-quant on rows that are not a multiple of 256 falls
    back (``tensor_type_fallback``: q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0; f16
    where rows are not a multiple of 32 either). The plan's bits and error already count the fallback
    (quantcore.formats), so the change is in name only; the export lists it."""
    for l in export.layers:
        applied = l.format.fallback_for(l.layer.row)
        if applied is l.format:
            continue
        bits = l.format.bits_per_weight(l.layer.row)
        export.changes.append(Change(l.name, l.format.name, applied.name, "llama.cpp fallback", bits, bits,
                                     l.error, l.error))
        l.format = applied
    if any(c.reason == "llama.cpp fallback" for c in export.changes):
        export.notes.append("rows not a multiple of 256 take llama-quantize's fallback type (its bits and error "
                            "were already costed so): the file names the type applied")


def fold_experts(export: Export, tensors: dict) -> None:
    """One type per merged expert tensor: the widest format among the layer's experts."""
    estimate = export.estimate
    groups: dict = {}
    for i, l in enumerate(export.layers):
        for t in tensors.get(l.name, ()):
            groups.setdefault(t, []).append(i)
    for t, idx in groups.items():
        if len(idx) < 2:
            continue
        formats = {export.layers[i].format.name for i in idx}
        if len(formats) == 1:
            continue
        k = max(export.layers[i].layer.row for i in idx)
        widest = max((export.layers[i].format for i in idx), key=lambda f: (f.bits_per_weight(k), f.name))
        for i in idx:
            l = export.layers[i]
            if l.format.name == widest.name:
                continue
            error = estimate(l.layer, widest)
            export.changes.append(Change(l.name, l.format.name, widest.name, "moe-fold",
                                         l.format.bits_per_weight(l.layer.row), widest.bits_per_weight(l.layer.row),
                                         l.error, error))
            l.format, l.error = widest, error
    if any(c.reason == "moe-fold" for c in export.changes):
        export.notes.append("llama.cpp stores a layer's experts as one tensor with one type: experts folded to "
                            "the widest type of their layer")


def write(export: Export) -> tuple[str, dict]:
    """(the tensor-type file, extras: the llama-quantize command line and dropped layers)."""
    tensors = gguf_names(export.graph)
    dropped = [l.name for l in export.layers if not tensors.get(l.name)]
    if dropped:
        export.notes.append(f"not in the GGUF file (convert_hf_to_gguf.py drops them): {', '.join(dropped)}")
    fold_experts(export, tensors)
    apply_fallbacks(export)
    planned = {l.name for l in export.layers}
    per_type: dict = {}
    for l in export.layers:
        for t in tensors.get(l.name, ()):
            per_type.setdefault(t, set()).add(GGML_TYPES[l.format.name])
    # fixed 16-bit weights the plan costed (embeddings, routers) keep f16, as the plan counts them;
    # no rule for tensors llama-quantize never quantizes (it would have no effect)
    for name, ts in tensors.items():
        if name not in planned:
            for t in ts:
                if quantizable(t):
                    per_type.setdefault(t, {"f16"})
    universe = sorted(per_type)
    by_type: dict = {}
    for t in universe:
        (ggml_type,) = per_type[t]
        by_type.setdefault(ggml_type, []).append(t)
    lines = [f"{pattern}={ggml_type}" for ggml_type, names in by_type.items()
             for pattern in grouped_pattern(names, universe)]
    dominant = dominant_format(export)
    base = GGML_TYPES[dominant.name] if dominant is not None else "q8_0"
    command = f"llama-quantize --tensor-type-file {{out}} model-f16.gguf model-{base}.gguf {base.upper()}"
    extras = {"command": command, "dropped": dropped}
    from dse.export.kvexport import kv_choice

    kv = kv_choice(export, NAME, KV_TYPES, scope="k,v")
    if kv is not None:  # a run-time flag, not in the GGUF: one type for all layers
        flags = f"--cache-type-k {GGML_TYPES[kv['k']]} --cache-type-v {GGML_TYPES[kv['v']]}"
        extras["runtime_flags"] = flags + (" -fa" if kv["v"] not in ("fp16", "bf16") else "")
        export.notes.append(f"KV cache: pass {extras['runtime_flags']} to llama-cli / llama-server; llama.cpp's "
                            "cache types are global (one K and one V type for all layers)"
                            + ("; a quantized V cache needs flash attention (-fa)" if "-fa" in extras["runtime_flags"]
                               else ""))
    return "\n".join(lines) + "\n", extras


def read(text: str, graph) -> dict:
    """{HF layer name: format name} that llama-quantize would apply with this file (first match wins)."""
    rules = []
    for token in text.split():
        pattern, sep, ggml_type = token.partition("=")
        if not sep or not pattern or not ggml_type:
            raise QuantDSEError(f"malformed tensor type {token!r}: expected pattern=type")
        fmt = {v.lower(): k for k, v in GGML_TYPES.items()}.get(ggml_type.lower())
        if fmt is None:
            raise QuantDSEError(f"invalid ggml type {ggml_type!r} in {token!r}")
        rules.append((re.compile(pattern.lower()), fmt))
    out = {}
    for name, tensors in gguf_names(graph).items():
        types = set()
        for t in tensors:
            hit = next((fmt for rx, fmt in rules if rx.search(t)), None)
            if hit is not None:
                types.add(hit)
        if len(types) == 1:
            out[name] = types.pop()
    return out
