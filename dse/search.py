"""`python -m dse.search`: pick a format per layer under a budget, costed on a hardware target.

    python -m dse.search --hw u280 --budget 3.7bits
    python -m dse.search --hw a100-80gb --model llama-3-8b --budget 3.5GB --json --out plan.json
"""
from __future__ import annotations

import sys

from quantcore.cli import ArgumentParser, run_cli
from quantcore.io import check_outputs
from quantcore.limits import RANGES, int_flag
from dse.pipeline import SearchRequest, prepare, solve_prepared
from dse.plan import format_table, make_plan, plan_json, write_plan
from hwmodels.workload import Workload


def add_request_args(p: ArgumentParser) -> None:
    """The flags dse.search and dse.pareto share: what to quantize, for which workload, on which design.

    `request_from_args` reads them.
    """
    p.add_argument("--hw", required=True, help="target name (python -m hwmodels.list) or a spec .toml path; "
                                               "dse.search takes several, comma-separated, and compares them")
    p.add_argument("--model", help="catalog name (python -m dse.models --list), config.json, safetensors file or "
                                   "folder; default llama-2-7b")
    p.add_argument("--method", default="ilp", help="ilp, lagrangian, baq, nas, greedy, uniform, rl (default: ilp)")
    p.add_argument("--sensitivity", help="weights, prior, hessian, fisher, output or FILE.json (default: weights "
                                         "if the model has them, else prior)")
    p.add_argument("--calib", help="calibration texts for hessian/fisher/output, one per line (default: shipped)")
    p.add_argument("--phase", default="decode", choices=("decode", "prefill"),
                   help="decode (one generation step) or prefill (the prompt); default: decode for decoder LLMs "
                        "(the plan's workload says what was costed)")
    p.add_argument("--batch", type=int, default=1, help="sequences (or images) per pass (default: 1)")
    p.add_argument("--seq", type=int, default=2048, help="prompt length (prefill) or context length (decode); "
                                                         "default: 2048 for decoder LLMs")
    p.add_argument("--kv-bits", type=int, default=16, help="KV cache precision: 16, 8, 4, 2 (default: 16)")
    p.add_argument("--formats", help="candidate formats, comma-separated (python -m dse.formats)")
    p.add_argument("--formats-for", metavar="TARGET",
                   help="only formats an export target writes exactly (python -m dse.export --list-formats TARGET)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hardware spec param (co-design), repeatable")
    p.add_argument("--seed", type=int_flag(*RANGES["seed"]), default=0, help="seed of every random choice (default: 0)")
    p.add_argument("--include", action="append", default=[], choices=("embeddings",),
                   help="also search the token embedding (costed and counted in the budget; the lm-head is "
                        "always searched)")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.search", description=__doc__.split("\n")[0])
    add_request_args(p)
    p.add_argument("--budget", help="3.7bits (average effective bits), 3.5GB (weights), 12ms (latency), 5mJ (energy: an "
                   "estimate from the target's energy model, see the plan's provenance.energy_basis)")
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--max-energy-mj", type=float)
    p.add_argument("--max-memory-gb", type=float)
    p.add_argument("--out", help="write the plan here (atomically); with several --hw, one file per target: "
                                 "plan.json -> plan-<hw>.json")
    p.add_argument("--json", action="store_true", help="print the plan JSON on stdout (several --hw: a list of plans)")
    p.add_argument("--verbose", action="store_true", help="also list every layer (several --hw: every plan in full)")
    return p


def request_from_args(args) -> SearchRequest:
    return SearchRequest(
        hw=args.hw, model=args.model, budget=args.budget, method=args.method, sensitivity=args.sensitivity,
        calib=args.calib,
        workload=Workload(phase=args.phase, batch=args.batch, seq=args.seq, kv_bits=args.kv_bits),
        formats=_formats(args),
        max_latency_ms=args.max_latency_ms, max_energy_mj=args.max_energy_mj, max_memory_gb=args.max_memory_gb,
        overrides=tuple(args.overrides), seed=args.seed, include=tuple(args.include))


def _formats(args) -> tuple | None:
    requested = tuple(args.formats.split(",")) if args.formats is not None else None
    if getattr(args, "formats_for", None):
        from dse.export import formats_for

        return formats_for(args.formats_for, requested)
    return requested


def search(request: SearchRequest, progress: bool = False) -> dict:
    """Run the whole pipeline and return the plan document.

    progress: a bar on stderr while the solver works, for solvers that report it (nas), when stderr is a terminal.
    """
    from dse.progress import solver_progress

    limits, budget_doc = request.limits()
    prepared = prepare(request)
    with solver_progress(request.method, enabled=progress) as callback:
        problem, result = solve_prepared(prepared, limits, **({"progress": callback} if callback else {}))
    return make_plan(prepared, problem, result, budget_doc)


def warn_device(plan: dict) -> None:
    device = plan["device"]
    if device["weights_fit"] is False:
        print(f"warning: the plan's weights ({plan['totals']['memory_bytes'] / 1e9:.2f} GB) exceed {plan['hardware']}'s "
              f"{device['memory_capacity_bytes'] / 1e9:.0f} GB: shard the model or add --max-memory-gb", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if "," in args.hw:
        from dse.compare import search_targets

        return search_targets(args)
    request = request_from_args(args)
    request.limits()  # validate the budget before any expensive work
    check_outputs([args.out], [args.model, args.sensitivity, args.hw])
    plan = search(request, progress=True)
    warn_device(plan)
    if args.out is not None:
        write_plan(plan, args.out)
    if args.json:
        sys.stdout.write(plan_json(plan))
    else:
        print(format_table(plan, verbose=args.verbose, out=args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
