"""Plans for people: the folded table (dse.summary), dse.show, dse.compare, multi-target search, --help."""
import json
import re

import pytest

from dse import compare, search, show
from dse.summary import fold, format_summary, ranges, roles

BITS = {"int3-g64": 3.25, "int4-g128": 4.125, "int8": 8.0}


def layer(name, fmt, params=100, block=None, latency=1e-6):
    return {"name": name, "format": fmt, "bits": BITS[fmt], "params": params, "error": 1.0, "latency_s": latency,
            "energy_j": 2 * latency, "memory_bytes": params * BITS[fmt] / 8, "block": block, "bound": "memory"}


def small_plan():
    """4 blocks x (q, k) and an lm_head; q is int4-g128 except block 2, k int3-g64 everywhere."""
    layers = []
    for b in range(4):
        layers.append(layer(f"model.layers.{b}.self_attn.q_proj", "int3-g64" if b == 2 else "int4-g128", block=b))
        layers.append(layer(f"model.layers.{b}.self_attn.k_proj", "int3-g64", block=b))
    layers.append(layer("lm_head", "int8", params=800))
    return {"schema": "dse.plan/1", "model": "tiny", "hardware": "u280",
            "workload": {"phase": "decode", "batch": 1, "seq": 2048, "kv_bits": 16},
            "budget": {"kind": "bits", "value": 5.0, "text": "5bits", "limits": {"bits": 5.0, "latency": 0.0043}},
            "method": "ilp", "layers": layers,
            "totals": {"effective_bits": 5.0, "memory_bytes": 2e9, "latency_s": 0.0043, "energy_j": 0.01, "error": 7.0},
            "fixed": {"memory_bytes": 1e8, "latency_s": 1e-3, "energy_j": 2e-3, "note": "embeddings"},
            "device": {"memory_capacity_bytes": 8e9, "weights_fit": True},
            "solver": {"status": "optimal", "gap": 0.0, "seconds": 0.1, "raw_objective": 3.0},  # extra keys tolerated
            "provenance": {"sensitivity": "prior", "sensitivity_is_prior": True,
                           "sensitivity_description": "data-free prior"}}


def test_fold_by_hand():
    folded = fold(small_plan()["layers"])
    # by hand: q has 3 of 4 blocks at int4-g128 (majority), k is uniform, lm_head stands alone
    assert [(r["where"], r["roles"], r["format"], r["layers"]) for r in folded["rules"]] == [
        ("blocks 0-3", ["q_proj"], "int4-g128", 4), ("blocks 0-3", ["k_proj"], "int3-g64", 4),
        ("", ["lm_head"], "int8", 1)]
    assert [(e["where"], e["roles"], e["format"], e["layers"]) for e in folded["exceptions"]] == [
        ("block 2", ["q_proj"], "int3-g64", 1)]


def test_ranges_and_labels():
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8" and ranges([4]) == "4"
    names = ["encoder.layer.0.attention.output.dense", "encoder.layer.0.output.dense",
             "model.layers.1.block_sparse_moe.experts.3.w1", "lm_head"]
    assert [r.label for r in roles([layer(n, "int8") for n in names])] == [
        "attention.output.dense", "layer.output.dense", "w1", "lm_head"]


def test_experts_are_described_per_block():
    layers = [layer(f"model.layers.{b}.moe.experts.{e}.w1", "int3-g64" if (b, e) in ((1, 2), (1, 3)) else "int8",
                    block=b) for b in range(2) for e in range(4)]
    folded = fold(layers)
    assert folded["rules"][0]["where"] == "blocks 0-1, experts 0-3"
    assert folded["exceptions"][0]["where"] == "block 1 experts 2-3"


def test_summary_reads_what_newer_plans_add():
    plan = small_plan()
    plan["workload"]["description"] = "one forward pass over 1 sequence of 128 tokens"
    plan["notes"] = ["u280 cannot run int2-g64: dropped from the candidates"]
    plan["device"].update({"free_for_weights_bytes": 6.5e9, "weights_fit": True})
    text = format_summary(plan)
    assert text.startswith("tiny on u280: one forward pass over 1 sequence of 128 tokens\n")
    assert "note: u280 cannot run int2-g64: dropped from the candidates" in text
    assert "fits the 6.50 GB u280 leaves for weights" in text


def test_summary_shows_limits_in_typed_units_and_the_fixed_part():
    from dse.export.base import export_for

    plan = small_plan()
    text = format_summary(plan)
    assert "limit 5bits (binding)" in text and "limit 4.3ms (binding)" in text  # not {'bits': 5.0, ...}
    assert "{" not in text
    assert "fixed 1.000 ms" in text and "fixed 0.100 GB" in text and "fits u280's 8 GB" in text
    assert "data-free prior" in text and "lower is better" in text
    # the export suggested is one that writes this plan as it is (no --nearest)
    assert f"python -m dse.export --plan plan.json --to {export_for(plan)}" in text and "--out plan.json" in text
    assert export_for(plan) is not None


