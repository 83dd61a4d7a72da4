"""Hostile plan files (issue 23): one fast test per root cause the outside fuzzing found.

Every tool that reads a plan (dse.show, dse.compare, dse.export, dse.evaluate) must refuse a
plan whose fields have the wrong type, a non-finite number or a layer listed twice: exit 2,
one line naming the plan file, no traceback, no output file. These tests check the schema
reader in dse.plan (`load_plan`); they fail until that reader is in place.
The generated cases are in tests/test_fuzz_cli.py (`test_fuzz_plan_file_schema`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dse import compare, evaluate, search, show
from tests.hostile import assert_one_line_error, run, write_tiny


def export_main(argv):
    from dse.export.__main__ import main

    return main(argv)


def make_plan(folder: Path) -> Path:
    """A valid plan of the tiny llama (tests/hostile.py), written by dse.search."""
    config, sens = write_tiny(folder)
    plan = folder / "plan.json"
    r = run(search.main, ["--hw", "u280", "--model", config, "--sensitivity", sens, "--budget", "6bits",
                          "--out", plan])
    assert r.code == 0, r.err
    return plan


def plan_readers(plan: Path, good: Path, out: Path) -> dict:
    """Each plan-reading CLI with arguments that would write `out` if it accepted the plan."""
    return {"show": (show.main, [plan, "--plot", out.with_suffix(".png")]),
            "compare": (compare.main, [good, plan, "--json"]),
            "export": (export_main, ["--plan", plan, "--to", "llamacpp", "--out", out.with_suffix(".txt")]),
            "evaluate": (evaluate.main, ["--plan", plan, "--calib", out.with_suffix(".calib")])}


def assert_every_reader_refuses(plan: Path, good: Path) -> None:
    out = plan.parent / "out"
    for tool, (main, argv) in plan_readers(plan, good, out).items():
        r = run(main, argv)
        assert_one_line_error(r, str(plan))
        assert not list(plan.parent.glob("out.*")), tool


def edit(good: Path, path: Path, change) -> Path:
    doc = json.loads(good.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("name, change", [
    ("params as text", lambda d: d["layers"][0].__setitem__("params", "1")),
    ("totals as a list", lambda d: d.__setitem__("totals", list(d["totals"].values()))),
    ("null layer latency", lambda d: d["layers"][0].__setitem__("latency_s", None)),
    ("null total latency", lambda d: d["totals"].__setitem__("latency_s", None)),
    ("format as an object", lambda d: d["layers"][1].__setitem__("format", {"name": "int4-g32"})),
    ("a layer listed twice", lambda d: d["layers"].append(dict(d["layers"][0], format="fp16"))),
])
def test_plan_schema_refuses_root_cause(tmp_path, name, change):
    good = make_plan(tmp_path)
    bad = edit(good, tmp_path / "bad.json", change)
    assert_every_reader_refuses(bad, good)
