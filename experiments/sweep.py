"""`python -m experiments.sweep`: co-design grids of hardware params x models x budgets x methods.

    python -m experiments.sweep --hw systolic --grid rows=16,32 --grid dataflow=os,ws --model resnet-50 \\
        --budgets 4bits,6bits --out sweep.csv
    python -m experiments.sweep ... --ray [--address HOST:6379]      # on Ray instead of a local process pool

Every point is one `dse.search`: the hardware with the point's values as `--set`
overrides, one model, one budget, one method. The CSV has one row per point: the
point's keys, the plan's totals, the solver's status, gap and seconds, and `message`
(why a point failed; a failed point does not stop the sweep).

Prepared work is shared: each worker process keeps the model's graph and sensitivity
per (model, sensitivity, formats) and recomputes only the hardware tables for a new
design (`dse.pipeline.with_hardware`), and a design's tables serve all its budgets and
methods. Rows are appended to `--out` as they finish (so Ctrl-C or a crash leaves a
valid CSV), and the file is rewritten atomically in point order at the end. Points
already in `--out` are skipped, so running the same command again resumes.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, check_outputs

TOTALS = ("effective_bits", "memory_bytes", "latency_s", "energy_j", "error")
RESULT_COLUMNS = ("status",) + TOTALS + ("gap", "seconds", "message")
#: columns that differ between two runs of the same sweep (wall-clock measurements)
TIMING_COLUMNS = ("seconds",)
_FLOATS = set(TOTALS) | {"gap", "seconds"}


@dataclass(frozen=True)
class Point:
    """One design point: grid values (as typed), model, budget and method."""

    settings: tuple  # ((key, value text), ...) in --grid order
    model: str
    budget: str
    method: str

    def key(self) -> tuple:
        return tuple(v for _, v in self.settings) + (self.model, self.budget, self.method)


@dataclass(frozen=True)
class Sweep:
    """A validated grid: every point in order and the request all points share."""

    hw: str
    keys: tuple
    points: tuple
    base: object  # dse.pipeline.SearchRequest; model, budget, method and grid overrides set per point

    @property
    def columns(self) -> list[str]:
        return ["hw", *self.keys, "model", "budget", "method", *RESULT_COLUMNS]

    def request(self, point: Point):
        grid = tuple(f"{k}={v}" for k, v in point.settings)
        return replace(self.base, model=point.model, budget=point.budget, method=point.method,
                       overrides=tuple(self.base.overrides) + grid)

    def row_key(self, row: dict) -> tuple:
        return tuple(str(row[k]) for k in (*self.keys, "model", "budget", "method"))


def _split(text: str, what: str) -> list[str]:
    values = [v.strip() for v in str(text).split(",")]
    if not any(values):
        raise QuantDSEError(f"{what} is empty: give comma-separated values, e.g. {what} 4bits,6bits")
    if not all(values):
        raise QuantDSEError(f"{what} {text!r} has an empty value: remove the extra comma")
    if len(set(values)) != len(values):
        raise QuantDSEError(f"{what} {text!r} repeats a value: give each value once")
    return values


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`["rows=16,32", "dataflow=os"]` -> {"rows": ["16", "32"], "dataflow": ["os"]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = (part.strip() for part in str(item).partition("="))
        if not sep or not key:
            raise QuantDSEError(f"--grid {item!r} must be KEY=V1,V2,..., e.g. --grid rows=16,32")
        if key in grid:
            raise QuantDSEError(f"--grid {key} is given twice: list all its values in one --grid {key}=V1,V2")
        if not text.replace(",", "").strip():
            raise QuantDSEError(f"--grid {key}= has no values (empty grid): write --grid {key}=V1,V2")
        grid[key] = _split(text, f"--grid {key}")
    return grid


def _check_model(model: str) -> None:
    from quantcore.models.registry import catalog_path

    if not Path(model).expanduser().exists():
        catalog_path(model)  # unknown names fail here, with close matches


def make_sweep(base, grid: dict[str, list[str]], models: list[str], budgets: list[str],
               methods: list[str] = ("ilp",)) -> Sweep:
    """Validate every axis against the hardware spec and the catalogs, then list the points in order.

    base: the SearchRequest every point shares (hw, workload, formats, sensitivity, fixed --set, seed).
    Order: grid values (first --grid outermost), then models, budgets, methods.
    """
    from dse.budget import parse_budget
    from dse.solvers import check_method
    from hwmodels.registry import family_schema
    from hwmodels.spec import apply_overrides, load_spec
    from quantcore.limits import check_cap

    spec = apply_overrides(load_spec(base.hw), list(base.overrides))
    schema = family_schema(spec.family)
    for key, values in grid.items():
        if key not in schema:
            raise QuantDSEError(f"unknown --grid key {key!r} for {spec.name} (family {spec.family}): "
                                f"use one of {', '.join(sorted(schema))}")
        for value in values:
            try:
                apply_overrides(spec, [f"{key}={value}"])
            except QuantDSEError as exc:
                why = str(exc).removeprefix(f"--set {key}={value}: ").removeprefix("--set ")
                raise QuantDSEError(f"--grid {key}={value}: {why}") from None
    if not models or not budgets or not methods:
        raise QuantDSEError("a sweep needs at least one --model, one --budgets value and one --methods value")
    for model in models:
        _check_model(model)
    for budget in budgets:
        parse_budget(budget)
    for method in methods:
        check_method(method)
    count = math.prod(len(v) for v in grid.values()) * len(models) * len(budgets) * len(methods)
    check_cap("sweep_points", count, "grid x models x budgets x methods")  # before listing them
    settings = [tuple(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    points = tuple(Point(s, m, b, meth) for s in settings for m in models for b in budgets for meth in methods)
    return Sweep(hw=base.hw, keys=tuple(grid), points=points, base=base)


# ---- one worker's share: points of one design and model, with prepared work cached per process ----

_MODELS: dict = {}  # (model, sensitivity, formats) -> a Prepared whose graph and sensitivity are reused
_DESIGNS: OrderedDict = OrderedDict()  # full request minus budget/method -> Prepared (a few recent designs)
_MAX_DESIGNS = 16


def _prepared(request):
    from dse.pipeline import prepare, with_hardware

    design = replace(request, budget=None, method="ilp")
    if design in _DESIGNS:
        _DESIGNS.move_to_end(design)
        return _DESIGNS[design]
    model_key = (request.model, request.sensitivity, request.formats)
    base = _MODELS.get(model_key)
    prepared = prepare(design) if base is None else with_hardware(base, design)
    _MODELS.setdefault(model_key, prepared)
    _DESIGNS[design] = prepared
    if len(_DESIGNS) > _MAX_DESIGNS:
        _DESIGNS.popitem(last=False)
    return prepared


def _failure(exc: Exception) -> str:
    return str(exc) if isinstance(exc, QuantDSEError) else f"{type(exc).__name__}: {exc}"


def run_points(requests: list) -> list[dict]:
    """Solve each SearchRequest (one design and model, several budgets/methods); one result dict each.

    A point that fails (infeasible budget, unsupported formats, a bug) gives status "failed"
    and its message; the other points go on.
    """
    from dse.pipeline import solve_prepared

    results = []
    for request in requests:
        row: dict = {"status": "failed", **{k: None for k in TOTALS}, "gap": None, "seconds": None, "message": ""}
        try:
            limits, _ = request.limits()
            problem, result = solve_prepared(_prepared(request), limits, method=request.method)
            row.update(problem.totals(result.assignment))
            row.update(status=result.status, gap=result.gap, seconds=result.seconds)
        except Exception as exc:  # recorded in the CSV: one bad point must not stop a sweep
            row["message"] = _failure(exc)
        results.append(row)
    return results


# ---- the CSV: append as points finish, rewrite in point order at the end ----

def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # repr: the shortest text that reads back as the same float
        return repr(float(value)) if math.isfinite(value) else ""
    return str(value)


def _typed(column: str, text: str):
    if column in _FLOATS:
        return float(text) if text != "" else None
    return text


def read_rows(path: str | Path, columns: list[str]) -> list[dict]:
    """Rows of an earlier (maybe interrupted) run of the same sweep; [] if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # killed while writing a row: drop the partial row
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return []
    if header != columns:
        raise QuantDSEError(f"--out {path} holds a sweep with other columns ({', '.join(header)}): "
                            "choose another --out or delete the file")
    return [{c: _typed(c, v) for c, v in zip(columns, cells)} for cells in reader if len(cells) == len(columns)]


