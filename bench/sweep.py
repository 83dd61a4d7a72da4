"""Co-design sweep throughput: the 240-point ResNet-50 systolic grid, old and new solve paths, and a 10,000-point grid.

    python bench/sweep.py [--workers 2] [--repeats 3] [--big] [--ray]

Grid: systolic rows 8..128 x cols 8..64 x dataflow os/ws/is (60 designs) x resnet-50 (one
image) x budgets 3,4,6,8 bits (ILP) = 240 points. In one run, alternating, `--repeats` times:
- new: the sweep as `python -m experiments.sweep` runs it (exact MCK solver; a problem equal
  to one solved before in the same worker reuses its proven optimum);
- new, every point solved: the same with each point's problem solved afresh (no reuse);
- old: the ILP through PuLP + HiGHS for every point (the path before the MCK solver).
Each on the process pool with `--workers` processes; times are the sweep's own (from pool
start, spawning the workers included, to the last row), medians printed with every run.
Every point of the new paths must be proven optimal (gap 0) and equal to the old path's
objective (1e-9 relative). `--big` adds the 10,000-point grid (rows x cols x dataflow x
SRAM size x 25 bit budgets, resnet-50 and bert-base-uncased); `--ray` runs the new path on a
local Ray too.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = {"rows": ["8", "16", "32", "64", "128"], "cols": ["8", "16", "32", "64"], "dataflow": ["os", "ws", "is"]}
BUDGETS = ["3bits", "4bits", "6bits", "8bits"]
BIG_GRID = {"rows": ["8", "16", "32", "64", "128"], "cols": ["8", "16", "32", "64", "128"],
            "dataflow": ["os", "ws"], "ifmap_sram_kib": ["64", "256", "1024", "4096"]}
BIG_BUDGETS = [f"{3 + 0.25 * i:g}bits" for i in range(25)]  # 200 designs x 2 models x 25 = 10,000 points


def _sweep(grid, models, budgets):
    from dse.pipeline import SearchRequest
    from experiments.sweep import make_sweep
    from hwmodels.workload import Workload

    base = SearchRequest(hw="systolic", workload=Workload.unset(phase="prefill", seq=128))
    return make_sweep(base, grid, models, budgets)


def _check(result, exact: bool) -> None:
    bad = [r for r in result.rows if r.status != "optimal" or (exact and r.gap != 0.0)]
    if bad:
        raise SystemExit(f"{len(bad)} points not proven optimal, e.g. {bad[0]}")


def _run(spec, workers: int, **options):
    from experiments.sweep import run_sweep

    result = run_sweep(spec, workers=workers, progress=False, **options)
    return result, len(result.rows) / result.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="alternate the paths this many times; medians")
    p.add_argument("--big", action="store_true", help="also the 10,000-point grid")
    p.add_argument("--big-only", action="store_true", help="only the 10,000-point grid")
    p.add_argument("--ray", action="store_true", help="also the new path on a local Ray")
    args = p.parse_args()
    if not args.big_only:
        small(args)
    if args.big or args.big_only:
        big(args)


def small(args) -> None:
    spec = _sweep(GRID, ["resnet-50"], BUDGETS)
    paths = {"new (MCK, equal problems reused)": {},
             "new (MCK, every point solved)": {"solve_options": {"solver": "auto"}},
             "old (ILP via PuLP + HiGHS)": {"solve_options": {"solver": "pulp"}}}
    if args.ray:
        paths["new on a local Ray"] = {"use_ray": True}
    rates: dict = {name: [] for name in paths}
    results: dict = {}
    for _ in range(args.repeats):
        for name, options in paths.items():
            results[name], rate = _run(spec, args.workers, **options)
            rates[name].append(rate)
            _check(results[name], exact=not name.startswith("old"))
    old = [r.error for r in results["old (ILP via PuLP + HiGHS)"].rows]
    for name, result in results.items():
        assert all(math.isclose(a.error, b, rel_tol=1e-9) for a, b in zip(result.rows, old)), name
    n = len(spec.points)
    print(f"{n}-point resnet-50 systolic grid, {args.workers} workers, {os.cpu_count()} CPUs, medians of "
          f"{args.repeats}; load average {os.getloadavg()[0]:.1f}")
    base = statistics.median(rates["old (ILP via PuLP + HiGHS)"])
    for name, rs in rates.items():
        median = statistics.median(rs)
        print(f"  {name:34s} {median:8.1f} points/s  {median / base:6.1f}x old   "
              f"(runs: {', '.join(f'{r:.1f}' for r in rs)}; reused {results[name].reused})")
    print("  every new point proven optimal (gap 0) and equal to the old path's objective: True")


def big(args) -> None:
    spec = _sweep(BIG_GRID, ["resnet-50", "bert-base-uncased"], BIG_BUDGETS)
    t0 = time.perf_counter()
    result, rate = _run(spec, args.workers)
    wall = time.perf_counter() - t0
    _check(result, exact=True)
    print(f"{len(spec.points):,}-point grid (rows x cols x dataflow x ifmap SRAM x 25 budgets, resnet-50 and "
          f"bert-base-uncased), {args.workers} workers: {wall:.1f} s, {rate:.0f} points/s, all proven optimal; "
          f"{result.reused:,} solves reused the optimum of an equal problem; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
