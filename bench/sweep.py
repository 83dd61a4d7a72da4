"""Co-design sweep throughput: the same 240-point grid on the local process pool and on a local Ray.

    python bench/sweep.py [--workers N]

Grid: systolic rows 8..128 x cols 8..64 x dataflow os/ws/is (60 designs) x resnet-50 (one
image) x budgets 3,4,6,8 bits (ILP) = 240 points. Prints, for each executor, the wall time
of the whole command (start-up included: spawning workers, starting Ray) and points/s, and
checks the two CSVs are identical apart from the timing column.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = ["--hw", "systolic", "--grid", "rows=8,16,32,64,128", "--grid", "cols=8,16,32,64",
        "--grid", "dataflow=os,ws,is", "--model", "resnet-50", "--budgets", "3bits,4bits,6bits,8bits",
        "--phase", "prefill", "--seq", "1"]


def run(out: Path, extra: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments.sweep", *GRID, "--out", str(out), *extra], env=env,
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def rows(path: Path) -> list[dict]:
    from experiments.sweep import TIMING_COLUMNS

    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=1, help="alternate pool and Ray runs this many times; medians")
    args = p.parse_args()
    workers = ["--workers", str(args.workers)]
    times = {"process pool": [], "ray (local)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            pool, ray = Path(tmp) / f"pool{i}.csv", Path(tmp) / f"ray{i}.csv"
            times["process pool"].append(run(pool, workers))
            times["ray (local)"].append(run(ray, workers + ["--ray"]))
            a, b = rows(pool), rows(ray)
            if a != b:
                raise SystemExit("the two executors disagree")
        n = len(a)
        failed = sum(r["status"] == "failed" for r in a)
        print(f"sweep of {n} points ({failed} failed), {args.workers} workers, {os.cpu_count()} CPUs, "
              f"median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
        for name, ts in times.items():
            t = statistics.median(ts)
            print(f"  {name:13s}: {t:6.1f} s wall  {n / t:5.2f} points/s   (runs: {', '.join(f'{x:.1f}' for x in ts)} s)")
        print("  same CSV apart from the timing column: True")


if __name__ == "__main__":
    main()
