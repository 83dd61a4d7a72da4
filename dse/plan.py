"""The plan (schema ``dse.plan/2``): the document other quantizers consume.

Written atomically; the same inputs give the same bytes apart from the timing
field ``solver.seconds``. Its JSON Schema is committed as ``dse/schemas/plan-2.schema.json``
(plan/2 adds each layer's ``activation`` and, when the KV cache was searched, a ``kv`` entry per
cached K and V tensor; ``dse.plan/1`` files, ``plan-1.schema.json``, are still read);
`load_plan` checks every plan read against it (types, ranges, finite numbers) and that layer
names are unique, and reports every problem in one line. `Plan` is the typed, frozen view the
Python API returns.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from dse.version import __version__
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, dumps, load_json
from dse.device import device_doc, memory_note
from dse.serving import serving_doc

PLAN_SCHEMA = "dse.plan/2"
LAYER_KEYS = ("name", "format", "bits", "params", "error", "latency_s", "energy_j")
#: the JSON Schema of each plan version this release reads (it writes PLAN_SCHEMA)
SCHEMA_FILES = {"dse.plan/1": Path(__file__).parent / "schemas" / "plan-1.schema.json",
                PLAN_SCHEMA: Path(__file__).parent / "schemas" / "plan-2.schema.json"}
#: problems listed in one error line before "and N more"
MAX_PROBLEMS = 6


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
    from dse.precision import activation_doc

    layers = []
    for i, layer in enumerate(prepared.layers):
        f = int(a[i])
        fmt = prepared.formats[f].fallback_for(layer.row)
        layers.append({
            # the format the tool applies (llama.cpp k-quants on rows not a multiple of 256 fall back)
            "name": layer.name, "format": fmt.name,
            "bits": _r(prepared.bits[i, f]),
            "params": int(layer.params), "error": _r(problem.error[i, f]),
            "latency_s": _r(costs.latency_s[i, f]), "energy_j": _r(costs.energy_j[i, f]),
            "memory_bytes": _r(memory[i, f]), "kind": layer.kind, "role": layer.role,
            "block": layer.block, "bound": ("compute", "memory", "other")[int(costs.bound[i, f])],
            "activation": activation_doc(fmt),
        })
    totals = problem.totals(a)
    user_limits = req.limits()[0]
    serving = serving_doc(prepared, problem, a, totals, user_limits)
    totals = {k: _r(v) for k, v in {**totals, **serving["totals"]}.items()}
    kv = kv_entries(prepared, problem, a)
    kv_measured = getattr(getattr(prepared, "kv", None), "measured", False)  # K/V errors measured, not the prior
    if kv:
        totals["kv_cache_bytes"] = _r(sum(e["memory_bytes"] for e in kv))
    solver = {"status": result.status, "gap": _r(result.gap) if np.isfinite(result.gap) else None,
              "seconds": round(float(result.seconds), 6), "objective": _r(result.objective),
              "message": result.message}
    solver.update({k: v for k, v in result.info.items() if isinstance(v, (str, int, float, bool))})
    solved = {k: v for k, v in problem.limits.items() if problem.sources.get(k) != "throughput"}
    limits = {k: _r(v) for k, v in {**solved, **{k: v for k, v in user_limits.items() if k not in solved}}.items()}
    added = problem.sources.get("memory") == "device"
    from dse.diffusion import is_pipeline, pipeline_doc

    pipeline = {"pipeline": pipeline_doc(prepared, layers)} if is_pipeline(prepared.graph) else {}
    return {
        "schema": PLAN_SCHEMA,
        "model": prepared.graph.name,
        "hardware": prepared.hardware.name,
        "workload": workload_doc(prepared),
        "budget": {**budget_doc, "limits": limits, "binding": serving["binding"]},
        "method": req.method,
        "formats": [f.name for f in prepared.formats],
        "totals": totals,
        "fixed": {"memory_bytes": _r(problem.fixed_memory), "latency_s": _r(problem.fixed_latency_s),
                  "energy_j": _r(problem.fixed_energy_j),
                  "note": fixed_note(prepared)},
        "device": {**device_doc(prepared.hardware.spec, prepared.free_memory, added, totals["memory_bytes"]),
                   **({"offload": serving["offload"]} if serving["offload"] else {})},
        "notes": list(prepared.notes) + ([memory_note(prepared.graph.name, prepared.hardware.name,
                                                      prepared.free_memory)] if added else [])
                 + serving["notes"] + kv_note(kv, kv_measured),
        "solver": solver,
        **pipeline,
        **({"kv": kv} if kv else {}),
        "provenance": {"version": __version__, "seed": req.seed, "cost_model": prepared.hardware.cost_model_id,
                       "sensitivity": prepared.sensitivity.source,
                       "sensitivity_is_prior": prepared.sensitivity.source == "prior",
                       "sensitivity_description": prepared.sensitivity.description,
                       "model_source": prepared.graph.source,
                       "hardware_overrides": [f"{k}={_text(v)}" for k, v in req.overrides], "include": list(req.include),
                       "energy_basis": getattr(prepared.hardware, "ENERGY_BASIS", "estimate"),
                       "runtime": (getattr(prepared.hardware, "runtime", None) or {}).get("name"),
                       "target": req.target,
                       **({"activations": [s.removeprefix("-a") or "16" for s in req.activations]}
                          if req.activations else {}),
                       **({"kv_formats": list(req.kv_formats),
                           "kv_sensitivity": "measured" if kv_measured else "prior"}
                          if req.kv_formats else {})},
        "layers": layers,  # last: the summary above reads without scrolling past every layer
    }


def workload_doc(prepared) -> dict:
    """The plan's workload; with the cache searched, its sentence says so instead of naming --kv-bits."""
    import re

    doc = prepared.workload.as_dict()
    if getattr(prepared, "kv", None) is not None:
        doc["description"] = re.sub(r"an? \d+-bit KV cache", "a KV cache searched per K/V tensor",
                                    doc["description"])
    return doc


