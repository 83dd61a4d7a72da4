"""Whole-model cost of one pass or one request: every layer in one format, plus embeddings and attention.

Used by `hwmodels.cost --model`, the search pipeline (`serving_tables`) and the paper
reproductions. The KV cache is the "weight" operand of the attention matmuls, at
`workload.kv_bits`. A request (`--phase generate`) is its prefill plus one decode step per
further output token: the searched layers and embeddings cost the same at every step (their
GEMMs see `batch` tokens whatever the context), so they are the prefill plus (output_len - 1)
decode steps exactly; attention grows with the context and is summed step by step (in
`ATTENTION_SAMPLES` equal runs of steps, each costed at its middle context, past that many
steps). On several devices every table is one device's share and the devices' messages are
added (hwmodels.parallel).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels.interface import BOUND_NAMES, CostTable
from hwmodels.ops import fixed_ops_for_graph, ops_for_graph
from hwmodels.workload import Workload

KV_FORMATS = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4-g64", 2: "int2-g64"}
#: decode steps past which a request's attention is summed over runs of steps (each at its middle context)
ATTENTION_SAMPLES = 64


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
    """A table's column 0 summed; bound_s: its seconds by bound (BOUND_NAMES); family: its breakdown summed."""
    bound = np.zeros(len(BOUND_NAMES))
    if table is None:
        return {"cycles": 0.0, "latency_s": 0.0, "energy_j": 0.0, "bytes": 0.0, "bound_s": bound, "family": {}}
    np.add.at(bound, table.bound[:, 0].astype(int), table.latency_s[:, 0])
    return {"cycles": float(table.cycles.sum()), "latency_s": float(table.latency_s.sum()),
            "energy_j": float(table.energy_j.sum()), "bytes": float(table.bytes.sum()), "bound_s": bound,
            "family": {k: float(v.sum()) for k, v in table.breakdown.items()}}


def _add(a: dict, b: dict, times: float = 1.0) -> dict:
    """a + times x b, key by key (nested dicts too)."""
    return {k: _add(a.get(k, {}), b.get(k, {}), times) if isinstance(a.get(k, b.get(k)), dict)
            else a.get(k, 0.0) + times * b.get(k, 0.0) for k in [*a, *(k for k in b if k not in a)]}


def _combine(a: CostTable, b: CostTable, times: float) -> CostTable:
    """a + times x b, cell by cell; the bound is the one of the larger share of time."""
    tb = b.latency_s * times
    return CostTable(a.cycles + times * b.cycles, a.latency_s + tb, a.energy_j + times * b.energy_j,
                     a.bytes + times * b.bytes, np.where(tb > a.latency_s, b.bound, a.bound),
                     a.supported & b.supported,
                     {k: a.breakdown.get(k, 0.0) + times * b.breakdown.get(k, 0.0)
                      for k in [*a.breakdown, *(k for k in b.breakdown if k not in a.breakdown)]})


@dataclass
class PassTables:
    """One device's costs of one pass: searched layers [L, F], fixed parts summed, messages."""

    layers: CostTable
    embeddings: dict  # 16-bit embeddings and routers, summed
    attention: dict  # attention matmuls, summed
    comm: dict  # the devices' messages: latency_s, bytes (per device)


@dataclass
class ServingCost:
    """What the search and `hwmodels.cost` read: the workload's whole cost and its serving figures.

    layers: [L, F] cost of the searched layers over the whole workload (a request: prefill and
    every decode step); fixed_*: the rest (embeddings, attention, messages). ttft / tpot:
    (latency [L, F], fixed seconds) of the first token and of one later token, where they apply.
    energy is every device's, summed.
    """

    layers: CostTable
    fixed: dict  # cycles, latency_s, energy_j, bytes of the parts no format choice changes
    parts: dict  # name -> summed cost dict, for breakdowns: attention, sixteen_bit, communication
    ttft: tuple | None
    tpot: tuple | None
    output_tokens: int

    def take(self, columns) -> "ServingCost":
        """The costs restricted to the given format columns."""
        c = np.asarray(columns, dtype=np.int64)
        cut = lambda split: None if split is None else (split[0][:, c], split[1])  # noqa: E731
        return ServingCost(self.layers.take(c), self.fixed, self.parts, cut(self.ttft), cut(self.tpot),
                           self.output_tokens)


def _pass(model, graph, layers, formats, workload: Workload, ops=None) -> PassTables:
    from hwmodels.parallel import comm, per_device_graph

    devices, mode = workload.devices or 1, workload.parallel or "tp"
    shard = per_device_graph(graph, devices, mode)
    if shard is not graph:
        names = {l.name for l in layers}
        layers = [l for l in shard.layers if l.name in names]
    if ops is None or shard is not graph:
        ops = ops_for_graph(shard, workload, layers)
    table = model.cost(ops, formats, workload)
    emb, att = fixed_costs(model, shard, workload)
    if mode == "tp" and devices > 1:  # every device runs its shard: energy is N times one device's
        table = CostTable(table.cycles, table.latency_s, table.energy_j * devices, table.bytes, table.bound,
                          table.supported, table.breakdown)
    emb_sum, att_sum = _sum(emb), _sum(att)
    if mode == "tp":
        for part in (emb_sum, att_sum):
            part["energy_j"] *= devices
    messages = comm(graph, workload.tokens, model.spec, devices, mode)
    other = np.zeros(len(BOUND_NAMES))
    other[BOUND_NAMES.index("other")] = messages["latency_s"]
    return PassTables(table, emb_sum, att_sum, {"cycles": 0.0, "latency_s": messages["latency_s"], "energy_j": 0.0,
                                                 "bytes": messages["bytes"], "bound_s": other, "family": {}})


