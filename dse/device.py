"""What the target allows: the candidate formats it can run, and the memory left for weights.

Both turn into things the user is told: formats the target cannot run are dropped
from the candidates with a note (and the infeasibility hint does not ask for them),
and when the weights could exceed the device's free memory (capacity minus the KV
cache and activations of the workload) that free memory becomes a memory limit,
unless the spec says `allow_offload` (`--set allow_offload=true`).
"""
from __future__ import annotations

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels.memory import FreeMemory


def _names(formats) -> str:
    return ", ".join(f.name for f in formats)


def runnable(formats: list, costs, hardware, cost_of=None) -> tuple[list[int], tuple, str | None]:
    """(columns of the formats the target runs for at least one layer, the names of the others,
    a note naming them or None).

    cost_of(formats) -> CostTable costs the same layers in other formats; with none of the
    candidates runnable, it finds the catalog formats the target does run, for the error.
    """
    from quantcore.formats import list_formats

    hw_name = hardware.name
    keep = [j for j in range(len(formats)) if costs.supported[:, j].any()]
    dropped = [formats[j] for j in range(len(formats)) if j not in keep]
    if not keep:
        catalog = [f for f in list_formats() if hardware.supports(f) and not f.name.endswith("-asym")]
        if cost_of is not None and catalog:
            table = cost_of(catalog)
            catalog = [f for j, f in enumerate(catalog) if table.supported[:, j].any()]
        raise QuantDSEError(f"{hw_name} cannot run any of the candidate formats ({_names(formats)}): "
                            f"choose --formats it runs: {_names(catalog[:12])}")
    if not dropped:
        return keep, (), None
    note = (f"{hw_name} cannot run {_names(dropped)} (no kernel or datapath for them on this target): "
            f"dropped from the candidates, searching {_names([formats[j] for j in keep])}")
    return keep, tuple(f.name for f in dropped), note


def lower_bit_alternatives(hardware, formats: list, k: int = 4096) -> list[str]:
    """Catalog formats the target runs with fewer bits per weight than every candidate."""
    from quantcore.formats import list_formats

    least = min(f.bits_per_weight(k) for f in formats)
    names = {f.name for f in formats}
    return [f.name for f in list_formats()
            if f.name not in names and f.bits_per_weight(k) < least and hardware.supports(f)]


def infeasible_hint(prepared, problem, kinds: list[str]) -> str:
    """How to fix an infeasible budget, true for this target and these candidates."""
    hw = prepared.hardware.name
    if "memory" in kinds and problem.sources.get("memory") == "device":
        fm = prepared.free_memory
        return (f"{prepared.graph.name} does not fit the {fm.free / 1e9:.2f} GB {hw} leaves for weights even at the "
                f"lowest-bit candidates ({_split(fm)}): use a device with more memory, a smaller --batch/--seq/"
                "--kv-bits, or --set allow_offload=true")
    parts = ["raise the budget"]
    lower = lower_bit_alternatives(prepared.hardware, prepared.formats) if {"bits", "memory"} & set(kinds) else []
    if {"latency", "energy"} & set(kinds):
        parts.append("try other --formats (python -m hwmodels.cost --gemm M,K,N --format F compares them)")
    if lower:
        parts.append(f"allow lower-bit --formats ({', '.join(lower[:3])}{', ...' if len(lower) > 3 else ''} "
                     f"run on {hw})")
    hint = " or ".join(parts)
    if prepared.dropped:
        hint += f" ({', '.join(prepared.dropped)} were dropped: {hw} cannot run them)"
    return hint


def _split(fm: FreeMemory) -> str:
    return (f"{fm.capacity / 1e9:.0f} GB - {fm.kv_cache / 1e9:.2f} GB KV cache - {fm.activations / 1e9:.2f} GB "
            "activations")


def max_weight_bytes(bits: np.ndarray, params: np.ndarray, mask: np.ndarray, fixed: float) -> float:
    """Weight bytes with every layer at its largest allowed candidate, fixed part included."""
    per = np.where(mask, params[:, None] * bits / 8.0, 0.0)
    return float(per.max(axis=1).sum() + fixed)


def bits_memory_bound(limits: dict, largest: float, params: float, fixed: float) -> float:
    """The most weight bytes any plan under `limits` can have: memory is linear in bits, so a bits
    limit caps it at bits x params / 8 + fixed; a memory limit caps it directly."""
    bound = largest
    if "bits" in limits:
        bound = min(bound, float(limits["bits"]) * params / 8.0 + fixed)
    if "memory" in limits:
        bound = min(bound, float(limits["memory"]))
    return bound


def device_memory_limit(hardware, fm: FreeMemory | None, bound: float) -> float | None:
    """The device's free memory as a limit (bytes) where plans could exceed it, else None.

    None where the spec models no memory, where `allow_offload` is set, or where no plan
    under the user's limits can exceed the free memory (the limit would be redundant).
    """
    if fm is None or bool(hardware.spec.get("allow_offload", False)) or bound <= fm.free:
        return None
    if fm.free <= 0:
        raise QuantDSEError(f"{hardware.name}'s {fm.capacity / 1e9:.0f} GB hold no weights after the KV cache "
                            f"({fm.kv_cache / 1e9:.2f} GB) and activations ({fm.activations / 1e9:.2f} GB) of this "
                            "workload: lower --batch, --seq or --kv-bits, or --set allow_offload=true")
    return fm.free


def memory_note(graph_name: str, hw_name: str, fm: FreeMemory) -> str:
    return (f"{graph_name}'s weights can exceed {hw_name}'s memory: added a memory limit of {fm.free / 1e9:.2f} GB "
            f"for the weights ({_split(fm)}); --set allow_offload=true drops it")


def device_doc(spec, fm: FreeMemory | None, limit_added: bool, memory_bytes: float) -> dict:
    """The plan's `device`: capacity, what the workload takes, whether the weights fit, the limit added."""
    if fm is None:
        return {"memory_capacity_bytes": None, "weights_fit": None}
    return {**fm.as_dict(), "weights_fit": bool(memory_bytes <= fm.free * (1 + 1e-9)),
            "memory_limit_added": limit_added, "allow_offload": bool(spec.get("allow_offload", False))}
