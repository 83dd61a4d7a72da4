"""Activation precision and the KV cache chosen with the weights (dse.precision, dse.kvcache, dse.actprior),
plan schema dse.plan/2 and what the exports carry.

Oracles: KV bytes by hand (batch x context x kv heads x head_dim x bits / 8); brute-force enumeration of
a small Problem with KV rows; a per-token int8 quantizer written here in numpy; the `jsonschema` package on
plan/2; compressed-tensors' own QuantizationConfig / apply_quantization_config for kv_cache_scheme.
"""
import itertools
import json

import numpy as np
import pytest

from conftest import require
from dse import Budget, search
from dse.problem import Problem, tie
from hwmodels.workload import Workload
from quantcore.cli import run_cli
from quantcore.errors import QuantDSEError
from quantcore.formats import get_format

LLAMA3 = {"layers": 32, "kv_heads": 8, "head_dim": 128}  # Meta-Llama-3-8B config.json


# ---------------------------------------------------------------- the activation suffix

@pytest.mark.parametrize("name,bits,kind,gran,group,weights", [
    ("int4-g128-a8", 8, "int", "token", None, "int4-g128"),
    ("int4-g128-af8", 8, "fp", "token", None, "int4-g128"),
    ("int8-a8c", 8, "int", "channel", None, "int8"),
    ("int4-g128-a4g128", 4, "int", "group", 128, "int4-g128"),
    ("fp8-e4m3-af8", 8, "fp", "token", None, "fp8-e4m3"),
    ("int4-g128", 16, "int", "token", None, "int4-g128"),
])
def test_activation_suffix_fields(name, bits, kind, gran, group, weights):
    f = get_format(name)
    assert (f.name, f.act_bits, f.act_type, f.act_granularity, f.act_group, f.weight_name) == \
        (name, bits, kind, gran, group, weights)
    assert f.bits == get_format(weights).bits  # activations change no stored bit


@pytest.mark.parametrize("name,match", [
    ("int4-af16", "use -af8 or -af4"), ("int4-a16c", "take no type or granularity"),
    ("int4-a4g7", "not a power of two"), ("int4-a3", "use -a4, -a8 or -a16")])
def test_activation_suffix_errors(name, match):
    with pytest.raises(QuantDSEError, match=match):
        get_format(name)


# ---------------------------------------------------------------- the data-free prior

def _per_token_int8(x):
    """Symmetric int8, one scale per row = amax / 127, written independently of quantcore."""
    scale = np.abs(x).max(axis=1, keepdims=True) / 127.0
    return np.clip(np.round(x / scale), -128, 127) * scale


def test_activation_prior_matches_a_numpy_per_token_quantizer():
    from dse.actprior import activation_quantizer, relative_mse, synthetic

    x = synthetic(4096, (0.002, 20.0, 0.0), "test")
    quantizer, per_column = activation_quantizer(get_format("int4-g128-a8"))
    ours = relative_mse(x, quantizer, per_column)
    x64 = x.astype(np.float64)
    ref = float(np.sum((x64 - _per_token_int8(x64)) ** 2) / np.sum(x64 ** 2))
    assert ours == pytest.approx(ref, rel=2e-3)  # quantcore stores the scale in fp16


def test_prior_orders_outliers_as_the_papers_say():
    """down_proj inputs lose more than q/k/v inputs ([smoothquant]); K caches more than V ([kivi])."""
    from dse.actprior import activation_errors, kv_errors
    from dse.kvcache import kv_items
    from quantcore.models import load_graph

    graph = load_graph("llama-3-8b")
    layers = [l for l in graph.quantizable() if l.block == 0 and l.role in ("q", "down")]
    fmts = [get_format("int4-g128-a8"), get_format("int4-g128-a8c")]
    err = activation_errors(layers, fmts) / np.array([[l.params] for l in layers])
    q, down = err[[l.role for l in layers].index("q")], err[[l.role for l in layers].index("down")]
    assert down[0] > q[0] and err[:, 1].max() < err[:, 0].min()  # per-channel scales absorb fixed outliers
    items = kv_items(graph)[:2]
    kv = kv_errors(items, [get_format("int4-g64")]) / np.array([[it.params] for it in items])
    assert items[0].tensor == "k" and kv[0, 0] > kv[1, 0]


# ---------------------------------------------------------------- KV items in the search