def _step_runs(first: int, steps: int, samples: int = ATTENTION_SAMPLES) -> list[tuple[int, int]]:
    """(context, steps it stands for) covering contexts first .. first + steps - 1: every step when there
    are at most `samples`, else `samples` runs of nearly equal length, each at its middle context."""
    if steps <= samples:
        return [(first + t, 1) for t in range(steps)]
    edges = np.linspace(0, steps, samples + 1).round().astype(int)
    return [(first + int((a + b - 1) // 2), int(b - a)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def request_attention(model, graph, workload: Workload, samples: int = ATTENTION_SAMPLES) -> dict:
    """Attention of a request's decode steps, summed over the growing context (seq + 1 .. seq + output_len - 1)."""
    from hwmodels.parallel import per_device_graph

    devices, mode = workload.devices or 1, workload.parallel or "tp"
    shard = per_device_graph(graph, devices, mode)
    total = _sum(None)
    for context, count in _step_runs(workload.seq + 1, workload.output_len - 1, samples):
        _, att = fixed_costs(model, shard, workload.decode_pass(context))
        part = _sum(att)
        if mode == "tp":
            part["energy_j"] *= devices
        total = _add(total, part, count)
    return total


def serving_tables(model, graph, layers, formats, workload: Workload, ops=None) -> ServingCost:
    """The whole workload's cost of `layers` in each of `formats`, and its first-token / per-token split.

    ops: the layers' ops for a one-pass workload on one device, where the caller has them already."""
    if workload.phase != "generate":
        one = _pass(model, graph, layers, formats, workload, ops)
        fixed = _add(_add(one.embeddings, one.attention), one.comm)
        split = (one.layers.latency_s, fixed["latency_s"])
        return ServingCost(one.layers, fixed, {"attention": one.attention, "sixteen_bit": one.embeddings,
                                               "communication": one.comm},
                           ttft=split if workload.phase == "prefill" else None,
                           tpot=split if workload.phase == "decode" else None, output_tokens=workload.output_tokens)
    prefill = _pass(model, graph, layers, formats, workload.prefill_pass())
    steps = workload.output_len - 1
    decode = _pass(model, graph, layers, formats, workload.decode_pass(workload.seq + 1))
    attention = _add(prefill.attention, request_attention(model, graph, workload))
    embeddings = _add(prefill.embeddings, decode.embeddings, steps)
    messages = _add(prefill.comm, decode.comm, steps)
    fixed = _add(_add(embeddings, attention), messages)
    first = _add(_add(prefill.embeddings, prefill.attention), prefill.comm)["latency_s"]
    tpot = (decode.layers.latency_s, (fixed["latency_s"] - first) / steps) if steps else None
    return ServingCost(_combine(prefill.layers, decode.layers, steps), fixed,
                       {"attention": attention, "sixteen_bit": embeddings, "communication": messages},
                       ttft=(prefill.layers.latency_s, first), tpot=tpot, output_tokens=workload.output_tokens)


def serving_totals(cost: ServingCost, assignment: np.ndarray, extra_latency_s: float = 0.0,
                   extra_per_pass_s: float = 0.0) -> dict:
    """ttft_s, tpot_s, tokens_per_s of one format per layer (`assignment`); extra_*: seconds the
    search's tables do not hold (offloaded weights: per pass), added to each figure."""
    rows = np.arange(len(assignment))
    total = float(cost.layers.latency_s[rows, assignment].sum()) + cost.fixed["latency_s"] + extra_latency_s
    out = {}
    if cost.ttft is not None:
        out["ttft_s"] = float(cost.ttft[0][rows, assignment].sum()) + cost.ttft[1] + extra_per_pass_s
    if cost.tpot is not None:
        out["tpot_s"] = float(cost.tpot[0][rows, assignment].sum()) + cost.tpot[1] + extra_per_pass_s
    out["tokens_per_s"] = cost.output_tokens / total if total > 0 else 0.0
    return out


def passes(workload: Workload) -> int:
    """Forward passes the workload makes (a request: its prefill and each later decode step)."""
    return workload.output_len if workload.phase == "generate" else 1


def model_cost(model, graph, fmt, workload: Workload) -> dict:
    """Cost of the workload (one pass, or a whole request) with every quantizable layer in `fmt`.

    Returns the DESIGN.md cost dict: cycles, latency_s, energy_j, bytes, bound, a breakdown into
    layers / attention / embeddings / communication (+ summed family breakdowns), and the serving
    figures that apply: ttft_s, tpot_s, tokens_per_s.
    """
    layers = graph.quantizable()
    cost = serving_tables(model, graph, layers, [fmt], workload)
    table = cost.layers
    if not table.supported.all():
        raise QuantDSEError(f"format {fmt.name} is not supported on {model.name}: pick another --format")
    parts = {"layers": _sum(table), **cost.parts}
    if (workload.devices or 1) <= 1:
        del parts["communication"]
    total = {k: sum(p[k] for p in parts.values()) for k in ("cycles", "latency_s", "energy_j", "bytes")}
    bound_time = sum(p["bound_s"] for p in parts.values())
    breakdown = {f"{name}_latency_s": p["latency_s"] for name, p in parts.items()}
    for part in parts.values():
        for key, value in part["family"].items():
            breakdown[key] = breakdown.get(key, 0.0) + value
    serving = serving_totals(cost, np.zeros(len(layers), dtype=int))
    return {**total, "bound": BOUND_NAMES[int(np.argmax(bound_time))], "breakdown": breakdown, **serving}
