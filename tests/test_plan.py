"""The plan contract: every plan written and every plan read is checked against the committed JSON
Schema (dse/schemas/plan-1.schema.json). The oracle is the `jsonschema` package, an independent
implementation of the standard; `dse.plan.load_plan` checks the same rules plainly (plus finite
numbers and unique layer names) and must agree with it. Hostile plans end every reader (show,
compare, export, evaluate) with exit code 2 and one `error: ...` line naming each problem.
"""
import copy
import json

import pytest

from conftest import require
from quantcore.cli import run_cli
from quantcore.errors import QuantDSEError
from dse.plan import Plan, load_plan, plan_problems, plan_schema


def _validator():
    jsonschema = require("jsonschema")
    return jsonschema.Draft202012Validator(plan_schema())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Plans as the command writes them: a decoder LLM on an FPGA, a CNN on a systolic array, an
    encoder with --include embeddings on a GPU; each through `dse.search --out`."""
    from dse.search import main

    folder = tmp_path_factory.mktemp("plans")
    runs = {"u280": ["--hw", "u280", "--budget", "3.7bits"],
            "systolic": ["--hw", "systolic", "--model", "resnet-50", "--budget", "5bits", "--set", "rows=32"],
            "rtx4090": ["--hw", "rtx4090", "--model", "all-minilm-l6-v2", "--budget", "6bits", "--sensitivity",
                        "prior", "--include", "embeddings"]}
    paths = {}
    for name, argv in runs.items():
        paths[name] = folder / f"{name}.json"
        assert run_cli(main, argv + ["--out", str(paths[name])]) == 0
    return paths


def test_written_plans_conform_to_the_schema(written):
    validator = _validator()
    for path in written.values():
        doc = json.loads(path.read_text())
        assert sorted(e.message for e in validator.iter_errors(doc)) == []
        assert plan_problems(doc) == [] and load_plan(str(path)) == doc


def test_schema_is_itself_valid():
    jsonschema = require("jsonschema")
    jsonschema.Draft202012Validator.check_schema(plan_schema())


def test_plan_round_trips_through_json(written):
    text = written["systolic"].read_text()
    plan = Plan.from_json(text)
    assert plan.to_json() == text  # the same bytes: keys, order, numbers
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.totals["effective_bits"] <= 5.0 + 1e-9
    assert plan.layers[0].name == "conv1" and plan.formats()["conv1"] == plan.layers[0].format
    assert plan.provenance["hardware_overrides"] == ("rows=32",)
    with pytest.raises(TypeError):
        plan.totals["error"] = 0.0  # frozen all the way down
    loaded = Plan.load(str(written["systolic"]))
    assert loaded == plan


def _hostile(base: dict) -> dict:
    """name -> a broken copy of `base` (the cases issue 23 names, and a plan with two problems)."""
    def broken(edit):
        doc = copy.deepcopy(base)
        edit(doc)
        return doc

    return {
        'params "1"': broken(lambda d: d["layers"][0].update(params="1")),
        "totals as a list": broken(lambda d: d.update(totals=[1, 2, 3])),
        "null latency": broken(lambda d: d["layers"][1].update(latency_s=None)),
        "format as a dict": broken(lambda d: d["layers"][2].update(format={"name": "int4"})),
        "layer listed twice": broken(lambda d: d["layers"].append(copy.deepcopy(d["layers"][0]))),
        "negative bits and a missing model": broken(lambda d: (d["layers"][0].update(bits=-4.0), d.pop("model"))),
    }


#: what each hostile plan's error line must name
EXPECTED = {
    'params "1"': ["layers[0].params must be an integer, got a string '1'"],
    "totals as a list": ["totals must be an object, got a list"],
    "null latency": ["layers[1].latency_s must be a number, got null"],
    "format as a dict": ["layers[2].format must be a string, got an object"],
    "layer listed twice": ["repeats layers[0]: a layer is listed once"],
    "negative bits and a missing model": ["lacks model", "layers[0].bits must be > 0, got -4.0"],
}


def test_hostile_plans_fail_both_checkers(written):
    validator = _validator()
    base = json.loads(written["u280"].read_text())
    for name, doc in _hostile(base).items():
        found = plan_problems(doc)
        assert found, name
        for expected in EXPECTED[name]:
            assert any(expected in p for p in found), (name, found)
        if name != "layer listed twice":  # uniqueness across items is beyond JSON Schema
            assert list(validator.iter_errors(doc)), name


READERS = {
    "dse.show": lambda p, other: ["show", [str(p)]],
    "dse.compare": lambda p, other: ["compare", [str(other), str(p)]],
    "dse.export": lambda p, other: ["export", ["--plan", str(p), "--to", "llamacpp", "--out", str(p) + ".gguf.txt"]],
    "dse.evaluate": lambda p, other: ["evaluate", ["--plan", str(p)]],
}


def _reader_main(which):
    import importlib

    return importlib.import_module({"show": "dse.show", "compare": "dse.compare", "export": "dse.export.__main__",
                                    "evaluate": "dse.evaluate"}[which]).main


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_rejects_hostile_plans_in_one_line(written, tmp_path, capsys, reader):
    base = json.loads(written["u280"].read_text())
    for name, doc in _hostile(base).items():
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(doc))
        which, argv = READERS[reader](path, written["u280"])
        capsys.readouterr()
        code = run_cli(_reader_main(which), argv)
        err = capsys.readouterr().err
        assert code == 2, (reader, name, err)
        assert err.count("\n") == 1 and err.startswith(f"error: plan {path}: "), (reader, name, err)
        for expected in EXPECTED[name]:
            assert expected in err, (reader, name, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]  # no partial output


def test_problems_are_capped_in_one_line(written):
    doc = json.loads(written["u280"].read_text())
    for layer in doc["layers"]:
        layer["params"] = "many"
    with pytest.raises(QuantDSEError, match=r"; and \d+ more: fix the file"):
        Plan.from_dict(doc)


def test_non_finite_numbers_are_problems():
    # json.loads lets NaN through (load_json rejects it earlier): the checker must too
    from quantcore.jsoncheck import problems

    assert problems({"x": float("nan")}, {"type": "object", "properties": {"x": {"type": "number"}}}) == [
        "x must be a finite number, got nan"]
    assert problems({"open": [1.0, float("inf")]}, {"type": "object"}) == ["open[1] must be a finite number, got inf"]