def kv_note(kv: list, measured: bool = False) -> list:
    """One line for people: the KV formats chosen, K and V apart, the cache's size and where its errors came from."""
    if not kv:
        return []
    from collections import Counter

    parts = []
    for tensor in ("k", "v"):
        counts = Counter(e["format"] for e in kv if e["tensor"] == tensor)
        parts.append(f"{tensor.upper()} " + ", ".join(f"{n} in {c} layers" for n, c in counts.most_common()))
    total = sum(e["memory_bytes"] for e in kv)
    tied = f", {kv[0]['tied']}" if kv[0].get("tied") else " per layer"
    source = "measured K/V errors" if measured else "K/V errors from the data-free prior"
    return [f"KV cache searched{tied}: {'; '.join(parts)}; {total / 1e9:.3f} GB, counted in memory; {source}"]


def kv_entries(prepared, problem, a) -> list:
    """The plan's ``kv``: one entry per cached K / V tensor (rows after the layers), when it was searched."""
    kv = prepared.kv
    if kv is None:
        return []
    L = len(prepared.layers)
    index = {f.name: j for j, f in enumerate(kv.formats)}
    tied = {"kv": "one KV type for the model (the runtime's)", "k,v": "one K type and one V type for the model "
            "(the runtime's)"}.get(kv.scope)
    out = []
    for i, item in enumerate(kv.items):
        j = index[problem.format_names[int(a[L + i])]]
        fmt = kv.formats[j]
        entry = {"name": item.name, "module": item.module, "tensor": item.tensor, "format": fmt.name,
                 "bits": _r(fmt.bits_per_weight(item.head_dim)), "memory_bytes": _r(kv.memory[i, j]),
                 "error": _r(kv.error[i, j]), "latency_s": _r(kv.latency_s[i, j]), "energy_j": _r(kv.energy_j[i, j]),
                 "block": item.block}
        out.append({**entry, "tied": tied} if tied else entry)
    return out


