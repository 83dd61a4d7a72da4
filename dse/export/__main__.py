"""`python -m dse.export --plan PLAN --to TARGET [--out PATH] [--nearest] [--json]`.

Writes the file the target quantizer reads (atomically; nothing on bad input). Without --out
the file goes to stdout and the summary to stderr.
"""
from __future__ import annotations

import sys

from quantcore.cli import ArgumentParser, run_cli
from quantcore.io import atomic_write_text, dumps
from dse.export import TARGETS, target_module
from dse.export.base import resolve, summary
from dse.plan import load_plan

_SHOWN = 8


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.export", description=__doc__.split("\n")[0].strip("`"))
    p.add_argument("--plan", help="plan.json from python -m dse.search --out")
    p.add_argument("--to", help=f"exporter ({', '.join(TARGETS)}) or deployment target (as dse.search --for)")
    p.add_argument("--out", help="write the file here (default: stdout)")
    p.add_argument("--nearest", action="store_true",
                   help="re-search the plan under its own limits with the formats the target deploys, and report "
                        "before/after (a limit it cannot meet is an error)")
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    p.add_argument("--list-formats", metavar="TARGET", help="print the formats TARGET writes exactly, and exit")
    return p


def _text(content) -> str:
    return content if isinstance(content, str) else dumps(content)


def _report(export, out, extras) -> dict:
    return {"target": export.target, "plan_model": export.plan["model"], "out": out,
            "command": extras.get("command", "").replace("{out}", out or "FILE") or None,
            "summary": summary(export), "changes": [c.as_dict() for c in export.changes], "notes": export.notes}


def _human(report: dict) -> str:
    s = report["summary"]
    lines = [f"{report['target']}: {s['layers']} layers of {report['plan_model']}"
             + (f" written to {report['out']}" if report["out"] else "")]
    if report["command"]:
        lines.append(f"run: {report['command']}")
    changes = report["changes"]
    if changes:
        lines.append(f"{len(changes)} layers written in another format: effective bits "
                     f"{s['effective_bits_before']:.4f} -> {s['effective_bits_after']:.4f}, error "
                     f"{s['error_before']:.6g} -> {s['error_after']:.6g}")
        for c in changes[:_SHOWN]:
            lines.append(f"  {c['layer']}: {c['planned']} -> {c['written']} ({c['reason']}), bits "
                         f"{c['bits_before']:.4f} -> {c['bits_after']:.4f}, error {c['error_before']:.4g} -> "
                         f"{c['error_after']:.4g}")
        if len(changes) > _SHOWN:
            lines.append(f"  ... and {len(changes) - _SHOWN} more (--json lists all)")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def _before(export, original: dict, moved: list) -> None:
    """After a re-search: each layer's planned format and error are the original plan's, and every
    layer whose format moved is a change (the exporter's own storage changes follow)."""
    from quantcore.formats import get_format

    first = {l["name"]: l for l in original["layers"]}
    for l in export.layers:
        if l.name in first:
            l.planned, l.planned_error = get_format(first[l.name]["format"]), float(first[l.name]["error"])
    export.changes[:0] = moved


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_formats:
        from dse.export.targets import TARGETS as DEPLOYMENTS, target_formats

        name = args.list_formats
        formats = target_formats(DEPLOYMENTS[name]) if name in DEPLOYMENTS and name not in TARGETS \
            else target_module(name).FORMATS
        print("\n".join(formats))
        return 0
    if not args.plan or not args.to:
        from quantcore.errors import QuantDSEError

        raise QuantDSEError("--plan and --to are required, e.g. --plan plan.json --to llamacpp")
    from dse.export.base import check_fused
    from dse.export.deploy import deployment_for, recost, resolve_nearest, serving_notes
    from dse.export.targets import TARGETS as DEPLOYMENTS, get_target, target_formats
    from quantcore.formats import get_format

    plan = load_plan(args.plan)
    module = target_module(DEPLOYMENTS[args.to].export if args.to in DEPLOYMENTS and args.to not in TARGETS
                           else args.to)
    deploy = deployment_for(args.to, plan)
    formats = target_formats(get_target(deploy)) + ("bf16",) if deploy else module.FORMATS
    original, moved = plan, []
    if args.nearest:  # a constrained re-search under the plan's own limits, not a per-layer swap
        plan, moved = resolve_nearest(plan, args.plan, deploy, [f for f in formats if f not in ("bf16", "fp32")],
                                      embeddings=getattr(module, "EMBEDDINGS", False))
    export = resolve(plan, args.plan, module.NAME, [get_format(f) for f in formats], False,
                     embeddings=getattr(module, "EMBEDDINGS", False), deploy=deploy)
    if args.nearest:
        _before(export, original, moved)
    if deploy:
        if module.NAME != "llamacpp":  # llama.cpp folds a layer's experts to their widest type, and says so
            check_fused(export, deploy)
    if args.nearest:
        b, a = original["totals"], plan["totals"]
        export.notes.insert(0, f"--nearest re-searched the plan for {deploy or module.NAME} under its limits: "
                               + ", ".join(f"{k} {b[k]:.6g} -> {a[k]:.6g}" for k in
                                           ("effective_bits", "latency_s", "energy_j", "memory_bytes", "error")))
    content, extras = module.write(export)
    if deploy:
        export.notes += recost(plan, args.plan, deploy)
    else:
        export.notes += serving_notes(export, module.NAME)
    text = _text(content)
    if args.out:
        atomic_write_text(args.out, text)
    report = _report(export, args.out, extras)
    if args.json:
        if not args.out:
            report["content"] = content
        sys.stdout.write(dumps(report))
    elif args.out:
        print(_human(report))
    else:
        sys.stdout.write(text)
        print(_human(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