def rows_csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def ordered(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """This sweep's rows in point order, then rows of other points found in --out, in file order."""
    by_key = {sweep.row_key(r): r for r in rows}
    mine = [by_key[p.key()] for p in sweep.points if p.key() in by_key]
    keys = {p.key() for p in sweep.points}
    return mine + [r for r in rows if sweep.row_key(r) not in keys]


# ---- executors: in this process, a process pool, or Ray ----

def _tasks(sweep: Sweep, todo: list[Point], workers: int) -> list[list[Point]]:
    """Points grouped by (design, model), each group cut into chunks so every worker gets work."""
    groups: dict = {}
    for p in todo:
        groups.setdefault((p.settings, p.model), []).append(p)
    size = max(1, math.ceil(len(todo) / (4 * workers)))
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def _import_ray():
    try:
        import ray
    except ImportError:
        ray = None
    if ray is None:
        raise QuantDSEError("--ray needs Ray, which is not installed: pip install 'quantdse[distributed]'")
    return ray


def _connect_ray(workers: int, address: str | None):
    """Ray, initialised here (a local Ray with `workers` CPUs, or the cluster at `address`); (ray, started)."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     object_store_memory=256 * 2**20)
    except (ValueError, ConnectionError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise QuantDSEError(f"cannot start {where} ({str(exc).splitlines()[0]}): check --address "
                            "(`ray start --head` prints it) or run without --ray") from None
    return ray, True


def _one_thread_per_worker() -> None:
    """One BLAS/OpenMP thread per worker process (as Ray does for its tasks), so N workers use N cores."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _run_tasks(sweep: Sweep, tasks: list[list[Point]], workers: int, ray=None):
    """Yield (points, result rows) per task as tasks finish."""
    requests = [[sweep.request(p) for p in task] for task in tasks]
    if ray is not None:
        remote = ray.remote(run_points)
        pending = {remote.remote(r): task for r, task in zip(requests, tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    elif workers == 1:
        for r, task in zip(requests, tasks):
            yield task, run_points(r)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_one_thread_per_worker)
        try:
            futures = {pool.submit(run_points, r): task for r, task in zip(requests, tasks)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class SweepResult:
    """What `run_sweep` did: every row in point order, and how many points it ran."""

    rows: list
    columns: list
    ran: int
    skipped: int
    failed: int
    seconds: float
    interrupted: bool = False


def run_sweep(sweep: Sweep, out: str | None = None, workers: int | None = None, use_ray: bool = False,
              address: str | None = None, progress: bool = False) -> SweepResult:
    """Evaluate every point not already in `out`; rows are appended as they finish.

    workers: processes (default: CPU count); 1 runs in this process. With use_ray, Ray
    tasks instead (a local Ray with `workers` CPUs, or the cluster at `address`).
    """
    from tqdm import tqdm

    workers = max(1, int(workers or os.cpu_count() or 1))
    columns = sweep.columns
    rows = read_rows(out, columns) if out else []
    done = {sweep.row_key(r) for r in rows}
    todo = [p for p in sweep.points if p.key() not in done]
    ray, started = _connect_ray(workers, address) if use_ray else (None, False)
    start = time.perf_counter()
    interrupted = False
    ran = failed = 0
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.hw}", unit="pt", file=sys.stderr, disable=not progress)
    sink = None
    try:
        if out:  # the header (and earlier rows) first, then a row per line as points finish: always valid CSV
            atomic_write_text(out, rows_csv(rows, columns))
            sink = open(out, "a", encoding="utf-8", newline="")
        for points, results in _run_tasks(sweep, _tasks(sweep, todo, workers), workers, ray):
            new = [{"hw": sweep.hw, **dict(p.settings), "model": p.model, "budget": p.budget, "method": p.method,
                    **res} for p, res in zip(points, results)]
            rows.extend(new)
            ran += len(new)
            failed += sum(r["status"] == "failed" for r in new)
            if sink:
                sink.write(rows_csv(new, columns).split("\n", 1)[1])
                sink.flush()
            bar.update(len(new))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if sink:
            sink.close()
        if started:
            ray.shutdown()
    rows = ordered(sweep, rows)
    if out:
        atomic_write_text(out, rows_csv(rows, columns))
    return SweepResult(rows=rows, columns=columns, ran=ran, skipped=len(sweep.points) - len(todo), failed=failed,
                       seconds=time.perf_counter() - start, interrupted=interrupted)


def sweep(hw: str, grid: dict | None = None, models=("llama-2-7b",), budgets=("4bits",), methods=("ilp",),
          out: str | None = None, workers: int | None = 1, use_ray: bool = False, address: str | None = None,
          progress: bool = False, **request) -> SweepResult:
    """The CLI as a function (for notebooks): `request` takes SearchRequest fields
    (workload=Workload(...), formats=(...), sensitivity=..., overrides=("k=v", ...), seed=...)."""
    from dse.pipeline import SearchRequest

    if "overrides" in request:
        request["overrides"] = tuple(request["overrides"])
    if request.get("formats") is not None:
        request["formats"] = tuple(request["formats"])
    base = SearchRequest(hw=hw, **request)
    spec = make_sweep(base, {k: [str(v) for v in vs] for k, vs in (grid or {}).items()}, list(models),
                      list(budgets), list(methods))
    return run_sweep(spec, out=out, workers=workers, use_ray=use_ray, address=address, progress=progress)


def build_parser() -> ArgumentParser:
    from dse.search import add_request_args

    p = ArgumentParser(prog="experiments.sweep", description=__doc__.split("\n")[0], conflict_handler="resolve")
    add_request_args(p)  # --hw, --set (fixed for all points), --phase/--batch/--seq/--kv-bits, --formats, ...
    p.add_argument("--model", action="append", default=[], help="catalog name, config.json or safetensors; "
                                                                "repeatable (default llama-2-7b)")
    p.add_argument("--methods", "--method", dest="methods", default="ilp",
                   help="solvers, comma-separated (default ilp): ilp, lagrangian, baq, nas, greedy, uniform")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="hardware spec param and its values (python -m hwmodels.list), repeatable")
    p.add_argument("--budgets", required=True, help="comma-separated budgets: 4bits,6bits or 3.5GB or 12ms or 5mJ")
    p.add_argument("--out", help="CSV of every point; existing points are skipped (resume)")
    p.add_argument("--workers", type=int, help="processes (default: CPU count); 1 = in this process")
    p.add_argument("--ray", action="store_true", help="run the points as Ray tasks (pip install 'quantdse[distributed]')")
    p.add_argument("--address", help="Ray cluster address (ray start --head prints it); default: a local Ray")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    return p


def main(argv=None) -> int:
    from dse import search

    args = build_parser().parse_args(argv)
    if args.address and not args.ray:
        raise QuantDSEError("--address is for Ray: add --ray")
    if args.workers is not None and args.workers < 1:
        raise QuantDSEError(f"--workers must be at least 1, got {args.workers}")
    if args.ray:
        _import_ray()
    check_outputs([args.out], [*args.model, args.sensitivity, args.hw])  # before any work
    flags = argparse.Namespace(**vars(args))
    flags.model, flags.method, flags.budget = None, "ilp", None
    flags.max_latency_ms = flags.max_energy_mj = flags.max_memory_gb = None
    base = search.request_from_args(flags)
    spec = make_sweep(base, parse_grid(args.grid), args.model or ["llama-2-7b"], _split(args.budgets, "--budgets"),
                      _split(args.methods, "--methods"))
    result = run_sweep(spec, out=args.out, workers=args.workers, use_ray=args.ray, address=args.address,
                       progress=True)
    if args.json:
        sys.stdout.write(json.dumps(result.rows, indent=2) + "\n")
    elif not args.out:
        sys.stdout.write(rows_csv(result.rows, result.columns))
    rate = result.ran / result.seconds if result.seconds > 0 else float("nan")
    where = f" -> {args.out}" if args.out else ""
    print(f"sweep: {len(spec.points)} points, {result.ran} run ({result.failed} failed), {result.skipped} already "
          f"in --out; {result.seconds:.1f} s, {rate:.1f} points/s{where}",
          file=sys.stderr if args.json or not args.out else sys.stdout)
    if result.interrupted:
        print(f"interrupted: the finished points are in {args.out or 'no file (no --out)'}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
