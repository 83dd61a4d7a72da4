"""A plan's serving figures: tokens/s, time to first token, time per output token, offload, what binds.

The search minimises error under linear limits; these figures are read off the chosen formats
afterwards (hwmodels.wholemodel.serving_totals). Weights past the device's free memory under
`allow_offload` stream over the host link on every forward pass (hwmodels.memory.offload): that
time is not linear in the formats, so it is added here, to the plan's latency and serving
figures, and a note says so when a latency-type limit did not see it.
"""
from __future__ import annotations

import numpy as np

from dse.budget import SHOWN_UNITS
from hwmodels.memory import offload
from hwmodels.wholemodel import passes

#: limit kinds in time, which offloading adds to after the search
TIME_KINDS = ("latency", "ttft", "tpot")


def binding(problem, assignment: np.ndarray, totals: dict, user_limits: dict) -> list[dict]:
    """The limits the plan meets with (almost) nothing to spare: [{kind, limit, source}], the device's
    free memory and a throughput turned latency limit included (source: device, throughput, budget)."""
    rows = np.arange(len(assignment))
    out = []
    for c in problem.constraints():
        used = float(c.coef[rows, assignment].sum())
        scale = c.rhs / c.limit if c.kind == "bits" else 1.0  # a bits limit's rhs is in bits x params
        if c.rhs - used <= 1e-3 * c.limit * scale:  # within 0.1 % of the limit, as the summary has always said
            source = problem.sources.get(c.kind, "budget")
            kind = "throughput" if source == "throughput" else c.kind
            limit = user_limits["throughput"] if source == "throughput" else c.limit
            out.append({"kind": kind, "limit": float(limit), "source": source})
    return out


def serving_doc(prepared, problem, assignment: np.ndarray, totals: dict, user_limits: dict) -> dict:
    """{"totals": the serving totals (latency with offload), "offload": dict or None, "binding": [...],
    "notes": [...]} for a solved plan."""
    workload, notes = prepared.workload, []
    fm = prepared.free_memory
    spill = offload(prepared.hardware.spec, fm, totals["memory_bytes"], workload) if fm is not None else None
    per_pass = spill["seconds_per_pass"] if spill and spill["seconds_per_pass"] is not None else 0.0
    extra = per_pass * passes(workload)
    out = {"latency_s": totals["latency_s"] + extra}
    out.update(prepared.serving_totals(np.asarray(assignment), extra, per_pass))
    if spill:
        gb = spill["offloaded_bytes"] / 1e9
        if spill["seconds_per_pass"] is None:
            notes.append(f"{gb:.2f} GB of weights do not fit {prepared.hardware.name} and are offloaded; the spec "
                         "gives no host link (host_link_bytes_per_s), so their transfer is not costed")
        else:
            notes.append(f"{gb:.2f} GB of weights do not fit {prepared.hardware.name}: offloaded, they stream over "
                         f"the host link ({spill['host_link_bytes_per_s'] / 1e9:g} GB/s) every pass, "
                         f"+{per_pass * 1e3:.3f} ms per pass, added to the totals after the search")
            late = [k for k in TIME_KINDS if k in problem.limits]
            if late:
                notes.append(f"the {', '.join(late)} limit did not include the offload time: check the totals")
    return {"totals": out, "offload": spill,
            "binding": binding(problem, np.asarray(assignment), totals, user_limits), "notes": notes}


def binding_text(entry: dict, budget: dict) -> str:
    """`device free memory 79.33 GB` / `limit 2000tok/s`: a binding limit as the summary shows it."""
    kind, limit = entry["kind"], entry["limit"]
    if entry["source"] == "device":
        return f"the device's free memory {limit / 1e9:.2f} GB"
    if budget.get("kind") == kind and budget.get("text"):
        return f"limit {budget['text']}"
    shown = SHOWN_UNITS[kind]
    return f"limit {limit * shown.factor:g}{shown.unit}"
