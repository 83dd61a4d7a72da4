"""`python -m dse.pareto`: sweep a budget, solve each point, keep the error-vs-cost frontier.

    python -m dse.pareto --hw u280 --model llama-2-7b --sweep bits=2.5:8:0.25 --x latency --out p.csv --plot p.png
    python -m dse.pareto --hw systolic --set rows=32 --set cols=32 --phase prefill --seq 512 --sweep latency=1:20:1
    python -m dse.pareto --hw a100-80gb --model llama-3-8b --batch 16 --sweep bits=3:8:1 --x throughput

The model, hardware tables and sensitivity are prepared once (dse.pipeline); each
budget value only builds a new Problem and solves it. The workload and co-design
flags are those of dse.search and build the same SearchRequest.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Callable, Iterable

import numpy as np

from dse.budget import SHOWN_UNITS, UNITS, check_budget_range
from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_files, check_outputs
from quantcore.limits import cap, over_cap

#: sweep kind (= the constraint kind) -> (factor from the written unit to SI, unit as written)
SWEEP_UNITS = {kind: (UNITS[s.unit][1], s.unit) for kind, s in SHOWN_UNITS.items()}
#: --x choice -> key of Problem.totals()
X_TOTALS = {kind: s.key for kind, s in SHOWN_UNITS.items()}
COLUMNS = ["budget", "status", "method", "error", "effective_bits", "memory_bytes", "latency_s", "energy_j",
           "tokens_per_s", "ttft_s", "tpot_s", "seconds", "gap", "on_frontier"]
#: kinds whose total is better higher (the frontier negates them)
HIGHER_IS_BETTER = frozenset({"throughput"})


def parse_sweep(text: str) -> tuple[str, np.ndarray]:
    """`bits=2.5:8:0.25` -> ("bits", [2.5, 2.75, ..., 8.0]) (stop included)."""
    try:
        kind, spec = text.split("=", 1)
        start, stop, step = (float(v) for v in spec.split(":"))
    except ValueError:
        raise QuantDSEError(f"malformed --sweep {text!r}: write KIND=START:STOP:STEP, e.g. bits=2.5:8:0.25") from None
    if kind not in SWEEP_UNITS:
        raise QuantDSEError(f"unknown sweep kind {kind!r}: use {', '.join(SWEEP_UNITS)}")
    if not (np.isfinite([start, stop, step]).all() and step > 0 and 0 < start <= stop):
        raise QuantDSEError(f"--sweep {text!r} needs 0 < START <= STOP and STEP > 0")
    factor, unit = SWEEP_UNITS[kind]
    check_budget_range(f"--sweep {text!r}", kind, stop, factor, unit)
    points = (stop - start) / step + 1
    if not points <= cap("sweep_points"):
        raise over_cap("sweep_points", f"--sweep {text!r} ({points:.4g} points)")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return kind, start + step * np.arange(n)


def frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats in both x and y (lower is better; NaN never on it)."""
    ok = np.isfinite(x) & np.isfinite(y)
    on = np.zeros(len(x), dtype=bool)
    idx = np.nonzero(ok)[0]
    for i in idx:
        other = idx[idx != i]
        dominated = (x[other] <= x[i]) & (y[other] <= y[i]) & ((x[other] < x[i]) | (y[other] < y[i]))
        on[i] = not dominated.any()
    return on


