"""dse.evaluate: metrics by hand, bad input as one line, and the real MiniLM (slow) against sentence-transformers."""
import json

import numpy as np
import pytest
import torch

from dse.evaluate import embedding_metrics
from quantcore.models import load_graph

MINILM = "all-minilm-l6-v2"


def _plan(model: str, fmt: str = "int8") -> dict:
    layers = [{"name": l.name, "format": fmt, "bits": 8.0, "params": l.params, "error": 0.0, "latency_s": 0.0,
               "energy_j": 0.0} for l in load_graph(model).quantizable()]
    return {"schema": "dse.plan/1", "model": model, "hardware": "a100-80gb", "layers": layers,
            "totals": {"effective_bits": 8.0, "memory_bytes": 0.0, "latency_s": 0.0, "energy_j": 0.0, "error": 0.0}}


def test_embedding_metrics_by_hand():
    ref = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    m = embedding_metrics(emb, ref)
    # cosines 1, 0.6, 0.8; nearest neighbours fp: 0->1, 1->0 (0.8 vs 0.6), 2->1; quantized: 0->2, 1->2, 2->1
    assert m["cosine"] == pytest.approx((1.0 + 0.6 + 0.8) / 3)
    assert m["min_cosine"] == pytest.approx(0.6)
    assert m["nn_agreement"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("case,message", [
    ("config-only", "llama-2-7b has no weights here"),
    ("other-model", "was made for model llama-2-7b, not all-minilm-l6-v2"),
    ("empty-calib", "has 0 non-empty lines"),
    ("missing-plan", "not found"),
])
def test_evaluate_bad_input_one_line_exit_2(cli, tmp_path, case, message):
    llama, minilm = tmp_path / "llama.json", tmp_path / "minilm.json"
    llama.write_text(json.dumps(_plan("llama-2-7b")))
    minilm.write_text(json.dumps(_plan(MINILM)))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    args = {"config-only": ["--plan", str(llama)],
            "other-model": ["--plan", str(llama), "--model", MINILM],
            "empty-calib": ["--plan", str(minilm), "--calib", str(empty)],
            "missing-plan": ["--plan", str(tmp_path / "nope.json")]}[case]
    r = cli("dse.evaluate", *args, "--json")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_search_with_empty_calibration_is_one_line(cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "plan.json"
    r = cli("dse.search", "--hw", "a100-80gb", "--model", MINILM, "--budget", "4bits", "--sensitivity", "output",
            "--calib", str(empty), "--out", str(out))
    assert r.returncode == 2 and not out.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "has 0 non-empty lines" in lines[0], r.stderr


@pytest.mark.slow
def test_minilm_fp_embeddings_match_sentence_transformers():
    """Our transformers + mean pooling path gives sentence-transformers' own embeddings (the peer)."""
    from sentence_transformers import SentenceTransformer

    from dse.evaluate import Evaluator
    from quantcore.models.registry import packaged_weights

    texts = ["The kettle clicked off.", "A prime number has exactly two divisors: one and itself.",
             "Mind the gap between the train and the platform, please."]
    ev = Evaluator(MINILM, texts)
    peer = SentenceTransformer(str(packaged_weights(MINILM)), device="cpu", local_files_only=True)
    expected = peer.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(ev.reference.numpy(), expected, atol=2e-5)


@pytest.mark.slow
def test_minilm_evaluate_orders_formats_and_restores_weights():
    from dse.evaluate import Evaluator

    ev = Evaluator(MINILM, max_texts=24, seed=3)
    again = Evaluator(MINILM, max_texts=24, seed=3)
    assert ev.texts == again.texts  # the same seed picks the same texts
    before = {n: m.weight.detach().clone() for n, m in ev.modules.items()}
    scores = {f: ev.metrics({n: f for n in ev.layer_names})["cosine"] for f in ("int3-g128", "int4-g128", "int8")}
    assert scores["int3-g128"] < scores["int4-g128"] < scores["int8"] < 1.0
    assert scores["int8"] > 0.999
    assert all(torch.equal(before[n], m.weight) for n, m in ev.modules.items())
    assert ev.metrics({})["cosine"] == pytest.approx(1.0, abs=1e-6)
    # only the pooler quantized: mean pooling never reads it
    assert ev.metrics({"pooler.dense": "int2-g64"})["cosine"] == pytest.approx(1.0, abs=1e-6)
    # repeated calls give the same number (cached weights, deterministic forward)
    plan = {n: ("int3-g128" if i % 2 else "int8") for i, n in enumerate(ev.layer_names)}
    assert ev.metrics(plan) == ev.metrics(plan)


@pytest.mark.slow
def test_minilm_evaluate_cli_json(cli, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_plan(MINILM, "int4-g128")))
    calib = tmp_path / "calib.txt"
    calib.write_text("A cat sat on the mat.\nStocks fell sharply today.\nThe soup needs more salt.\n")
    r = cli("dse.evaluate", "--plan", str(plan), "--calib", str(calib), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["metric"] == "cosine" and doc["higher_is_better"] is True and doc["model"] == MINILM
    assert doc["value"] == doc["metrics"]["cosine"] and 0.8 < doc["value"] < 1.0
    assert doc["calibration"]["texts"] == 3 and doc["plan"] == str(plan)


@pytest.mark.slow
def test_minilm_calibration_sources_label_plans_cache_and_repeat(cli, tmp_path, monkeypatch):
    calib = tmp_path / "calib.txt"
    calib.write_text("A cat sat on the mat.\nStocks fell sharply today.\nThe soup needs more salt.\n"
                     "Rain stopped play for most of the afternoon.\n")
    for source in ("hessian", "fisher", "output"):
        plans = []
        for run in range(2):  # the second run reads the first one's cache
            monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
            out = tmp_path / f"{source}{run}.json"
            r = cli("dse.search", "--hw", "a100-80gb", "--model", MINILM, "--budget", "4bits", "--sensitivity",
                    source, "--calib", str(calib), "--formats", "int3-g128,int4-g128,int8", "--out", str(out),
                    timeout=300)
            assert r.returncode == 0, r.stderr
            plans.append(json.loads(out.read_text()))
        prov = plans[0]["provenance"]
        assert prov["sensitivity"] == source and "4 texts" in prov["sensitivity_description"]
        assert [l["error"] for l in plans[0]["layers"]] == [l["error"] for l in plans[1]["layers"]]
        if source != "output":  # the pooler feeds nothing the embedding reads: zero curvature
            pooler = [l for l in plans[0]["layers"] if l["name"] == "pooler.dense"][0]
            assert pooler["error"] == 0.0
    assert len(list((tmp_path / "cache" / "sensitivity").glob("*.json"))) == 3


@pytest.mark.slow
def test_minilm_hessian_is_deterministic_for_a_seed(tmp_path, monkeypatch):
    from dse.calibsens import calibration_table
    from quantcore.formats import get_format

    calib = tmp_path / "calib.txt"
    calib.write_text("A cat sat on the mat.\nStocks fell sharply today.\nThe soup needs more salt.\n")
    fmts = [get_format("int4-g128")]
    tables = []
    for seed, cache in ((0, "a"), (0, "b"), (1, "c")):
        monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / cache))
        tables.append(calibration_table("hessian", MINILM, fmts, str(calib), seed=seed)[0])
    assert tables[0] == tables[1] and tables[0] != tables[2]
