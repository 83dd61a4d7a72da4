"""Pareto sweep: frontier against its definition, monotone exact sweeps, files and CLI errors."""
import json

import numpy as np
import pytest

from dse.budget import Budget
from dse.pareto import build_parser, frontier, parse_sweep, pareto_sweep, plot_png, request_from_args, rows_csv
from dse.problem import Problem
from hwmodels.workload import Workload


def test_parse_sweep_includes_stop():
    kind, values = parse_sweep("bits=2.5:4:0.5")
    assert kind == "bits" and values.tolist() == [2.5, 3.0, 3.5, 4.0]


@pytest.mark.parametrize("bad", ["bits=2.5:8", "speed=1:2:1", "bits=4:2:0.5", "bits=1:2:0"])
def test_parse_sweep_rejects_bad_specs(bad):
    from quantcore.errors import QuantDSEError

    with pytest.raises(QuantDSEError, match="sweep"):
        parse_sweep(bad)


def test_frontier_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)
    x[3] = np.nan
    expected = [np.isfinite(x[i]) and not any(
        x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i]) for j in range(40) if np.isfinite(x[j]))
        for i in range(40)]
    assert frontier(x, y).tolist() == expected


def factory(seed=0, L=30, F=5):
    rng = np.random.default_rng(seed)
    err = rng.random((L, F)) * rng.lognormal(0, 1, (L, 1))
    bits = np.tile(np.array([2.125, 3.125, 4.125, 6.125, 8.0]), (L, 1))
    params = rng.integers(1, 1000, L)
    lat = params[:, None] * bits * 1e-9

    def make(v):
        return Problem([f"l{i}" for i in range(L)], [f"f{j}" for j in range(F)], err, params, bits, lat,
                       lat * 10, np.ones((L, F), bool), {"bits": v})
    return make


def test_exact_sweep_is_monotone_and_marks_infeasible_budgets(tmp_path):
    rows = pareto_sweep(factory(), [1.5, 2.5, 3.5, 4.5, 6.0, 8.0], method="lagrangian")
    assert rows[0]["status"] == "infeasible" and not rows[0]["on_frontier"]  # below all-2.125-bit
    errs = [r["error"] for r in rows[1:]]
    # feasible sets are nested as the budget grows, so the exact optimum never rises
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errs, errs[1:]))
    assert all(r["effective_bits"] <= r["budget"] + 1e-9 for r in rows[1:])
    text = rows_csv(rows)
    assert text.splitlines()[0].startswith("budget,status,method,error") and len(text.splitlines()) == 7
    assert plot_png(rows, "bits", "test")[:8] == b"\x89PNG\r\n\x1a\n"


def test_heuristic_points_off_the_exact_frontier_are_dominated():
    make = factory(seed=2)
    exact = pareto_sweep(make, [3.0, 4.0, 5.0], method="ilp")
    greedy_rows = pareto_sweep(make, [3.0, 4.0, 5.0], method="greedy")
    for e, g in zip(exact, greedy_rows):
        assert e["error"] <= g["error"] * (1 + 1e-12)


def test_cli_bad_sweep_exits_2(cli):
    r = cli("dse.pareto", "--hw", "u280", "--sweep", "bits=3")
    assert r.returncode == 2 and r.stderr.startswith("error: malformed --sweep")


#: a small model with every workload and co-design flag set away from its default
FLAGS = ["--hw", "u280", "--model", "opt-1.3b", "--sensitivity", "prior", "--batch", "4", "--seq", "512",
         "--kv-bits", "8", "--set", "hbm_channels=16", "--set", "clock_hz=300e6",
         "--formats", "int4-g128,int8,fp16", "--seed", "3"]


def test_workload_and_codesign_flags_build_the_request_dse_search_builds():
    from dse import search

    extra = ["--phase", "prefill", "--method", "greedy"]
    args = build_parser().parse_args(FLAGS + extra + ["--sweep", "latency=10:12:1"])
    got = request_from_args(args, "latency", parse_sweep("latency=10:12:1")[1])
    # the peer: dse.search's own parser and request builder, budgeted at the sweep's first point
    assert got == search.request_from_args(search.build_parser().parse_args(FLAGS + extra + ["--budget", "10ms"]))
    assert got.workload == Workload(phase="prefill", batch=4, seq=512, kv_bits=8)
    assert got.overrides == (("hbm_channels", "16"), ("clock_hz", "300e6"))  # text: the spec's schema reads it
    assert got.formats == ("int4-g128", "int8", "fp16") and got.seed == 3 and got.budget == Budget.ms(10)