def pareto_sweep(problem_factory: Callable[[float], object], values: Iterable[float], method: str = "ilp",
                 x: str = "bits", progress: bool = False, serving: Callable | None = None, **options) -> list[dict]:
    """Solve `problem_factory(v)` for each budget value; one row per value (see COLUMNS).

    Infeasible budgets are rows with status "infeasible" and NaN totals; `on_frontier`
    marks the non-dominated rows in (x total, error). serving(assignment): the plan's
    tokens_per_s / ttft_s / tpot_s (dse.pipeline.Prepared.serving_totals); None: NaN.
    """
    from tqdm import tqdm

    from dse.solvers import solve

    rows = []
    # a bar only where a person watches (a terminal): never mixed into an error line on a captured stderr
    for v in tqdm(list(values), desc=f"pareto ({method})", file=sys.stderr, disable=None if progress else True,
                  leave=False):
        problem = problem_factory(float(v))
        result = solve(problem, method=method, **options)
        row = {"budget": float(v), "status": result.status, "method": result.method, "seconds": result.seconds,
               "gap": result.gap}
        if result.success:
            broken = problem.violations(result.assignment)
            if broken:
                raise AssertionError(f"{method} returned an over-budget assignment: {broken}")
            totals = problem.totals(result.assignment)
            extra = serving(result.assignment) if serving is not None else {}
        else:
            totals = {k: float("nan") for k in ("effective_bits", "memory_bytes", "latency_s", "energy_j", "error")}
            extra = {}
        row.update(totals)
        row.update({k: extra.get(k, float("nan")) for k in ("tokens_per_s", "ttft_s", "tpot_s")})
        rows.append(row)
    xs = np.array([r[X_TOTALS[x]] for r in rows], dtype=float) * (-1.0 if x in HIGHER_IS_BETTER else 1.0)
    ys = np.array([r["error"] for r in rows], dtype=float)
    for r, on in zip(rows, frontier(xs, ys)):
        r["on_frontier"] = bool(on)
    return rows


def rows_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r[k] for k in COLUMNS})
    return out.getvalue()


#: --x choice -> axis label ({}: the unit shown, dse.budget.SHOWN_UNITS)
X_AXES = {"bits": "effective {} per weight", "memory": "weights in memory ({})",
          "latency": "latency of one pass ({})", "energy": "energy of one pass ({})",
          "throughput": "throughput ({} of output)", "ttft": "time to first token ({})",
          "tpot": "time per output token ({})"}
MAX_POINT_LABELS = 12


def plot_figure(rows: list[dict], x: str, title: str, unit: str = ""):
    """Error against the --x cost in the units people type (ms, mJ, GB); frontier points labelled
    with their budget (`unit` is the sweep's, e.g. "bits"), at most MAX_POINT_LABELS labels."""
    from matplotlib.ticker import MaxNLocator

    from dse.figures import new_figure

    fig = new_figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    shown = SHOWN_UNITS[x]
    xs = np.array([r[shown.key] for r in rows], dtype=float) * shown.factor
    ys = np.array([r["error"] for r in rows], dtype=float)
    on = np.array([r["on_frontier"] for r in rows], dtype=bool)
    off = ~on & np.isfinite(xs) & np.isfinite(ys)
    if off.any():
        ax.scatter(xs[off], ys[off], s=12, c="0.6", label="dominated")
    order = np.argsort(xs[on])
    ax.plot(xs[on][order], ys[on][order], "o-", ms=4, label="frontier")
    for picked, offset in ((np.nonzero(on)[0][order], (4, 4)), (np.nonzero(off)[0], (5, -2))):
        step = max(1, int(np.ceil(len(picked) / MAX_POINT_LABELS)))
        for i in picked[::step]:
            ax.annotate(f"{rows[i]['budget']:g}{unit}", (xs[i], ys[i]), textcoords="offset points", xytext=offset,
                        fontsize="x-small", color="0.25")
    ax.set_xlabel(X_AXES[x].format(shown.unit))
    ax.set_ylabel("predicted error (sum over layers)")
    ax.set_yscale("log" if (ys[np.isfinite(ys)] > 0).all() and np.isfinite(ys).any() else "linear")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.set_title(title, fontsize="medium")
    ax.legend()
    return fig


def plot_png(rows: list[dict], x: str, title: str, unit: str = "") -> bytes:
    from dse.figures import figure_bytes

    return figure_bytes(plot_figure(rows, x, title, unit), "png")


