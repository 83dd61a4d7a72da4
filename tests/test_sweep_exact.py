"""Every sweep row is exactly `dse.search` at that point: random grids, the cache's misses, pool and Ray."""
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dse.budget import Budget
from dse.pipeline import Cache, SearchRequest
from dse.search import search
from experiments import sweep as sw
from hwmodels.workload import Workload
from conftest import require

PREFILL = Workload.unset(phase="prefill", seq=128)
#: int8-a8 needs int8 tensor-core ops: a design with int8_ops_per_sm_clk=0 cannot run it
FORMATS = ("int8-a8", "int4-g128", "int8", "fp16")


def oracle(row, base: SearchRequest):
    """The plan dse.search writes alone at the row's point (fresh prepare, no cache)."""
    request = sw.Sweep(targets=(row.point.hw,), keys=tuple(k for k, _ in row.point.settings), points=(),
                       base=base).request(row.point)
    try:
        return search(request)
    except Exception as exc:  # the row must say the same
        return exc


def assert_rows_are_searches(result, base):
    assert result.rows
    for row in result.rows:
        plan = oracle(row, base)
        if isinstance(plan, Exception):
            assert row.status == "failed" and row.message == str(plan), (row, plan)
            continue
        assert row.status == plan["solver"]["status"], row
        for key in sw.TOTALS:
            assert row[key] == pytest.approx(plan["totals"][key], rel=1e-9), (key, row)
        workload = plan["workload"]
        assert (row["phase"], row["batch"], row["seq"]) == (workload["phase"], workload["batch"], workload["seq"])


grids = st.fixed_dictionaries({
    "knob": st.lists(st.sampled_from(["0", "1024", "2048"]), min_size=1, max_size=2, unique=True),
    "models": st.lists(st.sampled_from(["llama-2-7b", "bert-base-uncased"]), min_size=1, max_size=2, unique=True),
    "budgets": st.lists(st.sampled_from(["5bits", "9bits", "12bits"]), min_size=1, max_size=2, unique=True),
    "methods": st.lists(st.sampled_from(["ilp", "greedy", "lagrangian"]), min_size=1, max_size=2, unique=True),
    "include": st.sampled_from([(), ("embeddings",)]),
    "sensitivity": st.sampled_from([None, "prior"]),
    "formats": st.sampled_from([FORMATS, FORMATS[1:], ("int8-a8", "int8", "fp16")]),
})


def check_grid(g, **executor):
    base = SearchRequest(hw="a100-80gb", workload=PREFILL, formats=g["formats"], include=g["include"],
                         sensitivity=g["sensitivity"])
    spec = sw.make_sweep(base, {"int8_ops_per_sm_clk": g["knob"]}, g["models"], g["budgets"], g["methods"])
    assert_rows_are_searches(sw.run_sweep(spec, **executor), base)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(grids)
def test_random_grids_every_row_is_dse_search_at_that_point(g):
    check_grid(g, workers=1)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(grids)
def test_random_grids_on_the_process_pool(g):
    check_grid(g, workers=2)


@pytest.mark.slow
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(grids)
def test_random_grids_on_ray(g):
    require("ray")
    check_grid(g, workers=2, use_ray=True)


def test_issue_example_a_format_one_design_cannot_run_is_back_for_the_next():
    """int8-a8 is dropped on the design without int8 ops; the design with them must search it again."""
    base = SearchRequest(hw="a100-80gb", workload=Workload.unset(phase="prefill", seq=512),
                         formats=("int8-a8", "int8", "fp16"))
    spec = sw.make_sweep(base, {"int8_ops_per_sm_clk": ["0", "2048"]}, ["llama-2-7b"], ["12bits"])
    result = sw.run_sweep(spec, workers=1)
    assert_rows_are_searches(result, base)
    assert result.rows[1]["energy_j"] < result.rows[0]["energy_j"]  # int8-a8 used where it runs


def test_two_sweeps_in_one_process_share_nothing():
    """A sweep with --include embeddings, then one without: the second is not the first's plan."""
    base = SearchRequest(hw="a100-80gb", workload=PREFILL, formats=("int4-g128", "int8", "fp16"))
    spec = sw.make_sweep(base, {}, ["llama-2-7b"], ["5bits"])
    spec_emb = sw.make_sweep(sw.replace(base, include=("embeddings",)), {}, ["llama-2-7b"], ["5bits"])
    with_emb, without = sw.run_sweep(spec_emb, workers=1), sw.run_sweep(spec, workers=1)
    assert with_emb.rows[0]["memory_bytes"] != without.rows[0]["memory_bytes"]
    assert_rows_are_searches(without, base)


def test_cache_misses_on_every_input_that_changes_a_result():
    cache = Cache()
    base = SearchRequest(hw="systolic", model="resnet-50", workload=Workload("prefill", 1, 1),
                         formats=("int4-g128", "int8", "fp16"))
    first = cache.prepared(base)
    assert cache.prepared(sw.replace(base, budget=Budget.bits(4), method="greedy")) is first  # solve-only fields: a hit
    for changed in (dict(overrides={"rows": 8}), dict(formats=("int8", "fp16")), dict(sensitivity="weights"),
                    dict(workload=Workload("prefill", 2, 1)), dict(include=("embeddings",)), dict(hw="u280")):
        try:
            other = cache.prepared(sw.replace(base, **changed))
        except Exception:
            continue  # an input this model cannot take is no hit either
        assert other is not first, changed
    assert cache.hits["designs"] == 1


