"""Co-design sweeps: rows equal dse.search's plans, one CSV whatever runs it, resume, failures, bad input."""
import csv
import sys

import pytest

from dse.budget import Budget
from dse.pipeline import SearchRequest
from dse.search import search
from experiments import sweep as sw
from hwmodels.workload import Workload
from quantcore.cli import run_cli
from conftest import require

FORMATS = ("int4-g128", "int8", "fp16")
WORKLOAD = Workload("prefill", 1, 1)
# two array sizes x two dataflows x two budgets; 1ms is below what a 16x16 array can do (failed points)
ARGS = ["--hw", "systolic", "--grid", "rows=16,32", "--grid", "dataflow=os,ws", "--model", "resnet-50",
        "--budgets", "5bits,1ms", "--formats", ",".join(FORMATS), "--phase", "prefill", "--seq", "1"]


def small_sweep(**grid):
    base = SearchRequest(hw="systolic", workload=WORKLOAD, formats=FORMATS)
    return sw.make_sweep(base, grid or {"rows": ["16", "32"], "dataflow": ["os", "ws"]}, ["resnet-50"],
                         ["5bits", "1ms"])


def without_timing(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k not in sw.TIMING_COLUMNS} for r in rows]


def test_rows_equal_the_plans_dse_search_writes():
    """Oracle: every feasible point is dse.search run alone on that design (fresh prepare, no cache)."""
    result = sw.run_sweep(small_sweep(), workers=1)
    assert [r["rows"] for r in result.rows] == ["16"] * 4 + ["32"] * 4  # point order: first --grid outermost
    for row in result.rows:
        if row["budget"] == "1ms":
            continue
        plan = search(SearchRequest(hw="systolic", model="resnet-50", budget=Budget.bits(5), workload=WORKLOAD,
                                    formats=FORMATS, overrides={"rows": row["rows"], "dataflow": row["dataflow"]}))
        assert row["status"] == plan["solver"]["status"] == "optimal"
        for key in sw.TOTALS:
            assert row[key] == pytest.approx(plan["totals"][key], rel=1e-12), key
    # the designs differ where the cost model says they should: ws is slower than os on resnet-50 (1 image)
    lat = {(r["rows"], r["dataflow"]): r["latency_s"] for r in result.rows if r["budget"] == "5bits"}
    assert lat[("16", "os")] > lat[("32", "os")] and lat[("32", "ws")] > lat[("32", "os")]


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert run_cli(sw.main, ARGS + ["--out", str(out), "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(out)))
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 8 and {r["budget"] for r in failed} == {"1ms"}
    assert all("below the smallest feasible" in r["message"] and r["latency_s"] == "" for r in failed)
    assert all(r["status"] == "optimal" and r["message"] == "" for r in rows if r["budget"] == "5bits")
    assert "8 points, 8 run (4 failed)" in capsys.readouterr().out


def test_model_graph_and_sensitivity_are_computed_once_per_model(monkeypatch):
    import dse.pipeline as pipeline

    calls = []
    real = pipeline.compute_sensitivity
    monkeypatch.setattr(pipeline, "compute_sensitivity", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = sw.run_sweep(small_sweep(rows=["8", "16", "24"], dataflow=["os", "ws", "is"]), workers=1)
    assert len(result.rows) == 18 and len(calls) == 1  # 9 designs x 2 budgets, one sensitivity


def test_process_pool_and_in_process_give_the_same_csv(tmp_path):
    one, pool = tmp_path / "one.csv", tmp_path / "pool.csv"
    assert run_cli(sw.main, ARGS + ["--out", str(one), "--workers", "1"]) == 0
    assert run_cli(sw.main, ARGS + ["--out", str(pool), "--workers", "2"]) == 0
    assert without_timing(one) == without_timing(pool)


@pytest.mark.slow
def test_ray_gives_the_same_csv_as_the_process_pool(tmp_path):
    require("ray")
    pool, ray = tmp_path / "pool.csv", tmp_path / "ray.csv"
    assert run_cli(sw.main, ARGS + ["--out", str(pool), "--workers", "2"]) == 0
    assert run_cli(sw.main, ARGS + ["--out", str(ray), "--ray", "--workers", "2"]) == 0
    assert without_timing(pool) == without_timing(ray) and len(without_timing(ray)) == 8


def test_resume_skips_done_points_and_drops_a_torn_last_row(tmp_path):
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    sw.run_sweep(small_sweep(), out=str(full), workers=1)
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:4]) + lines[4][:25])  # header, 3 rows, a row cut mid-write
    result = sw.run_sweep(small_sweep(), out=str(part), workers=1)
    assert (result.skipped, result.ran) == (3, 5)
    assert without_timing(part) == without_timing(full)
    assert sw.run_sweep(small_sweep(), out=str(part), workers=1).ran == 0


