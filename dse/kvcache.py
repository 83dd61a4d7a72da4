"""KV-cache precision as decision items: one K and one V tensor per attention layer.

An item is named ``<attention module>.k_cache`` / ``.v_cache`` (the attention module is the
parent of k_proj/v_proj: ``model.layers.0.self_attn``; BERT's ``encoder.layer.0.attention.self``).
Its choice is a catalog format applied to the cached tensor, grouped along head_dim (one scale
per token and head for per-row formats). Per item:

    memory  = batch x seq x kv_heads x head_dim x bits(format, head_dim) / 8   (decoders; an
              encoder holds no cache past its layer: 0)
    latency = the attention matmul that reads it (QK^T for K, PV for V) costed by the target
              with the cache as its weight operand, as the fixed attention was at --kv-bits

Runtimes take one KV type for the whole model (`RUNTIME_KV`): vLLM's ``kv_cache_dtype`` and
TensorRT-LLM's ``kv_cache_quant_algo`` one type for K and V; llama.cpp's ``--cache-type-k`` /
``--cache-type-v`` one each. Their items are tied (one decision) and limited to what they store.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format, parse_format_list

#: KV candidates of ``--kv-formats default``: 16, 8, 4, 2 bits (fp8, int4 QServe-style asymmetric per head)
DEFAULT_KV_FORMATS = ("fp16", "fp8-e4m3", "int8", "int4-g128-asym", "int4-g64", "int2-g32")
#: runtime -> (KV formats it stores, scope): "kv" one type for K and V, "k,v" one each, "layer" per item
RUNTIME_KV = {
    "vllm": (("fp16", "bf16", "fp8-e4m3", "fp8-e5m2"), "kv"),  # kv_cache_dtype auto | fp8 | fp8_e5m2
    "tensorrt-llm": (("fp16", "bf16", "fp8-e4m3", "int8"), "kv"),  # kv_cache_quant_algo FP8 | INT8
    "qserve": (("fp16", "int8", "int4-g128-asym"), "kv"),  # KV8 / KV4: per-head asymmetric int4
    "llama.cpp": (("fp16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"), "k,v"),  # --cache-type-k / -v
    "exllamav2": (("fp16", "int8", "int4-g32"), "kv"),  # cache_8bit / Q4 cache
    "gpt-fast": (("fp16", "bf16"), "kv"), "torchao": (("fp16", "bf16", "int8"), "kv"),
    "tinychat": (("fp16",), "kv"),
}


@dataclass(frozen=True)
class KVItem:
    """One cached tensor: its item name, the attention layer it belongs to, and its size."""

    name: str
    module: str
    tensor: str  # "k" | "v"
    head_dim: int
    kv_heads: int
    params: float  # parameters of the projection that writes it (the error's scale, dse.actprior)
    block: int | None


def attention_module(layer) -> str:
    """The attention module of a graph attention node (``...self_attn.attn`` -> ``...self_attn``)."""
    return layer.name.rsplit(".", 1)[0]


def kv_items(graph) -> list[KVItem]:
    """Two items per attention layer of `graph`, K then V, in model order."""
    by_name = {l.name: l for l in graph.layers}
    items = []
    for layer in graph.layers:
        if layer.kind != "attention":
            continue
        a = layer.attrs
        if a.get("kv_lora_rank"):
            raise QuantDSEError(f"{graph.name} caches an MLA latent, not K and V: drop --kv-formats "
                                "(use --kv-bits for its cache precision)")
        heads = int(a.get("heads", 1))
        kv_heads, head_dim = int(a.get("kv_heads", heads)), int(a.get("head_dim", 64))
        module = attention_module(layer)
        for tensor, names in (("k", ("k_proj", "key")), ("v", ("v_proj", "value"))):
            proj = next((by_name[f"{module}.{n}"] for n in names if f"{module}.{n}" in by_name), None)
            params = float(proj.params) if proj is not None else float(kv_heads * head_dim * heads * head_dim)
            items.append(KVItem(f"{module}.{tensor}_cache", module, tensor, head_dim, kv_heads, params, layer.block))
    if not items:
        raise QuantDSEError(f"{graph.name} has no attention layers: drop --kv-formats")
    return items


def kv_format_list(text) -> list:
    """``"default"`` or a comma-separated list of catalog formats (16-bit activations only)."""
    names = DEFAULT_KV_FORMATS if str(text).strip() == "default" else None
    formats = [get_format(n) for n in names] if names else parse_format_list(text)
    bad = [f.name for f in formats if f.act_bits != 16 or f.lowrank]
    if bad:
        raise QuantDSEError(f"--kv-formats {', '.join(bad)}: a cache format is a storage format: drop the "
                            "activation or low-rank suffix (e.g. int4-g64)")
    return formats


def cache_bytes(items: list, formats: list, workload) -> np.ndarray:
    """[I, K] bytes each item holds in each format for the workload's batch x context."""
    if workload.phase not in ("decode", "prefill"):
        return np.zeros((len(items), len(formats)))
    out = np.empty((len(items), len(formats)))
    for i, item in enumerate(items):
        elems = float(workload.batch) * workload.seq * item.kv_heads * item.head_dim
        out[i] = [elems * f.bits_per_weight(item.head_dim) / 8.0 for f in formats]
    return out