def test_kv_cache_bytes_by_hand_and_in_the_totals():
    plan = search("llama-3-8b", "u280", Budget.bits(5.0), formats=["int4-g128", "int8", "fp16"],
                  workload=Workload.unset(batch=16, seq=2048), kv_formats=["fp16", "int4-g64"]).to_dict()
    per_token = 16 * 2048 * LLAMA3["kv_heads"] * LLAMA3["head_dim"]
    hand = {"fp16": per_token * 2, "int4-g64": per_token * (4 + 16 / 64) / 8}  # 67,108,864 and 17,825,792 B
    assert hand == {"fp16": 67108864, "int4-g64": 17825792}
    kv = plan["kv"]
    assert len(kv) == 2 * LLAMA3["layers"]
    assert kv[0]["name"] == "model.layers.0.self_attn.k_cache" and kv[1]["name"] == "model.layers.0.self_attn.v_cache"
    for e in kv:
        assert e["memory_bytes"] == hand[e["format"]]
    assert plan["totals"]["kv_cache_bytes"] == pytest.approx(sum(hand[e["format"]] for e in kv))
    weights = sum(l["memory_bytes"] for l in plan["layers"])
    assert plan["totals"]["memory_bytes"] == pytest.approx(weights + plan["fixed"]["memory_bytes"]
                                                           + plan["totals"]["kv_cache_bytes"])
    assert plan["provenance"]["kv_formats"] == ["fp16", "int4-g64"]


def test_a_searched_cache_and_the_serving_figures_agree():
    """With K/V rows searched on one decode step, the step is the token: tpot is the plan's latency, the
    K/V rows' time is in it once (not also in the fixed part), tokens/s is batch / step, and the SLO holds."""
    workload = Workload.unset(phase="decode", batch=16, seq=2048)
    plan = search("llama-3-8b", "a100-80gb", Budget.bits(5.0), formats=["int4-g128", "int8", "fp16"],
                  workload=workload, kv_formats=["fp16", "int8"], max_tpot_ms=30.0).to_dict()
    totals = plan["totals"]
    assert totals["tpot_s"] == pytest.approx(totals["latency_s"], rel=1e-9)  # the plan rounds to 12 digits
    assert totals["tokens_per_s"] == pytest.approx(16 / totals["latency_s"], rel=1e-9)
    assert totals["tpot_s"] <= 0.030 * (1 + 1e-9)
    rows = sum(l["latency_s"] for l in plan["layers"]) + sum(e["latency_s"] for e in plan["kv"])
    assert totals["latency_s"] == pytest.approx(rows + plan["fixed"]["latency_s"], rel=1e-9)
    fixed_cache = search("llama-3-8b", "a100-80gb", Budget.bits(5.0), formats=["int4-g128", "int8", "fp16"],
                         workload=workload).to_dict()
    assert plan["fixed"]["latency_s"] < fixed_cache["fixed"]["latency_s"]  # attention left the fixed part
    with pytest.raises(QuantDSEError, match="one pass on one device"):
        search("llama-3-8b", "a100-80gb", Budget.bits(5.0), kv_formats=["fp16", "int8"],
               workload=Workload.unset(phase="generate", seq=512, output_len=64))


@pytest.mark.parametrize("runtime,formats,scope", [("vllm", ["fp16", "fp8-e4m3"], "kv"),
                                                   ("llama.cpp", ["fp16", "q8_0", "q4_0"], "k,v")])
def test_runtime_with_one_cache_type_ties_the_items(runtime, formats, scope):
    plan = search("llama-3-8b", "a100-80gb", Budget.gb(5.5), formats=["q4_k", "int4-g128", "fp16"],
                  overrides={"runtime": runtime}, kv_formats=formats).to_dict()
    k = {e["format"] for e in plan["kv"] if e["tensor"] == "k"}
    v = {e["format"] for e in plan["kv"] if e["tensor"] == "v"}
    assert len(k) == 1 and len(v) == 1
    if scope == "kv":
        assert k == v


def test_kv_rows_solved_as_brute_force_does():
    """2 weight rows x 2 formats + 2 KV rows x 2 cache formats under a memory limit: ILP = enumeration."""
    from dse.solvers import solve

    inf = np.inf
    error = np.array([[1.0, 5.0, inf, inf], [2.0, 9.0, inf, inf], [inf, inf, 0.0, 3.0], [inf, inf, 0.0, 1.0]])
    mask = np.isfinite(error)
    item = np.zeros((4, 4))
    item[2:, 2:] = [[100.0, 25.0], [100.0, 25.0]]
    p = Problem(layer_names=["a", "b", "x.k_cache", "x.v_cache"], format_names=["int8", "int4", "fp16", "int4-g64"],
                error=error, params=np.array([8.0, 8.0, 0.0, 0.0]), bits=np.array([[8, 4, 16, 16]] * 2 + [[16, 16, 16, 4.25]] * 2, float),
                latency_s=np.zeros((4, 4)), energy_j=np.zeros((4, 4)), mask=mask, limits={"memory": 170.0},
                item_memory=item)
    best = min((sum(error[r, c] for r, c in enumerate(a)), a) for a in itertools.product([0, 1], [0, 1], [2, 3], [2, 3])
               if not p.violations(np.array(a)))
    result = solve(p, method="ilp")
    assert result.objective == pytest.approx(best[0]) and tuple(result.assignment) == best[1]
    merged, rows = tie(p, [[2, 3]])  # one cache type: the two KV rows become one
    assert merged.item_memory[2].tolist() == [0.0, 0.0, 200.0, 50.0]


