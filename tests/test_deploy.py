"""Deployment targets (`dse.search --for`, `dse.export --to TARGET`): tied fused layers, vLLM's loader
rules, the llama.cpp runtime, `--nearest` as a re-search, and the main screen's suggested export."""
import json
import re
import shlex

import pytest

from quantcore.cli import run_cli
from quantcore.formats import get_format
from quantcore.models import load_graph


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))


def _search(*argv):
    from dse.search import main

    assert run_cli(main, list(argv)) == 0


def _export(*argv):
    from dse.export.__main__ import main

    return run_cli(main, list(argv))


# vLLM's rules, reimplemented from its source (vllm-project/vllm):
# - quantization/gptq_marlin.py (00161ce01fe64fdae0ec8ff1ae198c7b9befbdad) GPTQMarlinConfig.TYPE_MAP:
#   (4, sym) and (8, sym); utils/marlin_utils.py MARLIN_SUPPORTED_GROUP_SIZES = [-1, 32, 64, 128];
# - quantization/utils/gptq_utils.py get_dynamic_override: the first `dynamic` key whose regex re.match-es
#   the module prefix wins ("-:" skips it); the prefix of a fused module is its vLLM name;
# - models/llama.py packed_modules_mapping: qkv_proj <- q/k/v_proj, gate_up_proj <- gate/up_proj.
MARLIN_TYPES = {(4, True), (8, True)}
MARLIN_GROUPS = {-1, 32, 64, 128}
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def _vllm_gptq_modules(config: dict, graph) -> dict:
    """{vLLM module prefix: (bits, group_size, sym) or None (unquantized)} as vLLM's GPTQ Marlin path loads them."""
    def dynamic_override(prefix):
        for key, value in config.get("dynamic", {}).items():
            if key.startswith("-:") and re.match(key[2:], prefix):
                return False
            if key.startswith("+:") and re.match(key[2:], prefix):
                return value
            if not key.startswith(("-:", "+:")) and re.match(key, prefix):
                return value
        return None

    prefixes = set()
    for layer in graph.layers:
        if layer.kind not in ("linear", "lm-head"):
            continue
        head, _, leaf = layer.name.rpartition(".")
        fused = next((f for f, shards in PACKED.items() if leaf in shards), None)
        prefixes.add(f"{head}.{fused}" if fused else layer.name)
    out = {}
    for prefix in sorted(prefixes):
        if prefix == "lm_head" and not config.get("lm_head"):
            out[prefix] = None
            continue
        over = dynamic_override(prefix)
        if over is False:
            out[prefix] = None
            continue
        fields = {k: config[k] for k in ("bits", "group_size", "sym")}
        fields.update(over or {})
        out[prefix] = (fields["bits"], fields["group_size"], fields["sym"])
    return out


def test_vllm_gptq_plan_ties_fused_layers_and_loads_under_vllm_rules(tmp_path):
    plan_path, out = tmp_path / "plan.json", tmp_path / "quantize_config.json"
    _search("--hw", "rtx4090", "--budget", "4.5bits", "--for", "vllm-gptq", "--out", str(plan_path))
    plan = json.loads(plan_path.read_text())
    assert plan["provenance"]["target"] == "vllm-gptq" and plan["provenance"]["runtime"] == "vllm"
    fmt = {l["name"]: l["format"] for l in plan["layers"]}
    mixed = set()
    for name, f in fmt.items():
        head, _, leaf = name.rpartition(".")
        for fused, shards in PACKED.items():
            if leaf == shards[0]:
                formats = {fmt[f"{head}.{s}"] for s in shards}
                assert len(formats) == 1, (head, fused, formats)
        mixed.add(f)
    assert len(mixed) > 1  # a mixed plan, not one format everywhere
    assert _export("--plan", str(plan_path), "--to", "vllm-gptq", "--out", str(out)) == 0
    config = json.loads(out.read_text())
    loaded = _vllm_gptq_modules(config, load_graph("llama-2-7b"))
    for prefix, q in loaded.items():
        head, _, leaf = prefix.rpartition(".")
        shards = [f"{head}.{s}" for s in PACKED.get(leaf, (leaf,))] if leaf in PACKED else [prefix]
        planned = get_format(fmt[shards[0]])
        if not planned.is_quantized:
            assert q is None, prefix
            continue
        assert q is not None, prefix
        bits, group, sym = q
        assert (bits, sym) in MARLIN_TYPES and group in MARLIN_GROUPS, prefix
        assert (bits, group, sym) == (planned.weight_bits, planned.group_size or -1, planned.symmetric), prefix


