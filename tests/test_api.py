"""The typed Python API: `from dse import search, Budget, Plan`, errors that name the parameter, solver
options checked by name and type, one registry pattern, plugins through entry points, the TOML writer
of derived specs, and docs/api.md's notebook run as written.
"""
import contextlib
import io
import json
import math
import re
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT
from quantcore.cli import run_cli
from quantcore.errors import QuantDSEError


def test_search_returns_a_plan_with_totals():
    from dse import Budget, Plan, search

    plan = search(model="resnet-50", hw="systolic", budget=Budget.bits(4), overrides={"rows": 32})
    assert isinstance(plan, Plan) and plan.method == "ilp" and plan.hardware == "systolic"
    # the totals are the layers' sums plus the fixed part (a hand sum over the plan's own rows)
    fixed = plan.extra["fixed"]
    assert plan.totals["latency_s"] == pytest.approx(sum(l.latency_s for l in plan.layers) + fixed["latency_s"],
                                                     rel=1e-9)
    bits = sum(l.bits * l.params for l in plan.layers) / sum(l.params for l in plan.layers)
    assert plan.totals["effective_bits"] == pytest.approx(bits, rel=1e-9) and bits <= 4 + 1e-9
    assert plan.provenance["hardware_overrides"] == ("rows=32",)


def test_the_api_and_the_command_give_the_same_plan(tmp_path):
    from dse import Budget, Plan, search
    from dse.search import main

    out = tmp_path / "plan.json"
    assert run_cli(main, ["--hw", "systolic", "--model", "resnet-50", "--budget", "4bits", "--set", "rows=32",
                          "--out", str(out)]) == 0
    cli = Plan.load(str(out)).to_dict()
    api = search("resnet-50", "systolic", Budget.bits(4), overrides={"rows": 32}).to_dict()
    for doc in (cli, api):
        doc["solver"].pop("seconds")  # wall-clock time
        doc["budget"].pop("text")  # as written: "4bits" either way, but the flag keeps the user's spelling
    assert cli == api


def test_search_is_the_api_whatever_was_imported_first():
    import dse.search as cli_module  # the command's module, bound to the same name dse.search
    from dse import Budget, search

    assert search is cli_module and callable(search)
    assert search("resnet-50", "systolic", Budget.bits(6)).totals["effective_bits"] <= 6 + 1e-9


@pytest.mark.parametrize("make, si, kind", [
    (lambda B: B.bits(3.7), 3.7, "bits"), (lambda B: B.gb(3.5), 3.5e9, "memory"),
    (lambda B: B.ms(12), 0.012, "latency"), (lambda B: B.mj(5), 0.005, "energy"),
    (lambda B: B(2, "GiB"), 2 * 2 ** 30, "memory")])
def test_budget_constructors(make, si, kind):
    from dse import Budget

    b = make(Budget)
    assert b.kind == kind and b.si == pytest.approx(si, rel=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), options={"time_limt": 0.001}),
     r"unknown solver option of ilp 'time_limt' \(did you mean time_limit\?\): use one of solver, time_limit"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), options={"time_limit": "soon"}),
     r"solver option time_limit='soon': ilp takes a number or None"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), method="uniform", options={"seed": 1}),
     r"unknown solver option of uniform 'seed'"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), overrides={"rows": "many"}),
     r"^overrides\['rows'\] must be an integer, got 'many'$"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), overrides={"rowz": 32}),
     r"^overrides\['rowz'\] is an unknown param for systolic .*did you mean rows"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), overrides=("rows=8",)),
     r"^overrides must be a dict of name -> value, e.g. \{'rows': 32\}"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), options=["time_limit=1"]), r"^solver_options must be a dict"),
    (lambda s, B: s("resnet-50", "systolic", "4bits"), r"^budget must be a Budget"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(-1)), r"^budget -1 bits must be a positive finite number"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(65)), r"^budget 65bits is out of range"),
    (lambda s, B: s("resnet-50", "systolic", max_latency_ms=math.inf), r"^max_latency_ms must be a positive"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), method="ilpp"), r"unknown method 'ilpp' \(did you mean ilp"),
    (lambda s, B: s("resnet-50", "systolic", B.bits(4), workload="decode"), r"^workload must be a"),
])
def test_errors_name_the_parameter(call, message):
    from dse import Budget, search

    with pytest.raises(QuantDSEError, match=message):
        call(search, Budget)


