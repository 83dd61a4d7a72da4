"""The plan (schema ``dse.plan/1``): the document other quantizers consume.

Written atomically; the same inputs give the same bytes apart from the timing
field ``solver.seconds``.
"""
from __future__ import annotations

import numpy as np

from dse import __version__
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, dumps, load_json
from dse.device import device_doc, memory_note

PLAN_SCHEMA = "dse.plan/1"
LAYER_KEYS = ("name", "format", "bits", "params", "error", "latency_s", "energy_j")


def _r(x: float, digits: int = 12) -> float:
    """Round to `digits` significant digits: stable JSON across platforms' last-ulp noise."""
    x = float(x)
    return float(f"{x:.{digits}g}") if np.isfinite(x) else x


def make_plan(prepared, problem, result, budget_doc: dict) -> dict:
    """The plan document for a solved problem."""
    req = prepared.request
    a = result.assignment
    costs = prepared.costs
    memory = problem.memory
    layers = []
    for i, layer in enumerate(prepared.layers):
        f = int(a[i])
        layers.append({
            # the format the tool applies (llama.cpp k-quants on rows not a multiple of 256 fall back)
            "name": layer.name, "format": prepared.formats[f].fallback_for(layer.row).name,
            "bits": _r(prepared.bits[i, f]),
            "params": int(layer.params), "error": _r(problem.error[i, f]),
            "latency_s": _r(costs.latency_s[i, f]), "energy_j": _r(costs.energy_j[i, f]),
            "memory_bytes": _r(memory[i, f]), "kind": layer.kind, "role": layer.role,
            "block": layer.block, "bound": ("compute", "memory", "other")[int(costs.bound[i, f])],
        })
    totals = {k: _r(v) for k, v in problem.totals(a).items()}
    solver = {"status": result.status, "gap": _r(result.gap) if np.isfinite(result.gap) else None,
              "seconds": round(float(result.seconds), 6), "objective": _r(result.objective),
              "message": result.message}
    solver.update({k: v for k, v in result.info.items() if isinstance(v, (str, int, float, bool))})
    limits = {k: _r(v) for k, v in problem.limits.items()}
    added = problem.sources.get("memory") == "device"
    return {
        "schema": PLAN_SCHEMA,
        "model": prepared.graph.name,
        "hardware": prepared.hardware.name,
        "workload": prepared.workload.as_dict(),
        "budget": {**budget_doc, "limits": limits},
        "method": req.method,
        "formats": [f.name for f in prepared.formats],
        "totals": totals,
        "fixed": {"memory_bytes": _r(problem.fixed_memory), "latency_s": _r(problem.fixed_latency_s),
                  "energy_j": _r(problem.fixed_energy_j),
                  "note": fixed_note(prepared)},
        "device": device_doc(prepared.hardware.spec, prepared.free_memory, added, totals["memory_bytes"]),
        "notes": list(prepared.notes) + ([memory_note(prepared.graph.name, prepared.hardware.name,
                                                      prepared.free_memory)] if added else []),
        "solver": solver,
        "provenance": {"version": __version__, "seed": req.seed, "cost_model": prepared.hardware.cost_model_id,
                       "sensitivity": prepared.sensitivity.source,
                       "sensitivity_is_prior": prepared.sensitivity.source == "prior",
                       "sensitivity_description": prepared.sensitivity.description,
                       "model_source": prepared.graph.source,
                       "hardware_overrides": list(req.overrides), "include": list(req.include),
                       "energy_basis": getattr(prepared.hardware, "ENERGY_BASIS", "estimate"),
                       "runtime": (getattr(prepared.hardware, "runtime", None) or {}).get("name"),
                       "target": req.target},
        "layers": layers,  # last: the summary above reads without scrolling past every layer
    }


def fixed_note(prepared) -> str:
    """What the plan's `fixed` part holds, from what was actually costed."""
    graph = prepared.graph
    parts = []
    if any(l.kind == "embedding" for l in graph.layers):
        parts.append("embeddings (16-bit)")
    if any(l.role == "router" for l in graph.layers):
        parts.append("MoE routers (16-bit)")
    if graph.extra_params:
        parts.append("norms/biases (16-bit)")
    attention = sum(l.kind == "attention" for l in graph.layers)
    if attention:
        w = prepared.workload
        cache = "the KV cache" if w.phase != "forward" else "the keys and values"
        parts.append(f"attention of {attention} layers over {cache} ({w.kv_bits}-bit)")
    elif graph.config.get("arch") != "cnn":
        parts.append("no attention (the model source defines none)")
    return ", ".join(parts) + ": not searched" if parts else "nothing: every weight is searched"


def plan_json(plan: dict) -> str:
    return dumps(plan)


def write_plan(plan: dict, path: str) -> None:
    atomic_write_text(path, plan_json(plan))


def load_plan(path: str) -> dict:
    """Read and validate a plan file; a malformed one is a one-line QuantDSEError."""
    plan = load_json(path, "plan")
    if not isinstance(plan, dict) or plan.get("schema") != PLAN_SCHEMA:
        raise QuantDSEError(f'plan {path}: "schema" must be "{PLAN_SCHEMA}": regenerate it with python -m dse.search')
    layers = plan.get("layers")
    if not isinstance(layers, list) or not layers:
        raise QuantDSEError(f'plan {path}: "layers" must be a non-empty list')
    for i, layer in enumerate(layers):
        missing = [k for k in LAYER_KEYS if not isinstance(layer, dict) or k not in layer]
        if missing:
            raise QuantDSEError(f"plan {path}: layer {i} lacks {', '.join(missing)}: regenerate the plan")
    for key in ("model", "hardware", "totals"):
        if key not in plan:
            raise QuantDSEError(f'plan {path}: missing "{key}": regenerate the plan')
    return plan


def format_table(plan: dict, verbose: bool = False, steps: list[str] | None = None) -> str:
    """The plan for a person (dse.summary): roles folded across blocks; `verbose` adds every layer.

    steps: the next steps, as for dse.summary.format_summary."""
    from dse.summary import format_layers, format_summary

    text = format_summary(plan, steps=steps)
    return f"{format_layers(plan)}\n\n{text}" if verbose else text