def build_parser() -> ArgumentParser:
    from dse.search import add_request_args

    p = ArgumentParser(prog="dse.pareto", description=__doc__.split("\n")[0])
    add_request_args(p)
    p.add_argument("--sweep", required=True, help="KIND=START:STOP:STEP; bits (avg bits), memory (GB), "
                                                  "latency (ms), energy (mJ), throughput (tok/s, a minimum), ttft "
                                                  "or tpot (ms); e.g. bits=2.5:8:0.25")
    p.add_argument("--x", choices=sorted(X_TOTALS), help="cost axis of the frontier (default: the sweep's kind)")
    p.add_argument("--out", help="CSV of every point (written atomically); without --out the CSV goes to stdout")
    p.add_argument("--plot", help="figure of error vs --x: .png, .jpg, .svg or .pdf (written atomically)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    return p


def request_from_args(args: argparse.Namespace, kind: str, values: np.ndarray):
    """The SearchRequest dse.search would build from these flags, budgeted at the sweep's first value."""
    import dataclasses

    from dse.budget import Budget
    from dse.search import request_from_args as search_request

    flags = argparse.Namespace(**vars(args))
    flags.budget = None
    flags.max_latency_ms = flags.max_energy_mj = flags.max_memory_gb = None  # the sweep is the only limit
    flags.max_ttft_ms = flags.max_tpot_ms = None
    return dataclasses.replace(search_request(flags), budget=Budget(float(values[0]), SHOWN_UNITS[kind].unit))


def main(argv=None) -> int:
    from quantcore.cli import flag_names
    from dse.search import FLAGS

    with flag_names(FLAGS):
        return _main(argv)


def _main(argv=None) -> int:
    from dse.device import memory_note
    from dse.figures import figure_bytes, figure_type
    from dse.pipeline import prepare, solver_options
    from dse.summary import workload_text

    args = build_parser().parse_args(argv)
    check_outputs([args.out, args.plot], [args.model, args.sensitivity, args.hw])  # before the expensive work
    if args.plot is not None:
        figure_type(args.plot)  # a bad extension fails before any work
    kind, values = parse_sweep(args.sweep)
    x = args.x or kind
    factor, _ = SWEEP_UNITS[kind]
    request = request_from_args(args, kind, values)
    request.limits()  # validate the method and budget before any expensive work
    prepared = prepare(request)
    for note in prepared.notes:  # formats the target cannot run, what the weights did not say, ...
        print(f"note: {note}", file=sys.stderr)
    if prepared.device_limit({}) is not None:  # some points' weights could exceed the device
        print(f"note: {memory_note(prepared.graph.name, prepared.hardware.name, prepared.free_memory)}",
              file=sys.stderr)
    rows = pareto_sweep(lambda v: prepared.problem({kind: v * factor}), values, method=args.method,
                        x=x, progress=True, seed=args.seed, serving=prepared.serving_totals,
                        **solver_options(prepared, args.method))
    outputs = [(args.out, rows_csv(rows))] if args.out is not None else []
    if args.plot is not None:
        title = (f"{prepared.graph.name} on {prepared.hardware.name} ({args.method}): "
                 f"{workload_text(prepared.workload.as_dict())}"
                 f"\nsensitivity: {prepared.sensitivity.source}"
                 + (" (data-free prior)" if prepared.sensitivity.source == "prior" else ""))
        figure = plot_figure(rows, x, title, SHOWN_UNITS[kind].unit)
        outputs.append((args.plot, figure_bytes(figure, figure_type(args.plot))))
    atomic_write_files(outputs)  # both files or neither
    if args.json:
        clean = [{k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in r.items()} for r in rows]
        sys.stdout.write(json.dumps(clean, indent=2) + "\n")
    elif args.out:
        written = " and ".join(p for p in (args.out, args.plot) if p)
        print(f"{len(rows)} points, {sum(r['on_frontier'] for r in rows)} on the frontier: written to {written}")
    else:
        sys.stdout.write(rows_csv(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