def test_ctrl_c_leaves_a_valid_partial_csv_in_point_order(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.csv"
    real, calls = sw.run_points, []

    def interrupt_third(requests, cache, *options):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(requests, cache, *options)

    monkeypatch.setattr(sw, "run_points", interrupt_third)
    assert run_cli(sw.main, ARGS + ["--out", str(out), "--workers", "1"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    rows = without_timing(out)
    assert 0 < len(rows) < 8 and all(len(r) == len(small_sweep().columns) - len(sw.TIMING_COLUMNS) for r in rows)
    monkeypatch.setattr(sw, "run_points", real)
    assert run_cli(sw.main, ARGS + ["--out", str(out), "--workers", "1"]) == 0
    assert len(without_timing(out)) == 8


def test_resume_refuses_a_file_of_another_sweep(tmp_path, capsys):
    out = tmp_path / "s.csv"
    out.write_text("budget,status\n4bits,optimal\n")
    assert run_cli(sw.main, ARGS + ["--out", str(out)]) == 2
    assert "holds a sweep with other columns" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--grid", "rowz=16,32"], r"unknown --grid key 'rowz' for systolic .*: use one of .*\brows\b"),
    (["--grid", "rows=16,0"], r"--grid rows=0: rows must be >= 1, got 0"),
    (["--grid", "dataflow=os,xs"], r"--grid dataflow=xs: dataflow must be one of os, ws, is"),
    (["--grid", "rows=16,abc"], r"--grid rows=abc: rows must be an integer"),
    (["--grid", "rows="], r"--grid rows= has no values \(empty grid\)"),
    (["--grid", "rows=16,,32"], r"has an empty value"),
    (["--grid", "rows"], r"must be KEY=V1,V2"),
    (["--budgets", ","], r"--budgets is empty"),
    (["--budgets", "5bitz"], r"unknown budget unit"),
    (["--methods", "ilp,magic"], r"unknown method 'magic'"),
    (["--model", "resnet-5O"], r"unknown model 'resnet-5O' \(did you mean resnet-50"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, extra, message):
    import re

    out = tmp_path / "s.csv"
    args = ["--hw", "systolic", "--model", "resnet-50", "--budgets", "4bits", "--out", str(out)]
    assert run_cli(sw.main, args + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err
    assert not out.exists()


def test_grid_over_the_sweep_cap_is_refused_before_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QUANTDSE_MAX_SWEEP_POINTS", "7")
    assert run_cli(sw.main, ARGS + ["--out", str(tmp_path / "s.csv")]) == 2  # 8 points
    assert "(8) exceeds the cap of 7 points" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()


def test_ray_missing_names_the_distributed_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "s.csv"
    assert run_cli(sw.main, ARGS + ["--out", str(out), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --ray needs Ray, which is not installed: pip install 'quantdse[distributed]'\n"
    assert not out.exists()


def test_sweep_cli_end_to_end(cli, tmp_path):
    """As a user runs it (subprocess, process pool; stderr is not a terminal here, so no progress bar)."""
    out = tmp_path / "s.csv"
    r = cli("experiments.sweep", *ARGS, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "8 points, 8 run (4 failed)" in r.stdout and "sweep systolic" not in r.stderr
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["hw", "rows", "dataflow", "model", "budget", "method", "phase", "batch", "seq", "kv_bits",
                      *sw.RESULT_COLUMNS]


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    sw.run_sweep(small_sweep(rows=["16"], dataflow=["os"]), workers=1)
    assert "sweep systolic" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    sw.run_sweep(small_sweep(rows=["16"], dataflow=["os"]), workers=1)
    assert "sweep systolic" in capsys.readouterr().err