def test_sweep_point_matches_dse_search_with_the_same_flags(cli):
    r = cli("dse.pareto", *FLAGS, "--sweep", "latency=12:13.5:1.5", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[1]
    s = cli("dse.search", *FLAGS, "--budget", "13.5ms", "--json")
    assert s.returncode == 0, s.stderr
    totals = json.loads(s.stdout)["totals"]
    assert row["status"] == "optimal" and row["latency_s"] <= 13.5e-3 * (1 + 1e-9)
    for key in ("latency_s", "energy_j", "memory_bytes", "effective_bits", "error"):
        assert row[key] == pytest.approx(totals[key], rel=1e-9), key


@pytest.mark.parametrize("extra, axis", [([], "latency"), (["--x", "bits"], "bits")])
def test_frontier_axis_defaults_to_the_sweep_kind(monkeypatch, capsys, extra, axis):
    from dse import pareto

    seen = []
    real = pareto.pareto_sweep
    monkeypatch.setattr(pareto, "pareto_sweep", lambda *a, **kw: seen.append(kw["x"]) or real(*a, **kw))
    assert pareto.main(FLAGS + ["--sweep", "latency=12:13.5:1.5", *extra]) == 0
    assert seen == [axis]
    assert capsys.readouterr().out.startswith("budget,status")


def test_cli_bad_workload_exits_2(cli):
    r = cli("dse.pareto", "--hw", "u280", "--batch", "0", "--sweep", "bits=3:4:1")
    assert r.returncode == 2 and r.stderr.strip() == "error: --batch must be a positive integer, got 0"


def test_figure_axes_in_typed_units_budget_labels_and_no_empty_dominated_entry():
    from dse.pareto import plot_figure

    rows = pareto_sweep(factory(), [3.0, 4.0, 5.0], method="ilp", x="latency")
    assert all(r["on_frontier"] for r in rows)  # exact sweep on nested budgets: nothing dominated
    fig = plot_figure(rows, "latency", "title", "bits")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "latency of one pass (ms)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frontier"]
    assert sorted(t.get_text() for t in ax.texts) == ["3bits", "4bits", "5bits"]
    # points are drawn in ms: the frontier line's x data is the rows' latency_s x 1000
    assert sorted(ax.lines[0].get_xdata()) == pytest.approx(sorted(r["latency_s"] * 1e3 for r in rows))


def test_cli_jpeg_plot_and_out_keeps_stdout_short(cli, tmp_path):
    csv_path, jpg = tmp_path / "p.csv", tmp_path / "p.jpg"
    r = cli("dse.pareto", *FLAGS, "--sweep", "bits=4:8:2", "--out", str(csv_path), "--plot", str(jpg))
    assert r.returncode == 0, r.stderr
    assert "budget,status" not in r.stdout and r.stdout.count("\n") == 1 and "3 points" in r.stdout
    assert len(csv_path.read_text().splitlines()) == 4
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG start-of-image marker
    bad = cli("dse.pareto", *FLAGS, "--sweep", "bits=4:8:2", "--plot", str(tmp_path / "p.bmp"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unsupported figure type '.bmp'" in bad.stderr
    assert not (tmp_path / "p.bmp").exists()


def test_figure_title_names_the_workload_and_sensitivity(monkeypatch, tmp_path, capsys):
    from dse import pareto

    titles = []
    real = pareto.plot_figure
    monkeypatch.setattr(pareto, "plot_figure", lambda rows, x, title, unit: titles.append(title) or real(
        rows, x, title, unit))
    assert pareto.main(FLAGS + ["--sweep", "bits=5:6:1", "--plot", str(tmp_path / "p.png")]) == 0
    assert titles == ["opt-1.3b on u280 (ilp): one decode step of 4 sequences, 512-token context in an 8-bit KV cache"
                      "\nsensitivity: prior "
                      "(data-free prior)"]
    assert capsys.readouterr().out.startswith("budget,status")  # no --out: the CSV on stdout
