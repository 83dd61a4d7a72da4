"""`python -m dse.compare PLAN PLAN ...`: plans side by side (totals, formats per role, where they differ).

    python -m dse.compare plan-a100-80gb.json plan-u280.json
    python -m dse.search --hw a100-80gb,u280,rtx4090 --budget 3.7bits     # the same, searched here

Plans are matched layer by layer by name and role by role (dse.summary's roles:
names with their integer parts blanked out). A plan that differs from the first in
any layer is marked; when every plan picks the same format for every layer, and the
budget is in bits (it bounds size, which no target changes), it says so.
"""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import dumps, safe_name
from quantcore.limits import check_cap
from dse.budget import SHOWN_UNITS
from dse.summary import roles, workload_text

#: totals rows: (label, key, factor, digits), in the units of dse.budget.SHOWN_UNITS
TOTAL_ROWS = [(label.format(s.unit), s.key, s.factor, digits) for s, label, digits in (
    (SHOWN_UNITS["bits"], "{}/weight", ".3f"), (SHOWN_UNITS["memory"], "memory {}", ".3f"),
    (SHOWN_UNITS["latency"], "latency {}", ".3f"), (SHOWN_UNITS["energy"], "energy {}", ".2f"))]
TOTAL_ROWS.append(("error", "error", 1.0, ".4g"))
#: serving rows, shown where any plan has them (decoder LLMs; TTFT and TPOT for whole requests)
SERVING_ROWS = [("tokens/s", "tokens_per_s", 1.0, ",.1f"), ("TTFT ms", "ttft_s", 1e3, ".3f"),
                ("TPOT ms", "tpot_s", 1e3, ".3f")]


def labels_for(plans: list[dict], names: list[str] | None = None) -> list[str]:
    """Column names: the hardware if the plans differ in it, else the model, else the file names."""
    for key in ("hardware", "model"):
        values = [str(p.get(key)) for p in plans]
        if len(set(values)) == len(values):
            return values
    if names and len(set(names)) == len(names):
        return names
    return [f"plan {i + 1}" for i in range(len(plans))]


def compare(plans: list[dict], labels: list[str]) -> dict:
    """The comparison as a document (what `--json` prints): totals, roles, layers that differ."""
    formats = [{l["name"]: l["format"] for l in p["layers"]} for p in plans]
    weights = {l["name"]: l["params"] for p in plans for l in p["layers"]}
    differ = []
    for label, f in zip(labels[1:], formats[1:]):
        both = set(formats[0]) | set(f)  # layers of either plan; a layer only one plan has differs
        names = [n for n in both if formats[0].get(n) != f.get(n)]
        differ.append({"plan": label, "layers": len(names),
                       "weight_share": sum(weights[n] for n in names) / (sum(weights[n] for n in both) or 1)})
    by_plan = [{r.template: r for r in roles(p["layers"])} for p in plans]
    templates = list(dict.fromkeys(t for rs in by_plan for t in rs))
    role_rows = []
    for t in templates:
        cells, label = {}, t
        for name, rs in zip(labels, by_plan):
            role = rs.get(t)
            if role is None:
                cells[name] = None
                continue
            label = role.label
            cells[name] = {"format": role.majority(), "uniform": len({l["format"] for l in role.layers}) == 1}
        per_layer = {tuple(f.get(l["name"]) for f in formats) for rs in by_plan if t in rs for l in rs[t].layers}
        role_rows.append({"role": label, "template": t, "formats": cells,
                          "differs": any(len(set(v)) > 1 for v in per_layer)})
    same = all(d["layers"] == 0 for d in differ)
    budgets = [p.get("budget", {}) for p in plans]
    return {
        "plans": labels,
        "models": [p.get("model") for p in plans], "hardware": [p.get("hardware") for p in plans],
        "workloads": [p.get("workload") for p in plans], "budgets": [b.get("text") for b in budgets],
        "totals": {label: p["totals"] for label, p in zip(labels, plans)},
        "status": {label: p.get("solver", {}).get("status") for label, p in zip(labels, plans)},
        "roles": role_rows,
        "differ_from_first": differ,
        "same_formats": same,
        "bits_budget": all(b.get("kind") == "bits" for b in budgets),
    }