def test_equal_problems_reuse_the_proven_optimum_and_say_so():
    base = SearchRequest(hw="systolic", workload=Workload("prefill", 1, 1), formats=("int4-g128", "int8", "fp16"))
    spec = sw.make_sweep(base, {"rows": ["8", "16", "32"]}, ["resnet-50"], ["5bits"])
    result = sw.run_sweep(spec, workers=1)
    assert result.reused >= 2  # a bits budget does not depend on the array size
    assert len({r["error"] for r in result.rows}) == 1 and len({r["latency_s"] for r in result.rows}) == 3
    assert all(r["solver"].startswith("mck") and r["gap"] == 0.0 for r in result.rows)


def test_pool_rows_equal_in_process_rows():
    base = SearchRequest(hw="a100-80gb", workload=PREFILL, formats=FORMATS)
    spec = sw.make_sweep(base, {"int8_ops_per_sm_clk": ["0", "2048"]}, ["llama-2-7b", "bert-base-uncased"],
                         ["5bits", "12bits"], ["ilp", "greedy"])
    one, pool = sw.run_sweep(spec, workers=1), sw.run_sweep(spec, workers=2)
    columns = [c for c in one.columns if c not in sw.TIMING_COLUMNS]
    assert sw.rows_csv(one.rows, columns) == sw.rows_csv(pool.rows, columns)  # as the CSV has them (NaN: empty)
    assert_rows_are_searches(pool, base)


@pytest.mark.slow
def test_ray_rows_are_dse_search_at_each_point():
    require("ray")
    base = SearchRequest(hw="a100-80gb", workload=PREFILL, formats=FORMATS, include=("embeddings",))
    spec = sw.make_sweep(base, {"int8_ops_per_sm_clk": ["0", "2048"]}, ["llama-2-7b"], ["5bits", "12bits"],
                         ["ilp", "lagrangian"])
    assert_rows_are_searches(sw.run_sweep(spec, workers=2, use_ray=True), base)


# ---- usability: several targets, workload axes, throughput ----

def test_several_targets_and_workload_axes_are_columns(tmp_path):
    from quantcore.cli import run_cli

    out = tmp_path / "s.csv"
    args = ["--hw", "a100-80gb,rtx4090", "--hw", "u280", "--grid", "batch=1,4", "--grid", "kv-bits=8,16",
            "--model", "llama-2-7b", "--budgets", "4bits", "--phase", "decode", "--seq", "256", "--out", str(out),
            "--workers", "1", "--json"]
    assert run_cli(sw.main, args) == 0
    import csv

    rows = list(csv.DictReader(open(out)))
    assert [r["hw"] for r in rows[::4]] == ["a100-80gb", "rtx4090", "u280"] and len(rows) == 12
    assert list(rows[0])[:8] == ["hw", "batch", "kv_bits", "model", "budget", "method", "phase", "seq"]
    for r in rows:
        assert r["status"] == "optimal"
        # decode: batch tokens per step
        assert float(r["tokens_per_s"]) == pytest.approx(int(r["batch"]) / float(r["latency_s"]), rel=1e-12)
        assert r["images_per_s"] == ""
    one = next(r for r in rows if (r["hw"], r["batch"], r["kv_bits"]) == ("rtx4090", "4", "8"))
    plan = search(SearchRequest(hw="rtx4090", model="llama-2-7b", budget=Budget.bits(4),
                                workload=Workload.unset(phase="decode", batch=4, seq=256, kv_bits=8)))
    assert float(one["latency_s"]) == pytest.approx(plan["totals"]["latency_s"], rel=1e-9)


def test_cnn_rows_give_images_per_second():
    base = SearchRequest(hw="systolic", workload=Workload.unset(batch=2), formats=("int8", "fp16"))
    row = sw.run_sweep(sw.make_sweep(base, {}, ["resnet-50"], ["12bits"]), workers=1).rows[0]
    assert row["images_per_s"] == pytest.approx(2 / row["latency_s"]) and row["tokens_per_s"] is None


def test_plot_draws_a_labelled_figure_from_a_csv(tmp_path):
    import matplotlib.image

    from quantcore.cli import run_cli

    out = tmp_path / "s.csv"
    sw.run_sweep(sw.make_sweep(SearchRequest(hw="systolic", workload=Workload("prefill", 1, 1),
                                             formats=("int4-g128", "int8", "fp16")),
                               {"rows": ["8", "32"]}, ["resnet-50"], ["4bits", "8bits"]), out=str(out), workers=1)
    assert run_cli(sw.main, ["--plot", str(out), "--x", "latency_s", "--y", "error", "--color", "rows"]) == 0
    image = matplotlib.image.imread(out.with_suffix(".png"))
    assert image.shape[0] > 200 and image.shape[1] > 300


def test_plot_bad_column_is_one_line(tmp_path, capsys):
    from quantcore.cli import run_cli

    out = tmp_path / "s.csv"
    out.write_text("hw,latency_s,status\nsystolic,0.1,optimal\n")
    assert run_cli(sw.main, ["--plot", str(out), "--x", "latency", "--y", "latency_s"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --x 'latency' is not a column of {out}: use one of hw, latency_s, status\n"


def test_rows_read_like_dicts_for_notebooks():
    base = SearchRequest(hw="systolic", workload=Workload("prefill", 1, 1), formats=("int8", "fp16"))
    row = sw.run_sweep(sw.make_sweep(base, {"rows": ["16"]}, ["resnet-50"], ["12bits"]), workers=1).rows[0]
    assert int(row["rows"]) == 16 and row["model"] == "resnet-50" and row["status"] == "optimal"
    assert json.loads(json.dumps(row.as_dict(["rows", "latency_s"])))["rows"] == "16"
    with pytest.raises(KeyError):
        row["nope"]
