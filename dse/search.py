"""`python -m dse.search`: pick a format per layer under a budget, costed on a hardware target.

    python -m dse.search --hw u280 --budget 3.7bits
    python -m dse.search --hw a100-80gb --model llama-3-8b --budget 3.5GB --json --out plan.json
"""
from __future__ import annotations

import sys

import argparse
import inspect
import types

from quantcore.cli import ArgumentParser, flag_names, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_files, check_outputs, dumps
from quantcore.limits import RANGES, check_cap, int_flag
from dse.api import run, search as api_search
from dse.budget import budget_from_text
from dse.compare import compare, format_comparison, labels_for, target_path
from dse.pipeline import SearchRequest
from dse.plan import format_table, plan_json, write_plan
from dse.summary import next_steps
from hwmodels.workload import PHASES, Workload, add_serving_args

#: library parameter -> the flag that sets it (errors that name a parameter name the flag instead)
FLAGS = {"budget": "--budget", "overrides": "--set", "solver_options": "--set", "method": "--method",
         "max_latency_ms": "--max-latency-ms", "max_energy_mj": "--max-energy-mj", "max_memory_gb": "--max-memory-gb",
         "max_ttft_ms": "--max-ttft-ms", "max_tpot_ms": "--max-tpot-ms",
         "workload": "--phase/--batch/--seq/--kv-bits"}


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
    p.add_argument("--activations", metavar="LIST",
                   help="activation precisions the search chooses per layer, e.g. 16,8,4 (f8: fp8, 8c: per channel, "
                        "4g128: per group): each candidate format runs with each, where the target has a kernel")
    p.add_argument("--kv-formats", metavar="LIST",
                   help="search the KV-cache precision per layer, K and V apart, among these formats (or 'default': "
                        "fp16,fp8-e4m3,int8,int4-g128-asym,int4-g64,int2-g32); a memory budget then covers weights "
                        "+ KV cache; --kv-bits fixes it instead")
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
                   help="decode (one generation step against the KV cache), prefill (the prompt) or generate (a "
                        "whole request: prefill, then output tokens, see output-len); default: decode for decoder LLMs; "
                        "encoders and CNNs always run one forward pass (forward)")
    p.add_argument("--batch", type=int, help="sequences (or images) per pass (default: 1)")
    p.add_argument("--seq", type=int, help="prompt length (prefill), context length (decode) or tokens per "
                                           "sequence (encoders); default: 2048 for decoder LLMs (at most their "
                                           "max positions), an encoder's max positions")
    p.add_argument("--kv-bits", type=int, help="KV cache precision: 16, 8, 4, 2 (default: 16)")
    add_serving_args(p)
    p.add_argument("--steps", type=int_flag(*RANGES["steps"]), help="text-to-image models: denoising steps per image (default: the "
                                             "pipeline's, e.g. 28 for flux.1-dev)")
    p.add_argument("--resolution", type=_resolution, help="text-to-image models: image size, 1024 or 1024x768 "
                                                          "(height x width; default: the pipeline's)")


def _resolution(text: str) -> tuple:
    """`1024` or `1024x768` as (height, width)."""
    import argparse

    parts = str(text).lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{str(text)[:30]!r} is not a size: use e.g. 1024 or 1024x768")
    sides = tuple(int(p) for p in parts)
    return sides * 2 if len(sides) == 1 else sides


