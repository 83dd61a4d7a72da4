"""What every exporter shares: the plan read against its model, the formats a target can
express (exact, storage alias, or nearest), and compact regex alternations over layer names.

A plan names a format per HF module. An exporter declares `FORMATS`, the formats its tool
writes exactly (bits counted as the tool stores them), and turns an `Export` into text.
A plan format outside that set is resolved here, once, for every target:

- a *storage alias*: the same quantizer with another bit count (``int4-g128`` for GPTQModel,
  which also stores a packed 4-bit zero point: ``int4-g128-qz``) maps without asking; the
  export reports the change in bits.
- otherwise the *nearest* format the target supports (closest effective bits at the layer's
  row length, ties to the wider format, same activation precision first) -- only with
  ``--nearest``; without it the export stops with a one-line error naming the layer, its
  format and that nearest format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.formats import Format, get_format


@dataclass
class ExportLayer:
    """One searched layer as it leaves the plan: the model's Layer and the format to write."""

    layer: object  # quantcore.models.graph.Layer
    planned: Format
    format: Format
    planned_error: float
    error: float

    @property
    def name(self) -> str:
        return self.layer.name


@dataclass
class Change:
    """A layer whose written format differs from its planned one, and what that costs."""

    layer: str
    planned: str
    written: str
    reason: str  # "storage", "nearest" or "moe-fold"
    bits_before: float
    bits_after: float
    error_before: float
    error_after: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Export:
    """A plan resolved for one target: what to write and what changed on the way."""

    plan: dict
    graph: object
    target: str
    layers: list
    estimate: ErrorEstimator  # errors of formats the plan did not price (remapped or folded layers)
    changes: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def need(package: str, target: str):
    """Import an optional package an exporter needs, or say how to install it (one line)."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise QuantDSEError(f"--to {target} needs the {package} package: pip install 'quantdse[export]'") from None


def model_reference(plan: dict, path: str) -> str:
    """What the plan's model is read from: its catalog name, or the config / checkpoint it was searched
    on, which must lie inside the plan's own folder (a plan is untrusted input: it may not point the
    tool at any other file)."""
    import os
    from pathlib import Path

    from quantcore.io import path_inside
    from quantcore.models.registry import list_catalog

    kind, _, where = str(_provenance(plan).get("model_source", "catalog")).partition(":")
    where = where.removesuffix(" (installed package)")
    in_catalog = isinstance(plan["model"], str) and plan["model"] in list_catalog()
    if in_catalog or not where or kind not in ("config", "safetensors", "diffusers", "diffusers+safetensors"):
        return plan["model"]
    folder = Path(path).parent
    inside = os.path.relpath(os.path.realpath(where), os.path.realpath(folder)) if Path(where).is_absolute() else where
    return str(path_inside(inside, folder, f"plan {path}: provenance.model_source"))


def plan_graph(plan: dict, path: str):
    """The LayerGraph the plan was searched on (catalog name, config or safetensors source)."""
    from quantcore.models import load_graph

    target = model_reference(plan, path)
    try:
        return load_graph(target)
    except QuantDSEError as exc:
        raise QuantDSEError(f"plan {path}: cannot load its model {plan['model']!r} ({exc})") from None


def _provenance(plan: dict) -> dict:
    prov = plan.get("provenance")
    return prov if isinstance(prov, dict) else {}


def match_plan(plan: dict, graph, path: str) -> list:
    """[(Layer, planned Format, error)] in model order; a plan for another model is an error."""
    by_name = {l.name: l for l in graph.layers}
    out = []
    for entry in plan["layers"]:
        name = entry["name"]
        layer = by_name.get(name) if isinstance(name, str) else None
        if layer is None:
            raise QuantDSEError(f"plan {path}: layer {name} is not in model {graph.name}: the plan is for another "
                                "model; export the plan searched on this model (python -m dse.search --model ...)")
        if layer.params != entry["params"] or isinstance(entry["params"], bool):
            raise QuantDSEError(f"plan {path}: layer {name} has {entry['params']} params in the plan but "
                                f"{layer.params} in model {graph.name}: the plan is for another model")
        error = entry.get("error")
        if error is not None and (isinstance(error, bool) or not isinstance(error, (int, float))):
            raise QuantDSEError(f"plan {path}: error of layer {name} must be a number, got {error!r}: regenerate the plan")
        try:
            fmt = get_format(entry["format"])
        except QuantDSEError as exc:
            raise QuantDSEError(f"plan {path}: layer {name}: {exc}") from None
        out.append((layer, fmt, float(error) if error is not None else float("nan")))
    return out


def same_quantizer(a: Format, b: Format) -> bool:
    """Same grid, grouping and symmetry: the two differ only in how their bits are counted."""
    return (a.family, a.weight_bits, a.group_size, a.symmetric, a.element, a.act_bits, a.block_size) == \
        (b.family, b.weight_bits, b.group_size, b.symmetric, b.element, b.act_bits, b.block_size)


def nearest_format(fmt: Format, k: int, supported: list) -> Format:
    """The supported format closest in effective bits at row length k (same activation bits first;
    on a tie: a format used as is before one llama.cpp replaces at this k, then the same symmetry
    (q4_k's mins -> an asymmetric int), then the wider one, then the target's own order)."""
    pool = [f for f in supported if f.act_bits == fmt.act_bits] or list(supported)
    target = fmt.bits_per_weight(k)
    order = {f.name: i for i, f in enumerate(pool)}
    return min(pool, key=lambda f: (abs(f.bits_per_weight(k) - target), f.fallback_for(k) is not f,
                                    f.symmetric != fmt.symmetric, -f.bits_per_weight(k), order[f.name]))


class ErrorEstimator:
    """Errors of layers in formats the plan did not price: the plan's own source when possible
    (the model's real weights), else the data-free prior; `source` says which."""

    def __init__(self, plan: dict, graph):
        self.graph = graph
        wanted = _provenance(plan).get("sensitivity", "prior")
        self.source = "weights" if wanted == "weights" and graph.weights is not None else "prior"
        self._cache: dict = {}

    def __call__(self, layer, fmt: Format) -> float:
        key = (layer.name, fmt.name)
        if key not in self._cache:
            from dse.sensitivity import prior_errors, weight_errors

            if self.source == "weights":
                value = weight_errors(self.graph, [layer], [fmt])
            else:
                value = prior_errors([layer], [fmt])
            self._cache[key] = float(value[0, 0])
        return self._cache[key]


def resolve(plan: dict, path: str, target: str, supported: list, nearest: bool, embeddings: bool = False,
            deploy: str | None = None) -> Export:
    """Match the plan to its model and give every layer a format `target` writes.

    embeddings: whether the target quantizes embedding tables (llama.cpp does; the others quantize
    linear layers only, so an embedding can only stay 16-bit there).
    """
    graph = plan_graph(plan, path)
    matched = match_plan(plan, graph, path)
    estimate = ErrorEstimator(plan, graph)
    dense = [f for f in supported if not f.is_quantized]
    names, dense_names = {f.name for f in supported}, {f.name for f in dense}
    layers, changes = [], []
    for layer, fmt, error in matched:
        pool, pool_names = (supported, names) if embeddings or layer.kind != "embedding" else (dense, dense_names)
        written, reason = fmt, ""
        if fmt.name not in pool_names:
            alias = [f for f in pool if same_quantizer(f, fmt)]
            if alias:
                written, reason = alias[0], "storage"
            else:
                near = nearest_format(fmt, layer.row, pool)
                if not nearest:
                    what = (f"does not quantize embeddings ({fmt.name})" if pool is dense
                            else f"cannot express {fmt.name}")
                    who = deploy or target
                    raise QuantDSEError(f"layer {layer.name}: {who} {what}; nearest it supports is {near.name}: "
                                        f"search with --for {who}, or pass --nearest to re-search under the "
                                        "plan's limits" if deploy else
                                        f"layer {layer.name}: {target} {what}; nearest it supports is {near.name}: "
                                        f"pass --nearest to map it, or search with --formats-for {target}")
                written, reason = near, "nearest"
        new_error = error if reason in ("", "storage") else estimate(layer, written)
        if reason:
            k = layer.row
            changes.append(Change(layer.name, fmt.name, written.name, reason, fmt.bits_per_weight(k),
                                  written.bits_per_weight(k), error, new_error))
        layers.append(ExportLayer(layer, fmt, written, error, new_error))
    export = Export(plan, graph, target, layers, estimate, changes)
    if any(c.reason == "nearest" for c in changes):
        export.notes.append(f"errors of remapped layers: {estimate.source} estimate")
    return export


def summary(export: Export) -> dict:
    """Plan-level effect of the changes: effective bits (searched layers) and total error, before and after."""
    params = np.array([l.layer.params for l in export.layers], dtype=np.float64)
    k = [l.layer.row for l in export.layers]
    before = np.array([l.planned.bits_per_weight(kk) for l, kk in zip(export.layers, k)])
    after = np.array([l.format.bits_per_weight(kk) for l, kk in zip(export.layers, k)])
    err_before = float(np.nansum([l.planned_error for l in export.layers]))
    err_after = float(np.nansum([l.error for l in export.layers]))
    return {"layers": len(export.layers), "changed": len(export.changes),
            "effective_bits_before": float(params @ before / params.sum()),
            "effective_bits_after": float(params @ after / params.sum()),
            "error_before": err_before, "error_after": err_after}


# ---------------------------------------------------------------- name patterns

def grouped_pattern(names: list, universe=None) -> list:
    """Anchored regexes matching exactly `names` among `universe` (all names of that namespace), compact.

    Names that differ only in their first integer path component (the block index) share one
    alternation, ``^blk\\.(0|1|5)\\.attn_q\\.weight$``; when they cover every block in which
    `universe` has that name, the index becomes ``\\d+``; names over the same blocks share one rule,
    ``^blk\\.\\d+(\\.attn_k\\.weight|\\.attn_v\\.weight)$``.
    """
    present: dict = {}
    for name in (universe or ()):
        m = _BLOCK_RE.search(name)
        if m is not None:
            present.setdefault((name[:m.start(1)], name[m.end(1):]), set()).add(int(m.group(1)))
    groups: dict = {}
    singles = []
    for name in names:
        m = _BLOCK_RE.search(name)
        if m is None:
            singles.append(name)
            continue
        groups.setdefault((name[:m.start(1)], name[m.end(1):]), set()).add(int(m.group(1)))
    out = [f"^{re.escape(n)}$" for n in singles]
    tails: dict = {}  # (head, block alternation) -> tails: kinds over the same blocks share one rule
    for (head, tail), blocks in groups.items():
        blocks = sorted(blocks)
        if len(blocks) > 1 and set(blocks) == present.get((head, tail)):
            alt = r"\d+"
        elif len(blocks) == 1:
            alt = str(blocks[0])
        else:
            alt = "(" + "|".join(map(str, blocks)) + ")"
        tails.setdefault((head, alt), []).append(tail)
    for (head, alt), ends in tails.items():
        end = re.escape(ends[0]) if len(ends) == 1 else "(" + "|".join(map(re.escape, ends)) + ")"
        out.append(f"^{re.escape(head)}{alt}{end}$")
    return out


_BLOCK_RE = re.compile(r"(?:^|\.)(\d+)(?=\.)")


def by_format(export: Export) -> dict:
    """{format name: [layer names]} in first-seen order."""
    out: dict = {}
    for l in export.layers:
        out.setdefault(l.format.name, []).append(l.name)
    return out


def dominant_format(export: Export, quantized_only: bool = True) -> Format | None:
    """The format holding the most parameters (the natural default of a config file)."""
    weight: dict = {}
    for l in export.layers:
        if quantized_only and not l.format.is_quantized:
            continue
        weight[l.format.name] = weight.get(l.format.name, 0) + l.layer.params
    if not weight:
        return None
    return get_format(max(weight, key=lambda n: (weight[n], n)))




# ---------------------------------------------------------------- deployment rules

#: exporters tried, in order, for a plan made without --for (the first that writes it as it is)
SUGGESTED = ("compressed-tensors", "gptqmodel", "llamacpp", "autoround", "modelopt")
#: exporters whose files are loaded by a runtime that fuses q/k/v and gate/up (vLLM; llm-compressor's
#: oneshot asserts one scheme per fused group)
FUSING = {"compressed-tensors": "vllm-compressed-tensors", "llmcompressor": "llmcompressor", "modelopt": "modelopt"}


def writes_as_is(module, layers: list) -> bool:
    """Whether `module` writes every plan layer ({"format", "kind"}) exactly or as a storage alias."""
    supported = [get_format(f) for f in module.FORMATS]
    names = {f.name for f in supported}
    embeddings = getattr(module, "EMBEDDINGS", False)
    for entry in layers:
        fmt = get_format(entry["format"])
        if entry.get("kind") == "embedding" and not embeddings:
            if fmt.is_quantized:
                return False
            continue
        if fmt.name not in names and not any(same_quantizer(f, fmt) for f in supported):
            return False
    return True


def export_for(plan: dict) -> str | None:
    """The `--to` that writes this plan without --nearest: its deployment target, else the first of SUGGESTED."""
    from dse.export import target_module

    target = _provenance(plan).get("target")
    if isinstance(target, str) and target:
        return target
    # a text-to-image pipeline's low-rank W4A4 formats are SVDQuant's: its Nunchaku export comes first
    for name in (("nunchaku",) if plan.get("pipeline") else ()) + SUGGESTED:
        if writes_as_is(target_module(name), plan.get("layers", [])):
            return name
    return None


def check_fused(export: Export, deploy: str, only=None) -> None:
    """Layers the runtime loads as one module must have one format: else a one-line error naming them.

    only: format names; when given, only groups with a member in one of them are checked."""
    from dse.export.targets import fused_key, get_target

    fuse = get_target(deploy).fuse
    groups: dict = {}
    for l in export.layers:
        key = fused_key(l.name, fuse)
        if key is not None:
            groups.setdefault(key, []).append(l)
    for (head, kind), members in groups.items():
        formats = sorted({l.format.name for l in members})
        if len(formats) > 1 and (only is None or set(formats) & set(only)):
            raise QuantDSEError(
                f"layer {members[0].name}: {deploy} loads {', '.join(l.name[len(head) + 1:] for l in members[:4])}"
                f"{' ...' if len(members) > 4 else ''} of {head} as one fused module ({kind}) but the plan gives "
                f"{', '.join(formats)}: search with --for {deploy} (one format per fused module), or pass --nearest")
