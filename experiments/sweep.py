"""`python -m experiments.sweep`: co-design grids of hardware params x workloads x models x budgets x methods.

    python -m experiments.sweep --hw systolic --grid rows=16,32 --grid dataflow=os,ws --model resnet-50 \\
        --budgets 4bits,6bits --out sweep.csv
    python -m experiments.sweep --hw a100-80gb,h100-sxm --grid batch=1,8 --model llama-2-7b --budgets 4bits ...
    python -m experiments.sweep ... --ray [--address HOST:6379]      # on Ray instead of a local process pool
    python -m experiments.sweep --plot sweep.csv --x latency_s --y error [--color rows]   # a figure, no code

Every point is exactly one `dse.search`: one target (`--hw a,b` or repeated `--hw`), the point's
hardware values as `--set` overrides and its workload values (`--grid batch=1,8`, `seq`, `phase`,
`kv_bits`) in the workload, one model, one budget, one method. The CSV has one row per point:
the point's keys, the workload costed, the plan's totals, throughput (tokens/s for language
models, images/s for CNNs: batch / latency, tokens counting the prompt in prefill), the solver's
status, gap, which solver proved it and seconds, and `message` (why a point failed; a failed
point does not stop the sweep).

Prepared work is shared through one `dse.pipeline.Cache` the sweep creates and hands to each
worker: a model's graph and sensitivity are computed once, a design's tables serve all its
budgets and methods, and a problem equal to one solved before (a bits budget on designs
that differ only in speed) reuses that proven optimum. Rows are appended to `--out` as they
finish (so Ctrl-C or a crash leaves a valid CSV), and the file is rewritten atomically in
point order at the end. Points already in `--out` are skipped, so running the same command
again resumes; rows of `--out` that cannot be read back are computed again, with a note.
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
import signal
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from dse.budget import budget_from_text
from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, check_outputs
from quantcore.limits import int_flag

TOTALS = ("effective_bits", "memory_bytes", "latency_s", "energy_j", "error")
THROUGHPUT = ("tokens_per_s", "images_per_s")
#: a decoder's time to first token and per output token (hwmodels.wholemodel.serving_totals)
TOKEN_TIMES = ("ttft_s", "tpot_s")
#: the workload fields a --grid may vary (kv-bits is accepted for kv_bits)
WORKLOAD_KEYS = ("phase", "batch", "seq", "kv_bits")
#: serving fields a --grid may vary too, columns only where a sweep sets them (output-len, devices, parallel)
SERVING_KEYS = ("output_len", "devices", "parallel")
SERVING_DEFAULTS = {"output_len": None, "devices": 1, "parallel": "tp"}
RESULT_COLUMNS = ("status",) + TOTALS + THROUGHPUT + TOKEN_TIMES + ("gap", "solver", "seconds", "message")
#: columns that differ between two runs of the same sweep (wall-clock measurements)
TIMING_COLUMNS = ("seconds",)
_FLOATS = set(TOTALS) | set(THROUGHPUT) | set(TOKEN_TIMES) | {"gap", "seconds"}
#: seconds to wait for a Ray cluster's port to answer before --address is declared unreachable
RAY_CONNECT_TIMEOUT_S = 5.0
MAX_WORKERS = 1024


@dataclass(frozen=True)
class Point:
    """One design point: target, grid values (as typed), model, budget and method."""

    hw: str
    settings: tuple  # ((key, value text), ...) in --grid order
    model: str
    budget: str
    method: str

    def key(self) -> tuple:
        return (self.hw,) + tuple(v for _, v in self.settings) + (self.model, self.budget, self.method)


@dataclass(frozen=True)
class Row:
    """One row of a sweep: the point, the workload costed and what the search gave (None: failed).

    `row["rows"]` reads a grid value or any column by its CSV name, as in the CSV (grid values as text).
    """

    point: Point
    status: str
    phase: str | None = None
    batch: int | None = None
    seq: int | None = None
    kv_bits: int | None = None
    output_len: int | None = None
    devices: int | None = None
    parallel: str | None = None
    effective_bits: float | None = None
    memory_bytes: float | None = None
    latency_s: float | None = None
    energy_j: float | None = None
    error: float | None = None
    tokens_per_s: float | None = None
    images_per_s: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    gap: float | None = None
    solver: str = ""
    seconds: float | None = None
    message: str = ""

    def __getitem__(self, column: str):
        point = self.point
        settings = dict(point.settings)
        if column in settings:
            return settings[column]
        if column in ("hw", "model", "budget", "method"):
            return getattr(point, column)
        if column in _ROW_FIELDS:
            return getattr(self, column)
        raise KeyError(column)

    def get(self, column: str, default=None):
        try:
            return self[column]
        except KeyError:
            return default

    def as_dict(self, columns) -> dict:
        return {c: self.get(c) for c in columns}


_ROW_FIELDS = tuple(f.name for f in fields(Row) if f.name != "point")


@dataclass(frozen=True)
class Sweep:
    """A validated grid: every point in order and the request all points share."""

    targets: tuple
    keys: tuple
    points: tuple
    base: object  # dse.pipeline.SearchRequest; hw, model, budget, method and grid values set per point

    @property
    def hw(self) -> str:
        return ",".join(self.targets)

    @property
    def columns(self) -> list[str]:
        shown = [k for k in WORKLOAD_KEYS if k not in self.keys]  # the workload costed, unless a grid axis
        w = self.base.workload
        shown += [k for k in SERVING_KEYS if k not in self.keys and (
            getattr(w, k) != SERVING_DEFAULTS[k] or (k == "output_len" and "generate" in self._phases()))]
        return ["hw", *self.keys, "model", "budget", "method", *shown, *RESULT_COLUMNS]

    def _phases(self) -> set:
        return {dict(p.settings).get("phase", self.base.workload.phase) for p in self.points}

    def request(self, point: Point):
        """The SearchRequest of `point`: its target, workload values, hardware values as --set overrides."""
        settings = dict(point.settings)
        workload = {k: _workload_value(k, settings.pop(k)) for k in WORKLOAD_KEYS + SERVING_KEYS if k in settings}
        return replace(self.base, hw=point.hw, model=point.model, budget=budget_from_text(point.budget),
                       method=point.method, workload=replace(self.base.workload, **workload),
                       overrides={**dict(self.base.overrides), **settings})

    def row_key(self, row) -> tuple:
        return tuple(str(row[k]) for k in ("hw", *self.keys, "model", "budget", "method"))


def _workload_value(key: str, text: str):
    return text if key in ("phase", "parallel") else int(text)


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


def parse_targets(items) -> list[str]:
    """`--hw a,b` and repeated `--hw`: every target named, in order, each once."""
    targets: list[str] = []
    for item in items:
        for name in _split(item, "--hw"):
            if name in targets:
                raise QuantDSEError(f"--hw {name} is given twice: name each target once")
            targets.append(name)
    if not targets:
        raise QuantDSEError("a sweep needs --hw: a target name (python -m hwmodels.list), several comma-separated")
    return targets


def _check_workload_axis(base, key: str, values: list[str]) -> None:
    from hwmodels.workload import PHASES
    from quantcore.limits import RANGES, int_problem

    if getattr(base.workload, key) != SERVING_DEFAULTS.get(key):
        raise QuantDSEError(f"--grid {key} and --{key.replace('_', '-')} both set it: drop one")
    for value in values:
        if key == "phase":
            if value not in PHASES:
                raise QuantDSEError(f"--grid phase={value}: phase must be one of {', '.join(PHASES)}")
            continue
        if key == "parallel":
            if value not in ("tp", "pp"):
                raise QuantDSEError(f"--grid parallel={value}: parallel must be tp or pp")
            continue
        try:
            number = int(value)
        except ValueError:
            raise QuantDSEError(f"--grid {key}={value}: {key} must be an integer") from None
        problem = int_problem(number, *RANGES[key])
        if problem:
            raise QuantDSEError(f"--grid {key}={value}: {key} {problem}")


def make_sweep(base, grid: dict[str, list[str]], models: list[str], budgets: list[str],
               methods: list[str] = ("ilp",), targets: list[str] | None = None) -> Sweep:
    """Validate every axis against each target's spec and the catalogs, then list the points in order.

    base: the SearchRequest every point shares (workload, formats, sensitivity, fixed --set, seed).
    targets: the hardware targets (default: base.hw). Grid keys are spec params every target has,
    or workload fields (phase, batch, seq, kv_bits).
    Order: targets, then grid values (first --grid outermost), then models, budgets, methods.
    """
    from dse.budget import parse_budget
    from dse.solvers import check_method
    from hwmodels.registry import family_schema
    from hwmodels.spec import apply_overrides, load_spec
    from quantcore.limits import check_cap

    targets = list(targets or [base.hw])
    grid = {("kv_bits" if k == "kv-bits" else k): v for k, v in grid.items()}
    for key in WORKLOAD_KEYS + SERVING_KEYS:
        if key in grid:
            _check_workload_axis(base, key, grid[key])
    for target in targets:
        spec = apply_overrides(load_spec(target), list(base.overrides))
        schema = family_schema(spec.family)
        for key, values in grid.items():
            if key in WORKLOAD_KEYS + SERVING_KEYS:
                continue
            if key not in schema:
                raise QuantDSEError(f"unknown --grid key {key!r} for {spec.name} (family {spec.family}): "
                                    f"use one of {', '.join(sorted(schema) + list(WORKLOAD_KEYS + SERVING_KEYS))}")
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
    count = len(targets) * math.prod(len(v) for v in grid.values()) * len(models) * len(budgets) * len(methods)
    check_cap("sweep_points", count, "targets x grid x models x budgets x methods")  # before listing them
    settings = [tuple(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    points = tuple(Point(hw, s, m, b, meth) for hw in targets for s in settings for m in models for b in budgets
                   for meth in methods)
    return Sweep(targets=tuple(targets), keys=tuple(grid), points=points, base=base)


# ---- one worker's share: points of one design and model, with the sweep's cache ----

def _failure(exc: Exception) -> str:
    return str(exc) if isinstance(exc, QuantDSEError) else f"{type(exc).__name__}: {exc}"


def _throughput(prepared, latency_s: float, assignment) -> dict:
    """Decoders: tokens/s, TTFT and TPOT as the plan gives them (dse.pipeline.Prepared.serving_totals);
    encoders: batch x seq / latency; CNNs: images/s (batch / latency)."""
    w = prepared.workload
    if not latency_s > 0:
        return {}
    arch = prepared.graph.config.get("arch", "decoder")
    if arch == "cnn":
        return {"images_per_s": w.batch / latency_s}
    if arch == "decoder":
        return prepared.serving_totals(assignment)
    return {"tokens_per_s": w.batch * w.seq / latency_s}


def run_points(requests: list, cache, solve_options: tuple = ()) -> list[dict]:
    """Solve each SearchRequest with the sweep's cache; one dict of Row fields each.

    solve_options: (key, value) pairs for the solver (e.g. (("solver", "pulp"),) for the ILP through PuLP);
    a solve given options is never answered from the cache.

    A point that fails (infeasible budget, unsupported formats, a bug) gives status "failed"
    and its message; the other points go on.
    """
    from dse.pipeline import solve_prepared

    results = []
    for request in requests:
        row: dict = {"status": "failed", "message": ""}
        hits = cache.hits["solves"]
        try:
            limits, _ = request.limits()
            prepared = cache.prepared(request)
            w = prepared.workload
            row.update(phase=w.phase, batch=w.batch, seq=w.seq, kv_bits=w.kv_bits, output_len=w.output_len,
                       devices=w.devices, parallel=w.parallel)
            problem, result = solve_prepared(prepared, limits, method=request.method, cache=cache,
                                             **dict(solve_options))
            row.update(problem.totals(result.assignment))
            row.update(_throughput(prepared, row["latency_s"], result.assignment))
            row.update(status=result.status, gap=result.gap, seconds=result.seconds,
                       solver=str(result.info.get("proved_by") or result.info.get("solver") or request.method))
        except Exception as exc:  # recorded in the CSV: one bad point must not stop a sweep
            row["message"] = _failure(exc)
        row["_reused"] = cache.hits["solves"] > hits  # counted by the sweep, not a column: executors differ in it
        results.append(row)
    return results


# ---- the CSV: append as points finish, rewrite in point order at the end ----

def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # repr: the shortest text that reads back as the same float
        return repr(float(value)) if math.isfinite(value) else ""
    return str(value)


def _parse_row(sweep: Sweep, cells: list[str]) -> Row | None:
    """A row of --out read back, or None where a cell is not what this program writes (tampered)."""
    from dse.solvers.result import STATUSES

    d = dict(zip(sweep.columns, cells))
    if d["status"] not in (*STATUSES, "failed"):
        return None
    point = Point(d["hw"], tuple((k, d[k]) for k in sweep.keys), d["model"], d["budget"], d["method"])
    values: dict = {}
    try:
        for column, text in d.items():
            if column in _FLOATS and text != "":
                values[column] = float(text)
                if not math.isfinite(values[column]):
                    return None
            elif column in ("batch", "seq", "kv_bits", "output_len", "devices") and text != "":
                values[column] = int(text)
            elif column in ("phase", "parallel", "solver", "message") and text != "":
                values[column] = text
    except ValueError:
        return None
    return Row(point, d["status"], **values)


def read_rows(path: str | Path, sweep: Sweep) -> tuple[list[Row], int]:
    """(rows of an earlier, maybe interrupted run of the same sweep, how many rows could not be read);
    ([], 0) if the file does not exist. A file that is not this sweep's CSV is a one-line error."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    columns = sweep.columns
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise QuantDSEError(f"--out {path} is not a sweep CSV (not UTF-8 text): delete it or choose another --out")
    if "\0" in text:
        raise QuantDSEError(f"--out {path} is not a sweep CSV (binary data): delete it or choose another --out")
    if text and not text.endswith("\n"):  # killed while writing a row: drop the partial row
        text = text[: text.rfind("\n") + 1]
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise QuantDSEError(f"--out {path} is not a sweep CSV ({exc}): delete it or choose another --out") from None
    if not lines:
        return [], 0
    header = lines[0]
    if header != columns:
        shown = ", ".join(header)
        shown = shown if len(shown) <= 120 and shown.isprintable() else repr(shown[:80]) + "..."
        raise QuantDSEError(f"--out {path} holds a sweep with other columns ({shown}): "
                            "choose another --out or delete the file")
    points = {p.key() for p in sweep.points}
    rows, bad, seen = [], 0, set()
    for cells in lines[1:]:
        row = _parse_row(sweep, cells) if len(cells) == len(columns) else None
        key = sweep.row_key(row) if row is not None else None
        if key not in points or key in seen:  # unreadable, of no point of this sweep, or a second copy
            bad += 1
        else:
            seen.add(key)
            rows.append(row)
    return rows, bad


