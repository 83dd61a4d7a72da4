"""Whole-model cost of one pass: every layer in one format, plus embeddings and attention.

Used by `hwmodels.cost --model` and the paper reproductions. The KV cache is the
"weight" operand of the attention matmuls, at `workload.kv_bits`.
"""
from __future__ import annotations

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels.interface import BOUND_NAMES, CostTable
from hwmodels.ops import fixed_ops_for_graph, ops_for_graph
from hwmodels.workload import Workload

KV_FORMATS = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4-g64", 2: "int2-g64"}


def kv_format(bits: int):
    """The format the KV cache is stored in for `--kv-bits`."""
    from quantcore.formats import get_format

    if bits not in KV_FORMATS:
        raise QuantDSEError(f"--kv-bits {bits} is not supported: use one of {', '.join(map(str, KV_FORMATS))}")
    return get_format(KV_FORMATS[bits])


def embedding_format(model):
    """Embeddings and MoE routers stay at 16 bits (not searched, as in AWQ/GPTQ/RAMP accounting)."""
    from quantcore.formats import get_format

    return get_format("fp16")


def fixed_costs(model, graph, workload: Workload) -> tuple[CostTable | None, CostTable | None]:
    """Cost tables [ops, 1] of the 16-bit ops (embeddings, routers) and the attention matmuls."""
    emb_ops, att_ops = fixed_ops_for_graph(graph, workload)
    emb = model.cost(emb_ops, [embedding_format(model)], workload) if len(emb_ops) else None
    att = model.cost(att_ops, [kv_format(workload.kv_bits)], workload) if len(att_ops) else None
    for table, what in ((emb, "16-bit embeddings/routers"), (att, f"attention over a {workload.kv_bits}-bit KV cache")):
        if table is not None and not table.supported.all():
            raise QuantDSEError(f"{model.name} cannot run the {what} of {graph.name}: choose a model it runs "
                                f"(e.g. a CNN for a CNN accelerator), another --kv-bits, or another --hw")
    return emb, att


def _sum(table: CostTable | None) -> dict:
    if table is None:
        return {"cycles": 0.0, "latency_s": 0.0, "energy_j": 0.0, "bytes": 0.0}
    return {"cycles": float(table.cycles.sum()), "latency_s": float(table.latency_s.sum()),
            "energy_j": float(table.energy_j.sum()), "bytes": float(table.bytes.sum())}


def model_cost(model, graph, fmt, workload: Workload) -> dict:
    """Cost of one pass of `graph` with every quantizable layer in `fmt`.

    Returns the DESIGN.md cost dict: cycles, latency_s, energy_j, bytes, bound and
    a breakdown into layers / attention / embeddings (+ summed family breakdowns).
    """
    ops = ops_for_graph(graph, workload)
    layers = model.cost(ops, [fmt], workload)
    if not layers.supported.all():
        raise QuantDSEError(f"format {fmt.name} is not supported on {model.name}: pick another --format")
    emb, att = fixed_costs(model, graph, workload)
    parts = {"layers": _sum(layers), "attention": _sum(att), "sixteen_bit": _sum(emb)}
    total = {k: sum(p[k] for p in parts.values()) for k in ("cycles", "latency_s", "energy_j", "bytes")}
    bound_time = np.zeros(len(BOUND_NAMES))
    for table in (layers, att, emb):
        if table is not None:
            np.add.at(bound_time, table.bound[:, 0].astype(int), table.latency_s[:, 0])
    breakdown = {f"{name}_latency_s": p["latency_s"] for name, p in parts.items()}
    for table in (layers, att, emb):
        if table is not None:
            for key, arr in table.breakdown.items():
                breakdown[key] = breakdown.get(key, 0.0) + float(arr.sum())
    return {**total, "bound": BOUND_NAMES[int(np.argmax(bound_time))], "breakdown": breakdown}
