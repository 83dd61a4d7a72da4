"""Serving workloads and several devices, checked against hand calculations.

Oracles: the ring all-reduce written out by hand (2(N-1) steps of B/N bytes), the KV cache of a
request summed token by token through one decode pass per step (`model_cost`), per-device memory
from the model's config by hand, and the throughput / SLO limits read back off the plan.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from hwmodels import parallel
from hwmodels.memory import free_memory, kv_cache_bytes
from hwmodels.registry import load_model
from hwmodels.spec import load_spec
from hwmodels.wholemodel import model_cost
from hwmodels.workload import Workload
from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from quantcore.models import load_graph


def test_ring_allreduce_by_hand():
    # 1 MB over 2 devices at 300 GB/s, 2 us a hop: each device sends half the message twice (reduce-scatter,
    # all-gather) = 2 x 0.5 MB / 300 GB/s = 3.333 us, plus 2 hops x 2 us
    assert parallel.allreduce_s(1e6, 2, 300e9, 2e-6) == pytest.approx(1e6 / 300e9 + 4e-6)
    # 8 devices: 14 steps of 1/8 MB each
    assert parallel.allreduce_s(1e6, 8, 300e9, 2e-6) == pytest.approx(14 * (1e6 / 8) / 300e9 + 14 * 2e-6)
    assert parallel.allreduce_s(1e6, 1, 300e9, 2e-6) == 0.0
    assert parallel.p2p_s(1e6, 32e9, 5e-6) == pytest.approx(1e6 / 32e9 + 5e-6)


def test_tensor_parallel_messages_of_codellama_34b():
    # 48 blocks x 2 all-reduces of batch 8 x hidden 8192 x 2 bytes = 131072 B each, over A100 NVLink 3
    graph, spec = load_graph("codellama-34b"), load_spec("a100-40gb")
    assert spec.params["link_bytes_per_s"] == 300e9  # 600 GB/s both directions
    got = parallel.comm(graph, 8, spec, 2, "tp")
    one = 2 * 1 / 2 * 131072 / 300e9 + 2 * 1 * spec.params["link_latency_s"]
    assert got["messages"] == 96 and got["message_bytes"] == 131072
    assert got["latency_s"] == pytest.approx(96 * one)
    pp = parallel.comm(graph, 8, spec, 4, "pp")  # 3 sends between 4 stages
    assert pp["latency_s"] == pytest.approx(3 * (131072 / 300e9 + spec.params["link_latency_s"]))


def test_a_target_without_a_link_serves_on_one_device_only():
    with pytest.raises(QuantDSEError, match="no device-to-device link"):
        parallel.comm(load_graph("llama-2-7b"), 1, load_spec("u280"), 2, "tp")


def test_shards_hold_one_nth_of_the_weights():
    graph = load_graph("llama-2-70b")
    shard = parallel.per_device_graph(graph, 4, "tp")
    whole = sum(l.params for l in graph.quantizable())
    assert sum(l.params for l in shard.quantizable()) == whole / 4  # every dimension divides by 4
    o = shard.layer("model.layers.0.self_attn.o_proj")
    q = shard.layer("model.layers.0.self_attn.q_proj")
    assert o.shape == (8192, 2048) and q.shape == (2048, 8192)  # row- and column-parallel halves


def test_kv_cache_per_device_by_hand():
    # Llama-2-70B: 80 layers x 8 KV heads x 128 x (K + V) x 2 bytes = 327,680 B per token
    graph, spec = load_graph("llama-2-70b"), load_spec("h100-sxm")
    w = Workload(phase="decode", batch=4, seq=4096, kv_bits=16)
    assert kv_cache_bytes(graph, w) == 80 * 8 * 128 * 2 * 2 * 4 * 4096
    tp = free_memory(spec, graph, Workload(phase="decode", batch=4, seq=4096, kv_bits=16, devices=2))
    assert tp.kv_cache == pytest.approx(kv_cache_bytes(graph, w) / 2)  # 4 of the 8 KV heads each
    assert tp.free == pytest.approx(2 * (80e9 - tp.kv_cache - tp.activations))
    pp = free_memory(spec, graph, Workload(phase="decode", batch=4, seq=4096, kv_bits=16, devices=4, parallel="pp"))
    assert pp.kv_cache == pytest.approx(kv_cache_bytes(graph, w) / 4)  # 20 of the 80 layers each
    # 16 devices, 8 KV heads: each device keeps one head (replicated in pairs), 1/8 of the cache
    wide = free_memory(spec, graph, Workload(phase="decode", batch=4, seq=4096, kv_bits=16, devices=16))
    assert wide.kv_cache == pytest.approx(kv_cache_bytes(graph, w) / 8)


def test_a_request_is_its_prefill_and_every_decode_step():
    """The oracle: one `model_cost` pass per step, the KV cache growing by one token a step."""
    model, graph, fmt = load_model("a100-80gb"), load_graph("llama-2-7b"), get_format("int4-g128")
    request = Workload(phase="generate", batch=4, seq=100, output_len=20, kv_bits=16)
    got = model_cost(model, graph, fmt, request)
    prefill = model_cost(model, graph, fmt, Workload(phase="prefill", batch=4, seq=100, kv_bits=16))
    steps = [model_cost(model, graph, fmt, Workload(phase="decode", batch=4, seq=100 + t, kv_bits=16))
             for t in range(1, 20)]
    total = prefill["latency_s"] + sum(s["latency_s"] for s in steps)
    assert got["latency_s"] == pytest.approx(total, rel=1e-12)
    assert got["energy_j"] == pytest.approx(prefill["energy_j"] + sum(s["energy_j"] for s in steps), rel=1e-12)
    assert got["ttft_s"] == pytest.approx(prefill["latency_s"], rel=1e-12)
    assert got["tpot_s"] == pytest.approx(sum(s["latency_s"] for s in steps) / 19, rel=1e-12)
    assert got["tokens_per_s"] == pytest.approx(4 * 20 / total, rel=1e-12)


def test_long_requests_sum_attention_over_runs_of_steps_within_a_fraction_of_a_percent():
    model, graph = load_model("a100-80gb"), load_graph("llama-2-7b")
    from hwmodels.wholemodel import request_attention

    request = Workload(phase="generate", batch=8, seq=512, output_len=600, kv_bits=16)
    exact = request_attention(model, graph, request, samples=10 ** 6)
    runs = request_attention(model, graph, request)
    assert runs["latency_s"] == pytest.approx(exact["latency_s"], rel=2e-3)


def test_two_devices_split_the_step_and_add_the_messages():
    model, graph, fmt = load_model("a100-40gb"), load_graph("codellama-34b"), get_format("fp16")
    one = model_cost(model, graph, fmt, Workload(phase="decode", batch=8, seq=160, kv_bits=16))
    two = model_cost(model, graph, fmt, Workload(phase="decode", batch=8, seq=160, kv_bits=16, devices=2))
    comm = parallel.comm(graph, 8, model.spec, 2, "tp")["latency_s"]
    assert two["breakdown"]["communication_latency_s"] == pytest.approx(comm)
    assert two["bytes"] == pytest.approx(one["bytes"] / 2, rel=0.01)  # each device reads half the weights
    assert one["latency_s"] / 2 < two["latency_s"] < one["latency_s"] / 2 + comm + 1e-3


def _plan(args, capsys):
    from dse import search

    assert search.main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tokens_per_s_budget_is_met_and_binds(capsys):
    plan = _plan(["--hw", "a100-80gb", "--model", "llama-3-8b", "--budget", "2000tok/s", "--batch", "16"], capsys)
    t = plan["totals"]
    assert t["tokens_per_s"] >= 2000 * (1 - 1e-9) and t["tokens_per_s"] == pytest.approx(16 / t["latency_s"])
    assert t["tpot_s"] == pytest.approx(t["latency_s"])
    assert {"kind": "throughput", "limit": 2000.0, "source": "throughput"} in plan["budget"]["binding"]


def test_slo_limits_hold_in_a_request(capsys):
    plan = _plan(["--hw", "a100-80gb", "--model", "llama-3-8b", "--budget", "5bits", "--phase", "generate",
                  "--batch", "16", "--seq", "512", "--output-len", "64", "--max-ttft-ms", "500", "--max-tpot-ms", "8"],
                 capsys)
    t = plan["totals"]
    assert t["ttft_s"] <= 0.5 * (1 + 1e-9) and t["tpot_s"] <= 0.008 * (1 + 1e-9)
    assert t["tokens_per_s"] == pytest.approx(16 * 64 / t["latency_s"])
    assert t["latency_s"] == pytest.approx(t["ttft_s"] + 63 * t["tpot_s"])
    assert plan["workload"]["output_len"] == 64


def test_slo_of_a_phase_without_that_token_is_an_error(cli):
    r = cli("dse.search", "--hw", "a100-80gb", "--model", "llama-2-7b", "--budget", "4bits", "--phase", "prefill",
            "--max-tpot-ms", "10")
    assert r.returncode == 2 and "--max-tpot-ms applies to --phase decode or generate" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_devices_free_memory_is_the_limit_that_binds(capsys):
    from dse.summary import format_summary

    plan = _plan(["--hw", "h100-sxm", "--model", "llama-2-70b", "--budget", "80GB"], capsys)
    binding = plan["budget"]["binding"]
    assert [b["source"] for b in binding] == ["device"]
    assert binding[0]["limit"] == pytest.approx(plan["device"]["free_for_weights_bytes"])
    text = format_summary(plan, steps=[])
    assert "limit 80GB   the device's free memory 79.33 GB (binding)" in text
    assert "limit 80GB (binding)" not in text


def test_offloaded_weights_stream_over_the_host_link_every_pass(capsys):
    plan = _plan(["--hw", "h100-sxm", "--model", "llama-2-70b", "--budget", "16bits", "--set", "allow_offload=true"],
                 capsys)
    off, free = plan["device"]["offload"], plan["device"]["free_for_weights_bytes"]
    assert off["offloaded_bytes"] == pytest.approx(plan["totals"]["memory_bytes"] - free, rel=1e-9)
    assert off["seconds_per_pass"] == pytest.approx(off["offloaded_bytes"] / 64e9)  # PCIe Gen5 x16 one way
    searched = sum(l["latency_s"] for l in plan["layers"]) + plan["fixed"]["latency_s"]
    assert plan["totals"]["latency_s"] == pytest.approx(searched + off["seconds_per_pass"], rel=1e-9)
    assert any("stream over the host link" in n for n in plan["notes"])


def test_two_h100_hold_llama_2_70b_at_16_bits(capsys):
    plan = _plan(["--hw", "h100-sxm", "--model", "llama-2-70b", "--budget", "16bits", "--devices", "2"], capsys)
    assert plan["device"]["weights_fit"] and plan["device"]["devices"] == 2
    assert plan["workload"]["devices"] == 2 and plan["workload"]["parallel"] == "tp"


def test_cost_json_carries_tokens_per_s(capsys):
    from hwmodels import cost

    for phase in ("decode", "generate"):
        assert cost.main(["--hw", "a100-80gb", "--model", "llama-3-8b", "--format", "int4-g128", "--batch", "16",
                          "--phase", phase, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        expected = 16 * (128 if phase == "generate" else 1) / doc["latency_s"]
        assert doc["tokens_per_s"] == pytest.approx(expected)


def test_output_len_needs_a_request():
    with pytest.raises(QuantDSEError, match="--output-len applies to --phase generate"):
        Workload.unset(phase="decode", output_len=10).for_model(load_graph("llama-2-7b"))
    with pytest.raises(QuantDSEError, match="generates no tokens"):
        Workload.unset(phase="generate").for_model(load_graph("resnet-50"))


def test_problem_ties_carry_the_serving_rows():
    from dse.problem import Problem, tie

    L, F = 3, 2
    rng = np.random.default_rng(0)
    arrays = {k: rng.random((L, F)) for k in ("error", "bits", "latency_s", "energy_j")}
    ttft = rng.random((L, F))
    p = Problem([f"l{i}" for i in range(L)], ["a", "b"], params=np.ones(L), mask=np.ones((L, F), bool),
                limits={"ttft": 10.0}, serving={"ttft": (ttft, 0.5)}, **arrays)
    merged, rows = tie(p, [[0, 1]])
    assert merged.coef("ttft")[0] == pytest.approx(ttft[0] + ttft[1]) and merged.rhs("ttft") == 9.5


def test_cost_says_what_each_device_holds(capsys):
    from hwmodels import cost

    assert cost.main(["--hw", "h100-sxm", "--model", "llama-2-70b", "--format", "fp16", "--devices", "2",
                      "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    graph = load_graph("llama-2-70b")
    assert memory["weights_bytes"] == pytest.approx(2.0 * graph.params)  # every weight at 16 bits
    assert memory["weights_per_device_bytes"] == pytest.approx(graph.params)
    assert memory["free_for_weights_bytes"] == pytest.approx(2 * memory["free_per_device_bytes"])
    assert memory["weights_fit"] is True


def test_pareto_frontier_in_tokens_per_s(capsys):
    from dse import pareto

    assert pareto.main(["--hw", "a100-80gb", "--model", "llama-3-8b", "--batch", "16", "--sweep",
                        "throughput=1000:2000:500", "--x", "throughput", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["budget"] for r in rows] == [1000.0, 1500.0, 2000.0]
    for r in rows:
        assert r["tokens_per_s"] >= r["budget"] * (1 - 1e-9)
        assert r["tokens_per_s"] == pytest.approx(16 / r["latency_s"])
    # higher throughput costs error: every point is on the (max tokens/s, min error) frontier
    assert all(r["on_frontier"] for r in rows) and rows[0]["error"] < rows[-1]["error"]


def test_sweep_grid_over_devices():
    from experiments.sweep import main as sweep_main
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sweep_main(["--hw", "a100-40gb", "--grid", "devices=1,2", "--model", "codellama-34b", "--budgets",
                           "16bits", "--phase", "generate", "--seq", "32", "--output-len", "16", "--batch", "8",
                           "--workers", "1", "--json"]) == 0
    rows = json.loads(out.getvalue())
    one, two = rows
    assert (one["devices"], two["devices"]) == ("1", "2") and one["output_len"] == 16
    assert two["memory_bytes"] > 40e9 > one["memory_bytes"]  # FP16 fits two A100-40GB, not one
    for r in rows:
        assert r["tokens_per_s"] == pytest.approx(8 * 16 / r["latency_s"])
        assert r["latency_s"] == pytest.approx(r["ttft_s"] + 15 * r["tpot_s"])