def rows_csv(rows: list, columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def ordered(sweep: Sweep, rows: list[Row]) -> list[Row]:
    """This sweep's rows in point order, then rows of other points found in --out, in file order."""
    by_key = {sweep.row_key(r): r for r in rows}
    mine = [by_key[p.key()] for p in sweep.points if p.key() in by_key]
    keys = {p.key() for p in sweep.points}
    return mine + [r for r in rows if sweep.row_key(r) not in keys]


# ---- executors: in this process, a process pool, or Ray; each worker holds the sweep's cache ----

def _tasks(sweep: Sweep, todo: list[Point], workers: int) -> list[list[Point]]:
    """Points grouped by (target, design, model), each group cut into chunks so every worker gets work."""
    groups: dict = {}
    for p in todo:
        groups.setdefault((p.hw, p.settings, p.model), []).append(p)
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


def _check_reachable(address: str) -> None:
    """A one-line error unless HOST:PORT answers within RAY_CONNECT_TIMEOUT_S (Ray itself retries for minutes)."""
    import socket

    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise QuantDSEError(f"--address {address!r} must be HOST:PORT, e.g. 127.0.0.1:6379 (`ray start --head` "
                            "prints it)")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise QuantDSEError(f"cannot reach the Ray cluster at {address} ({why}, waited up to "
                            f"{RAY_CONNECT_TIMEOUT_S:g} s): check --address (`ray start --head` prints it) "
                            "or run without --ray") from None


def _connect_ray(workers: int, address: str | None):
    """Ray, initialised here (a local Ray with `workers` CPUs, or the cluster at `address`); (ray, started)."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if address:
        _check_reachable(address)
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


def _pool_worker(cache, solve_options, tasks, results) -> None:
    """A process-pool worker: solves tasks from the queue with its copy of the sweep's cache until None.

    Ctrl-C goes to the whole process group; the sweep's process alone handles it (and ends the workers).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the CLI's handler: end quietly
    for index, requests in iter(tasks.get, None):
        results.put((index, run_points(requests, cache, solve_options)))


class RayWorker:
    """A Ray actor holding its copy of the sweep's cache across the tasks it is given."""

    def __init__(self, cache, solve_options=()):
        self.cache, self.solve_options = cache, solve_options

    def run(self, requests):
        return run_points(requests, self.cache, self.solve_options)


def _start_method() -> str:
    """fork where it is safe (no threads in this process, none of the libraries that keep thread pools
    loaded: workers start in milliseconds with this process's modules and cache); else spawn."""
    import multiprocessing
    import threading

    pools = ("torch", "highspy", "ray", "tensorflow", "jax")
    if ("fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
            and not any(name in sys.modules for name in pools)):
        return "fork"
    return "spawn"


def _run_pool(requests: list, workers: int, cache, solve_options):
    import multiprocessing
    import queue

    _one_thread_per_worker()
    ctx = multiprocessing.get_context(_start_method())
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_pool_worker, args=(cache, solve_options, tasks, results), daemon=True)
             for _ in range(min(workers, len(requests)))]
    for proc in procs:
        proc.start()
    try:
        for item in enumerate(requests):
            tasks.put(item)
        for _ in procs:
            tasks.put(None)
        for _ in requests:
            while True:
                try:
                    yield results.get(timeout=0.5)
                    break
                except queue.Empty:
                    dead = [p for p in procs if p.exitcode not in (None, 0)]
                    if dead or all(p.exitcode is not None for p in procs):  # results still due: lost
                        code = dead[0].exitcode if dead else 0
                        raise RuntimeError(f"a sweep worker died (exit code {code})") from None
    finally:  # done, Ctrl-C (first signal) or an error: end the workers now, never wait on their queue
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        tasks.cancel_join_thread()
        results.cancel_join_thread()


