"""Checkpoints without a config, GPT-2 Conv1D orientation, and what --model paths are called.

Oracles: the same tensors read with a config.json (the hf_config builder, an independent
path) must cost attention the same way; transformers' own GPT-2 Conv1D forward (x @ W + b)
must equal x @ get(name).T + b; the head-split invariance of attention FLOPs and KV bytes.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from hwmodels.memory import kv_cache_bytes
from hwmodels.ops import fixed_ops_for_graph
from hwmodels.workload import Workload
from quantcore.errors import QuantDSEError
from quantcore.models import load_graph
from conftest import require

HIDDEN, INTER, VOCAB, LAYERS = 256, 512, 300, 2
LLAMA = {"model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTER, "vocab_size": VOCAB,
         "num_hidden_layers": LAYERS, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64,
         "max_position_embeddings": 4096}


def _llama_checkpoint(folder, config: dict | None):
    """A 2-block Llama-layout checkpoint (GQA: 4 query heads, 1 KV head of 64), seeded random weights."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    t = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "lm_head.weight": (VOCAB, HIDDEN),
         "model.norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        t.update({f"{p}.self_attn.q_proj.weight": (HIDDEN, HIDDEN), f"{p}.self_attn.k_proj.weight": (64, HIDDEN),
                  f"{p}.self_attn.v_proj.weight": (64, HIDDEN), f"{p}.self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                  f"{p}.mlp.gate_proj.weight": (INTER, HIDDEN), f"{p}.mlp.up_proj.weight": (INTER, HIDDEN),
                  f"{p}.mlp.down_proj.weight": (HIDDEN, INTER), f"{p}.input_layernorm.weight": (HIDDEN,),
                  f"{p}.post_attention_layernorm.weight": (HIDDEN,)})
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: rng.standard_normal(s).astype(np.float32) for k, s in t.items()}, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_no_config_attention_is_inferred_and_matches_the_config(tmp_path):
    bare = load_graph(_llama_checkpoint(tmp_path / "bare", None))
    full = load_graph(_llama_checkpoint(tmp_path / "full", LLAMA))
    assert bare.config["arch"] == full.config["arch"] == "decoder"
    w = Workload()
    _, att_bare = fixed_ops_for_graph(bare, w)
    _, att_full = fixed_ops_for_graph(full, w)
    assert len(att_bare) == len(att_full) == 2 * LAYERS
    for field in ("m", "k", "n", "count"):  # GQA 4:1 read from k_proj's 64 rows, head_dim 64 assumed = the config's
        np.testing.assert_array_equal(getattr(att_bare, field), getattr(att_full, field))
    assert kv_cache_bytes(bare, w) == kv_cache_bytes(full, w) == LAYERS * 64 * 2 * 2048 * 2
    assert any("assumed head_dim 64" in n for n in bare.notes) and any("no config.json" in n for n in bare.notes)
    assert not full.notes


def test_attention_flops_and_kv_bytes_do_not_depend_on_the_assumed_head_split(tmp_path):
    # the same weights as 8 query heads of 32 and 2 KV heads: other GEMM shapes, same FLOPs and KV bytes
    other = dict(LLAMA, num_attention_heads=8, num_key_value_heads=2, head_dim=32)
    bare = load_graph(_llama_checkpoint(tmp_path / "bare", None))
    split = load_graph(_llama_checkpoint(tmp_path / "split", other))
    w = Workload("prefill", 2, 512, 16)
    a_bare, a_split = fixed_ops_for_graph(bare, w)[1], fixed_ops_for_graph(split, w)[1]
    assert a_bare.macs @ a_bare.count == pytest.approx(a_split.macs @ a_split.count)
    assert not np.array_equal(a_bare.k, a_split.k)
    assert kv_cache_bytes(bare, w) == kv_cache_bytes(split, w)


