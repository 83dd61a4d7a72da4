"""Solver speed and quality at 226, 4k, 45k and 1M tensors (synthetic, realistic error tables), and on real models.

    python -m bench.solvers [--sizes 226,4096,45000,1000000] [--seed 0] [--models-only]

`--models-only` (also printed first in a full run): the exact MCK solver (`--method ilp`'s default
path) against the ILP through PuLP on the 225-layer Llama-2-7B table with random lognormal
errors (bench/search.py's table) and on DeepSeek-V3 (45,033 tensors, prior sensitivity), both
on u280 at 3.7 bits; solver seconds, medians of 5.

Error model: error[l, f] = params_l * s_l * 2^(-theta * payload_bits_f), s_l lognormal
per-layer sensitivity, theta = 1.95 (BAQ's fitted rate-distortion slope,
REFERENCE.md "Allocation methods"). Prints seconds and objective / optimum - 1,
the optimum being the ILP where it runs, else the Lagrangian's proven bound.
"""
from __future__ import annotations

import numpy as np

from dse.problem import Problem

#: (name, payload bits, effective bits with group-128 fp16 scale (+ zero point for asym))
FORMATS = [("int2-g128", 2, 2.125), ("int2-asym-g128", 2, 2.25), ("int3-g128", 3, 3.125), ("nf3-g64", 3, 3.25),
           ("int4-g128", 4, 4.125), ("int4-asym-g128", 4, 4.25), ("nf4-g64", 4, 4.25), ("int5-g128", 5, 5.125),
           ("int6-g128", 6, 6.125), ("int8", 8, 8.0), ("fp16", 16, 16.0)]


def synthetic_problem(n_layers: int, budget_bits: float = 3.7, seed: int = 0, theta: float = 1.95) -> Problem:
    """A realistic random problem; formats of equal payload differ by a per-layer factor (asym/nf better)."""
    rng = np.random.default_rng(seed)
    F = len(FORMATS)
    payload = np.array([f[1] for f in FORMATS], dtype=np.float64)
    eff = np.array([f[2] for f in FORMATS], dtype=np.float64)
    params = rng.choice([4096 * 4096, 4096 * 11008, 1024 * 4096, 2048 * 7168], size=n_layers).astype(np.float64)
    sens = rng.lognormal(0.0, 1.0, n_layers)
    quality = np.exp(rng.normal(0.0, 0.15, (n_layers, F)))  # datatype fit per layer
    error = params[:, None] * sens[:, None] * 2.0 ** (-theta * payload)[None, :] * quality
    error[:, -1] = 0.0  # fp16 is the reference: no quantization error
    bits = np.broadcast_to(eff, (n_layers, F)).copy()
    lat = params[:, None] * bits / 8 / 2e12  # bandwidth-bound decode at 2 TB/s
    energy = lat * 300.0
    mask = np.ones((n_layers, F), dtype=bool)
    return Problem([f"l{i}" for i in range(n_layers)], [f[0] for f in FORMATS], error, params, bits,
                   lat, energy, mask, {"bits": budget_bits})


#: (method, options, largest size it runs at, reason when skipped above it)
METHODS = [
    ("mck", "mck", {}, None, ""),
    # branch and bound itself (no hand-over to the Lagrangian solver), with a 60 s limit
    ("highs", "ilp", {"solver": "highs", "time_limit": 60.0, "max_classes": 10**9}, 5000,
     "PuLP model of >45k x 11 integers: minutes"),
    ("cbc", "ilp", {"solver": "cbc", "time_limit": 60.0, "max_classes": 10**9}, 5000,
     "PuLP model of >45k x 11 integers: minutes"),
    ("lagrangian", "lagrangian", {}, None, ""),
    ("baq", "baq", {}, None, ""),
    ("nas", "nas", {"seed": 0}, 50_000, "about 10 s per 45k layers: several minutes at 1M"),
    ("greedy", "greedy", {}, 50_000, "rounds are O(layers x formats) each: 228 s measured at 1M"),
]


def model_problems() -> dict:
    """The real-model problems: name -> Problem (u280, 3.7 bits)."""
    import tempfile
    from pathlib import Path

    from bench.search import random_sensitivity
    from dse.pipeline import SearchRequest, prepare

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        sens = Path(tmp) / "random.json"
        random_sensitivity(sens)
        prepared = prepare(SearchRequest(hw="u280", sensitivity=str(sens)))
        out["llama-2-7b, random lognormal errors"] = prepared.problem({"bits": 3.7})
    # the weights do not fit u280's 8 GB: offload allowed, so the bits budget is the only limit
    prepared = prepare(SearchRequest(hw="u280", model="deepseek-v3", overrides={"allow_offload": True}))
    out["deepseek-v3, prior"] = prepared.problem({"bits": 3.7})
    return out


def bench_models(repeats: int = 5) -> None:
    import statistics

    from dse.solvers import solve

    print(f"{'model problem':36s} {'tensors':>8} {'formats':>7} {'ilp s':>8} {'pulp s':>8} {'ratio':>6} "
          f"{'gap':>7}  proved by")
    for name, problem in model_problems().items():
        fast = [solve(problem, method="ilp") for _ in range(repeats)]
        slow = solve(problem, method="ilp", solver="pulp", max_classes=10**9, time_limit=120.0)
        assert all(r.status == "optimal" and r.gap <= 1e-9 for r in fast), name  # HiGHS proves to 1e-9
        if slow.status == "optimal":
            assert abs(fast[0].objective - slow.objective) <= 1e-9 * abs(slow.objective), name
        t = statistics.median(r.seconds for r in fast)
        print(f"{name:36s} {problem.shape[0]:>8} {problem.shape[1]:>7} {t:8.4f} {slow.seconds:8.3f} "
              f"{slow.seconds / t:6.0f} {fast[0].gap:7.1e}  {fast[0].info['proved_by']} (pulp: {slow.status})")


def main(argv=None) -> int:
    from quantcore.cli import ArgumentParser
    from dse.solvers import solve

    p = ArgumentParser(prog="bench.solvers", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="226,4096,45000,1000000")
    p.add_argument("--budget-bits", type=float, default=3.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-only", action="store_true", help="only the real-model problems")
    args = p.parse_args(argv)
    bench_models()
    if args.models_only:
        return 0
    print(f"{'layers':>8} {'method':>10} {'status':>10} {'seconds':>9} {'obj/opt-1':>11}  note")
    for n in (int(s) for s in args.sizes.split(",")):
        problem = synthetic_problem(n, args.budget_bits, args.seed)
        results = {}
        for label, method, options, largest, reason in METHODS:
            if largest is not None and n > largest:
                results[label] = None
                print(f"{n:>8} {label:>10} {'':>10} {'':>9} {'':>11}  skipped ({reason})")
                continue
            r = solve(problem, method=method, **options)
            assert not r.success or not problem.violations(r.assignment), label
            results[label] = r
        proven = [(r.objective, label) for label, r in results.items() if r is not None and r.status == "optimal"]
        if proven:
            optimum, by = min(proven)
            source = f"optimum proven by {by}"
        else:
            optimum, source = results["lagrangian"].bound, "Lagrangian bound"
        for label, r in results.items():
            if r is None:
                continue
            note = f"gap {r.gap:.1e}" if np.isfinite(r.gap) else ""
            print(f"{n:>8} {label:>10} {r.status:>10} {r.seconds:>9.3f} {r.objective / optimum - 1:>11.2e}  "
                  f"{note} (vs {source})")
    return 0


if __name__ == "__main__":
    from quantcore.cli import run_cli

    raise SystemExit(run_cli(main))
