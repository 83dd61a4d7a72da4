"""llama-quantize, built from llama.cpp's source (tests/llamacpp_build.py), applies the exported tensor-type
file exactly: every tensor of the output GGUF, read back with gguf-py, has the type the plan names
(k-quants on 384- and 512-wide random decoders, fallbacks named, embeddings searched, mixed within blocks)."""
import json
import subprocess

import numpy as np
import pytest

from conftest import optional_missing, require
from quantcore.cli import run_cli
from quantcore.formats import get_format

pytestmark = pytest.mark.slow

#: every type mixed in turn over the layers (q4_0/q5_* k-quant fallbacks appear on 384/1152-wide rows)
FORMATS = "q2_k,q3_k,q4_k,q5_k,q6_k,q8_0,q4_0,q5_1,fp16"


def _gguf_f16(path, model, hidden: int) -> None:
    """The decoder as convert_hf_to_gguf.py would write it (llama arch, f16 matrices, f32 norms), written
    with gguf-py; llama-quantize reads only its hyperparameters and tensors."""
    import gguf

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(hidden // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for name, t in sd.items():
        if "rotary_emb" in name:
            continue
        gname = tmap.get_name(name, try_suffixes=(".weight",))
        w.add_tensor(gname, t.astype(np.float16 if t.ndim == 2 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("hidden", [384, 512])
def test_llama_quantize_applies_the_plan(tmp_path, capsys, monkeypatch, hidden):
    import llamacpp_build

    why = llamacpp_build.missing()
    if why:
        optional_missing("llama-quantize", why)
    binary = llamacpp_build.llama_quantize()
    gguf = require("gguf")
    transformers = require("transformers")
    torch = require("torch")
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(hidden)
    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=2,
                                   num_attention_heads=hidden // 64, num_key_value_heads=2, vocab_size=512,
                                   max_position_embeddings=256, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(str(tmp_path / "hf"))
    from dse.export.__main__ import main as export
    from dse.search import main as search

    plan = tmp_path / "plan.json"
    assert run_cli(search, ["--hw", "rtx4090", "--model", str(tmp_path / "hf"), "--budget", "5bits",
                            "--for", "llamacpp", "--include", "embeddings", "--out", str(plan)]) == 0
    doc = json.loads(plan.read_text())
    assert doc["provenance"]["runtime"] == "llama.cpp"
    names = FORMATS.split(",")
    for i, layer in enumerate(doc["layers"]):  # every type, mixed within blocks
        layer["format"] = names[i % len(names)]
    plan.write_text(json.dumps(doc))
    capsys.readouterr()
    assert run_cli(export, ["--plan", str(plan), "--to", "llamacpp", "--out", str(tmp_path / "types.txt"),
                            "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    written = {l["name"]: l["format"] for l in doc["layers"]}
    written.update({c["layer"]: c["written"] for c in report["changes"]})
    _gguf_f16(tmp_path / "f16.gguf", model, hidden)
    run = subprocess.run([str(binary), "--tensor-type-file", str(tmp_path / "types.txt"), str(tmp_path / "f16.gguf"),
                          str(tmp_path / "out.gguf"), "Q8_0"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    types = {t.name: t.tensor_type.name.lower() for t in gguf.GGUFReader(str(tmp_path / "out.gguf")).tensors}
    from dse.export.llamacpp import GGML_TYPES, gguf_names
    from quantcore.models import load_graph

    tensors = gguf_names(load_graph(str(tmp_path / "hf")))
    mismatches = {}
    for layer, fmt in written.items():
        for t in tensors[layer]:
            if types[t] != GGML_TYPES[get_format(fmt).name].lower():
                mismatches[t] = (fmt, types[t])
    assert mismatches == {}
    # the fallbacks were named, not silent: at 384 the k-quants on 384/1152-wide rows fall back
    fallbacks = [c for c in report["changes"] if c["reason"] == "llama.cpp fallback"]
    assert bool(fallbacks) == (hidden == 384)
    assert "required fallback" not in run.stderr or hidden == 384