def _run_ray(ray, requests: list, workers: int, cache, solve_options):
    actor = ray.remote(num_cpus=1)(RayWorker)
    actors = [actor.remote(cache, solve_options) for _ in range(min(workers, len(requests)))]
    todo = list(enumerate(requests))[::-1]
    pending = {}
    for a in actors:
        if todo:
            index, r = todo.pop()
            pending[a.run.remote(r)] = (index, a)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index, a = pending.pop(done[0])
            yield index, ray.get(done[0])
            if todo:
                nxt, r = todo.pop()
                pending[a.run.remote(r)] = (nxt, a)
    finally:
        for a in actors:
            ray.kill(a)


def _run_tasks(sweep: Sweep, tasks: list[list[Point]], workers: int, cache, ray=None, solve_options=()):
    """Yield (points, result dicts) per task as tasks finish."""
    requests = [[sweep.request(p) for p in task] for task in tasks]
    if not tasks:
        return
    if ray is not None:
        runs = _run_ray(ray, requests, workers, cache, solve_options)
    elif workers == 1:
        runs = ((i, run_points(r, cache, solve_options)) for i, r in enumerate(requests))
    else:
        runs = _run_pool(requests, workers, cache, solve_options)
    for index, results in runs:
        yield tasks[index], results


@dataclass
class SweepResult:
    """What `run_sweep` did: every row in point order (typed `Row`s), and how many points it ran."""

    rows: list
    columns: list
    ran: int
    skipped: int
    failed: int
    seconds: float
    interrupted: bool = False
    unreadable: int = 0  # rows of --out that could not be read back (computed again)
    reused: int = 0  # points whose solve was answered by an equal problem solved before in the same worker


