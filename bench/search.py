"""End-to-end search time for llama-2-7b (targets: < 2 s for the process, < 0.5 s in the solver).

Prints medians over repeats, measured in one run:
- the whole `python -m dse.search --hw u280 --budget 3.7bits --json` process (prior sensitivity);
- the same with a random per-layer error table through --sensitivity (no two layers alike,
  so the ILP cannot merge identical layers: the hard case).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REPEATS = 5


def run(args: list[str]) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dse.search", *args, "--json"], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True)
    return time.perf_counter() - t0, json.loads(out.stdout)


def random_sensitivity(path: Path) -> None:
    from quantcore.formats import DEFAULT_SEARCH_FORMATS, get_format
    from quantcore.models import load_graph

    rng = np.random.default_rng(0)
    layers = load_graph("llama-2-7b").quantizable()
    table = {l.name: {f: float(l.params * rng.lognormal(0, 1) * 2 ** (-2 * get_format(f).bits))
                      for f in DEFAULT_SEARCH_FORMATS} for l in layers}
    path.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": table}))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sens = Path(tmp) / "random.json"
        random_sensitivity(sens)
        cases = {"prior (u280, 3.7bits)": ["--hw", "u280", "--budget", "3.7bits"],
                 "random errors (u280, 3.7bits)": ["--hw", "u280", "--budget", "3.7bits", "--sensitivity", str(sens)],
                 "deepseek-v3, 45k tensors (u280)": ["--hw", "u280", "--budget", "3.7bits", "--model", "deepseek-v3"],
                 "random errors + latency (u280)": ["--hw", "u280", "--budget", "3.7bits", "--sensitivity", str(sens),
                                                    "--max-latency-ms", "15"]}
        print(f"{'case':34s} {'process s (median)':>18s} {'solver s (median)':>18s} {'status':>8s}  bits")
        for name, args in cases.items():
            runs = [run(args) for _ in range(REPEATS)]
            wall = statistics.median(r[0] for r in runs)
            solver = statistics.median(r[1]["solver"]["seconds"] for r in runs)
            plan = runs[-1][1]
            print(f"{name:34s} {wall:18.3f} {solver:18.3f} {plan['solver']['status']:>8s}  "
                  f"{plan['totals']['effective_bits']:.4f}")
        print(f"targets: process < 2 s, solver < 0.5 s; {REPEATS} repeats each, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
