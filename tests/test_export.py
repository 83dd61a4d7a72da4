"""dse.export: each target's file checked by that tool's own conventions or package.

Oracles
- llama.cpp: GGUF tensor names from `gguf.get_tensor_name_map` (gguf-py, the map
  convert_hf_to_gguf.py uses), ggml type names from `gguf.GGMLQuantizationType`; rules are
  applied as llama-quantize does (regex_search, src/llama-quant.cpp), with Python's `re`.
- GPTQModel: `dynamic_get` of gptqmodel/quantization/config.py re-stated below (first key that
  `re.match`es wins; `-:` skips), applied to the model's module list.
- compressed-tensors / llm-compressor: the `compressed_tensors` package's pydantic models and its
  `match_name`; the recipe is parsed by pyyaml.
- AutoRound: module names against the model's HF names; entry keys against the fields of
  `auto_round.schemes.QuantizationScheme` (slow: importing auto_round takes seconds).
- ModelOpt: `convert_hf_quant_config_format` of the installed nvidia-modelopt (slow).
"""
from __future__ import annotations

import json
import re

import pytest
import yaml

from quantcore.cli import run_cli
from quantcore.formats import get_format
from quantcore.models import load_graph

LLAMA_FORMATS = "q2_k,q3_k,q4_k,q5_k,q6_k,q8_0"
TARGETS = ("llamacpp", "gptqmodel", "llmcompressor", "compressed-tensors", "autoround", "modelopt")


def _search(tmp_path, name, *args):
    from dse.search import main

    out = tmp_path / name
    assert run_cli(main, ["--hw", "a100-80gb", "--out", str(out), *args]) == 0
    return out


def _export(plan, target, out, *flags):
    from dse.export.__main__ import main

    assert run_cli(main, ["--plan", str(plan), "--to", target, "--out", str(out), "--json", *flags]) == 0
    return out


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A llama-2-7b plan over llama.cpp types with two types in use, exported to every target."""
    tmp = tmp_path_factory.mktemp("llama")
    plan = _search(tmp, "plan.json", "--model", "llama-2-7b", "--budget", "4.2bits", "--formats", LLAMA_FORMATS,
                   "--sensitivity", "prior")
    doc = json.loads(plan.read_text())
    assert len({l["format"] for l in doc["layers"]}) >= 2
    return tmp, plan, doc


def _report(capsys):
    return json.loads(capsys.readouterr().out)


def _written(doc: dict, report: dict) -> dict:
    """{layer: format written}: the plan's format unless the report lists a change."""
    out = {l["name"]: l["format"] for l in doc["layers"]}
    out.update({c["layer"]: c["written"] for c in report["changes"]})
    return out


# ---------------------------------------------------------------- llama.cpp

def test_llamacpp_file_against_gguf_name_map(llama, capsys):
    import gguf

    tmp, plan, doc = llama
    out = _export(plan, "llamacpp", tmp / "types.txt")
    report = _report(capsys)
    assert report["changes"] == []  # the plan already uses llama.cpp types
    rules = [tok.split("=") for tok in out.read_text().split()]
    # every type is a ggml type name the gguf package knows
    assert all(t.upper() in gguf.GGMLQuantizationType.__members__ for _, t in rules)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 32)
    for layer in doc["layers"]:
        tensor = tmap.get_name(layer["name"] + ".weight", try_suffixes=(".weight",))
        assert tensor is not None
        hits = [t for pattern, t in rules if re.search(pattern, tensor)]
        assert len(hits) == 1, (tensor, hits)
        assert hits[0].lower() == layer["format"]
    assert any(re.search(p, "token_embd.weight") for p, _ in rules)  # the 16-bit embedding the plan costs
    # compact: at most one rule per (tensor kind, type), block indices in one alternation, and kinds
    # over the same blocks in one rule
    kinds = {(re.sub(r"^blk\.\d+\.", "", tmap.get_name(l["name"] + ".weight", try_suffixes=(".weight",))),
              l["format"]) for l in doc["layers"]}
    assert len(rules) < len(kinds) + 1
    assert any(p.startswith(r"^blk\.\d+(") for p, _ in rules)
    assert report["command"].startswith("llama-quantize --tensor-type-file ")