def run_sweep(sweep: Sweep, out: str | None = None, workers: int | None = None, use_ray: bool = False,
              address: str | None = None, progress: bool | None = None, cache=None,
              solve_options: dict | None = None) -> SweepResult:
    """Evaluate every point not already in `out`; rows are appended as they finish.

    workers: processes (default: CPU count); 1 runs in this process. With use_ray, Ray
    actors instead (a local Ray with `workers` CPUs, or the cluster at `address`).
    progress: a bar on stderr (None: only when stderr is a terminal).
    cache: a dse.pipeline.Cache (default: a new one, for this sweep only); each worker gets a copy.
    solve_options: options for every solve (benchmarks: {"solver": "pulp"}); such solves bypass the cache.
    """
    from tqdm import tqdm

    from dse.pipeline import Cache

    class Bar(tqdm):
        monitor_interval = 0  # no monitor thread: workers may then fork (see _start_method)

    cache = Cache() if cache is None else cache
    workers = max(1, int(workers or os.cpu_count() or 1))
    columns = sweep.columns
    rows, unreadable = read_rows(out, sweep) if out else ([], 0)
    if unreadable:
        print(f"note: {unreadable} rows of {out} could not be read back (not what a sweep writes): "
              "computing those points again", file=sys.stderr)
    done = {sweep.row_key(r) for r in rows}
    todo = [p for p in sweep.points if p.key() not in done]
    ray, started = _connect_ray(workers, address) if use_ray else (None, False)
    start = time.perf_counter()
    if workers > 1 or use_ray:  # each model's graph and sensitivity once here, not once per worker
        for request in {(p.model): sweep.request(p) for p in todo}.values():
            cache.warm(request)
    interrupted = False
    ran = failed = reused = 0
    shown = sys.stderr.isatty() if progress is None else progress
    bar = Bar(total=len(todo), desc=f"sweep {sweep.hw}", unit="pt", file=sys.stderr, disable=not shown)
    sink = None
    try:
        if out:  # the header (and earlier rows) first, then a row per line as points finish: always valid CSV
            atomic_write_text(out, rows_csv(rows, columns))
            sink = open(out, "a", encoding="utf-8", newline="")
        for points, results in _run_tasks(sweep, _tasks(sweep, todo, workers), workers, cache, ray,
                                          tuple(sorted((solve_options or {}).items()))):
            reused += sum(res.pop("_reused") for res in results)
            new = [Row(p, **res) for p, res in zip(points, results)]
            rows.extend(new)
            ran += len(new)
            failed += sum(r.status == "failed" for r in new)
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
    try:  # rewrite --out in point order; on Ctrl-C here the appended file, already whole, stands
        rows = ordered(sweep, rows)
        if out:
            atomic_write_text(out, rows_csv(rows, columns))
    except KeyboardInterrupt:
        interrupted = True
    return SweepResult(rows=rows, columns=columns, ran=ran, skipped=len(sweep.points) - len(todo), failed=failed,
                       seconds=time.perf_counter() - start, interrupted=interrupted, unreadable=unreadable,
                       reused=reused)


