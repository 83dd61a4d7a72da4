"""Published GPU serving and kernel figures (gpu_published.json), each recomputed from its setup.

Each entry names its card, model, format, batch, context and the runtime that produced it
(`--set` overrides with their reasons); `predict` costs it with the GPU model: one pass of the
whole model (the lm-head in the runtime's checkpoint convention), or one GEMM for `gemm_tflops`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from hwmodels.registry import load_model
from hwmodels.workload import Workload

ENTRIES = json.loads(Path(__file__).with_name("gpu_published.json").read_text(encoding="utf-8"))["entries"]


def entry_format(name: str):
    """A catalog format, or `bpwX`: a plain X-bit integer code (EXL2's average bits per weight)."""
    from quantcore.formats import get_format

    if name.startswith("bpw"):
        return dataclasses.replace(get_format("int4"), name=name, weight_bits=float(name[3:]), group_size=None,
                                   scale_bits=0, zero_bits=0, description=name)
    return get_format(name)


def whole_model(model, graph, fmt, head, workload) -> tuple[float, float]:
    """(seconds, joules) of one pass, the lm_head in `head` (the runtime's checkpoint convention)."""
    from hwmodels.ops import ops_for_graph
    from hwmodels.wholemodel import fixed_costs

    ops = ops_for_graph(graph, workload)
    table = model.cost(ops, [fmt, head], workload)
    col = np.array([1 if name == "lm_head" else 0 for name in ops.names])
    rows = np.arange(len(ops))
    seconds, joules = float(table.latency_s[rows, col].sum()), float(table.energy_j[rows, col].sum())
    for extra in fixed_costs(model, graph, workload):
        if extra is not None:
            seconds += float(extra.latency_s.sum())
            joules += float(extra.energy_j.sum())
    return seconds, joules


def predict(entry: dict) -> float:
    """Our figure for one entry, in the entry's unit."""
    from quantcore.models import load_graph
    from hwmodels.ops import Ops

    model = load_model(entry["hw"], entry.get("overrides") or [])
    fmt = entry_format(entry["format"])
    if entry["kind"] == "gemm_tflops":
        t = model.cost(Ops.gemm(entry["m"], entry["k"], entry["n"]), [fmt], Workload())
        return 2.0 * entry["m"] * entry["k"] * entry["n"] / t.latency_s[0, 0] / 1e12
    head = entry.get("lm_head_format") or getattr(model, "runtime", {}).get("lm_head_format", "same")
    head = fmt if head == "same" else entry_format(head)
    phase = "prefill" if entry["kind"] in ("ttft_ms", "prefill_tokens_per_s") else "decode"
    seconds, joules = whole_model(model, load_graph(entry["model"]), fmt, head,
                                  Workload(phase, entry["batch"], entry["seq"]))
    return {"ttft_ms": seconds * 1e3, "prefill_tokens_per_s": entry["batch"] * entry["seq"] / seconds,
            "decode_tokens_per_s": entry["batch"] / seconds, "decode_ms_per_token": seconds * 1e3,
            "decode_power_w": joules / seconds}[entry["kind"]]


def _row(entry: dict):
    def run() -> dict:
        setup = (f"{entry['hw']}, {entry.get('model', 'one GEMM')}, {entry['format']}, batch {entry.get('batch', '-')}, "
                 f"context {entry.get('seq', '-')}, {entry['kind']}"
                 + (f", --set {' '.join(entry['overrides'])}" if entry.get("overrides") else ""))
        row = {"ours": predict(entry), "published": entry["published"], "source": entry["source"],
               "refs": entry["refs"], "quantity": entry.get("quantity", "time"), "setup": setup}
        for key in ("note", "override_reason", "same_setup_as"):
            if key in entry:
                row[key] = f"gpu_{entry[key]}" if key == "same_setup_as" else entry[key]
        return row
    return run


REPRODUCTIONS = {f"gpu_{e['id']}": _row(e) for e in ENTRIES}