def test_vllm_export_of_an_untied_plan_names_the_fused_layer(tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    _search("--hw", "rtx4090", "--budget", "4.5bits", "--formats", "int4-g128,int8", "--out", str(plan_path))
    plan = json.loads(plan_path.read_text())
    for layer in plan["layers"]:  # q_proj 8-bit, k/v 4-bit in block 0
        if layer["name"].startswith("model.layers.0.self_attn."):
            layer["format"] = "int8" if layer["name"].endswith("q_proj") else "int4-g128"
    plan_path.write_text(json.dumps(plan))
    capsys.readouterr()
    out = tmp_path / "c.json"
    assert _export("--plan", str(plan_path), "--to", "vllm-compressed-tensors", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.layers.0.self_attn" in err and "--for vllm-compressed-tensors" in err
    assert not out.exists()


def test_llamacpp_plan_is_costed_on_llamacpp_and_exports_without_nearest(tmp_path, capsys):
    plan_path, out = tmp_path / "plan.json", tmp_path / "types.txt"
    _search("--hw", "rtx4090", "--model", "all-minilm-l6-v2", "--budget", "4.5bits", "--for", "llamacpp",
            "--out", str(plan_path))
    plan = json.loads(plan_path.read_text())
    assert plan["provenance"]["runtime"] == "llama.cpp"
    graph = load_graph("all-minilm-l6-v2")
    for layer in plan["layers"]:  # the applied type: k-quants on 384- and 1536-wide rows fall back
        fmt = get_format(layer["format"])
        assert fmt.fallback_for(graph.layer(layer["name"]).row) is fmt, layer
    capsys.readouterr()
    assert _export("--plan", str(plan_path), "--to", "llamacpp", "--out", str(out), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["changes"] == []
    assert not any("no longer holds" in n for n in report["notes"])
    assert "position_embd" not in out.read_text() and "token_types" not in out.read_text()


def test_nearest_re_searches_under_the_binding_limit(tmp_path, capsys):
    plan_path, out = tmp_path / "plan.json", tmp_path / "q.json"
    _search("--hw", "rtx4090", "--budget", "4.6bits", "--out", str(plan_path))
    capsys.readouterr()
    assert _export("--plan", str(plan_path), "--to", "vllm-gptq", "--out", str(out), "--nearest", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    note = next(n for n in report["notes"] if n.startswith("--nearest re-searched"))
    bits_after = float(re.search(r"effective_bits \S+ -> (\S+),", note).group(1))
    assert bits_after <= 4.6 + 1e-9
    tight = tmp_path / "tight.json"
    _search("--hw", "rtx4090", "--budget", "2.5bits", "--out", str(tight))
    capsys.readouterr()
    assert _export("--plan", str(tight), "--to", "vllm-gptq", "--out", str(out), "--nearest") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bits limit 2.5" in err and err.count("\n") == 1


def test_main_screen_suggested_export_succeeds(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _search("--hw", "u280", "--budget", "3.7bits", "--out", "plan.json")  # make run, keeping the plan
    screen = capsys.readouterr().out
    line = next(l for l in screen.splitlines() if "python -m dse.export" in l)
    argv = shlex.split(line.split("quantizer config:")[1])[3:]  # after "python -m dse.export"
    assert _export(*argv, "--out", "cfg.out") == 0
    assert (tmp_path / "cfg.out").stat().st_size > 0


@pytest.mark.slow
def test_docs_deploy_commands_run(tmp_path):
    """Every `python -m` command of docs/deploy.md runs, in order, in one folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_readme import is_runnable, page_steps

    root = Path(__file__).resolve().parents[1]
    commands = [step.argv for step in page_steps(root / "docs" / "deploy.md")[0] if is_runnable(step)]
    assert len(commands) >= 8
    env = {**os.environ, "PYTHONPATH": str(root)}
    for argv in commands:
        run = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, (argv, run.stderr[-1000:])
        assert "Traceback" not in run.stderr


def _note_layers(note: str) -> str:
    return re.search(r"\(e\.g\. ([\w.]+):", note).group(1)


def test_plain_gptqmodel_export_says_when_vllm_cannot_load_it(tmp_path, capsys):
    """Without --for, the file is what GPTQModel applies; where vLLM's rules (reimplemented above) reject
    a module of it, the export says so and names the target that fixes it: no silent mismatch."""
    mixed_path, plain_path = tmp_path / "mixed.json", tmp_path / "plain.json"
    _search("--hw", "rtx4090", "--budget", "3.5bits", "--formats", "int3-g128,int4-g128,int8", "--out", str(mixed_path))
    _search("--hw", "rtx4090", "--budget", "4.5bits", "--formats", "int4-g128", "--out", str(plain_path))
    for path, expect_note in ((mixed_path, True), (plain_path, False)):
        out = tmp_path / f"{path.stem}.quantize_config.json"
        capsys.readouterr()
        assert _export("--plan", str(path), "--to", "gptqmodel", "--out", str(out), "--json") == 0
        report = json.loads(capsys.readouterr().out)
        loaded = _vllm_gptq_modules(json.loads(out.read_text()), load_graph("llama-2-7b"))
        plan = json.loads(path.read_text())
        fmt = {l["name"]: get_format(l["format"]) for l in plan["layers"]}
        rejected = set()
        for prefix, q in loaded.items():
            head, _, leaf = prefix.rpartition(".")
            shards = [f"{head}.{s}" for s in PACKED[leaf]] if leaf in PACKED else [prefix]
            planned = {(fmt[s].weight_bits, fmt[s].group_size or -1, fmt[s].symmetric) for s in shards if s in fmt}
            if q is not None and ((q[0], q[2]) not in MARLIN_TYPES or q[1] not in MARLIN_GROUPS or len(planned) > 1):
                rejected.update(shards)
        notes = [n for n in report["notes"] if n.startswith("vLLM cannot load this file as written")]
        assert bool(rejected) == expect_note and len(notes) == int(expect_note), (path.stem, notes)
        if notes:
            assert _note_layers(notes[0]) in rejected and "--to vllm-gptq --nearest" in notes[0]