def _text(value) -> str:
    """An override's value as `--set` writes it (true/false, lists comma-separated)."""
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


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
    if attention and getattr(prepared, "kv", None) is not None:
        pass  # the KV cache and the attention that reads it are searched (the plan's kv)
    elif attention:
        w = prepared.workload
        cache = "the KV cache" if w.phase != "forward" else "the keys and values"
        parts.append(f"attention of {attention} layers over the image and text tokens (16-bit)" if w.phase == "denoise"
                     else f"attention of {attention} layers over {cache} ({w.kv_bits}-bit)")
    elif graph.config.get("arch") != "cnn":
        parts.append("no attention (the model source defines none)")
    return ", ".join(parts) + ": not searched" if parts else "nothing: every weight is searched"


def plan_json(plan: dict) -> str:
    """The plan file's text; a document that breaks the schema is never written."""
    check_plan(plan, "plan to write")
    return dumps(plan)


def write_plan(plan: dict, path: str) -> None:
    """Write a plan document atomically (temp file + rename)."""
    atomic_write_text(path, plan_json(plan))


@lru_cache(maxsize=None)
def plan_schema(version: str = PLAN_SCHEMA) -> dict:
    """The committed JSON Schema of a plan version (``dse/schemas/plan-2.schema.json``, ``plan-1``)."""
    return json.loads(SCHEMA_FILES[version].read_text(encoding="utf-8"))


def plan_problems(doc: Any) -> list[str]:
    """Every way `doc` is not a valid plan: the schema's rules, finite numbers, unique layer names."""
    from quantcore.jsoncheck import problems

    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str) or doc["schema"] not in SCHEMA_FILES:
        got = doc.get("schema") if isinstance(doc, dict) else None
        return ['"schema" must be ' + " or ".join(f'"{v}"' for v in reversed(SCHEMA_FILES)) + f", got {got!r}"]
    out = problems(doc, plan_schema(doc["schema"]))
    layers = doc.get("layers")
    if isinstance(layers, list):
        seen: dict = {}
        for i, layer in enumerate(layers):
            name = layer.get("name") if isinstance(layer, dict) else None
            if isinstance(name, str) and name in seen:
                out.append(f"layers[{i}].name {name!r} repeats layers[{seen[name]}]: a layer is listed once")
            elif isinstance(name, str):
                seen[name] = i
    return out


def check_plan(doc: Any, where: str) -> dict:
    """`doc` if it is a valid plan, else one QuantDSEError listing every problem."""
    found = plan_problems(doc)
    if found:
        more = f"; and {len(found) - MAX_PROBLEMS} more" if len(found) > MAX_PROBLEMS else ""
        raise QuantDSEError(f"{where}: {'; '.join(found[:MAX_PROBLEMS])}{more}: "
                            "fix the file or regenerate it with python -m dse.search")
    return doc


def load_plan(path: str) -> dict:
    """Read and validate a plan file; a malformed one is a one-line QuantDSEError naming every problem."""
    return check_plan(load_json(path, "plan"), f"plan {path}")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class PlanLayer:
    """One searched layer of a plan: its format and what it costs.

    :param name: the module name (HF state-dict naming: ``model.layers.0.self_attn.q_proj``).
    :param format: the number format chosen (``int4-g128``; ``python -m dse.formats``).
    :param bits: effective bits per weight of that format on this layer (scales and zero points included).
    :param params: weights in the layer.
    :param error: the sensitivity's error of that choice (lower is better).
    :param latency_s: the layer's predicted latency on the target (seconds).
    :param energy_j: its predicted energy (joules).
    :param extra: the other keys the plan holds for the layer (memory_bytes, kind, role, block, bound, ...).
    """

    name: str
    format: str
    bits: float
    params: int
    error: float
    latency_s: float
    energy_j: float
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in LAYER_KEYS}, **_thaw(self.extra)}