def test_llamacpp_moe_experts_fold_to_one_type_per_layer(tmp_path, capsys):
    """mixtral: per-expert formats become one type per merged ffn_*_exps tensor, the widest."""
    import gguf

    plan = _search(tmp_path, "mix.json", "--model", "mixtral-8x7b", "--budget", "4bits", "--formats-for", "llamacpp")
    doc = json.loads(plan.read_text())
    # force two formats among the experts of one layer's w1
    layers = [l for l in doc["layers"] if ".block_sparse_moe.experts." in l["name"] and l["name"].endswith(".w1")
              and l["block"] == 3]
    layers[0]["format"], layers[1]["format"] = "q2_k", "q6_k"
    plan.write_text(json.dumps(doc))
    capsys.readouterr()
    out = _export(plan, "llamacpp", tmp_path / "types.txt")
    report = _report(capsys)
    folds = [c for c in report["changes"] if c["reason"] == "moe-fold" and c["layer"].startswith("model.layers.3.")
             and c["layer"].endswith(".w1")]
    assert {c["written"] for c in folds} == {"q6_k"}
    assert len(folds) == 7  # every other expert of that tensor widened to q6_k
    assert all(c["bits_after"] > c["bits_before"] for c in folds)
    rules = [tok.split("=") for tok in out.read_text().split()]
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 32)
    merged = tmap.get_name("model.layers.3.block_sparse_moe.experts.w1.weight", try_suffixes=(".weight",))
    assert merged == "blk.3.ffn_gate_exps.weight"
    hits = [t for p, t in rules if re.search(p, "blk.3.ffn_gate_exps.weight")]
    assert hits == ["q6_K"]


# ---------------------------------------------------------------- GPTQModel

def _dynamic_get(dynamic: dict, module: str):
    """GPTQModel's rule (gptqmodel/quantization/config.py dynamic_get): first key that re.match-es wins;
    a -: key returns False (skip), a +: key its overrides; no match: None (base config)."""
    for pattern, overrides in dynamic.items():
        if pattern.startswith("-:"):
            if re.match(pattern.removeprefix("-:"), module):
                return False
        elif re.match(pattern.removeprefix("+:"), module):
            return overrides
    return None


def test_gptqmodel_dynamic_regexes_against_module_list(llama, capsys):
    tmp, plan, doc = llama
    out = _export(plan, "gptqmodel", tmp / "quantize_config.json", "--nearest")
    written = _written(doc, _report(capsys))
    config = json.loads(out.read_text())
    modules = [l.name for l in load_graph("llama-2-7b").layers if l.kind in ("linear", "lm-head")]
    assert all(k[:2] in ("+:", "-:") for k in config["dynamic"])
    used = set()
    for module in modules:
        matching = [k for k in config["dynamic"] if re.match(k[2:], module)]
        assert len(matching) <= 1, (module, matching)  # anchored: order does not matter
        used.update(matching)
        over = _dynamic_get(config["dynamic"], module)
        fields = {k: config[k] for k in ("bits", "group_size", "sym")}
        if over:
            fields.update(over)
        fmt = get_format(written[module])
        assert over is not False
        assert fields == {"bits": fmt.weight_bits, "group_size": fmt.group_size or -1, "sym": fmt.symmetric}
        assert fields["bits"] in (2, 3, 4, 8)  # GPTQModel QuantizeConfig.bits choices
    assert used == set(config["dynamic"])  # no dead rules
    assert config["lm_head"] is True


