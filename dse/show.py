"""`python -m dse.show PLAN`: a plan for a person, folded by role across blocks, under a screen.

    python -m dse.show plan.json                  # roles, exceptions, formats, totals, next step
    python -m dse.show plan.json --verbose        # and every layer
    python -m dse.show plan.json --plot plan.png  # bits per layer, latency and energy by role
"""
from __future__ import annotations

import sys

from quantcore.cli import ArgumentParser, run_cli
from quantcore.io import dumps


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.show", description=__doc__.split("\n")[0])
    p.add_argument("plan", metavar="PLAN", help="a plan file written by dse.search --out")
    p.add_argument("--verbose", action="store_true", help="also list every layer")
    p.add_argument("--plot", help="write a figure: .png, .jpg, .svg or .pdf (written atomically)")
    p.add_argument("--json", action="store_true",
                   help="print the folded summary as JSON: rules, exceptions, format shares, totals")
    return p


def summary_doc(plan: dict) -> dict:
    """What --json prints: the folded view of the plan (dse.summary), with the plan's totals."""
    from dse.summary import fold, format_shares

    return {"model": plan["model"], "hardware": plan["hardware"], "workload": plan.get("workload"),
            "budget": plan.get("budget"), "method": plan.get("method"), **fold(plan["layers"]),
            "formats": format_shares(plan["layers"]), "totals": plan["totals"], "fixed": plan.get("fixed")}


def main(argv=None) -> int:
    from dse.figures import figure_type, write_figure
    from dse.plan import format_table, load_plan
    from dse.summary import next_steps

    args = build_parser().parse_args(argv)
    if args.plot:
        figure_type(args.plot)  # a bad extension is an error before any work
    plan = load_plan(args.plan)
    if args.plot:
        from dse.planplot import plan_figure

        write_figure(plan_figure(plan), args.plot)
    if args.json:
        sys.stdout.write(dumps(summary_doc(plan)))
    else:
        print(format_table(plan, verbose=args.verbose, steps=next_steps(args.plan, written=False, plan=plan)))
        if args.plot:
            print(f"figure written to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
