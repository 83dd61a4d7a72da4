"""Several devices serving one model: what each device holds and computes, and what they send.

Tensor parallelism (``tp``, Megatron-LM's split, as vLLM and TensorRT-LLM run it): every linear
layer is split across the N devices (q/k/v/gate/up by output columns, o/down by input rows, the
lm-head and embedding by vocabulary), attention by heads (a KV head is replicated when there are
fewer KV heads than devices), so each device holds 1/N of the weights and of the KV cache and
computes 1/N of every GEMM. Each transformer block then all-reduces its activations twice
(after attention and after the MLP). A ring all-reduce of B bytes over N devices sends
2(N-1)/N x B bytes per device in 2(N-1) steps:

    t_allreduce = 2(N-1)/N x B / link_bytes_per_s + 2(N-1) x link_latency_s

Pipeline parallelism (``pp``): device i holds a contiguous 1/N of the blocks (weights and KV cache);
one batch passes through the stages in turn, so a pass costs every layer's time plus N-1
point-to-point sends of the hidden states (t = B / link_bytes_per_s + link_latency_s each).
It buys memory, not speed: several batches in flight would overlap the stages, which this
model of one batch does not count.

The link figures come from the target's spec (`link_bytes_per_s`, `link_latency_s`: NVLink or
PCIe peer-to-peer, per direction); a target without them serves on one device only.
"""
from __future__ import annotations

import math
from dataclasses import replace

from quantcore.errors import QuantDSEError

PARALLEL_MODES = ("tp", "pp")
#: roles whose GEMM is split along its input (the row-parallel half of Megatron's pair)
ROW_PARALLEL = frozenset({"o", "down", "fc2", "out_proj", "dense_4h_to_h", "w2"})
ACT_BYTES = 2  # activations are sent at 16 bits


def check_parallel(devices: int, mode: str) -> None:
    """`mode` must be a known split (the device count is checked with the other workload integers)."""
    if mode not in PARALLEL_MODES:
        raise QuantDSEError(f"--parallel {mode!r} is unknown: use tp (tensor) or pp (pipeline)")


def link(spec, devices: int) -> tuple[float, float]:
    """(bytes/s per direction, seconds per hop) of the device-to-device link; an error where the spec has none."""
    bw = float(spec.get("link_bytes_per_s", 0.0) or 0.0)
    if devices > 1 and bw <= 0:
        raise QuantDSEError(f"--devices {devices}: this target's spec gives no device-to-device link "
                            "(link_bytes_per_s): use --devices 1, a GPU target, or --set link_bytes_per_s=...")
    return bw, float(spec.get("link_latency_s", 0.0) or 0.0)


def allreduce_s(nbytes: float, devices: int, bw: float, latency: float) -> float:
    """Ring all-reduce of `nbytes` over `devices`: 2(N-1)/N x bytes / bandwidth + 2(N-1) hops."""
    if devices <= 1:
        return 0.0
    return 2.0 * (devices - 1) / devices * nbytes / bw + 2.0 * (devices - 1) * latency


def p2p_s(nbytes: float, bw: float, latency: float) -> float:
    """One point-to-point send of `nbytes`."""
    return nbytes / bw + latency


def _split(size: int, devices: int) -> int:
    return max(1, math.ceil(size / devices))


def shard_layer(layer, devices: int):
    """One device's share of `layer` under tensor parallelism (same name, role and block)."""
    if devices <= 1:
        return layer
    if layer.kind == "attention":
        a = dict(layer.attrs)
        heads = int(a.get("heads", 1))
        kv = int(a.get("kv_heads", heads))
        a["heads"] = _split(heads, devices)
        a["kv_heads"] = _split(kv, devices)  # fewer KV heads than devices: each device keeps one copy
        return replace(layer, attrs=a)
    if layer.kind in ("linear", "lm-head", "embedding") and len(layer.shape) == 2:
        out, inp = layer.shape
        if layer.kind == "linear" and layer.role in ROW_PARALLEL:
            return replace(layer, shape=(out, _split(inp, devices)))
        return replace(layer, shape=(_split(out, devices), inp))
    return layer  # convolutions and anything else stay whole


def per_device_graph(graph, devices: int, mode: str):
    """The graph one device computes: TP shards every layer; PP keeps layers whole (the pass visits
    every stage, so its time is the whole graph's) and splits only memory (hwmodels.memory.free_memory)."""
    if devices <= 1 or mode == "pp":
        return graph
    from quantcore.models.graph import LayerGraph

    layers = [shard_layer(l, devices) for l in graph.layers]
    return LayerGraph(graph.name, layers, graph.config, source=graph.source,
                      extra_params=graph.extra_params, notes=list(graph.notes))


def hidden_size(graph) -> int:
    """Width of the activations the devices exchange."""
    h = graph.config.get("hidden_size")
    if h:
        return int(h)
    embeds = [l for l in graph.layers if l.kind == "embedding"]
    return embeds[0].n if embeds else max((l.k for l in graph.layers if l.kind == "linear"), default=0)


def blocks(graph) -> int:
    """Transformer blocks (each all-reduces twice under TP)."""
    found = {l.block for l in graph.layers if l.block is not None}
    return len(found) or int(graph.config.get("num_layers", 0) or 0)


def comm(graph, tokens: int, spec, devices: int, mode: str) -> dict:
    """Seconds and bytes per device the devices spend exchanging activations in one pass of `tokens` tokens.

    tp: 2 all-reduces per block of tokens x hidden 16-bit values; pp: N-1 sends of the same message.
    """
    if devices <= 1:
        return {"latency_s": 0.0, "bytes": 0.0, "messages": 0, "message_bytes": 0.0}
    bw, lat = link(spec, devices)
    message = float(tokens) * hidden_size(graph) * ACT_BYTES
    if mode == "tp":
        count = 2 * blocks(graph)
        return {"latency_s": count * allreduce_s(message, devices, bw, lat),
                "bytes": count * 2.0 * (devices - 1) / devices * message, "messages": count, "message_bytes": message}
    return {"latency_s": (devices - 1) * p2p_s(message, bw, lat), "bytes": (devices - 1) * message,
            "messages": devices - 1, "message_bytes": message}

