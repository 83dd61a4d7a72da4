"""A plan checked against the deployment target that will run it, before its file is written.

- The target's formats (what its file expresses and its kernels load) and its fused modules
  (one format each) are enforced; a layer that breaks them is a one-line error.
- `--nearest` re-solves: the same model, hardware, workload, limits (the binding one included)
  and sensitivity, searched again with `--for TARGET`; before and after are reported, and a limit
  the target's formats cannot meet is the search's own one-line error naming it.
- A plain `--to EXPORTER` (no deployment target) writes what the tool itself applies; where vLLM
  could not load that file as written (a format without a kernel there, a fused module with mixed
  formats), the export says so and names the `--for` target that would.
- The plan is re-costed on the target's runtime (`--set runtime=...` where the hardware has
  runtime profiles); a limit that no longer holds there is reported.
"""
from __future__ import annotations

from quantcore.errors import QuantDSEError
from dse.export.base import _provenance, model_reference


def deployment_for(to: str, plan: dict) -> str | None:
    """The deployment target whose rules apply to `--to to` (None: the exporter's own formats only)."""
    from dse.export.targets import TARGETS

    from dse.export import TARGETS as EXPORTERS

    planned = _provenance(plan).get("target")
    if planned in TARGETS and TARGETS[planned].export == (TARGETS[to].export if to in TARGETS else to):
        return planned
    if to in TARGETS and (to not in EXPORTERS or not TARGETS[to].formats):  # llamacpp: its rules are the file's
        return to
    return None


def request_from_plan(plan: dict, path: str, deploy: str | None, formats=None):
    """The SearchRequest that made `plan` (model, hardware, workload, limits, sensitivity, seed), for `deploy`."""
    from dse.budget import budget_from_text
    from dse.pipeline import SearchRequest
    from hwmodels.workload import Workload

    prov = _provenance(plan)
    model = model_reference(plan, path)
    budget = plan.get("budget", {})
    limits = dict(budget.get("limits", {}))
    if plan.get("device", {}).get("memory_limit_added"):
        limits.pop("memory", None)
    w = plan.get("workload", {})
    overrides = _overrides(prov)
    text = budget.get("text")
    others = {k: v for k, v in limits.items() if k != budget.get("kind")}
    sens = prov.get("sensitivity")
    return SearchRequest(
        hw=plan["hardware"], model=model, budget=budget_from_text(text) if text else None, method=plan.get("method", "ilp")
        if plan.get("method") in ("ilp", "lagrangian", "greedy") else "ilp",
        sensitivity=sens if sens in ("weights", "prior") else None,
        workload=Workload.unset(phase=w.get("phase") if w.get("phase") != "forward" else None, batch=w.get("batch"),
                                seq=w.get("seq"), kv_bits=w.get("kv_bits")),
        formats=formats,
        max_latency_ms=others["latency"] * 1e3 if "latency" in others else None,
        max_energy_mj=others["energy"] * 1e3 if "energy" in others else None,
        max_memory_gb=others["memory"] / 1e9 if "memory" in others else None,
        overrides=overrides, seed=int(prov.get("seed", 0)), include=tuple(prov.get("include", ())), target=deploy)


def _overrides(prov: dict) -> dict:
    """The plan's hardware overrides (``--set`` text, as the plan records them) but its runtime, as a dict."""
    pairs = (str(item).partition("=") for item in prov.get("hardware_overrides", ()))
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip() != "runtime"}


