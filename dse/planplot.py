"""A plan as a figure: bits per layer, and where the latency and energy go (by role, plus the fixed part)."""
from __future__ import annotations

import numpy as np

from dse.figures import new_figure
from dse.summary import roles, workload_text


def plan_figure(plan: dict):
    """Three panels: effective bits of every layer in plan order (coloured by format), latency by role
    in ms and energy by role in mJ (the fixed part, not searched, as its own bar)."""
    layers = plan["layers"]
    fig = new_figure(figsize=(10, 7.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.1))
    ax = fig.add_subplot(grid[0, :])
    formats = list(dict.fromkeys(l["format"] for l in sorted(layers, key=lambda l: l["bits"])))
    colors = {f: f"C{i % 10}" for i, f in enumerate(formats)}
    x = np.arange(len(layers))
    bits = np.array([l["bits"] for l in layers], dtype=float)
    for f in formats:
        sel = np.array([l["format"] == f for l in layers])
        ax.bar(x[sel], bits[sel], width=1.0, color=colors[f], label=f)
    blocks = [l.get("block") for l in layers]
    starts = [i for i in range(1, len(layers)) if blocks[i] != blocks[i - 1] and blocks[i] is not None]
    for i in starts:
        ax.axvline(i - 0.5, color="0.85", lw=0.5, zorder=0)
    ax.axhline(plan["totals"]["effective_bits"], color="k", ls="--", lw=1,
               label=f"average {plan['totals']['effective_bits']:.3f}")
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_ylim(0, max(bits.max(), plan["totals"]["effective_bits"]) * 1.3)
    ax.set_xlabel("layer (plan order" + ("; grey lines: block boundaries)" if starts else ")"))
    ax.set_ylabel("effective bits per weight")
    ax.legend(ncols=min(len(formats) + 1, 6), fontsize="small", loc="upper left")
    fig.suptitle(f"{plan['model']} on {plan['hardware']}: {workload_text(plan.get('workload', {}))}, "
                 f"budget {plan.get('budget', {}).get('text', '?')}")

    names, latency, energy = _by_role(plan)
    for col, values, unit, what in ((0, latency * 1e3, "ms", "latency"), (1, energy * 1e3, "mJ", "energy")):
        axr = fig.add_subplot(grid[1, col])
        y = np.arange(len(names))
        axr.barh(y, values, color=["0.6" if n == "fixed (not searched)" else "C0" for n in names])
        axr.set_yticks(y, names, fontsize="small")
        axr.invert_yaxis()
        total = values.sum()
        axr.set_xlabel(f"{what} ({unit}), total {total:.3g} {unit}" if total < 1000 else
                       f"{what} ({unit}), total {total:,.0f} {unit}")
        axr.set_title(f"{what} by role", fontsize="medium")
    return fig


def _by_role(plan: dict):
    names, latency, energy = [], [], []
    for role in roles(plan["layers"]):
        names.append(role.label)
        latency.append(sum(l["latency_s"] for l in role.layers))
        energy.append(sum(l["energy_j"] for l in role.layers))
    fixed = plan.get("fixed", {})
    if fixed.get("latency_s") or fixed.get("energy_j"):
        names.append("fixed (not searched)")
        latency.append(float(fixed.get("latency_s") or 0.0))
        energy.append(float(fixed.get("energy_j") or 0.0))
    return names, np.array(latency), np.array(energy)