def workload_from_args(args) -> Workload:
    return Workload.unset(phase=args.phase, batch=args.batch, seq=args.seq, kv_bits=args.kv_bits,
                          steps=getattr(args, "steps", None), image_hw=getattr(args, "resolution", None),
                          output_len=getattr(args, "output_len", None), devices=getattr(args, "devices", None),
                          parallel=getattr(args, "parallel", None))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.search", description=__doc__.split("\n")[0])
    add_request_args(p)
    p.add_argument("--budget", help="3.7bits (average effective bits), 3.5GB (weights), 12ms (latency), 5mJ (energy: an "
                   "estimate from the target's energy model, see the plan's provenance.energy_basis), 2000tok/s "
                   "(a minimum throughput of the workload's output tokens)")
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--max-energy-mj", type=float)
    p.add_argument("--max-memory-gb", type=float)
    p.add_argument("--max-ttft-ms", type=float, help="time to first token SLO (--phase prefill or generate)")
    p.add_argument("--max-tpot-ms", type=float, help="time per output token SLO (--phase decode or generate)")
    p.add_argument("--reward", default="error", choices=("error", "measured"),
                   help="--method rl: error (the table's summed error, default) or measured (fine-tune the policy on "
                        "the real model's end metric; models with installed weights)")
    p.add_argument("--out", help="write the plan here (atomically); with several --hw, one file per target: "
                                 "plan.json -> plan-<hw>.json")
    p.add_argument("--json", action="store_true", help="print the plan JSON on stdout (several --hw: a list of plans)")
    p.add_argument("--verbose", action="store_true", help="also list every layer (several --hw: every plan in full)")
    return p


def request_from_args(args) -> SearchRequest:
    """The typed request these flags describe: every text (budget, --set KEY=VALUE) is read here."""
    method = "rl-measured" if getattr(args, "reward", "error") == "measured" else args.method
    if method == "rl-measured" and args.method != "rl":
        raise QuantDSEError("--reward measured needs --method rl: add --method rl or drop --reward")
    hardware, solver = split_set(args.overrides, method, args.hw)
    return SearchRequest(
        hw=args.hw, model=args.model, budget=budget_from_text(args.budget) if args.budget is not None else None,
        method=method, sensitivity=args.sensitivity, calib=args.calib,
        workload=workload_from_args(args),
        formats=_formats(args),
        max_latency_ms=args.max_latency_ms, max_energy_mj=args.max_energy_mj, max_memory_gb=args.max_memory_gb,
        max_ttft_ms=getattr(args, "max_ttft_ms", None), max_tpot_ms=getattr(args, "max_tpot_ms", None),
        overrides=hardware, solver_options=solver,
        policy=args.policy, seed=args.seed, include=tuple(args.include), target=args.target,
        **precision_args(args))


def precision_args(args) -> dict:
    """--activations and --kv-formats as SearchRequest fields (text read here, checked by their modules)."""
    from dse.kvcache import kv_format_list
    from dse.precision import parse_activations

    acts = getattr(args, "activations", None)
    kv = getattr(args, "kv_formats", None)
    if kv is not None and args.kv_bits is not None:
        raise QuantDSEError("--kv-bits fixes the KV cache and --kv-formats searches it: give one of them")
    return {"activations": parse_activations(acts) if acts is not None else None,
            "kv_formats": tuple(f.name for f in kv_format_list(kv)) if kv is not None else None}


def split_set(items: list[str], method: str, hw: str) -> tuple[dict, dict]:
    """`--set KEY=VALUE` flags -> (hardware overrides as text, the method's options as typed values).

    A key the method declares as an option (``dse.solvers.options``: ilp's time_limit, rl's polish)
    configures the solver; every other key is a hardware param, read by its spec's schema.
    """
    from dse.solvers import check_method, options

    check_method(method)
    declared = options(method)
    hardware: dict = {}
    solver: dict = {}
    for item in items:
        key, sep, text = (part.strip() for part in str(item).partition("="))
        if not sep or not key:
            raise QuantDSEError(f"--set {item!r} must be KEY=VALUE, e.g. --set clock_hz=300e6")
        if key in declared:
            solver[key] = option_value(declared[key], method, text)
        else:
            hardware[key] = text
    _check_other_methods(hardware, hw)
    return hardware, solver


def _check_other_methods(keys, hw) -> None:
    """A `--set` key that is no hardware param but an option of another method: say which method takes it."""
    from dse.solvers import SOLVERS, options
    from hwmodels.registry import family_schema
    from hwmodels.spec import load_spec

    try:
        schema = family_schema(load_spec(hw).family)
    except (QuantDSEError, OSError):  # the target itself is wrong: prepare() says how
        return
    for key in keys:
        if key not in schema:
            takers = [m for m in SOLVERS.names() if key in options(m)]
            if takers:
                raise QuantDSEError(f"--set {key} applies to --method {', '.join(takers)} only: drop it or use "
                                    f"--method {takers[0]}")


