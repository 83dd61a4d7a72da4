"""The LayerGraph: one entry per quantizable op (plus attention and embeddings), in dataflow order.

A plain indexed list, not a graph library's graph: every consumer walks the layers in order or
looks one up by name, and nothing reads edges (residual adds, attention, MoE routing would need
them only for liveness-based activation memory or an engine's schedule, which no cost model here
does: activation memory comes from hwmodels.memory's closed forms). A dict by name makes lookup
O(1) and building deepseek-v3's 45k entries about 0.04 s (its networkx graph took 0.47 s).

Layer names follow HF state-dict module names (``model.layers.0.self_attn.q_proj``;
the weight tensor is ``name + ".weight"``) so plans export 1:1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Protocol

import numpy as np

#: kinds whose weights a plan assigns a format to
QUANTIZABLE_KINDS = ("linear", "conv", "deform-conv", "lm-head")
#: all kinds a graph may hold
LAYER_KINDS = QUANTIZABLE_KINDS + ("embedding", "attention")


@dataclass(frozen=True)
class Layer:
    """One op of the model.

    shape: the weight tensor's shape as stored: (out, in) for linear, lm-head and
    embedding (vocab, hidden); (out, in/groups, kh, kw) for conv; () for attention.
    role: q, k, v, o, qkv, gate, up, down, fc1, fc2, router, embed, lm_head, conv, dwconv, ...
    attrs: conv: stride, padding, groups, in_hw, out_hw; attention: heads, kv_heads, head_dim.
    """

    name: str
    kind: str
    shape: tuple
    role: str = ""
    block: int | None = None
    expert: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def params(self) -> int:
        return int(math.prod(self.shape)) if self.shape else 0

    @property
    def k(self) -> int:
        """Reduction length of the GEMM (input features x kernel area per group)."""
        if self.kind in ("conv", "deform-conv"):
            return int(math.prod(self.shape[1:]))
        if self.kind == "embedding":
            return 1
        return int(self.shape[1]) if len(self.shape) > 1 else 0

    @property
    def row(self) -> int:
        """Length of the rows a weight format groups along: k, or the hidden size of an embedding."""
        return int(self.shape[1]) if self.kind == "embedding" and len(self.shape) > 1 else self.k

    @property
    def n(self) -> int:
        """Output features."""
        if self.kind == "embedding":
            return int(self.shape[1])
        return int(self.shape[0]) if self.shape else 0

    @property
    def quantizable(self) -> bool:
        """Searched by a plan. MoE routers stay 16-bit, as GPTQModel and llama.cpp keep them; an
        embedding is searched when `include_embeddings` marked it (attrs searchable)."""
        kind_ok = self.kind in QUANTIZABLE_KINDS or bool(self.attrs.get("searchable", False))
        return kind_ok and self.params > 0 and self.role != "router"

    def as_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "params": self.params, "shape": list(self.shape),
               "role": self.role, "block": self.block, "expert": self.expert, "searchable": self.quantizable}
        out.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in self.attrs.items()})
        return out


class WeightSource(Protocol):
    """Real weights, read one tensor at a time (never the whole model in memory)."""

    def get(self, layer_name: str) -> np.ndarray:
        """The layer's weight as float32 [out, in*kh*kw] (2-D, groups along the last axis)."""
        ...


class LayerGraph:
    """A model as its `Layer`s in dataflow order (indexed by position and by name), plus its config.

    config: architecture facts the cost models need: hidden_size, num_layers,
    heads, kv_heads, head_dim, vocab_size, num_experts, experts_per_token,
    arch ("decoder", "encoder" or "cnn"), input_hw for CNNs.
    extra_params: parameters outside the layers (norms, biases), kept at 16 bits; a tied lm-head
    (attrs tied_to) subtracts its size here, so the quantized lm-head also serves as the embedding.
    notes: what the source did not say and was inferred or assumed (tools print them on stderr).
    """

    def __init__(self, name: str, layers: list[Layer], config: Mapping | None = None, source: str = "config",
                 weights: WeightSource | None = None, extra_params: int = 0, notes: list | None = None):
        self.name = name
        self.layers = list(layers)
        self.config = dict(config or {})
        self.source = source
        self.weights = weights
        self.extra_params = int(extra_params)
        self.notes = list(notes or [])
        self._index = {layer.name: i for i, layer in enumerate(self.layers)}
        if len(self._index) != len(self.layers):
            from quantcore.errors import QuantDSEError

            seen: set = set()
            twice = next(l.name for l in self.layers if l.name in seen or seen.add(l.name))
            raise QuantDSEError(f"model {name}: layer {twice!r} is listed twice: each layer name must be unique")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def quantizable(self) -> list[Layer]:
        return [l for l in self.layers if l.quantizable]

    def layer(self, name: str) -> Layer:
        """The layer called `name` (KeyError if there is none)."""
        return self.layers[self._index[name]]

    def index(self, name: str) -> int:
        """Position of layer `name` in dataflow order (KeyError if there is none)."""
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def params(self) -> int:
        return sum(l.params for l in self.layers) + self.extra_params

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "params": self.params,
                "config": self.config, "layers": [l.as_dict() for l in self.layers]}


#: what `--include` can add to the searched layers
INCLUDABLE = ("embeddings",)


def include_layers(graph: "LayerGraph", include=()) -> "LayerGraph":
    """The graph with token embeddings searchable too (``include=("embeddings",)``).

    A token embedding tied to the lm-head is already searched as that lm-head (the checkpoint
    stores the matrix once), so it is left alone. The lm-head is searched in any case.
    """
    import dataclasses

    unknown = [w for w in include if w not in INCLUDABLE]
    if unknown:
        from quantcore.errors import QuantDSEError

        raise QuantDSEError(f"--include {unknown[0]!r} is not known: use {', '.join(INCLUDABLE)}")
    if "embeddings" not in include:
        return graph
    tied = {l.attrs.get("tied_to") for l in graph.layers if l.kind == "lm-head"}
    layers = [dataclasses.replace(l, attrs=MappingProxyType({**l.attrs, "searchable": True}))
              if l.kind == "embedding" and l.role == "embed" and l.name not in tied else l
              for l in graph.layers]
    return LayerGraph(graph.name, layers, graph.config, source=graph.source, weights=graph.weights,
                      extra_params=graph.extra_params, notes=graph.notes)