def test_storage_alias_counts_gptq_zero_points(tmp_path, capsys):
    """int4-g128 maps to GPTQ's int4-g128-qz without --nearest: same quantizer, zero point stored."""
    plan = _search(tmp_path, "p.json", "--model", "all-minilm-l6-v2", "--budget", "6bits",
                   "--formats", "int4-g128,int8")
    capsys.readouterr()
    _export(plan, "gptqmodel", tmp_path / "q.json")
    changes = _report(capsys)["changes"]
    c = next(c for c in changes if c["planned"] == "int4-g128")
    assert c["written"] == "int4-g128-qz" and c["reason"] == "storage"
    # K = 384: 3 groups of 128, each an fp16 scale + a 4-bit zero: 4 + 3 * 20 / 384
    assert c["bits_before"] == pytest.approx(4 + 3 * 16 / 384)
    assert c["bits_after"] == pytest.approx(4 + 3 * 20 / 384)
    assert c["error_after"] == c["error_before"]


def test_qz_formats_bits_by_hand():
    assert get_format("int4-g128-qz").bits == 4 + 20 / 128
    assert get_format("int3-g64-asym-qz").bits_per_weight(4096) == 3 + 19 / 64
    assert get_format("int4-g128").bits == 4 + 16 / 128  # unchanged
    assert get_format("int4-g128-asym").bits == 4 + 32 / 128  # unchanged


# ---------------------------------------------------------------- compressed-tensors / llm-compressor

def _ct_check(block: dict, written: dict, graph):
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme
    from compressed_tensors.utils.match import match_name

    config = QuantizationConfig.model_validate(block)
    assert config.quant_method == "compressed-tensors"
    for layer in graph.quantizable():
        fmt = get_format(written[layer.name])
        ignored = any(match_name(layer.name, t) for t in config.ignore)
        groups = [s for s in config.config_groups.values() if any(match_name(layer.name, t) for t in s.targets)]
        if not fmt.is_quantized:
            assert ignored and not groups
            continue
        assert not ignored and len(groups) == 1, layer.name
        w = groups[0].weights
        assert isinstance(groups[0], QuantizationScheme)
        assert w.num_bits == fmt.weight_bits
        assert w.symmetric == fmt.symmetric
        assert w.group_size == (fmt.group_size if w.strategy in ("group", "tensor_group") else None)


def test_compressed_tensors_config_validated_by_package(llama, capsys):
    tmp, plan, doc = llama
    out = _export(plan, "compressed-tensors", tmp / "qc.json", "--nearest")
    written = _written(doc, _report(capsys))
    _ct_check(json.loads(out.read_text())["quantization_config"], written, load_graph("llama-2-7b"))