def option_value(option, method: str, text: str):
    """A solver option's `--set` text as its declared type."""
    from hwmodels.params import Param

    if text.lower() == "none" and option.optional:
        return None
    if option.type in (bool, int, float):
        try:
            return Param(option.type, option.name).parse_text(option.name, text)
        except QuantDSEError as exc:
            raise QuantDSEError(f"--set {option.name} {exc.detail} (an option of {method})") from None
    return text


def _formats(args) -> tuple | None:
    requested = tuple(args.formats.split(",")) if args.formats is not None else None
    if getattr(args, "formats_for", None):
        from dse.export import formats_for

        return formats_for(args.formats_for, requested)
    return requested


#: `search(request)` is `dse.api.run`: the pipeline for a request, the plan document as a dict
search = run


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


def search_targets(args: argparse.Namespace) -> int:
    """dse.search with `--hw A,B,C`: one search per target, then the comparison (or a JSON list of plans).

    Every target is searched before any file is written, so a failing target leaves no files.
    """
    targets = [t.strip() for t in args.hw.split(",")]
    if any(not t for t in targets) or len(set(targets)) != len(targets):
        raise QuantDSEError(f"--hw {args.hw!r}: give distinct target names separated by commas, e.g. a100-80gb,u280")
    check_cap("plans", len(targets), "targets in --hw")
    requests = []
    for hw in targets:
        flags = argparse.Namespace(**vars(args))
        flags.hw = hw
        requests.append(request_from_args(flags))
    requests[0].limits()  # the budget is the same for every target: validate it before any work
    check_outputs([args.out], [args.model, args.sensitivity])
    plans = []
    for request in requests:
        plan = run(request, progress=True)
        warn_device(plan)
        plans.append(plan)
    written = []
    if args.out is not None:
        paths = [target_path(args.out, p["hardware"]) for p in plans]
        if len(set(paths)) != len(paths):
            raise QuantDSEError("two targets share a name: give each spec file a distinct name")
        atomic_write_files([(path, plan_json(plan)) for plan, path in zip(plans, paths)])  # all plans or none
        written = paths
    if args.json:
        sys.stdout.write(dumps(plans))
        return 0
    if args.verbose:
        for plan in plans:
            print(format_table(plan, verbose=True, steps=[]) + "\n")
    print(format_comparison(compare(plans, labels_for(plans))))
    if written:
        print(f"plans written to {', '.join(written)}; next:\n  one plan:   python -m dse.show {written[0]}\n"
              f"  compare:    python -m dse.compare {' '.join(written)}")
    else:
        print("next:\n  keep the plans:   add --out plan.json (writes plan-<hw>.json per target)")
    return 0


def main(argv=None) -> int:
    with flag_names(FLAGS):
        return _main(argv)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if "," in args.hw:
        return search_targets(args)
    request = request_from_args(args)
    request.limits()  # validate the budget before any expensive work
    check_outputs([args.out], [args.model, args.sensitivity, args.hw])
    plan = run(request, progress=True)
    warn_device(plan, notes=args.json)  # the table shows the notes itself
    if args.out is not None:
        write_plan(plan, args.out)
    if args.json:
        sys.stdout.write(plan_json(plan))
    else:
        print(format_table(plan, verbose=args.verbose, steps=next_steps(args.out, plan=plan)))
        if plan["method"] in ("rl", "rl-measured"):
            print(rl_summary(plan["solver"]))
    return 0


class _CallableModule(types.ModuleType):
    """`from dse import search` gives this module, which is also the command; calling it calls
    the typed API, `dse.api.search` (one name for both, as the package promises)."""

    def __call__(self, *args, **kwargs):
        return api_search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
sys.modules[__name__].__signature__ = inspect.signature(api_search)

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