def sweep(hw, grid: dict | None = None, models=("llama-2-7b",), budgets=("4bits",), methods=("ilp",),
          out: str | None = None, workers: int | None = 1, use_ray: bool = False, address: str | None = None,
          progress: bool | None = None, cache=None, **request) -> SweepResult:
    """The CLI as a function (for notebooks): hw is a target or a list of them; `request` takes
    SearchRequest fields (workload=Workload(...), formats=(...), sensitivity=..., overrides={"rows": 32},
    seed=...). Rows are `Row`s: `row["latency_s"]`, `row["rows"]` (grid values as text)."""
    from dse.pipeline import SearchRequest

    targets = parse_targets([hw] if isinstance(hw, str) else list(hw))
    if request.get("formats") is not None:
        request["formats"] = tuple(request["formats"])
    if request.get("include") is not None:
        request["include"] = tuple(request["include"])
    base = SearchRequest(hw=targets[0], **request)
    spec = make_sweep(base, {k: [str(v) for v in vs] for k, vs in (grid or {}).items()}, list(models),
                      list(budgets), list(methods), targets)
    return run_sweep(spec, out=out, workers=workers, use_ray=use_ray, address=address, progress=progress,
                     cache=cache)


def build_parser() -> ArgumentParser:
    from dse.search import add_request_args

    p = ArgumentParser(prog="experiments.sweep", description=__doc__.split("\n")[0], conflict_handler="resolve")
    add_request_args(p)  # --set (fixed for all points), --phase/--batch/--seq/--kv-bits, --formats, ...
    p.add_argument("--hw", action="append", default=[], help="target(s): a name (python -m hwmodels.list) or "
                                                             "spec .toml; several comma-separated or repeated")
    p.add_argument("--model", action="append", default=[], help="catalog name, config.json or safetensors; "
                                                                "repeatable (default llama-2-7b)")
    p.add_argument("--methods", "--method", dest="methods", default="ilp",
                   help="solvers, comma-separated (default ilp): ilp, lagrangian, baq, nas, greedy, uniform")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a hardware spec param (python -m hwmodels.list) or workload field (phase, batch, seq, "
                        "kv_bits, output_len, devices, parallel) and its values, repeatable")
    p.add_argument("--budgets", help="comma-separated budgets: 4bits,6bits or 3.5GB or 12ms or 5mJ")
    p.add_argument("--out", help="CSV of every point; existing points are skipped (resume). With --plot: the figure "
                                 "(default: the CSV's name with .png)")
    p.add_argument("--workers", type=int_flag(1, MAX_WORKERS),
                   help="processes (default: CPU count); 1 = in this process")
    p.add_argument("--ray", action="store_true", help="run the points as Ray tasks (pip install 'quantdse[distributed]')")
    p.add_argument("--address", help="Ray cluster address (ray start --head prints it); default: a local Ray")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    p.add_argument("--plot", metavar="CSV", help="draw a figure from a sweep CSV instead of sweeping (with --x, --y)")
    p.add_argument("--x", help="--plot: the column on the horizontal axis")
    p.add_argument("--y", help="--plot: the column on the vertical axis")
    p.add_argument("--color", help="--plot: the column that colours the points (numbers: a colour scale)")
    return p