@dataclass(frozen=True)
class Plan:
    """A plan (``dse.plan/2``; ``dse.plan/1`` read too) as a frozen, typed value: what `dse.search` returns.

    ``Plan.from_json(text)`` / ``plan.to_json()`` convert to and from the file other tools read
    (every document is checked against the committed schema); ``plan.save(path)`` writes it
    atomically; ``Plan.load(path)`` reads one. Nested entries are read-only mappings.

    :param model: the model's name.
    :param hardware: the target's name.
    :param totals: effective_bits, memory_bytes, latency_s, energy_j, error (and any totals newer
        writers add): the whole plan, fixed part included.
    :param layers: one `PlanLayer` per searched layer, in model order.
    :param method: the solver that made the plan.
    :param budget: the budget as written and the limits in SI units.
    :param workload: the workload costed.
    :param solver: status, gap, seconds and the solver's own figures.
    :param provenance: version, seed, cost model, sensitivity source and overrides.
    :param extra: every other top-level entry (formats, fixed, device, notes, ...), in file order.
    :param schema: the plan version (``dse.plan/2``, or ``dse.plan/1`` as read).
    :param order: the document's keys in file order (`to_dict` keeps them).
    """

    model: str
    hardware: str
    totals: Mapping[str, float]
    layers: tuple[PlanLayer, ...]
    method: str | None = None
    budget: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    workload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    solver: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    provenance: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    schema: str = PLAN_SCHEMA
    order: tuple[str, ...] = ()  # the keys of the document, in its order (to_dict keeps it)

    _TYPED = ("schema", "model", "hardware", "workload", "budget", "method", "totals", "solver", "provenance",
              "layers")

    @classmethod
    def from_dict(cls, doc: dict, where: str = "plan") -> "Plan":
        """A plan from its JSON document; an invalid one is a one-line QuantDSEError naming every problem."""
        check_plan(doc, where)
        layers = tuple(PlanLayer(**{k: layer[k] for k in LAYER_KEYS},
                                 extra=_freeze({k: v for k, v in layer.items() if k not in LAYER_KEYS}))
                       for layer in doc["layers"])
        return cls(model=doc["model"], hardware=doc["hardware"], totals=_freeze(doc["totals"]), layers=layers,
                   method=doc.get("method"), budget=_freeze(doc.get("budget", {})),
                   workload=_freeze(doc.get("workload", {})), solver=_freeze(doc.get("solver", {})),
                   provenance=_freeze(doc.get("provenance", {})),
                   extra=_freeze({k: v for k, v in doc.items() if k not in cls._TYPED}), schema=doc["schema"],
                   order=tuple(doc))

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """A plan from JSON text (as `to_json` writes it)."""
        from quantcore.io import parse_json

        return cls.from_dict(parse_json(text, "plan"))

    @classmethod
    def load(cls, path: str) -> "Plan":
        """Read and validate a plan file."""
        return cls.from_dict(load_json(path, "plan"), f"plan {path}")

    def to_dict(self) -> dict:
        """The JSON document (a fresh dict: changing it leaves the plan as it is)."""
        values = {"schema": self.schema, "model": self.model, "hardware": self.hardware,
                  "workload": _thaw(self.workload), "budget": _thaw(self.budget), "method": self.method,
                  "totals": _thaw(self.totals), "solver": _thaw(self.solver), "provenance": _thaw(self.provenance),
                  **_thaw(self.extra), "layers": [layer.to_dict() for layer in self.layers]}
        if self.order:  # as read: the same keys in the same order
            return {k: values[k] for k in self.order}
        return {k: v for k, v in values.items() if v not in ({}, None) or k in ("totals", "layers")}

    def to_json(self) -> str:
        """The plan file's text (what `save` writes)."""
        return plan_json(self.to_dict())

    def save(self, path: str) -> None:
        """Write the plan file atomically (temp file + rename)."""
        write_plan(self.to_dict(), path)

    def formats(self) -> dict[str, str]:
        """{layer name: format name}."""
        return {layer.name: layer.format for layer in self.layers}

    def table(self, verbose: bool = False) -> str:
        """The plan for a person, as `python -m dse.show` prints it."""
        return format_table(self.to_dict(), verbose=verbose, steps=[])


def format_table(plan: dict, verbose: bool = False, steps: list[str] | None = None) -> str:
    """The plan for a person (dse.summary): roles folded across blocks; `verbose` adds every layer.

    steps: the next steps, as for dse.summary.format_summary."""
    from dse.summary import format_layers, format_summary

    text = format_summary(plan, steps=steps)
    return f"{format_layers(plan)}\n\n{text}" if verbose else text