@pytest.mark.parametrize("argv, line", [
    (["--set", "rows=many"], "error: --set rows must be an integer, got 'many'"),
    (["--set", "time_limit=soon"], "error: --set time_limit must be a number, got 'soon' (an option of ilp)"),
    (["--max-latency-ms", "1e300"], "error: --max-latency-ms is out of range"),
])
def test_the_command_names_its_flags(capsys, argv, line):
    from dse.search import main

    code = run_cli(main, ["--hw", "systolic", "--model", "resnet-50", "--budget", "4bits", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(line) and err.count("\n") == 1, err


def test_a_solver_option_reaches_the_solver():
    from dse import Budget, search

    # ilp through HiGHS with max_classes=1 hands a many-class problem to the Lagrangian solver and says so
    plan = search("resnet-50", "systolic", Budget.bits(4), options={"solver": "highs", "max_classes": 1})
    exact = search("resnet-50", "systolic", Budget.bits(4))
    assert plan.solver.get("switched_to") == "lagrangian" and "switched_to" not in exact.solver


def test_declared_options_are_the_solvers_signatures():
    import inspect

    from dse.solvers import SOLVERS, options, solver_function

    for name in SOLVERS.names():
        params = inspect.signature(solver_function(name)).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), name  # no **_ignored
    assert {k: (o.type, o.default) for k, o in options("greedy").items()} == {"time_limit": (float, None)}
    assert set(options("rl")) == {"polish", "polish_seconds"}


def test_registries_list_names_and_close_matches():
    from dse.export import target_module
    from dse.sensitivity import SENSITIVITY_SOURCES
    from hwmodels.families import family_class

    for call, text in ((lambda: target_module("llama-cpp"), "unknown export target 'llama-cpp' (did you mean llamacpp"),
                       (lambda: family_class("systolik"), "unknown hardware family 'systolik' (did you mean systolic"),
                       (lambda: SENSITIVITY_SOURCES.get("hesian"), "unknown sensitivity source 'hesian' (did you mean "
                                                                  "hessian")):
        with pytest.raises(QuantDSEError) as exc:
            call()
        assert str(exc.value).startswith(text) and ": use one of " in str(exc.value)


def test_rl_is_a_plugin_registered_by_entry_point():
    from importlib.metadata import entry_points

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["quantdse.solvers"]
    assert declared == {"rl": "policies.solver", "rl-measured": "policies.measured_solver"}
    installed = {ep.name: ep.value for ep in entry_points(group="quantdse.solvers")}
    assert installed == declared, "reinstall (pip install -e .) so the metadata has the entry points"
    from dse.solvers import SOLVERS, solver_function

    assert "rl" in SOLVERS.names() and solver_function("rl").__module__ == "policies.solver"
    # dse names no module of policies anywhere (tests/test_layering.py checks imports and strings)
    assert not [p for p in (ROOT / "dse").rglob("*.py") if re.search(r"\bpolicies\.", p.read_text())]


def test_an_external_solver_registers_and_its_options_are_checked(tmp_path):
    from dse import Budget, search
    from dse.solvers import SOLVERS
    from dse.solvers.uniform import solve as uniform

    def solve(problem, widen: int = 1):
        """A stand-in plugin: the uniform solver, with one declared option."""
        return uniform(problem)

    SOLVERS.register("toy", solve)
    try:
        plan = search("resnet-50", "systolic", Budget.bits(6), method="toy", options={"widen": 2})
        assert plan.method == "toy"
        with pytest.raises(QuantDSEError, match="unknown solver option of toy 'widn' \\(did you mean widen"):
            search("resnet-50", "systolic", Budget.bits(6), method="toy", options={"widn": 2})
    finally:
        SOLVERS._entries.pop("toy")
        SOLVERS._loaded.pop("toy", None)


def test_toml_writer_round_trips_through_tomllib():
    from quantcore.tomlwrite import toml_dumps

    doc = {"schema": "hwmodels.spec/1", "name": 'odd "name"\\ with\ttabs\nand lines \x01', "extends": "../x",
           "flag": True, "count": 3, "params": {"dram_efficiency": 0.8125, "tiny": 1e-300, "list": [1, 2.5, "a"]},
           "sources": {"dotted.key": "x", "sp ace": "y"}}
    assert tomllib.loads(toml_dumps(doc)) == doc
    with pytest.raises(TypeError):
        toml_dumps({"x": math.nan})


def test_derived_spec_goes_only_to_out_or_a_fixed_name(tmp_path, monkeypatch, capsys):
    """A spec whose name is `../x` does not choose where --from writes (issue 23)."""
    from hwmodels import calibrate
    from hwmodels.derive import DEFAULT_OUT

    work = tmp_path / "work"
    work.mkdir()
    spec = tmp_path / "evil.toml"
    spec.write_text('schema = "hwmodels.spec/1"\nname = "../x"\nextends = "a100-80gb"\n')
    rows = [{"gemm": [m, 4096, 4096], "format": "fp16", "seconds": 1e-5 * m ** 0.5 + 2e-5} for m in (1, 8, 64, 512)]
    (work / "m.json").write_text(json.dumps(rows))
    monkeypatch.chdir(work)
    assert run_cli(calibrate.main, ["--hw", str(spec), "--from", "m.json"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in work.iterdir()) == [DEFAULT_OUT, "m.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.toml", "work"]  # nothing at ../x
    derived = tomllib.loads((work / DEFAULT_OUT).read_text())
    # whole, not extending ../evil.toml: a spec extends only built-ins or files beside it
    assert derived["name"] == "fitted-spec" and "extends" not in derived and derived["family"] == "gpu"
    assert derived["sources"]["dram_efficiency"].startswith("fitted to m.json")


def _doc_blocks(path: Path) -> tuple[str, str]:
    """(the notebook's code, the output shown under it) from docs/api.md."""
    text = path.read_text(encoding="utf-8")
    section = text.split("## A notebook, start to finish", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"It prints:\n\n```text\n(.*?)```", section, re.S).group(1)
    return code, shown


def test_the_api_page_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    code, shown = _doc_blocks(ROOT / "docs" / "api.md")
    assert "dse.search" not in code and "--" not in code  # typed values only, no command-line text
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/api.md", "exec"), {"__name__": "__docs__"})
    assert printed.getvalue() == shown
    assert (tmp_path / "plan.json").is_file() and (tmp_path / "llama-2-7b-llamacpp.txt").is_file()