# ---------------------------------------------------------------- activation kernels

def test_activation_variants_the_target_cannot_run_are_dropped_with_a_note():
    plan = search("llama-3-8b", "h100-sxm", Budget.bits(5.0), formats=["int4-g128", "int8", "fp16"],
                  activations=["", "-a8", "-a4"]).to_dict()
    assert "int4-g128-a4" not in plan["formats"] and "int4-g128-a8" in plan["formats"]
    assert any("h100-sxm cannot run int4-g128-a4" in n for n in plan["notes"])  # no int4 tensor cores on Hopper
    a100 = search("llama-3-8b", "a100-80gb", Budget.bits(5.0), formats=["int4-g128", "fp16"],
                  activations=["", "-a4", "-af8"]).to_dict()
    assert "int4-g128-a4" in a100["formats"] and "int4-g128-af8" not in a100["formats"]  # no fp8 on Ampere
    l40s = search("llama-3-8b", "l40s", Budget.bits(5.0), formats=["int4-g128", "fp16"], activations=["", "-af8"])
    assert "int4-g128-af8" in l40s.to_dict()["formats"]
    for layer in plan["layers"]:
        assert layer["activation"]["bits"] == get_format(layer["format"]).act_bits


def test_a_combination_asked_for_exactly_without_a_kernel_is_an_error(capsys):
    from dse.search import main

    assert run_cli(main, ["--hw", "h100-sxm", "--model", "llama-3-8b", "--budget", "5bits",
                          "--formats", "int4-g128-a4,fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: layer model.layers.0.self_attn.q_proj: h100-sxm has no kernel for int4-g128-a4 (weights "
                   "int4-g128, 4-bit int activations per token): drop it from --formats, or use --activations to let "
                   "the search keep only the combinations the target runs")


# ---------------------------------------------------------------- plan/2

@pytest.fixture(scope="module")
def kv_plan(tmp_path_factory):
    from dse.search import main

    out = tmp_path_factory.mktemp("kv") / "plan.json"
    assert run_cli(main, ["--hw", "a100-80gb", "--model", "llama-3-8b", "--budget", "6GB", "--formats",
                          "int4-g128,int8-a8,int8,fp16", "--kv-formats", "fp16,fp8-e4m3", "--out", str(out)]) == 0
    return out


def test_plan2_valid_for_jsonschema_and_plan1_still_read(kv_plan, tmp_path):
    jsonschema = require("jsonschema")
    from dse.plan import load_plan, plan_schema

    doc = json.loads(kv_plan.read_text())
    assert doc["schema"] == "dse.plan/2"
    jsonschema.validate(doc, plan_schema("dse.plan/2"))
    assert {e["format"] for e in doc["kv"]} == {"fp8-e4m3"}  # 6 GB holds an 8-bit cache, not a 16-bit one
    old = {k: v for k, v in doc.items() if k != "kv"}
    old["schema"] = "dse.plan/1"
    old["layers"] = [{k: v for k, v in l.items() if k != "activation"} for l in doc["layers"]]
    jsonschema.validate(old, plan_schema("dse.plan/1"))
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert load_plan(str(path))["schema"] == "dse.plan/1"
    broken = dict(doc, layers=[{k: v for k, v in doc["layers"][0].items() if k != "activation"}])
    path.write_text(json.dumps(broken))
    with pytest.raises(QuantDSEError, match=r"layers\[0\].*activation"):
        load_plan(str(path))


# ---------------------------------------------------------------- exports

def _export(plan, to, tmp_path, capsys, *flags):
    from dse.export.__main__ import main

    capsys.readouterr()
    rc = run_cli(main, ["--plan", str(plan), "--to", to, "--out", str(tmp_path / f"out-{to}"), "--json", *flags])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else out.err.strip())


