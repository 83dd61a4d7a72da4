"""`python -m dse.search`: pick a format per layer under a budget, costed on a hardware target.

    python -m dse.search --hw u280 --budget 3.7bits
    python -m dse.search --hw a100-80gb --model llama-3-8b --budget 3.5GB --json --out plan.json
"""
from __future__ import annotations

import sys

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import check_outputs
from quantcore.limits import RANGES, int_flag
from dse.pipeline import SearchRequest, prepare, solve_prepared, solver_options
from dse.plan import format_table, make_plan, plan_json, write_plan
from dse.summary import next_steps
from hwmodels.workload import PHASES, Workload

#: `--set` keys that configure the solver, not the hardware (`--method rl`: polish=true|false, polish_seconds=S;
#: with --reward measured also episodes=N, texts=N, holdout=N, see policies/measured.py)
SOLVER_SET_KEYS = ("polish", "polish_seconds", "episodes", "texts", "holdout")


def add_request_args(p: ArgumentParser) -> None:
    """The flags dse.search and dse.pareto share: what to quantize, for which workload, on which design.

    `request_from_args` reads them.
    """
    p.add_argument("--hw", required=True, help="target name (python -m hwmodels.list) or a spec .toml path; "
                                               "dse.search takes several, comma-separated, and compares them")
    p.add_argument("--model", help="catalog name (python -m dse.models --list), config.json, safetensors file or "
                                   "folder; default llama-2-7b")
    p.add_argument("--method", default="ilp", help="ilp, lagrangian, baq, nas, greedy, uniform, rl (default: ilp)")
    p.add_argument("--sensitivity", help="weights, prior, hessian, fisher, output, imatrix:FILE (llama.cpp importance matrix, .gguf or .dat) or FILE.json (default: weights "
                                         "if the model has them, else prior)")
    p.add_argument("--calib", help="calibration texts for hessian/fisher/output, one per line (default: shipped)")
    add_workload_args(p)
    p.add_argument("--formats", help="candidate formats, comma-separated (python -m dse.formats)")
    p.add_argument("--formats-for", metavar="TARGET",
                   help="only formats an export target writes exactly (python -m dse.export --list-formats TARGET)")
    p.add_argument("--for", dest="target", metavar="TARGET",
                   help="deployment target (llamacpp, vllm-gptq, vllm-compressed-tensors, llmcompressor, autoround, "
                        "modelopt, tensorrt-llm): the formats it deploys, its runtime, its fused layers tied")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hardware spec param (co-design), repeatable; with --method rl also "
                        "polish=false (raw rollout) and polish_seconds=S")
    p.add_argument("--policy", help="--method rl: a policy folder (policy.json + policy.safetensors) or a name in "
                                    "policies/zoo (default ramp-sac)")
    p.add_argument("--seed", type=int_flag(*RANGES["seed"]), default=0, help="seed of every random choice (default: 0)")
    p.add_argument("--include", action="append", default=[], choices=("embeddings",),
                   help="also search the token embedding (costed and counted in the budget; the lm-head is "
                        "always searched)")


def add_workload_args(p: ArgumentParser) -> None:
    """--phase --batch --seq --kv-bits; left out, the model kind decides (hwmodels.workload)."""
    p.add_argument("--phase", choices=PHASES,
                   help="decode (one generation step against the KV cache) or prefill (the prompt); default: "
                        "decode for decoder LLMs; encoders and CNNs always run one forward pass (forward)")
    p.add_argument("--batch", type=int, help="sequences (or images) per pass (default: 1)")
    p.add_argument("--seq", type=int, help="prompt length (prefill), context length (decode) or tokens per "
                                           "sequence (encoders); default: 2048 for decoder LLMs (at most their "
                                           "max positions), an encoder's max positions")
    p.add_argument("--kv-bits", type=int, help="KV cache precision: 16, 8, 4, 2 (default: 16)")