def runtime_kv(runtime: str | None, formats: list, notes: list) -> tuple[list, str]:
    """(the candidates the runtime stores, its scope); a dropped candidate is noted, none left is an error."""
    if runtime is None or runtime not in RUNTIME_KV:
        return formats, "layer"
    stores, scope = RUNTIME_KV[runtime]
    keep = [f for f in formats if f.name in stores]
    dropped = [f.name for f in formats if f.name not in stores]
    if not keep:
        raise QuantDSEError(f"the {runtime} runtime stores the KV cache as {', '.join(stores)}, none of "
                            f"--kv-formats {', '.join(f.name for f in formats)}: pick from those")
    if dropped:
        notes.append(f"the {runtime} runtime cannot store the KV cache as {', '.join(dropped)}: dropped from "
                     f"--kv-formats, searching {', '.join(f.name for f in keep)}")
    return keep, scope


def tie_groups(items: list, scope: str, offset: int) -> list:
    """Row groups (rows offset by the weight layers) that take one KV format under `scope`."""
    rows = np.arange(len(items)) + offset
    if scope == "kv":
        return [list(map(int, rows))]
    if scope == "k,v":
        return [[int(r) for r, it in zip(rows, items) if it.tensor == t] for t in ("k", "v")]
    return []


@dataclass
class KVTable:
    """The KV items of a design and their [I, K] tables, ready to append to the Problem's rows."""

    items: list
    formats: list
    error: np.ndarray
    memory: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    supported: np.ndarray
    bound: np.ndarray
    scope: str  # "kv" | "k,v" | "layer"
    measured: bool = False  # errors from a measured source (a sensitivity file's or calibration's K/V rows)


def kv_table(graph, hardware, workload, formats: list, notes: list, errors=None) -> KVTable:
    """Cost every item in every candidate cache format on the target (see the module docstring).

    errors: {item: {format: error}} from a measured source (dse.calibsens); None: dse.actprior's prior.
    """
    from dse.actprior import kv_errors
    from hwmodels.ops import fixed_ops_for_graph

    items = kv_items(graph)
    runtime = (getattr(hardware, "runtime", None) or {}).get("name")
    formats, scope = runtime_kv(runtime, formats, notes)
    _, att_ops = fixed_ops_for_graph(graph, workload)
    if len(att_ops) != len(items):
        raise QuantDSEError(f"{graph.name}: --kv-formats needs one QK^T and one PV matmul per attention layer")
    table = hardware.cost(att_ops, formats, workload)
    if errors is None:
        error = kv_errors(items, formats)
    else:
        error = np.array([[_measured(errors, it.name, f.name) for f in formats] for it in items])
    return KVTable(items, formats, error, cache_bytes(items, formats, workload), table.latency_s, table.energy_j,
                   table.supported & np.isfinite(error), table.bound, scope, measured=errors is not None)


def _measured(errors: dict, item: str, fmt: str) -> float:
    """A measured K/V error; an item or format the measurement lacks is an error, not a silent prior."""
    if item not in errors:
        raise QuantDSEError(f"the sensitivity has no K/V cache row for {item}: measure the cache with "
                            "dse.sensitivity --kv-formats, or use a source without K/V rows for the prior")
    if fmt not in errors[item]:
        raise QuantDSEError(f"the sensitivity's K/V row {item} has no error for {fmt}: measure it with "
                            f"dse.sensitivity --kv-formats ...,{fmt}, or drop {fmt} from --kv-formats")
    return float(errors[item][fmt])