def format_comparison(doc: dict) -> str:
    labels = doc["plans"]
    width = max(12, *(len(lab) for lab in labels))
    role_width = max([11] + [len(r["role"]) for r in doc["roles"]])

    def row(name: str, cells: list[str], mark: str = "") -> str:
        return (f"  {name:{role_width}s}  " + "  ".join(f"{c:{width}s}" for c in cells) + mark).rstrip()

    shared = [(key, vals[0]) for key, vals in (("model", doc["models"]), ("hardware", doc["hardware"]),
                                                ("budget", doc["budgets"])) if len(set(map(str, vals))) == 1]
    loads = {workload_text(w or {}) for w in doc["workloads"]}
    lines = [f"{len(labels)} plans" + "".join(f", {k} {v}" for k, v in shared)
             + (f", {loads.pop()}" if len(loads) == 1 else "")]
    lines.append(row("", labels))
    for key, vals in (("model", doc["models"]), ("budget", doc["budgets"])):
        if len(set(map(str, vals))) > 1:
            lines.append(row(key, [str(v) for v in vals]))
    if len({workload_text(w or {}) for w in doc["workloads"]}) > 1:
        for i, w in enumerate(doc["workloads"]):
            lines.append(f"  workload of {labels[i]}: {workload_text(w or {})}")
    for name, key, factor, digits in TOTAL_ROWS:
        lines.append(row(name, [format(doc["totals"][lab][key] * factor, digits) for lab in labels]))
    requests = any((w or {}).get("phase") == "generate" for w in doc["workloads"])
    for name, key, factor, digits in SERVING_ROWS:  # TTFT / TPOT of a single pass are its latency: requests only
        values = [doc["totals"][lab].get(key) for lab in labels]
        if any(isinstance(v, (int, float)) for v in values) and (key == "tokens_per_s" or requests):
            lines.append(row(name, [format(v * factor, digits) if isinstance(v, (int, float)) else "-" for v in values]))
    lines.append(row("status", [str(doc["status"][lab]) for lab in labels]))
    lines += ["", "formats by role (majority by weights; * = mixed within the role; <- = the plans differ)"]
    for r in doc["roles"]:
        cells = ["-" if r["formats"][lab] is None else
                 r["formats"][lab]["format"] + ("" if r["formats"][lab]["uniform"] else "*") for lab in labels]
        lines.append(row(r["role"], cells, "  <-" if r["differs"] else ""))
    lines.append("")
    if doc["same_formats"]:
        why = (": a bits budget bounds the size of the weights, which does not depend on the target; "
               "give a latency (12ms) or energy (5mJ) budget to let the hardware choose"
               if doc["bits_budget"] and len(set(doc["hardware"])) > 1 else "")
        lines += textwrap.wrap(f"every plan picks the same format for every layer{why}", width=96,
                               subsequent_indent="  ")
    else:
        for d in doc["differ_from_first"]:
            lines.append(f"{d['plan']} differs from {labels[0]} in {d['layers']} layers "
                         f"({100 * d['weight_share']:.1f} % of the weights)")
    return "\n".join(lines)


def target_path(out: str, hardware: str) -> str:
    """plan.json + u280 -> plan-u280.json (one file per target of a multi-target search).

    The target's name comes from its spec file, which anyone may write: it is made a plain file
    name first (`safe_name`), so `../x` or a NUL byte cannot move the file out of --out's folder."""
    path = Path(out)
    return str(path.with_name(f"{path.stem}-{safe_name(hardware)}{path.suffix or '.json'}"))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.compare", description=__doc__.split("\n")[0])
    p.add_argument("plans", nargs="+", metavar="PLAN", help="plan files written by dse.search --out (two or more)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON on stdout")
    return p


def main(argv=None) -> int:
    from dse.plan import load_plan

    args = build_parser().parse_args(argv)
    if len(args.plans) < 2:
        raise QuantDSEError("give two or more plan files to compare: python -m dse.show shows one")
    check_cap("plans", len(args.plans), "plan files")
    plans = [load_plan(path) for path in args.plans]
    names = [os.path.splitext(os.path.basename(path))[0] for path in args.plans]
    doc = compare(plans, labels_for(plans, names))
    sys.stdout.write(dumps(doc) if args.json else format_comparison(doc) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