def workload_from_args(args) -> Workload:
    return Workload.unset(phase=args.phase, batch=args.batch, seq=args.seq, kv_bits=args.kv_bits)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.search", description=__doc__.split("\n")[0])
    add_request_args(p)
    p.add_argument("--budget", help="3.7bits (average effective bits), 3.5GB (weights), 12ms (latency), 5mJ (energy: an "
                   "estimate from the target's energy model, see the plan's provenance.energy_basis)")
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--max-energy-mj", type=float)
    p.add_argument("--max-memory-gb", type=float)
    p.add_argument("--reward", default="error", choices=("error", "measured"),
                   help="--method rl: error (the table's summed error, default) or measured (fine-tune the policy on "
                        "the real model's end metric; models with installed weights)")
    p.add_argument("--out", help="write the plan here (atomically); with several --hw, one file per target: "
                                 "plan.json -> plan-<hw>.json")
    p.add_argument("--json", action="store_true", help="print the plan JSON on stdout (several --hw: a list of plans)")
    p.add_argument("--verbose", action="store_true", help="also list every layer (several --hw: every plan in full)")
    return p


def request_from_args(args) -> SearchRequest:
    return SearchRequest(
        hw=args.hw, model=args.model, budget=args.budget, method=args.method, sensitivity=args.sensitivity,
        calib=args.calib,
        workload=workload_from_args(args),
        formats=_formats(args),
        max_latency_ms=args.max_latency_ms, max_energy_mj=args.max_energy_mj, max_memory_gb=args.max_memory_gb,
        overrides=tuple(o for o in args.overrides if o.split("=", 1)[0].strip() not in SOLVER_SET_KEYS),
        solver_options=tuple(o for o in args.overrides if o.split("=", 1)[0].strip() in SOLVER_SET_KEYS),
        policy=args.policy, reward=getattr(args, "reward", "error"), seed=args.seed, include=tuple(args.include),
        target=getattr(args, "target", None))


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
    if request.reward == "measured" and request.method != "rl":
        raise QuantDSEError("--reward measured needs --method rl: add --method rl or drop --reward")
    prepared = prepare(request)
    if request.reward == "measured":
        problem, result = _measured(prepared, limits)
    else:
        with solver_progress(request.method, enabled=progress) as callback:
            problem, result = solve_prepared(prepared, limits, **({"progress": callback} if callback else {}))
    return make_plan(prepared, problem, result, budget_doc)


def _measured(prepared, limits):
    """--reward measured: the ILP plan, then the RL agent fine-tuned on the measured metric (policies.measured)."""
    from policies.measured import finetune

    problem, ilp = solve_prepared(prepared, limits, method="ilp")
    req = prepared.request
    model = req.model if isinstance(req.model, str) else prepared.graph.name
    result = finetune(problem, ilp.assignment, model, seed=req.seed, **solver_options(prepared, "rl"))
    broken = problem.violations(result.assignment)
    if broken:  # a solver bug, not bad input
        raise AssertionError(f"rl returned an over-budget plan: {broken}")
    return problem, result


def rl_summary(solver: dict) -> str:
    """One line on what the RL agent did: its policy, raw and polished objectives, or the measured comparison."""
    line = f"rl: policy {solver.get('policy')} ({solver.get('policy_hash')})"
    if solver.get("reward") == "measured":
        return f"{line}; {solver.get('message', '')}"
    polished = solver.get("polished_objective")
    return (f"{line}; raw rollout error {solver.get('raw_objective', float('nan')):.6g}"
            + (f", polished {polished:.6g}" if polished is not None else " (no polish)"))


def warn_device(plan: dict, notes: bool = True) -> None:
    """On stderr: the plan's notes (formats dropped, a device memory limit added, what the weights did not
    say; the table shows them too, so `notes=False` there) and a warning when the weights exceed the device."""
    for note in plan.get("notes", ()) if notes else ():
        print(f"note: {note}", file=sys.stderr)
    device = plan["device"]
    if device["weights_fit"] is False:
        print(f"warning: the plan's weights ({plan['totals']['memory_bytes'] / 1e9:.2f} GB) exceed the "
              f"{device['free_for_weights_bytes'] / 1e9:.2f} GB {plan['hardware']} leaves for them "
              f"(allow_offload=true: the rest is offloaded or sharded)", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if "," in args.hw:
        from dse.compare import search_targets

        return search_targets(args)
    request = request_from_args(args)
    request.limits()  # validate the budget before any expensive work
    check_outputs([args.out], [args.model, args.sensitivity, args.hw])
    plan = search(request, progress=True)
    warn_device(plan, notes=args.json)  # the table shows the notes itself
    if args.out is not None:
        write_plan(plan, args.out)
    if args.json:
        sys.stdout.write(plan_json(plan))
    else:
        print(format_table(plan, verbose=args.verbose, steps=next_steps(args.out, plan=plan)))
        if plan["method"] == "rl":
            print(rl_summary(plan["solver"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
