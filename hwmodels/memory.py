"""Device memory a workload needs besides the weights: the KV cache and activations.

What is left of `memory_capacity_bytes` after them is what the weights may use
(`free_memory`). Both are counted for the workload actually costed:

- KV cache: every attention layer keeps K and V of `seq` tokens per sequence at
  `kv_bits` (decode and prefill). An encoder's forward pass keeps none past a layer:
  one layer's K and V at a time. MLA (DeepSeek) caches its latent: kv_lora_rank +
  the rope part of the key per token, shared by all heads (vLLM's MLA cache).
- activations: the largest layer's input and output at 16 bits for the tokens of one
  pass (serving engines reuse these buffers layer to layer), and a decoder's logits.
  Conv layers: the feature maps in and out of the largest layer.

On several devices (`workload.devices`) each device holds its share: under tensor
parallelism its heads of the KV cache and its slice of each layer's activations, under
pipeline parallelism its 1/N of the blocks' KV cache; the weights split N ways either way
(hwmodels.parallel), so the room for weights is N x what one device leaves.
"""
from __future__ import annotations

from dataclasses import dataclass

from hwmodels.workload import Workload

ACT_BYTES = 2  # 16-bit activations


def _kv_elems_per_token(layer) -> int:
    """K and V elements one token stores for one attention layer."""
    a = layer.attrs
    if a.get("kv_lora_rank"):
        return int(a["kv_lora_rank"]) + int(a.get("rope_head_dim", 0))
    kv_heads = int(a.get("kv_heads", a.get("heads", 1)))
    head_dim = int(a.get("head_dim", 64))
    return kv_heads * (head_dim + int(a.get("v_head_dim", head_dim)))


def kv_cache_bytes(graph, workload: Workload) -> float:
    """Bytes of the KV cache the workload holds (one layer's K and V for an encoder)."""
    attention = [l for l in graph.layers if l.kind == "attention"]
    if not attention or workload.phase == "denoise":  # a diffusion pipeline keeps no KV cache
        return 0.0
    per_token = [_kv_elems_per_token(l) for l in attention]
    elems = max(per_token) if workload.phase == "forward" else sum(per_token)
    return float(elems) * workload.batch * workload.context * workload.kv_bits / 8.0


def activation_bytes(graph, workload: Workload) -> float:
    """Bytes of the largest layer's input + output activations, and a decoder's logits."""
    if workload.phase == "denoise":
        from hwmodels.diffusion_ops import activation_bytes as pipeline_activations

        return pipeline_activations(graph, workload, ACT_BYTES)
    peak = 0.0
    for layer in graph.layers:
        if layer.kind in ("conv", "deform-conv"):
            in_h, in_w = layer.attrs.get("in_hw", (1, 1))
            out_h, out_w = layer.attrs.get("out_hw", (1, 1))
            groups = int(layer.attrs.get("groups", 1))
            cin = int(layer.shape[1]) * groups
            elems = workload.batch * (cin * int(in_h) * int(in_w) + layer.n * int(out_h) * int(out_w))
        elif layer.kind in ("linear", "lm-head") and layer.params > 0:
            tokens = workload.batch if layer.kind == "lm-head" else workload.tokens
            elems = tokens * (layer.k + layer.n)
        else:
            continue
        peak = max(peak, float(elems))
    return peak * ACT_BYTES


@dataclass(frozen=True)
class FreeMemory:
    """Device memory left for the weights: capacity - KV cache - activations (bytes, per device),
    times the devices that share the weights."""

    capacity: float
    kv_cache: float
    activations: float
    devices: int = 1

    @property
    def per_device(self) -> float:
        """What one device leaves for its share of the weights."""
        return self.capacity - self.kv_cache - self.activations

    @property
    def free(self) -> float:
        """Room for all the weights, summed over the devices."""
        return self.devices * self.per_device

    def as_dict(self) -> dict:
        out = {"memory_capacity_bytes": self.capacity, "kv_cache_bytes": self.kv_cache,
               "activation_bytes": self.activations, "free_for_weights_bytes": self.free}
        if self.devices > 1:
            out.update(devices=self.devices, free_per_device_bytes=self.per_device)
        return out


def free_memory(spec, graph, workload: Workload) -> FreeMemory | None:
    """What the target's memory leaves for the weights, or None where the spec does not model memory.

    Several devices: the KV cache and activations one device holds (hwmodels.parallel)."""
    capacity = float(spec.get("memory_capacity_bytes", 0.0) or 0.0)
    if capacity <= 0:
        return None
    devices = workload.devices or 1
    if devices <= 1:
        return FreeMemory(capacity, kv_cache_bytes(graph, workload), activation_bytes(graph, workload))
    from hwmodels.parallel import per_device_graph

    if workload.parallel == "pp":
        return FreeMemory(capacity, kv_cache_bytes(graph, workload) / devices, activation_bytes(graph, workload),
                          devices)
    shard = per_device_graph(graph, devices, "tp")
    return FreeMemory(capacity, kv_cache_bytes(shard, workload), activation_bytes(shard, workload), devices)


def offload(spec, fm: FreeMemory, weight_bytes: float, workload: Workload) -> dict | None:
    """Weights past the free memory under `allow_offload`: they stay in host memory and stream over the
    host link on every forward pass, each device its share over its own link; None where all fit.

    {"offloaded_bytes", "host_link_bytes_per_s", "seconds_per_pass"} (seconds None: no host link in the spec)."""
    over = weight_bytes - fm.free
    if over <= fm.free * 1e-9 or not bool(spec.get("allow_offload", False)):
        return None
    bw = float(spec.get("host_link_bytes_per_s", 0.0) or 0.0)
    devices = workload.devices or 1
    return {"offloaded_bytes": over, "host_link_bytes_per_s": bw,
            "seconds_per_pass": over / devices / bw if bw > 0 else None}


def weight_bytes(graph, fmt) -> float:
    """Bytes of the weights with every searched layer in `fmt` and the rest (embeddings, norms) at 16 bits."""
    fixed = sum(l.params for l in graph.layers if not l.quantizable) + graph.extra_params
    return 2.0 * fixed + sum(l.params * fmt.bits_per_weight(l.row) / 8.0 for l in graph.quantizable())


def memory_doc(spec, graph, fmt, workload: Workload) -> dict | None:
    """What `hwmodels.cost --model` says of memory: the weights in `fmt`, what each device holds, whether it fits."""
    fm = free_memory(spec, graph, workload)
    if fm is None:
        return None
    weights = weight_bytes(graph, fmt)
    devices = workload.devices or 1
    doc = {"weights_bytes": weights, "weights_per_device_bytes": weights / devices, **fm.as_dict(),
           "weights_fit": bool(weights <= fm.free * (1 + 1e-9))}
    spill = offload(spec, fm, weights, workload)
    return {**doc, "offload": spill} if spill else doc