def test_llmcompressor_recipe_parsed_by_pyyaml(llama, capsys):
    from compressed_tensors.quantization import QuantizationScheme

    tmp, plan, doc = llama
    out = _export(plan, "llmcompressor", tmp / "recipe.yaml", "--nearest")
    written = _written(doc, _report(capsys))
    recipe = yaml.safe_load(out.read_text())
    modifier = recipe["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    for group in modifier["config_groups"].values():
        QuantizationScheme.model_validate(group)
        assert all(t.startswith("re:") for t in group["targets"])
        assert set(group["weights"]) >= {"num_bits", "type", "strategy", "symmetric"}
    _ct_check({"config_groups": modifier["config_groups"], "ignore": modifier["ignore"]}, written,
              load_graph("llama-2-7b"))


# ---------------------------------------------------------------- AutoRound / ModelOpt

def test_autoround_layer_config_names_are_hf_modules(llama, capsys):
    tmp, plan, doc = llama
    out = _export(plan, "autoround", tmp / "layer_config.json", "--nearest")
    written = _written(doc, _report(capsys))
    config = json.loads(out.read_text())
    names = {l.name for l in load_graph("llama-2-7b").layers}
    assert set(config) == {l["name"] for l in doc["layers"]} and set(config) <= names
    for name, entry in config.items():
        fmt = get_format(written[name])
        assert entry["bits"] == (fmt.weight_bits if fmt.is_quantized else 16)
        assert entry["data_type"] in ("int", "mx_fp", "nv_fp", "float")


@pytest.mark.slow
def test_autoround_entries_are_scheme_fields(llama, capsys):
    from dataclasses import fields

    from auto_round.schemes import QuantizationScheme

    tmp, plan, _ = llama
    out = _export(plan, "autoround", tmp / "layer_config.json", "--nearest")
    keys = {f.name for f in fields(QuantizationScheme)}
    for entry in json.loads(out.read_text()).values():
        assert set(entry) <= keys
        QuantizationScheme.from_dict(entry)


@pytest.mark.slow
def test_modelopt_config_read_by_modelopt(llama, capsys):
    from compressed_tensors.quantization import QuantizationConfig
    from modelopt.torch.export.convert_hf_config import convert_hf_quant_config_format

    tmp, plan, doc = llama
    out = _export(plan, "modelopt", tmp / "hf_quant_config.json", "--nearest")
    written = _written(doc, _report(capsys))
    converted = convert_hf_quant_config_format(json.loads(out.read_text()))
    assert converted["quant_algo"] == "MIXED_PRECISION"
    config = QuantizationConfig.model_validate({k: v for k, v in converted.items()
                                                if k in QuantizationConfig.model_fields})
    targets = {t: (g.weights.num_bits, g.weights.type) for g in config.config_groups.values() for t in g.targets}
    for name, fmt in written.items():  # ModelOpt's own reading: bits and int/float (W4A8_AWQ reads as fp4)
        f = get_format(fmt)
        assert targets[name] == (f.weight_bits, "int" if f.family == "int" else "float")


# ---------------------------------------------------------------- round trip on real weights

#: per target: a few of the formats it writes (searching all of them on real weights is slow)
ROUND_TRIP = {"llamacpp": "q4_0,q8_0,q4_k,q6_k,fp16",
              "gptqmodel": "int4-g128-qz,int8-qz,int4-g64-asym-qz,fp16",
              "llmcompressor": "int4-g128,int8,nvfp4,mxfp4,fp16",
              "compressed-tensors": "int4-g128,int8,int3-g32-asym-qz,nvfp4,mxfp4,fp16",
              "autoround": "int4-g128-qz,int8-qz,mxfp4,nvfp4,fp16",
              "modelopt": "int4-g128,int8,nvfp4,fp16"}


@pytest.mark.parametrize("target", TARGETS)
def test_round_trip_minilm(tmp_path, capsys, target):
    """all-minilm-l6-v2 (real weights) searched for a target, exported, read back: the same plan."""
    from dse.export import read_back, target_module

    module = target_module(target)
    plan = _search(tmp_path, "plan.json", "--model", "all-minilm-l6-v2", "--budget", "5bits",
                   # oneshot joins NVFP4/MXFP4 fused groups: a plan for it ties them (--for)
                   "--for" if target == "llmcompressor" else "--formats-for", target, "--formats", ROUND_TRIP[target])
    doc = json.loads(plan.read_text())
    assert len({l["format"] for l in doc["layers"]}) >= 2
    assert doc["provenance"]["sensitivity"] == "weights"
    capsys.readouterr()
    out = _export(plan, target, tmp_path / module.DEFAULT_OUT)
    report = _report(capsys)
    assert report["changes"] == []
    back = read_back(target, out, load_graph("all-minilm-l6-v2"))
    planned = {l["name"]: (l["format"], l["params"]) for l in doc["layers"]}
    if target == "llamacpp":  # convert_hf_to_gguf.py drops BERT's pooler: said in the report
        assert "pooler.dense" in report["notes"][0]
        planned.pop("pooler.dense")
    assert {l["name"]: (l["format"], l["params"]) for l in back["layers"]} == planned
    bits = {l["name"]: l["bits"] for l in doc["layers"]}
    assert all(l["bits"] == pytest.approx(bits[l["name"]]) for l in back["layers"])


def test_include_embeddings_searched_and_exported(tmp_path, capsys):
    """--include embeddings: the token embedding is priced, counted in the budget and exported."""
    few = ("--formats", "q4_0,q8_0,fp16", "--sensitivity", "prior")
    base = json.loads(_search(tmp_path, "a.json", "--model", "all-minilm-l6-v2", "--budget", "5bits",
                              *few).read_text())
    plan = _search(tmp_path, "b.json", "--model", "all-minilm-l6-v2", "--budget", "5bits", *few,
                   "--include", "embeddings")
    doc = json.loads(plan.read_text())
    emb = next(l for l in doc["layers"] if l["name"] == "embeddings.word_embeddings")
    assert emb["params"] == 30522 * 384 and emb["format"] != "fp16"
    # its 16 bits leave the fixed part; its planned bits enter the plan's memory
    assert base["fixed"]["memory_bytes"] - doc["fixed"]["memory_bytes"] == pytest.approx(2 * 30522 * 384)
    assert emb["memory_bytes"] == pytest.approx(emb["params"] * emb["bits"] / 8)
    capsys.readouterr()
    out = _export(plan, "llamacpp", tmp_path / "t.txt")
    rules = [tok.split("=") for tok in out.read_text().split()]
    assert [t for p, t in rules if re.search(p, "token_embd.weight")] == [emb["format"].replace("_k", "_K")]
    # GPTQModel quantizes Linear modules only: the embedding stays 16-bit, with --nearest
    _bad(["--plan", str(plan), "--to", "gptqmodel", "--out", str(tmp_path / "g.json")], capsys, tmp_path / "g.json",
         "embeddings.word_embeddings", "does not quantize embeddings", "nearest it supports is fp16")
    _export(plan, "gptqmodel", tmp_path / "g.json", "--nearest")
    change = next(c for c in _report(capsys)["changes"] if c["layer"] == "embeddings.word_embeddings")
    assert change["written"] == "fp16" and change["bits_after"] == 16


# ---------------------------------------------------------------- nearest, --formats-for, bad input

def _bad(argv, capsys, out, *needles):
    from dse.export.__main__ import main

    capsys.readouterr()
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err
    assert not out.exists()
    return 0


def test_unsupported_format_names_layer_and_nearest(tmp_path, capsys):
    plan = _search(tmp_path, "p.json", "--model", "all-minilm-l6-v2", "--budget", "9bits", "--formats", "int8")
    doc = json.loads(plan.read_text())
    for layer in doc["layers"]:  # q8_0 everywhere but one layer of k = 1536
        layer["format"] = "int3-g64" if layer["name"] == "encoder.layer.2.output.dense" else "q8_0"
    plan.write_text(json.dumps(doc))
    out = tmp_path / "t.txt"
    _bad(["--plan", str(plan), "--to", "llamacpp", "--out", str(out)], capsys, out,
         "layer encoder.layer.2.output.dense", "int3-g64", "nearest it supports is q3_k", "--nearest")
    # --nearest re-searches with llama.cpp's types under the plan's own 9-bit limit: every layer that
    # moves is listed with its bits and error before and after, and the limit still holds
    _export(plan, "llamacpp", out, "--nearest")
    report = _report(capsys)
    changes = {c["layer"]: c for c in report["changes"]}
    c = changes["encoder.layer.2.output.dense"]
    assert c["reason"] == "re-searched" and c["planned"] == "int3-g64"
    assert c["written"] in LLAMA_FORMATS.split(",") + ["fp16"]
    assert report["summary"]["effective_bits_after"] <= 9 + 1e-9
    assert report["notes"][0].startswith("--nearest re-searched the plan for llamacpp under its limits")
    from dse.export import read_back

    back = read_back("llamacpp", out, load_graph("all-minilm-l6-v2"))
    written = {l["name"]: l["format"] for l in doc["layers"]}
    written.update({n: c["written"] for n, c in changes.items()})
    assert all(written[l["name"]] == l["format"] for l in back["layers"])


def test_formats_for_restricts_search(tmp_path):
    from dse.export import formats_for, gptqmodel

    plan = json.loads(_search(tmp_path, "p.json", "--model", "all-minilm-l6-v2", "--budget", "4.3bits",
                              "--formats-for", "gptqmodel", "--sensitivity", "prior").read_text())
    assert set(plan["formats"]) <= set(gptqmodel.FORMATS)
    assert {l["format"] for l in plan["layers"]} <= set(gptqmodel.FORMATS)
    with pytest.raises(Exception, match="gptqmodel cannot write int5-g128"):
        formats_for("gptqmodel", ["int4-g128-qz", "int5-g128"])


def test_bad_input_one_line_exit_2_no_file(tmp_path, capsys):
    out = tmp_path / "out.txt"
    _bad(["--plan", str(tmp_path / "missing.json"), "--to", "llamacpp", "--out", str(out)], capsys, out, "not found")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"schema": "other/1", "layers": []}))
    _bad(["--plan", str(wrong), "--to", "llamacpp", "--out", str(out)], capsys, out, "schema")
    plan = _search(tmp_path, "p.json", "--model", "all-minilm-l6-v2", "--budget", "5bits", "--formats", "q4_0,q8_0")
    _bad(["--plan", str(plan), "--to", "llama-cpp", "--out", str(out)], capsys, out, "unknown export target",
         "llamacpp")
    other = json.loads(plan.read_text())
    other["model"], other["provenance"]["model_source"] = "llama-2-7b", "catalog"
    (tmp_path / "other.json").write_text(json.dumps(other))
    _bad(["--plan", str(tmp_path / "other.json"), "--to", "llamacpp", "--out", str(out)], capsys, out,
         "not in model llama-2-7b", "another model")


