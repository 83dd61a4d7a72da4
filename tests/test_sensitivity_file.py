"""`python -m dse.sensitivity --out FILE` writes the table a search uses; `--sensitivity FILE` reads it back.

Oracle: the search with the written file picks the same formats, with the same total error,
as the search that computed the table itself (MiniLM's real weights).
"""
import json

import pytest

from dse import search, sensitivity
from quantcore.cli import run_cli


def test_written_table_gives_the_same_plan(tmp_path, capsys):
    path = tmp_path / "errors.json"
    fmts = "int3-g128,int4-g128,int8"
    assert run_cli(sensitivity.main, ["--model", "all-minilm-l6-v2", "--formats", fmts, "--out", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert doc["schema"] == "dse.sensitivity/1" and doc["source"] == "weights" and len(doc["layers"]) == 37
    args = ["--hw", "a100-80gb", "--budget", "5bits", "--model", "all-minilm-l6-v2", "--json"]
    capsys.readouterr()
    assert run_cli(search.main, args + ["--formats", fmts]) == 0
    own = json.loads(capsys.readouterr().out)
    assert run_cli(search.main, args + ["--sensitivity", str(path)]) == 0
    read = json.loads(capsys.readouterr().out)
    assert [l["format"] for l in read["layers"]] == [l["format"] for l in own["layers"]]
    assert read["totals"]["error"] == pytest.approx(own["totals"]["error"], rel=1e-9)
    assert read["provenance"]["sensitivity"] == "file:errors.json"