def test_plan_note_says_what_was_costed(cli, tmp_path):
    folder = _llama_checkpoint(tmp_path / "m", None)
    r = cli("dse.search", "--hw", "a100-80gb", "--budget", "6bits", "--model", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert "attention of 2 layers over the KV cache (16-bit)" in plan["fixed"]["note"]
    assert "note: " in r.stderr and "assumed head_dim 64" in r.stderr
    # an MLP checkpoint has no attention, and the note does not claim any
    from safetensors.numpy import save_file

    save_file({"fc1.weight": np.ones((8, 4), np.float32), "fc2.weight": np.ones((2, 8), np.float32)},
              str(tmp_path / "mlp.safetensors"))
    mlp = json.loads(cli("dse.search", "--hw", "a100-80gb", "--budget", "8bits", "--model",
                         str(tmp_path / "mlp.safetensors"), "--json").stdout)
    assert "attention" not in mlp["fixed"]["note"].replace("no attention", "")


def _gpt2(n_embd=64, n_layer=2, n_head=4):
    transformers = require("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=128, vocab_size=100,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def test_gpt2_conv1d_true_orientation_from_torch_and_safetensors(tmp_path):
    import torch

    model = _gpt2()
    model.save_pretrained(str(tmp_path / "gpt2"))
    from_module = load_graph(model)
    from_disk = load_graph(tmp_path / "gpt2")
    c_attn = model.transformer.h[0].attn.c_attn
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    for graph, name in ((from_module, "transformer.h.0.attn.c_attn"), (from_disk, "transformer.h.0.attn.c_attn")):
        layer = graph.layer(name)
        assert layer.shape == (192, 64) and layer.role == "qkv"  # (out = 3 x 64, in = 64), like nn.Linear
        w = torch.from_numpy(graph.weights.get(name))
        torch.testing.assert_close(x @ w.T + c_attn.bias, c_attn(x).detach())  # transformers' own Conv1D forward
    fc = from_disk.layer("transformer.h.0.mlp.c_fc")
    assert fc.shape == (256, 64) and fc.role == "up"
    assert from_disk.layer("transformer.h.0.mlp.c_proj").shape == (64, 256)
    for g in (from_module, from_disk):
        att = [l for l in g if l.kind == "attention"]
        assert len(att) == 2 and att[0].attrs["heads"] == 4 and att[0].attrs["head_dim"] == 16  # n_head from config
        assert g.config["arch"] == "decoder" and g.config["max_position_embeddings"] == 128
    assert from_disk.params == sum(p.numel() for p in model.parameters())  # lm_head tied to wte, counted once
    assert Workload.unset().for_model(from_disk).seq == 128  # the default context fits GPT-2's positions


def test_gpt2_without_config_is_read_the_same(tmp_path):
    model = _gpt2()
    model.save_pretrained(str(tmp_path / "gpt2"))
    (tmp_path / "gpt2" / "config.json").unlink()
    g = load_graph(tmp_path / "gpt2")
    assert g.layer("transformer.h.1.attn.c_attn").shape == (192, 64) and g.config["arch"] == "decoder"


@pytest.mark.parametrize("given", ["./no-such-model", "models/llama/config.json", "x.safetensors", "org/model"])
def test_missing_path_says_no_such_file(given):
    with pytest.raises(QuantDSEError, match=f"no such file or folder: {given}: check the path"):
        load_graph(given)


def test_unknown_name_is_still_unknown_model():
    with pytest.raises(QuantDSEError, match="unknown model 'lama-2-7b' .did you mean llama-2-7b"):
        load_graph("lama-2-7b")


def test_config_path_is_named_for_the_model(tmp_path):
    cfg = dict(LLAMA)
    (tmp_path / "my-llama").mkdir()
    (tmp_path / "my-llama" / "config.json").write_text(json.dumps(cfg))
    assert load_graph(tmp_path / "my-llama" / "config.json").name == "my-llama"  # the folder, not "config"
    (tmp_path / "my-llama" / "config.json").write_text(json.dumps(dict(cfg, _name_or_path="meta-llama/Tiny")))
    assert load_graph(tmp_path / "my-llama" / "config.json").name == "meta-llama/Tiny"
    (tmp_path / "my-llama" / "config.json").write_text(json.dumps(dict(cfg, _name_or_path="/data/ckpt/tiny-7b/")))
    assert load_graph(tmp_path / "my-llama" / "config.json").name == "tiny-7b"
    single = _llama_checkpoint(tmp_path / "bare-llama", None) / "model.safetensors"
    assert load_graph(single).name == "bare-llama"  # model.safetensors: the folder's name