def resolve_nearest(plan: dict, path: str, deploy: str | None, export_formats, embeddings: bool = True) -> tuple[dict, list]:
    """(the plan re-searched for `deploy` (or with the exporter's formats), [Change] per layer whose format moved).

    embeddings: whether the tool quantizes embedding tables; if not, a searched embedding leaves the
    search and stays 16-bit (a change to fp16)."""
    import dataclasses

    from dse.export.base import Change, same_quantizer
    from dse.search import search
    from quantcore.formats import get_format

    request = request_from_plan(plan, path, deploy, None if deploy else tuple(export_formats))
    if not embeddings:
        request = dataclasses.replace(request, include=tuple(i for i in request.include if i != "embeddings"))
    try:
        new = search(request)
    except QuantDSEError as exc:
        from dse.export.targets import get_target

        runtime = f" (costed on the {get_target(deploy).runtime} runtime where {plan['hardware']} has runtimes)" \
            if deploy else ""
        raise QuantDSEError(f"--nearest re-search for {deploy or 'the exporter'}{runtime}: {exc}") from None
    after = {l["name"]: l for l in new["layers"]}
    changes = []
    for l in plan["layers"]:
        n = after.get(l["name"])
        if n is None:  # left the search: kept at 16 bits as a fixed weight
            changes.append(Change(l["name"], l["format"], "fp16", "re-searched", l["bits"], 16.0, l["error"], 0.0))
        elif n["format"] != l["format"]:
            same = same_quantizer(get_format(l["format"]), get_format(n["format"]))
            changes.append(Change(l["name"], l["format"], n["format"], "storage" if same else "re-searched",
                                  l["bits"], n["bits"], l["error"], n["error"]))
    return new, changes


def recost(plan: dict, path: str, deploy: str) -> list[str]:
    """Notes on the plan's totals under `deploy`'s runtime, where that differs from the plan's."""
    from dse.export.targets import get_target
    from dse.pipeline import prepare
    from hwmodels.registry import load_model
    import numpy as np

    runtime = get_target(deploy).runtime
    prov = _provenance(plan)
    if prov.get("runtime") in (None, runtime) or not hasattr(load_model(plan["hardware"], []), "runtime"):
        return []
    names = list(dict.fromkeys(l["format"] for l in plan["layers"]))
    request = request_from_plan(plan, path, None, tuple(names))
    import dataclasses

    request = dataclasses.replace(request, sensitivity="prior", overrides={**dict(request.overrides), "runtime": runtime})
    prepared = prepare(request)
    limits = {k: v for k, v in plan.get("budget", {}).get("limits", {}).items()}
    problem = prepared.problem(limits)
    index = {f.name: j for j, f in enumerate(prepared.formats)}
    try:
        assignment = np.array([index[l["format"]] for l in plan["layers"]])
    except KeyError:
        return []
    totals = problem.totals(assignment)
    notes = [f"re-costed on the {runtime} runtime (the plan was costed on {prov.get('runtime')}): latency "
             f"{plan['totals']['latency_s'] * 1e3:.4g} -> {totals['latency_s'] * 1e3:.4g} ms, energy "
             f"{plan['totals']['energy_j'] * 1e3:.4g} -> {totals['energy_j'] * 1e3:.4g} mJ"]
    for broken in problem.violations(assignment):
        kind = broken.split(":")[0]
        notes.append(f"the {kind} limit no longer holds on {runtime}: re-search with --for {deploy} "
                     f"(or export with --nearest)")
    return notes


def serving_notes(export, exporter: str) -> list[str]:
    """Notes on a plain `--to exporter` file that vLLM could not load as written (formats without a
    kernel there, fused modules with mixed formats), each naming the deployment target that fixes it."""
    from dse.export import TARGETS as EXPORTERS
    from dse.export.targets import TARGETS, fused_key

    notes = []
    for target in TARGETS.values():
        if target.export != exporter or target.runtime != "vllm":
            continue
        no_kernel = [l for l in export.layers if target.formats and l.format.name not in target.formats]
        groups: dict = {}
        for l in export.layers:
            key = fused_key(l.name, target.fuse)
            if key is not None:
                groups.setdefault(key, set()).add(l.format.name)
        mixed = [(head, kind, sorted(names)) for (head, kind), names in groups.items() if len(names) > 1]
        if not no_kernel and not mixed:
            continue
        parts = []
        if no_kernel:
            first = no_kernel[0]
            parts.append(f"{len(no_kernel)} layers in formats it has no kernel for (e.g. {first.name}: "
                         f"{first.format.name})")
        if mixed:
            head, kind, names = mixed[0]
            parts.append(f"{len(mixed)} fused modules with mixed formats (e.g. {head} {kind}: {', '.join(names)})")
        fix = f"search with --for {target.name}" if target.name in EXPORTERS else \
            f"export with --to {target.name} --nearest (or search with --for {target.name})"
        notes.append(f"vLLM cannot load this file as written: {' and '.join(parts)}; to serve it on vLLM, {fix}")
    return notes
