"""What the target allows: formats it cannot run are dropped and named; device memory becomes a limit.

Oracles: the local target's kernel list (torch has no int2/int3 CPU kernel), KV-cache bytes
by hand from Llama-2-70B's config (80 layers x 8 KV heads x 128 dims x K and V x 2 bytes per
token), the RTX 4090's 24 GB (its spec sheet, hwmodels/specs/rtx4090.toml).
"""
from __future__ import annotations

import json

import pytest

from dse import search
from hwmodels.memory import free_memory, kv_cache_bytes
from hwmodels.registry import load_model
from hwmodels.workload import Workload
from quantcore.cli import run_cli
from quantcore.models import load_graph
from test_local import _install, _synthetic_calibration


@pytest.fixture
def local(tmp_path, monkeypatch):
    """The local target on a synthetic calibration (no measuring): its kernels decide what runs."""
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    _install(_synthetic_calibration(threads=1))
    return ["--hw", "local", "--set", "threads=1", "--model", "all-minilm-l6-v2",
            "--sensitivity", "prior"]


def test_formats_the_target_cannot_run_are_named_and_left_out(local, capsys):
    assert run_cli(search.main, local + ["--formats", "int2-g64,int3-g64,int4-g128,int8", "--budget", "6bits",
                                         "--json"]) == 0
    out = capsys.readouterr()
    plan = json.loads(out.out)
    assert plan["formats"] == ["int4-g128", "int8"]
    assert {l["format"] for l in plan["layers"]} <= {"int4-g128", "int8"}
    assert "note: local cannot run int2-g64, int3-g64" in out.err
    assert any("local cannot run int2-g64, int3-g64" in n for n in plan["notes"])


def test_infeasible_hint_does_not_ask_for_formats_the_target_dropped(local, capsys):
    assert run_cli(search.main, local + ["--formats", "int2-g64,int3-g64,int4-g128", "--budget", "4bits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bits limit 4.0000bits is below the smallest feasible 4.1250bits")  # int4-g128
    assert "allow lower-bit" not in err and "(int2-g64, int3-g64 were dropped: local cannot run them)" in err
    assert err.count("\n") == 1


def test_infeasible_hint_names_lower_bit_formats_the_target_runs(cli):
    r = cli("dse.search", "--hw", "u280", "--budget", "3bits", "--formats", "int4-g128,int8")
    assert r.returncode == 2 and "allow lower-bit --formats (" in r.stderr and "run on u280)" in r.stderr


def test_no_runnable_format_is_one_line(local, capsys):
    assert run_cli(search.main, local + ["--formats", "int2-g64,nf4", "--budget", "4bits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: local cannot run any of the candidate formats (int2-g64, nf4)") and "int8" in err


def test_kv_cache_bytes_by_hand():
    g = load_graph("llama-2-70b")
    assert kv_cache_bytes(g, Workload("decode", 1, 2048, 16)) == 80 * 8 * 128 * 2 * 2048 * 2
    assert kv_cache_bytes(g, Workload("decode", 4, 2048, 8)) == 80 * 8 * 128 * 2 * 2048 * 4
    bert = load_graph("bert-base-uncased")  # a forward pass keeps one layer's K and V at a time
    assert kv_cache_bytes(bert, Workload("forward", 1, 512, 16)) == 12 * 64 * 2 * 512 * 2
    fm = free_memory(load_model("rtx4090").spec, g, Workload())
    assert fm.capacity == 24e9 and fm.free == 24e9 - fm.kv_cache - fm.activations


def test_weights_that_cannot_fit_get_the_device_limit(cli):
    r = cli("dse.search", "--hw", "rtx4090", "--budget", "4bits", "--model", "llama-2-70b", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    dev = plan["device"]
    free = 24e9 - 80 * 8 * 128 * 2 * 2048 * 2 - dev["activation_bytes"]
    assert dev["free_for_weights_bytes"] == pytest.approx(free) and dev["memory_limit_added"] is True
    assert plan["budget"]["limits"]["memory"] == pytest.approx(free)
    assert plan["totals"]["memory_bytes"] <= free * (1 + 1e-9) and dev["weights_fit"] is True
    assert plan["totals"]["effective_bits"] < 4.0  # the memory limit binds, not the 4-bit budget
    assert "note: llama-2-70b's weights can exceed rtx4090's memory: added a memory limit of 23.33 GB" in r.stderr
    off = cli("dse.search", "--hw", "rtx4090", "--budget", "4bits", "--model", "llama-2-70b", "--json",
              "--set", "allow_offload=true")
    plan = json.loads(off.stdout)
    assert "memory" not in plan["budget"]["limits"] and plan["device"]["weights_fit"] is False
    assert plan["totals"]["effective_bits"] == pytest.approx(4.0, abs=1e-3)
    assert "warning: the plan's weights (34.88 GB) exceed the 23.33 GB rtx4090 leaves for them" in off.stderr


def test_device_limit_only_where_it_can_bind(cli):
    # llama-2-7b at 3.7 bits (3.4 GB) cannot exceed the U280's 8 GB less its 1.07 GB KV cache: no limit, no note
    r = cli("dse.search", "--hw", "u280", "--budget", "3.7bits", "--json")
    plan = json.loads(r.stdout)
    assert plan["budget"]["limits"] == {"bits": 3.7} and plan["device"]["memory_limit_added"] is False
    assert plan["device"]["kv_cache_bytes"] == 32 * 4096 * 2 * 2048 * 2 and "note:" not in r.stderr


def test_model_too_big_even_at_the_lowest_bits(cli):
    r = cli("dse.search", "--hw", "rtx4090", "--budget", "4bits", "--model", "deepseek-v3", "--sensitivity", "prior")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "memory limit" in r.stderr and "--set allow_offload=true" in r.stderr and "allow lower-bit" not in r.stderr