def test_compressed_tensors_kv_cache_scheme_applied_by_the_package(kv_plan, tmp_path, capsys):
    require("compressed_tensors")
    torch = require("torch")
    transformers = require("transformers")
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, apply_quantization_config

    rc, report = _export(kv_plan, "compressed-tensors", tmp_path, capsys)
    assert rc == 0
    block = json.loads((tmp_path / "out-compressed-tensors").read_text())["quantization_config"]
    config = QuantizationConfig.model_validate(block)
    assert (config.kv_cache_scheme.num_bits, config.kv_cache_scheme.type, config.kv_cache_scheme.strategy) == \
        (8, "float", "tensor")

    class TinyAttention(torch.nn.Module):
        """An attention module as compressed-tensors 0.20 hooks one (a ``past_key_values`` argument; the
        installed transformers renamed it ``cache``, so its own Llama is not hooked)."""

        def __init__(self):
            super().__init__()
            self.q_proj, self.o_proj = torch.nn.Linear(128, 128), torch.nn.Linear(128, 128)
            self.k_proj, self.v_proj = torch.nn.Linear(128, 64), torch.nn.Linear(128, 64)

        def forward(self, hidden_states, past_key_values=None):
            return self.o_proj(hidden_states)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([TinyAttention() for _ in range(2)])
            self.config = transformers.LlamaConfig(hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
                                                   num_hidden_layers=2)

    model = Tiny()
    kv_only = QuantizationConfig.model_validate({"config_groups": {}, "quant_method": "compressed-tensors",
                                                 "kv_cache_scheme": block["kv_cache_scheme"]})
    kv_only.quantization_status = QuantizationStatus.INITIALIZED
    apply_quantization_config(model, kv_only)
    scales = sorted(n for n, _ in model.named_parameters() if n.endswith(("k_scale", "v_scale")))
    assert scales == ["layers.0.k_scale", "layers.0.v_scale", "layers.1.k_scale", "layers.1.v_scale"]


def test_modelopt_llamacpp_and_weight_only_targets(kv_plan, tmp_path, capsys):
    rc, _ = _export(kv_plan, "modelopt", tmp_path, capsys)
    assert rc == 0
    assert json.loads((tmp_path / "out-modelopt").read_text())["quantization"]["kv_cache_quant_algo"] == "FP8"
    rc, err = _export(kv_plan, "gptqmodel", tmp_path, capsys, "--nearest")
    assert rc == 2 and err.startswith("error: layer model.layers.0.self_attn.k_cache: gptqmodel cannot express a "
                                      "fp8-e4m3 KV cache (it writes weights only)") and "\n" not in err


def test_a_cache_type_the_target_lacks_or_a_mix_stops_with_one_line(kv_plan, tmp_path, capsys):
    doc = json.loads(kv_plan.read_text())
    doc["kv"][3]["format"] = "int8"  # model.layers.1.self_attn.v_cache
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(doc))
    rc, err = _export(path, "compressed-tensors", tmp_path, capsys)
    assert rc == 2 and err == ("error: layer model.layers.1.self_attn.v_cache: compressed-tensors cannot express a "
                               "int8 KV cache: search with --kv-formats fp16,fp8-e4m3")
    rc, _ = _export(path, "modelopt", tmp_path, capsys)  # INT8 is a ModelOpt cache, but one for the whole model
    assert rc == 2