def llama_plan(tmp_path, capsys, *extra):
    out = tmp_path / "plan.json"
    assert search.main(["--hw", "u280", "--budget", "3.7bits", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def parse_blocks(where):
    """"blocks 0-28, 31" -> {0..28, 31} (the one-index case)."""
    if not where:
        return {None}
    out = set()
    for part in where.split(" ", 1)[1].split(", "):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def test_main_job_fits_a_screen_and_covers_every_layer(tmp_path, capsys):
    plan, text = llama_plan(tmp_path, capsys)
    lines = text.splitlines()
    assert len(lines) < 60, text  # the old table printed 267 lines
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 100
    assert f"plan written to {tmp_path / 'plan.json'}" in text and "python -m dse.export --plan" in text
    # the folded view is lossless: every layer's format is given by exactly one rule or exception,
    # an exception overriding its role's rule (checked against the plan's own layer list)
    folded = fold(plan["layers"])
    for l in plan["layers"]:
        role, block = l["name"].split(".")[-1], l["block"]
        hits = [e["format"] for e in folded["exceptions"] if role in e["roles"] and block in parse_blocks(e["where"])]
        rule = [r["format"] for r in folded["rules"] if role in r["roles"] and block in parse_blocks(r["where"])]
        assert len(rule) == 1 and len(hits) <= 1 and (hits or rule)[0] == l["format"], l["name"]
    # formats by weight share, against the plan's layers
    share = sum(l["params"] for l in plan["layers"] if l["format"] == "int3-g64") / sum(
        l["params"] for l in plan["layers"])
    assert f"int3-g64   3.250 bits  {100 * share:5.1f} %" in text


def test_verbose_lists_every_layer_and_totals_come_before_layers(tmp_path, capsys):
    plan, text = llama_plan(tmp_path, capsys, "--verbose")
    for l in plan["layers"]:
        assert re.search(rf"^  {re.escape(l['name'])} +{l['format']} ", text, re.M), l["name"]
    keys = list(plan)
    assert keys.index("totals") < keys.index("layers") and keys[-1] == "layers"


def test_show_prints_the_search_table_and_plots(tmp_path, capsys):
    plan, text = llama_plan(tmp_path, capsys)
    path = tmp_path / "plan.json"
    fig = tmp_path / "plan.png"
    assert show.main([str(path), "--plot", str(fig)]) == 0
    shown = capsys.readouterr().out
    # the same table dse.search printed, apart from the line that says where the plan was written
    assert shown.split("\n\nnext")[0] == text.split("\n\nplan written")[0]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 20_000
    assert show.main([str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"] == plan["totals"] and sum(r["layers"] for r in doc["rules"]) == len(plan["layers"])
    assert sum(f["share"] for f in doc["formats"]) == pytest.approx(1.0)


def test_plan_figure_axes_have_units():
    from dse.planplot import plan_figure

    fig = plan_figure(small_plan())
    labels = [ax.get_xlabel() + "|" + ax.get_ylabel() for ax in fig.axes]
    assert "effective bits per weight" in labels[0]
    assert labels[1].startswith("latency (ms)") and labels[2].startswith("energy (mJ)")
    bars = fig.axes[1].patches  # latency by role: q_proj, k_proj, lm_head, fixed
    assert [b.get_width() for b in bars] == pytest.approx([4e-3, 4e-3, 1e-3, 1.0])


def test_show_bad_plot_type_is_one_line(cli, tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(small_plan()))
    r = cli("dse.show", str(path), "--plot", str(tmp_path / "x.gif"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unsupported figure type '.gif'" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_multi_target_bits_budget_gives_the_same_plan_and_says_so(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert search.main(["--hw", "a100-80gb,u280", "--budget", "3.7bits", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "every plan picks the same format for every layer: a bits budget" in text
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["plan-a100-80gb.json", "plan-u280.json"]
    a, b = (json.loads((tmp_path / f).read_text()) for f in files)
    assert [l["format"] for l in a["layers"]] == [l["format"] for l in b["layers"]]
    assert f"{a['totals']['latency_s'] * 1e3:.3f}" in text and f"{b['totals']['latency_s'] * 1e3:.3f}" in text


def test_multi_target_latency_budget_differs_and_compare_counts_the_layers(tmp_path, capsys):
    assert search.main(["--hw", "a100-80gb,u280", "--budget", "15ms", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert [p["hardware"] for p in plans] == ["a100-80gb", "u280"]
    paths = []
    for p in plans:
        paths.append(tmp_path / f"{p['hardware']}.json")
        paths[-1].write_text(json.dumps(p))
    assert compare.main([str(p) for p in paths] + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # oracle: the layers whose format differs, counted straight from the two plans
    changed = [x for x, y in zip(plans[0]["layers"], plans[1]["layers"]) if x["format"] != y["format"]]
    share = sum(l["params"] for l in changed) / sum(l["params"] for l in plans[0]["layers"])
    assert doc["differ_from_first"] == [{"plan": "u280", "layers": len(changed), "weight_share": pytest.approx(share)}]
    assert not doc["same_formats"] and doc["totals"]["u280"] == plans[1]["totals"]
    assert compare.main([str(p) for p in paths]) == 0
    text = capsys.readouterr().out
    assert f"u280 differs from a100-80gb in {len(changed)} layers" in text and len(text.splitlines()) < 40


@pytest.mark.parametrize("args, message", [
    (["dse.search", "--hw", "u280,u280", "--budget", "4bits"], "distinct target names"),
    (["dse.compare", "only-one.json"], "two or more plan files"),
])
def test_compare_errors_are_one_line(cli, args, message):
    r = cli(*args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr


@pytest.mark.parametrize("module", ["dse.search", "dse.pareto"])
def test_help_shows_every_default(cli, module):
    text = " ".join(cli(module, "--help").stdout.split()).split("options:", 1)[1]  # argparse wraps lines
    for flag, default in (("--phase", "decode"), ("--batch", "1"), ("--seq", "2048"), ("--kv-bits", "16"),
                          ("--seed", "0"), ("--method", "ilp")):
        help_text = text.split(f"{flag} ", 1)[1].split(" --", 1)[0]
        assert "default" in help_text and re.search(rf"\b{default}\b", help_text), (flag, help_text)


def test_nas_reports_progress_once_per_training():
    import numpy as np

    from problems import random_problem
    from dse.solvers import nas

    problem = random_problem(np.random.default_rng(1), 30, 5, tightness=0.3)
    seen = []
    result = nas.solve(problem, seed=0, steps=10, bisections=3, progress=lambda done, note: seen.append(done))
    assert result.success and seen == list(range(1, result.info["lambdas_tried"] + 1))


def test_readme_quotes_the_main_job_output(capsys):
    """The README shows what `make run` prints, and its line count; both must stay true."""
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    intro, rest = readme.split("It prints the plan in one screen\n", 1)
    count = int(re.match(r"\((\d+) lines\)", rest).group(1))
    block = rest.split(":\n\n", 1)[1].split("\n\n`--verbose`", 1)[0]
    quoted = "\n".join(line[4:] for line in block.split("\n"))
    assert search.main(["--hw", "u280", "--budget", "3.7bits"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    seconds = re.compile(r", [0-9.]+ s$", re.M)  # the solver's time varies run to run
    assert seconds.sub("", quoted) == seconds.sub("", printed), "regenerate the README's copy of `make run`"
    assert count == len(printed.split("\n")) < 60


def test_compare_by_hand():
    a, b = small_plan(), small_plan()
    b["hardware"] = "a100-80gb"
    b["layers"][8] = layer("lm_head", "int4-g128", params=800)  # one layer changed: 800 of 1600 weights
    doc = compare.compare([a, b], compare.labels_for([a, b]))
    assert doc["plans"] == ["u280", "a100-80gb"]
    assert doc["differ_from_first"] == [{"plan": "a100-80gb", "layers": 1, "weight_share": 0.5}]
    assert [r["role"] for r in doc["roles"] if r["differs"]] == ["lm_head"]
    q = doc["roles"][0]["formats"]["u280"]
    assert q == {"format": "int4-g128", "uniform": False}  # 3 of 4 blocks: mixed, majority shown
    text = compare.format_comparison(doc)
    assert "a100-80gb differs from u280 in 1 layers (50.0 % of the weights)" in text
    assert re.search(r"q_proj +int4-g128\* +int4-g128\*$", text, re.M)


def test_show_missing_plan_is_one_line(cli, tmp_path):
    r = cli("dse.show", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")


def test_many_exceptions_are_capped_with_a_pointer_to_verbose():
    plan = small_plan()
    plan["layers"] = [layer(f"m.{b}.r{r}", "int3-g64" if b == r else "int8", block=b)
                      for r in range(30) for b in range(32)]  # 30 roles, each with its own exception block
    text = format_summary(plan)
    assert len(fold(plan["layers"])["exceptions"]) == 30
    assert "exceptions (30 layers)" in text and "... 18 more: --verbose lists every layer" in text
    assert len(text.splitlines()) < 60