def test_models_json_marks_searchable(capsys):
    from dse.models import main

    assert main(["llama-2-7b", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    flags = {l["name"]: l["searchable"] for l in layers}
    assert flags["model.layers.0.self_attn.q_proj"] and flags["lm_head"]
    assert not flags["model.embed_tokens"] and not flags["model.layers.0.self_attn.attn"]
    assert sum(flags.values()) == 225


def test_sensitivity_file_with_unsearched_layers_is_accepted(tmp_path, capsys):
    graph = load_graph("all-minilm-l6-v2")
    table = {l.name: {"int4-g128": 2.0, "int8": 1.0} for l in graph.layers}  # embeddings and attention too
    path = tmp_path / "sens.json"
    path.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": table}))
    capsys.readouterr()
    plan = json.loads(_search(tmp_path, "p.json", "--model", "all-minilm-l6-v2", "--budget", "5bits",
                              "--sensitivity", str(path)).read_text())
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: ") and "embeddings.word_embeddings" in err
    assert plan["totals"]["error"] == pytest.approx(sum(2.0 if l["format"] == "int4-g128" else 1.0
                                                        for l in plan["layers"]))


def test_llamacpp_tied_lm_head_is_token_embd(tmp_path, capsys):
    """A tied lm-head has no output.weight in GGUF: its planned type goes to token_embd.weight."""
    cfg = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2, "vocab_size": 512,
           "num_attention_heads": 4, "intermediate_size": 512, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    plan = _search(tmp_path, "p.json", "--model", str(tmp_path / "config.json"), "--budget", "6bits",
                   "--formats", "q4_0,q8_0", "--sensitivity", "prior")
    head = next(l for l in json.loads(plan.read_text())["layers"] if l["name"] == "lm_head")
    capsys.readouterr()
    out = _export(plan, "llamacpp", tmp_path / "t.txt")
    rules = [tok.split("=") for tok in out.read_text().split()]
    assert [t for p, t in rules if re.search(p, "token_embd.weight")] == [head["format"]]
    assert not [t for p, t in rules if re.search(p, "output.weight")]
