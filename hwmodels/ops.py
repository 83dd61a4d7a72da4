"""Ops: a batch of GEMM-like operations, the only thing cost models see.

Every op is an M x K x N matrix product whose "weight" operand (K x N) is either
a static weight tensor or, for attention, the KV cache. `weight_elems` is how
many weight elements one execution reads (K*N for a GEMM, M*N for an embedding
gather) and `count` is the expected number of executions per pass (batched
heads, MoE expert usage probability).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.workload import Workload


@dataclass(frozen=True)
class Ops:
    names: tuple
    kinds: tuple
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    count: np.ndarray
    weight_elems: np.ndarray
    roles: tuple = ()

    def __len__(self) -> int:
        return len(self.names)

    @property
    def macs(self) -> np.ndarray:
        """Multiply-accumulates per execution (0 for gathers)."""
        gemm = np.array([k != "embedding" for k in self.kinds], dtype=bool)
        return np.where(gemm, self.m.astype(np.float64) * self.k * self.n, 0.0)

    @classmethod
    def gemm(cls, m: int, k: int, n: int, name: str = "gemm", kind: str = "linear") -> "Ops":
        """One plain GEMM (for `hwmodels.cost --gemm M,K,N`)."""
        return cls((name,), (kind,), np.array([m], np.int64), np.array([k], np.int64), np.array([n], np.int64),
                   np.ones(1), np.array([float(k) * n]), ("",))

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "Ops":
        """rows: (name, kind, m, k, n, count, weight_elems, role)."""
        if not rows:
            e = np.zeros(0, np.int64)
            return cls((), (), e, e, e, np.zeros(0), np.zeros(0), ())
        names, kinds, m, k, n, count, welems, roles = zip(*rows)
        return cls(tuple(names), tuple(kinds), np.array(m, np.int64), np.array(k, np.int64), np.array(n, np.int64),
                   np.array(count, np.float64), np.array(welems, np.float64), tuple(roles))


def _layer_row(layer, graph, workload: Workload) -> tuple:
    tokens = workload.tokens
    if layer.kind in ("conv", "deform-conv"):
        out_hw = layer.attrs.get("out_hw", (1, 1))
        m = workload.batch * int(out_hw[0]) * int(out_hw[1])
        return (layer.name, layer.kind, m, layer.k, layer.n, 1.0, float(layer.params), layer.role)
    if layer.kind == "embedding":
        return (layer.name, layer.kind, tokens, 1, layer.n, 1.0, float(tokens) * layer.n, layer.role)
    count = 1.0
    m = tokens
    if layer.kind == "lm-head":
        m = workload.batch  # serving engines (vLLM, TensorRT-LLM) compute logits of the last token only
    if layer.expert is not None:
        experts = int(graph.config.get("num_experts") or 1)
        top_k = int(graph.config.get("experts_per_token") or 1)
        share = min(1.0, top_k / experts)
        count = 1.0 - (1.0 - share) ** tokens  # probability this expert runs in the pass
        m = max(1, int(np.ceil(tokens * share / count)))  # its tokens when it runs
    return (layer.name, layer.kind, m, layer.k, layer.n, count, float(layer.params), layer.role)


def attention_rows(layer, workload: Workload) -> list[tuple]:
    """QK^T and PV of one attention layer, the KV cache as the weight operand.

    Grouped-query attention shares each KV head among heads/kv_heads query heads,
    so one GEMM per (sequence, KV head) with M = query tokens x group size.
    Prefill is causal: half the score matrix is computed (count x 0.5); an encoder's
    forward pass is bidirectional: every query token attends to all `seq` tokens.
    """
    heads = int(layer.attrs.get("heads", 1))
    kv_heads = int(layer.attrs.get("kv_heads", heads))
    head_dim = int(layer.attrs.get("head_dim", 64))
    q_tokens = 1 if workload.phase == "decode" else workload.seq
    ctx = workload.seq
    m = q_tokens * (heads // max(kv_heads, 1))
    count = workload.batch * kv_heads * (0.5 if workload.phase == "prefill" else 1.0)
    return [
        (f"{layer.name}.qk", "attention", m, head_dim, ctx, count, float(head_dim) * ctx, "qk"),
        (f"{layer.name}.pv", "attention", m, ctx, head_dim, count, float(head_dim) * ctx, "pv"),
    ]


def ops_for_graph(graph, workload: Workload, layers: list | None = None) -> Ops:
    """Ops of the given layers (default: the graph's quantizable layers)."""
    chosen = graph.quantizable() if layers is None else layers
    if graph.config.get("arch") == "diffusion":
        from hwmodels.diffusion_ops import layer_row

        return Ops.from_rows([layer_row(l, graph, workload) for l in chosen])
    return Ops.from_rows([_layer_row(l, graph, workload) for l in chosen])


def fixed_ops_for_graph(graph, workload: Workload) -> tuple[Ops, Ops]:
    """(16-bit ops: embedding gathers and MoE routers, attention matmuls): what a plan does not choose."""
    if graph.config.get("arch") == "diffusion":
        from hwmodels import diffusion_ops as d

        emb = [d.layer_row(l, graph, workload) for l in graph.layers
               if l.kind != "attention" and l.params > 0 and not l.quantizable]
        att = [row for l in graph.layers if l.kind == "attention" for row in d.attention_rows(l, graph, workload)]
        return Ops.from_rows(emb), Ops.from_rows(att)
    emb = [_layer_row(l, graph, workload) for l in graph.layers
           if l.kind != "attention" and l.params > 0 and not l.quantizable]
    att = [row for l in graph.layers if l.kind == "attention" for row in attention_rows(l, workload)]
    return Ops.from_rows(emb), Ops.from_rows(att)


def bits_table(k: np.ndarray, formats: list, n: np.ndarray | None = None) -> np.ndarray:
    """[L, F] effective stored bits per weight of rows of length k[l] in each format.

    Scales, zero points and block metadata depend on the row length through the
    number of groups, so each format is asked once per distinct k (real models
    have few) and the answers are broadcast back to the L rows. n: the output
    features, which a low-rank branch's bits depend on (left out: square layers).
    """
    k = np.asarray(k, dtype=np.int64)
    if n is None or not any(f.lowrank for f in formats):
        ks, inverse = np.unique(k, return_inverse=True)
        per_k = np.array([[f.bits_per_weight(int(kk)) for f in formats] for kk in ks], dtype=np.float64)
        return per_k.reshape(len(ks), len(formats))[inverse.reshape(-1)]
    pairs, inverse = np.unique(np.stack([k, np.asarray(n, dtype=np.int64)], axis=1), axis=0, return_inverse=True)
    per = np.array([[f.bits_per_weight(int(a), int(b)) for f in formats] for a, b in pairs], dtype=np.float64)
    return per.reshape(len(pairs), len(formats))[inverse.reshape(-1)]
