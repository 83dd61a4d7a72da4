"""What one pass is per model kind: decoders decode (or prefill), encoders and CNNs run one forward pass.

Oracles: operation counts by hand (BERT's attention over 512 tokens, 12 heads of 64), the
published ResNet-50 MACs (torchvision: 4.09 GMACs at 224x224), the models' configs.
"""
from __future__ import annotations

import json

import pytest

from hwmodels.ops import fixed_ops_for_graph, ops_for_graph
from hwmodels.workload import Workload
from quantcore.errors import QuantDSEError
from quantcore.models import load_graph


def test_decoder_defaults_are_the_contract():
    w = Workload.unset().for_model(load_graph("llama-2-7b"))
    assert (w.phase, w.batch, w.seq, w.kv_bits) == ("decode", 1, 2048, 16)
    assert Workload.unset(phase="prefill", seq=512, batch=8).for_model(load_graph("llama-2-7b")) == \
        Workload("prefill", 8, 512, 16)
    assert Workload() == Workload("decode", 1, 2048, 16)  # a bare GEMM is still costed as a decode step


def test_encoder_runs_one_forward_pass_over_its_positions():
    bert = load_graph("bert-base-uncased")
    w = Workload.unset().for_model(bert)
    assert (w.phase, w.batch, w.seq) == ("forward", 1, 512)  # bert-base config: max_position_embeddings 512
    assert Workload.unset(phase="prefill", seq=128).for_model(bert).phase == "forward"
    _, att = fixed_ops_for_graph(bert, w)
    # by hand: per layer QK^T and PV are 12 heads x 512 queries x 512 keys x 64 dims each, full (not causal)
    assert att.macs @ att.count == pytest.approx(12 * 2 * 12 * 512 * 512 * 64)
    q = ops_for_graph(bert, w, [bert.layer("encoder.layer.0.attention.self.query")])
    assert int(q.m[0]) == 512  # every token passes the projections, not one decode token
    with pytest.raises(QuantDSEError, match="is an encoder.*drop --phase decode"):
        Workload.unset(phase="decode").for_model(bert)
    with pytest.raises(QuantDSEError, match="--seq 1024 exceeds bert-base-uncased's 512 positions"):
        Workload.unset(seq=1024).for_model(bert)


def test_cnn_runs_a_batch_of_images_at_its_resolution():
    resnet = load_graph("resnet-50")
    w = Workload.unset(batch=2).for_model(resnet)
    assert w.as_dict() == {"phase": "forward", "batch": 2, "input_hw": [224, 224],
                           "description": "one forward pass over 2 images of 224x224"}
    assert ops_for_graph(resnet, w).macs.sum() * 1.0 / 2 / 1e9 == pytest.approx(4.09, abs=0.005)  # torchvision
    with pytest.raises(QuantDSEError, match="is a CNN.*has no decode step"):
        Workload.unset(phase="decode").for_model(resnet)
    notes = []  # one workload may serve a CNN and a transformer in a sweep: what does not apply is noted
    assert Workload("prefill", 2, 128, 8).for_model(resnet, notes) == w
    assert notes == ["resnet-50 is a CNN: --seq 128, --kv-bits 8 does not apply to its images (ignored)"]


def test_decoder_default_context_fits_its_positions(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 100,
           "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 256}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert Workload.unset().for_model(load_graph(tmp_path / "config.json")).seq == 256


@pytest.mark.parametrize("model, phase, seq, words", [
    ("all-minilm-l6-v2", "forward", 512, "one forward pass over 1 sequence of 512 tokens"),
    ("resnet-50", "forward", None, "one forward pass over 1 image of 224x224"),
])
def test_plan_states_the_workload_costed(cli, model, phase, seq, words):
    r = cli("dse.search", "--hw", "a100-80gb", "--budget", "6bits", "--model", model, "--sensitivity", "prior",
            "--json")
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)["workload"]
    assert w["phase"] == phase and w.get("seq") == seq and w["description"].startswith(words)
    table = cli("dse.search", "--hw", "a100-80gb", "--budget", "6bits", "--model", model, "--sensitivity", "prior")
    assert words in table.stdout.splitlines()[0]


def test_minilm_attention_is_a_forward_pass_not_a_decode_step(cli):
    """The issue: costed as one decode step against 2048 cached tokens, attention was 84 % of MiniLM's latency."""
    plan = json.loads(cli("dse.search", "--hw", "a100-80gb", "--budget", "6bits", "--model", "all-minilm-l6-v2",
                          "--seq", "128", "--sensitivity", "prior", "--json").stdout)
    assert plan["workload"]["seq"] == 128 and plan["workload"]["phase"] == "forward"
    assert "attention of 6 layers over the keys and values (16-bit)" in plan["fixed"]["note"]
    assert plan["fixed"]["latency_s"] < 0.5 * plan["totals"]["latency_s"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "all-minilm-l6-v2", "--phase", "decode"], "error: all-minilm-l6-v2 is an encoder"),
    (["--model", "resnet-50", "--phase", "decode"], "error: resnet-50 is a CNN"),
])
def test_workload_that_does_not_apply_is_one_line(cli, argv, message):
    r = cli("dse.search", "--hw", "a100-80gb", "--budget", "6bits", *argv)
    assert r.returncode == 2 and r.stderr.startswith(message) and r.stderr.count("\n") == 1 and not r.stdout