def main(argv=None) -> int:
    from dse import search

    args = build_parser().parse_args(argv)
    if args.plot:
        from experiments.sweep_plot import plot_csv

        if not args.x or not args.y:
            raise QuantDSEError("--plot needs --x COLUMN and --y COLUMN (columns of the CSV)")
        path = plot_csv(args.plot, args.x, args.y, args.color, args.out)
        print(f"figure: {path}")
        return 0
    if args.address and not args.ray:
        raise QuantDSEError("--address is for Ray: add --ray")
    targets = parse_targets(args.hw)
    if args.budgets is None:
        raise QuantDSEError("a sweep needs --budgets: comma-separated budgets, e.g. --budgets 4bits,6bits")
    if args.ray:
        _import_ray()
    check_outputs([args.out], [*args.model, args.sensitivity, *targets])  # before any work
    flags = argparse.Namespace(**vars(args))
    flags.hw, flags.model, flags.method, flags.budget = targets[0], None, "ilp", None
    flags.max_latency_ms = flags.max_energy_mj = flags.max_memory_gb = None
    base = search.request_from_args(flags)
    spec = make_sweep(base, parse_grid(args.grid), args.model or ["llama-2-7b"], _split(args.budgets, "--budgets"),
                      _split(args.methods, "--methods"), targets)
    result = run_sweep(spec, out=args.out, workers=args.workers, use_ray=args.ray, address=args.address)
    if args.json:
        sys.stdout.write(json.dumps([r.as_dict(result.columns) for r in result.rows], indent=2) + "\n")
    elif not args.out:
        sys.stdout.write(rows_csv(result.rows, result.columns))
    rate = result.ran / result.seconds if result.seconds > 0 else float("nan")
    where = f" -> {args.out}" if args.out else ""
    reused = f" ({result.reused} reused the proven optimum of an equal problem)" if result.reused else ""
    print(f"sweep: {len(spec.points)} points, {result.ran} run ({result.failed} failed), {result.skipped} already "
          f"in --out; {result.seconds:.1f} s, {rate:.1f} points/s{where}{reused}",
          file=sys.stderr if args.json or not args.out else sys.stdout)
    if result.interrupted:
        print(f"interrupted: the finished points are in {args.out or 'no file (no --out)'}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
