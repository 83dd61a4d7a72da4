"""Evidence on a real model: all-minilm-l6-v2, measured, offline.

    python bench/evaluate.py                 # everything below, ~10 min on 2 idle cores
    python bench/evaluate.py --quick         # fewer plans and budgets, for a smoke run

Prints
1. calibration time of each sensitivity source (cold, in a fresh cache; then cached) and the
   wall time of a cold `dse.search --sensitivity hessian` in a subprocess;
2. the time of one `Evaluator.metrics()` call;
3. additivity: Spearman rank correlation between a plan's summed error table and its measured
   metric (1 - cosine to fp), per sensitivity source, over random and optimised plans;
4. layer ranking: Spearman between each source's per-layer error (int3-g128) and the measured
   drop when only that layer is quantized, and between the prior and each measured source;
5. the measured metric against effective bits 3..8 for ilp (each source), greedy, BAQ, NAS and
   uniform, written to docs/evaluate-minilm.png and .csv.

The shipped calibration texts are split: lines 1, 2, 4, 5, ... (217 texts) calibrate the
sensitivity sources, every third line (108 texts) is held out to evaluate plans.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse.calibration import DEFAULT_CALIB, read_texts  # noqa: E402

MODEL = "all-minilm-l6-v2"
HW = "a100-80gb"
SOURCES = ("prior", "weights", "hessian", "fisher", "output")
MEASURED = ("hessian", "fisher", "output")
#: sensitivity the non-ILP methods use
METHOD_SOURCE = "hessian"
ONLY_LAYER_FORMAT = "int3-g128"


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def split_texts(folder: Path) -> tuple[Path, list[str]]:
    texts = read_texts(DEFAULT_CALIB)
    calib = [t for i, t in enumerate(texts) if i % 3 != 2]
    held = [t for i, t in enumerate(texts) if i % 3 == 2]
    path = folder / "calib.txt"
    path.write_text("\n".join(calib) + "\n", encoding="utf-8")
    return path, held


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_sources(calib: Path) -> dict:
    from dse.calibsens import calibration_table
    from quantcore.formats import DEFAULT_SEARCH_FORMATS, get_format

    formats = [get_format(n) for n in DEFAULT_SEARCH_FORMATS]
    out = {}
    for source in MEASURED:
        t0, c0 = time.perf_counter(), cpu_seconds()
        calibration_table(source, MODEL, formats, str(calib))
        cold, cold_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        t0 = time.perf_counter()
        calibration_table(source, MODEL, formats, str(calib))
        out[source] = (cold, cold_cpu, time.perf_counter() - t0)
        print(f"  {source:8s} cold {cold:7.1f} s wall ({cold_cpu:6.1f} s CPU), cached {out[source][2]:.3f} s",
              flush=True)
    for source in ("hessian", "fisher"):  # how much one probe per batch leaves to chance
        a = calibration_table(source, MODEL, formats[3:4], str(calib), seed=0)[0]
        b = calibration_table(source, MODEL, formats[3:4], str(calib), seed=1)[0]
        x = np.array([v[formats[3].name] for v in a.values()])
        y = np.array([v[formats[3].name] for v in b.values()])
        used = (x > 0) | (y > 0)
        rel = np.abs(x[used] - y[used]) / np.maximum(x[used], y[used])
        print(f"  {source:8s} seed 0 vs seed 1: Spearman over layers {spearman(x, y):.3f}, median relative "
              f"difference {np.median(rel):.3f}, max {rel.max():.3f}")
    return out


def time_search(calib: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a cold hessian search in a fresh process and cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, QUANTDSE_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dse.search", "--hw", HW, "--model", MODEL, "--budget", "4bits",
                        "--sensitivity", "hessian"], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepared_for(source: str, calib: Path):
    from dse.budget import Budget
    from dse.pipeline import SearchRequest, prepare

    return prepare(SearchRequest(hw=HW, model=MODEL, budget=Budget.bits(4), sensitivity=source, calib=str(calib)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 budgets, 12 random plans, no search timing")
    p.add_argument("--out", default=str(ROOT / "docs" / "evaluate-minilm.png"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    from dse.evaluate import Evaluator
    from dse.pipeline import solve_prepared
    from quantcore.errors import QuantDSEError

    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f} (other work on this machine slows every wall time below)")
    tmp = Path(tempfile.mkdtemp(prefix="quantdse-bench-"))
    os.environ["QUANTDSE_CACHE_DIR"] = str(tmp / "cache")
    calib, held = split_texts(tmp)

    print("1. sensitivity sources on MiniLM (217 calibration texts)")
    time_sources(calib)
    if not args.quick:
        wall, cpu = time_search(calib)
        print(f"  cold `dse.search --sensitivity hessian` (model load, calibration, solve): {wall:.1f} s wall, "
              f"{cpu:.1f} s CPU")

    ev = Evaluator(MODEL, held)
    fmts = {n: "int4-g128" for n in ev.layer_names}
    ev.metrics(fmts)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ev.metrics(fmts)
        times.append(time.perf_counter() - t0)
    print(f"2. Evaluator.metrics() on {len(held)} held-out texts ({ev.tokens} tokens): median "
          f"{statistics.median(times):.3f} s per plan")

    prepared = {s: prepared_for(s, calib) for s in SOURCES}
    names = [l.name for l in prepared["prior"].layers]
    fnames = [f.name for f in prepared["prior"].formats]
    tables = {s: prepared[s].sensitivity.errors for s in SOURCES}
    bits = prepared["prior"].bits
    params = np.array([l.params for l in prepared["prior"].layers], dtype=float)

    budgets = [3.5, 4.5, 6.0] if args.quick else list(np.arange(3.0, 8.01, 0.5))
    runs = [("ilp", s) for s in SOURCES] + [(m, METHOD_SOURCE) for m in ("greedy", "baq", "nas", "uniform")]
    rows, plans = [], []
    total = len(runs) * len(budgets)
    done = 0
    for method, source in runs:
        for b in budgets:
            done += 1
            try:
                problem, result = solve_prepared(prepared[source], {"bits": float(b)}, method=method, seed=args.seed)
            except QuantDSEError as exc:
                print(f"  {method}/{source} at {b} bits: {exc}", file=sys.stderr)
                continue
            a = result.assignment
            m = ev.metrics({names[i]: fnames[int(a[i])] for i in range(len(names))})
            eff = float(problem.totals(a)["effective_bits"])
            rows.append({"method": method, "sensitivity": source, "budget_bits": b, "effective_bits": eff, **m})
            plans.append(np.asarray(a, dtype=int))
            print(f"\r  plans {done}/{total}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    rng = np.random.default_rng(args.seed)
    n_random = 12 if args.quick else 60
    for _ in range(n_random):
        weights = rng.dirichlet(np.full(len(fnames), 0.5))
        a = rng.choice(len(fnames), size=len(names), p=weights)
        m = ev.metrics({names[i]: fnames[int(a[i])] for i in range(len(names))})
        eff = float((bits[np.arange(len(names)), a] * params).sum() / params.sum())
        rows.append({"method": "random", "sensitivity": "", "budget_bits": "", "effective_bits": eff, **m})
        plans.append(a)

    drop = np.array([1.0 - r["cosine"] for r in rows])
    print(f"3. additivity over {len(rows)} plans ({len(rows) - n_random} optimised, {n_random} random): Spearman "
          "between the summed error table and the measured 1 - cosine (1 = the table ranks plans perfectly)")
    for s in SOURCES:
        summed = np.array([tables[s][np.arange(len(names)), a].sum() for a in plans])
        rnd = np.array([r["method"] == "random" for r in rows])
        print(f"  {s:8s} all plans {spearman(summed, drop):+.3f}   random only {spearman(summed[rnd], drop[rnd]):+.3f}"
              f"   optimised only {spearman(summed[~rnd], drop[~rnd]):+.3f}")

    j = fnames.index(ONLY_LAYER_FORMAT)
    only = np.array([1.0 - ev.metrics({n: ONLY_LAYER_FORMAT})["cosine"] for n in names])
    print(f"4. layer ranking ({ONLY_LAYER_FORMAT}): Spearman of each source's per-layer error against the measured "
          "1 - cosine with only that layer quantized; and against the prior")
    for s in SOURCES:
        print(f"  {s:8s} vs measured {spearman(tables[s][:, j], only):+.3f}   vs prior "
              f"{spearman(tables[s][:, j], tables['prior'][:, j]):+.3f}")
    worst = np.argsort(-only)[:5]
    print("  most sensitive layers (measured): " + ", ".join(f"{names[i]} {only[i]:.4f}" for i in worst))

    print("5. measured cosine to fp at each bits budget (uniform vs ILP with each source)")
    header = "  budget " + " ".join(f"{f'{m}/{s}' if m == 'ilp' else m:>14s}" for m, s in runs)
    print(header)
    for b in budgets:
        cells = []
        for m, s in runs:
            hit = [r for r in rows if r["method"] == m and r["sensitivity"] == s and r["budget_bits"] == b]
            cells.append(f"{hit[0]['cosine']:14.4f}" if hit else f"{'-':>14s}")
        print(f"  {b:6.2f} " + " ".join(cells))

    out = Path(args.out)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    out.with_suffix(".csv").write_text(buf.getvalue(), encoding="utf-8")
    plot(rows, runs, out)
    print(f"figure {out}, data {out.with_suffix('.csv')}")
    return 0


def plot(rows, runs, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    rnd = [r for r in rows if r["method"] == "random"]
    ax.scatter([r["effective_bits"] for r in rnd], [r["cosine"] for r in rnd], s=10, c="0.7", label="random plans")
    for method, source in runs:
        pts = sorted((r["effective_bits"], r["cosine"]) for r in rows
                     if r["method"] == method and r["sensitivity"] == source)
        if pts:
            label = f"ilp ({source})" if method == "ilp" else f"{method} ({source})" if method != "uniform" else method
            style = "-o" if method == "ilp" else "--s"
            ax.plot(*zip(*pts), style, ms=3, label=label)
    ax.set_xlabel("effective bits per weight (scales included)")
    ax.set_ylabel("mean cosine to fp embeddings (108 held-out texts)")
    ax.set_title("all-minilm-l6-v2, fake-quantized weights: measured quality vs budget")
    ax.set_xlim(2.9, 8.2)
    ax.set_ylim(0.5, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
