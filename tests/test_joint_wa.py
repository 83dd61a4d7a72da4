"""experiments.joint_wa's committed measurement: the docs page shows the data file's numbers, and the data
file says where they come from (the run itself is docs/activations.md's command, run by test_readme)."""
import json
from pathlib import Path

from experiments.joint_wa import A8, JOINT, compare, markdown_table
from quantcore.formats import get_format

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "joint-wa-minilm-a100.json"


def test_docs_table_is_the_data_file():
    doc = json.loads(DATA.read_text())
    assert markdown_table(doc) in (ROOT / "docs" / "activations.md").read_text()
    assert (ROOT / "docs" / "activations-minilm-a100.png").stat().st_size > 10_000


def test_data_file_has_provenance_and_consistent_points():
    doc = json.loads(DATA.read_text())
    assert doc["date"] and doc["device"]["latency"] and doc["device"]["metric"]
    assert doc["command"].startswith("python -m experiments.joint_wa")
    assert doc["candidates"] == {"joint": list(JOINT), "a8": list(A8)}
    assert doc["comparison"] == compare(doc["points"])
    for p in doc["points"]:
        if p["feasible"]:
            assert p["latency_ms"] <= p["budget_ms"] * (1 + 1e-9)
            allowed = JOINT if p["family"] == "joint" else A8
            assert set(p["formats"]) <= set(allowed)
            if p["family"] == "a8":
                assert all(get_format(f).act_bits == 8 for f in p["formats"])


def test_compare_by_hand():
    pts = [{"family": "joint", "budget_ms": 1.0, "feasible": True, "cosine": 0.99, "latency_ms": 0.9},
           {"family": "a8", "budget_ms": 1.0, "feasible": True, "cosine": 0.98, "latency_ms": 0.8},
           {"family": "joint", "budget_ms": 0.5, "feasible": True, "cosine": 0.9, "latency_ms": 0.5},
           {"family": "a8", "budget_ms": 0.5, "feasible": False}]
    assert compare(pts) == [{"budget_ms": 1.0, "joint": 0.99, "a8": 0.98, "joint_latency_ms": 0.9,
                             "a8_latency_ms": 0.8, "winner": "joint"}]