def test_llamacpp_cache_types_are_global_flags(tmp_path, capsys):
    from dse.search import main

    plan = tmp_path / "plan.json"
    assert run_cli(main, ["--hw", "a100-80gb", "--model", "llama-3-8b", "--budget", "5.5GB", "--formats",
                          "q4_k,q8_0,fp16", "--kv-formats", "fp16,q8_0,q4_0", "--set", "runtime=llama.cpp",
                          "--out", str(plan)]) == 0
    doc = json.loads(plan.read_text())
    k = doc["kv"][0]["format"]
    v = doc["kv"][1]["format"]
    rc, report = _export(plan, "llamacpp", tmp_path, capsys)
    assert rc == 0
    types = {"fp16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}
    flags = f"--cache-type-k {types[k]} --cache-type-v {types[v]}"
    assert any(flags in n and "global" in n for n in report["notes"])


# ---------------------------------------------------------------- names and bad input

def test_encoder_items_are_named_after_the_attention_module():
    """BERT / MiniLM: the parent of `key` / `value` (the contract measured sensitivity keys its tables by)."""
    from dse.kvcache import kv_items
    from quantcore.models import load_graph

    items = kv_items(load_graph("all-minilm-l6-v2"))
    assert [it.name for it in items[:2]] == ["encoder.layer.0.attention.self.k_cache",
                                             "encoder.layer.0.attention.self.v_cache"]
    assert len(items) == 12 and items[0].params == 384 * 384  # key: 384 x 384 (all-MiniLM-L6-v2 config.json)


@pytest.mark.parametrize("flags,message", [
    (["--activations", "3"], "error: activation bits 3 in 'int8-a3' are not supported: use -a4, -a8 or -a16"),
    (["--activations", "8,x"], "error: --activations entry 'x' is not a precision: use e.g. 16,8,4 (f8 for fp8, 8c "
                               "per channel, 4g128 per group of 128)"),
    (["--kv-formats", "int4-g64-a8"], "error: --kv-formats int4-g64-a8: a cache format is a storage format: drop "
                                      "the activation or low-rank suffix (e.g. int4-g64)"),
    (["--kv-formats", "int8", "--kv-bits", "8"], "error: --kv-bits fixes the KV cache and --kv-formats searches it: "
                                                 "give one of them"),
    (["--kv-formats", "int8", "--method", "rl"], "error: --method rl reads the model's layers and cannot search "
                                                 "--kv-formats: use --method ilp (or fix the cache with --kv-bits)"),
    (["--kv-formats", "int8", "--model", "resnet-50"], "error: resnet-50 has no attention layers: drop --kv-formats"),
])
def test_bad_precision_flags_are_one_line_errors(flags, message, capsys, tmp_path):
    from dse.search import main

    argv = ["--hw", "u280", "--budget", "5bits", "--out", str(tmp_path / "p.json"), *flags]
    if "--model" not in flags:
        argv += ["--model", "llama-3-8b"]
    assert run_cli(main, argv) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "p.json").exists()


# ---------------------------------------------------------------- measured K/V errors in the search

def _kv_file(path, expensive: str, fmt="int4-g64"):
    """A sensitivity file for llama-3-8b: the prior's weight rows, and K/V rows where `expensive` ("k" or "v")
    in `fmt` costs ten times the worst weight error and the other tensor costs nothing."""
    from dse.kvcache import kv_items
    from dse.sensitivity import compute_sensitivity, table_doc
    from quantcore.models import load_graph

    graph = load_graph("llama-3-8b")
    layers, formats = graph.quantizable(), [get_format(n) for n in ("int4-g128", "int8", "fp16")]
    doc = table_doc(graph, layers, formats, compute_sensitivity(graph, layers, formats, "prior"))
    big = 10 * max(v for row in doc["layers"].values() for v in row.values())
    for item in kv_items(graph):
        doc["layers"][item.name] = {"fp16": 0.0, fmt: big if item.tensor == expensive else 0.0}
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("expensive,cheap", [("k", "v"), ("v", "k")])
def test_the_search_reads_measured_kv_rows(tmp_path, expensive, cheap):
    """The budget (7.7 GB: int4 weights and half the cache in int4) forces some of the cache down; K and V
    items take the same bytes in each format, so an optimum compresses the tensor whose measured error is
    zero and keeps the other at fp16. The prior (no K/V rows) compresses both."""
    from collections import Counter

    work = Workload.unset(phase="decode", batch=16, seq=2048)
    args = dict(formats=["int4-g128", "int8", "fp16"], workload=work, kv_formats=["fp16", "int4-g64"])
    plan = search("llama-3-8b", "u280", Budget.gb(7.7), sensitivity=_kv_file(tmp_path / "s.json", expensive),
                  **args).to_dict()
    chosen = Counter((e["tensor"], e["format"]) for e in plan["kv"])
    assert chosen == {(expensive, "fp16"): 32, (cheap, "int4-g64"): 32}
    assert plan["provenance"]["kv_sensitivity"] == "measured" and plan["notes"][-1].endswith("measured K/V errors")
    prior = search("llama-3-8b", "u280", Budget.gb(7.7), **args).to_dict()
    assert prior["provenance"]["kv_sensitivity"] == "prior"
    assert Counter(e["format"] for e in prior["kv"]) == {"int4-g64": 64}


def test_measured_kv_rows_lacking_a_searched_format_are_one_line_errors(tmp_path, capsys):
    path = _kv_file(tmp_path / "s.json", "k", fmt="int8")
    code = run_cli(__import__("dse.search", fromlist=["main"]).main,
                   ["--hw", "u280", "--model", "llama-3-8b", "--budget", "8GB", "--batch", "16", "--seq", "2048",
                    "--sensitivity", path, "--kv-formats", "fp16,int4-g64", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "p.json").exists()
    assert err.startswith("error: the sensitivity's K/V row model.layers.0.self_attn.k_cache has no error for "
                          "int4-g64: measure it with dse.sensitivity --kv-formats ...,int4-g64"), err
