"""llm-compressor's own `oneshot` applies the `--to llmcompressor` recipe on a random Llama-style
decoder saved with save_pretrained: every Linear gets exactly the plan's format (0 silent
mismatches), and a fused q/k/v group that mixes NVFP4 with another scheme, which oneshot itself
refuses, is refused by the export first, in one line.

llm-compressor is installed beside the project with --no-deps (the Makefile does): its pins would
downgrade transformers, compressed-tensors and auto-round, and it runs beside the newer ones."""
import json

import pytest

from conftest import require
from quantcore.cli import run_cli
from quantcore.formats import get_format
from test_export_tools import _decoder, _mix, _plan, _written, attached_formats

pytestmark = pytest.mark.slow

FORMATS = "int3-g32,int4-g128,int4-g64-asym-qz,int8,fp16"  # NVFP4/MXFP4/FP8 join fused groups: below


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # oneshot writes its log folder under the working directory


def _oneshot(folder, recipe_path) -> dict:
    """llm-compressor's oneshot on the checkpoint in `folder`, loaded as a user loads it, with the recipe
    (data-free schemes: no dataset);
    {Linear name: catalog format of the scheme it attached} read back through compressed-tensors."""
    require("llmcompressor", "llmcompressor (pip install --no-deps llmcompressor==0.14.0.1; the Makefile does)")
    import transformers
    from llmcompressor import oneshot

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    oneshot(model=model, recipe=str(recipe_path))
    return attached_formats(model)


def _export(plan, out, capsys) -> tuple[int, dict | str]:
    from dse.export.__main__ import main

    capsys.readouterr()
    rc = run_cli(main, ["--plan", str(plan), "--to", "llmcompressor", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out) if rc == 0 else captured.err


def test_oneshot_applies_the_recipe_as_planned(tmp_path, capsys):
    source = tmp_path / "decoder"
    _decoder(source, 512)
    plan = _plan(tmp_path, str(source), "--budget", "5bits", "--formats-for", "llmcompressor", "--formats", FORMATS)
    _mix(plan, FORMATS)  # every format used, mixed within each block
    rc, report = _export(plan, tmp_path / "recipe.yaml", capsys)
    assert rc == 0 and report["changes"] == []
    applied = _oneshot(source, tmp_path / "recipe.yaml")
    written = _written(plan, report)
    assert set(written) <= set(applied)  # every planned layer is a Linear oneshot saw
    mismatches = {n: (f, applied[n]) for n, f in written.items() if get_format(f).name != get_format(applied[n]).name}
    assert mismatches == {}
    assert len({get_format(f).name for f in written.values()}) == len(FORMATS.split(","))


def test_a_fused_group_oneshot_refuses_is_refused_by_the_export(tmp_path, capsys):
    source = tmp_path / "decoder"
    _decoder(source, 512)
    plan = _plan(tmp_path, str(source), "--budget", "5bits", "--formats-for", "llmcompressor",
                 "--formats", "nvfp4,int4-g128")
    doc = json.loads(plan.read_text())
    for layer in doc["layers"]:  # block 0: q_proj NVFP4, k/v int4-g128
        if layer["name"].startswith("model.layers.0.self_attn.") and layer["name"][-6:] in ("q_proj", "k_proj", "v_proj"):
            layer["format"] = "nvfp4" if layer["name"].endswith("q_proj") else "int4-g128"
    plan.write_text(json.dumps(doc))
    rc, err = _export(plan, tmp_path / "recipe.yaml", capsys)
    assert rc == 2 and err.count("\n") == 1 and "model.layers.0.self_attn" in err
    assert not (tmp_path / "recipe.yaml").exists()
    # the same groups, written by hand as a recipe: oneshot itself stops on them
    yaml = require("yaml")
    groups = {"g0": {"targets": [r"re:^model\.layers\.0\.self_attn\.q_proj$"],
                     "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
                                 "symmetric": True, "dynamic": False}},
              "g1": {"targets": [r"re:^model\.layers\.0\.self_attn\.(k_proj|v_proj)$"],
                     "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128,
                                 "symmetric": True, "dynamic": False}}}
    recipe = tmp_path / "by_hand.yaml"
    recipe.write_text(yaml.safe_dump({"quant_stage": {"quant_modifiers": {"QuantizationModifier": {
        "ignore": [], "config_groups": groups}}}}))
    with pytest.raises(AssertionError, match="fused group"):
        _oneshot(source, recipe)
