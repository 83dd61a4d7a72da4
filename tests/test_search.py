"""End-to-end `dse.search`: the main job's contract, budgets, determinism, bad input."""
import json

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from quantcore.formats import get_format
from quantcore.models import load_graph


def search_json(cli, *args):
    out = cli("dse.search", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_main_job_u280_3p7_bits(cli):
    plan = search_json(cli, "--hw", "u280", "--budget", "3.7bits")
    assert plan["schema"] == "dse.plan/2" and plan["model"] == "llama-2-7b" and plan["hardware"] == "u280"
    assert 3.5 <= plan["totals"]["effective_bits"] <= 3.7
    assert plan["solver"]["status"] == "optimal"
    assert plan["provenance"]["sensitivity"] == "prior" and plan["provenance"]["sensitivity_is_prior"]
    assert len(plan["layers"]) == 225  # 32 blocks x 7 projections + lm_head
    for layer in plan["layers"]:
        assert layer["latency_s"] > 0 and layer["energy_j"] > 0
    # the totals are the sums of the layers (+ the fixed, unsearched part), recomputed by hand
    params = np.array([l["params"] for l in plan["layers"]], dtype=float)
    bits = np.array([l["bits"] for l in plan["layers"]])
    assert plan["totals"]["effective_bits"] == pytest.approx((params * bits).sum() / params.sum(), rel=1e-9)
    assert plan["totals"]["latency_s"] == pytest.approx(
        sum(l["latency_s"] for l in plan["layers"]) + plan["fixed"]["latency_s"], rel=1e-9)
    # each layer's bits are its format's exact effective bits for its input width
    graph = load_graph("llama-2-7b")
    for layer in plan["layers"][:7]:
        assert layer["bits"] == pytest.approx(get_format(layer["format"]).bits_per_weight(graph.layer(layer["name"]).k))


def test_memory_budget_holds(cli):
    plan = search_json(cli, "--hw", "u280", "--budget", "3.5GB")
    assert plan["totals"]["memory_bytes"] <= 3.5e9
    assert plan["budget"]["kind"] == "memory"


def test_several_constraints_at_once(cli):
    plan = search_json(cli, "--hw", "u280", "--budget", "4.5bits", "--max-latency-ms", "15")
    assert plan["totals"]["effective_bits"] <= 4.5 + 1e-9 and plan["totals"]["latency_s"] <= 15e-3


def test_same_inputs_same_plan_bytes(cli, tmp_path):
    outs = []
    for i in range(2):
        path = tmp_path / f"plan{i}.json"
        r = cli("dse.search", "--hw", "u280", "--budget", "3.7bits", "--out", str(path))
        assert r.returncode == 0, r.stderr
        plan = json.loads(path.read_text())
        plan["solver"].pop("seconds")
        outs.append(json.dumps(plan))
    assert outs[0] == outs[1]


def _random_sensitivity(tmp_path, layers, formats, seed):
    rng = np.random.default_rng(seed)
    table = {}
    for layer in layers:
        base = rng.lognormal(0, 1)
        # error falls with bits, plus noise; some formats missing for some layers
        table[layer.name] = {f.name: float(base * layer.params * 2.0 ** (-2 * f.bits) * rng.uniform(0.5, 1.5))
                             for f in formats if rng.random() < 0.9 or f.name == "int8"}
    path = tmp_path / f"sens{seed}.json"
    path.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": table}))
    return path, table


@pytest.mark.parametrize("seed", [0, 1])
def test_ilp_optimal_vs_scipy_milp_through_cli(cli, tmp_path, seed):
    """Random error tables given through --sensitivity; scipy's milp solves the same one-hot problem."""
    graph = load_graph("llama-2-7b")
    layers = graph.quantizable()
    formats = [get_format(n) for n in ("int2-g64", "int3-g128", "int4-g128", "int4-g32", "int6-g128", "int8")]
    path, table = _random_sensitivity(tmp_path, layers, formats, seed)
    plan = search_json(cli, "--hw", "u280", "--budget", "3.9bits", "--sensitivity", str(path))
    L, F = len(layers), len(formats)
    err = np.array([[table[l.name].get(f.name, 0.0) for f in formats] for l in layers])
    allowed = np.array([[f.name in table[l.name] for f in formats] for l in layers])
    coef = np.array([[l.params * f.bits_per_weight(l.k) for f in formats] for l in layers])
    one_hot = np.kron(np.eye(L), np.ones(F))
    ref = milp(err.ravel(), integrality=np.ones(L * F), bounds=Bounds(0, allowed.ravel().astype(float)),
               constraints=[LinearConstraint(one_hot, 1, 1),
                            LinearConstraint(coef.ravel()[None], -np.inf, 3.9 * sum(l.params for l in layers))],
               options={"mip_rel_gap": 1e-12})
    assert ref.success
    assert plan["totals"]["error"] == pytest.approx(ref.fun, rel=1e-7)
    assert plan["solver"]["status"] == "optimal"
    for layer in plan["layers"]:
        assert layer["format"] in table[layer["name"]]  # a missing format is not allowed


BAD_INPUTS = [
    (["--hw", "nope", "--budget", "3bits"], "unknown hardware"),
    (["--hw", "u280", "--budget", "3bits", "--model", "nope-7b"], "unknown model"),
    (["--hw", "u280", "--budget", "3bits", "--formats", "int4-g128,int9-g3"], "int9-g3"),
    (["--hw", "u280", "--budget", "3bits", "--method", "magic"], "unknown method"),
    (["--hw", "u280", "--budget=-3bits"], "positive"),
    (["--hw", "u280", "--budget", "-3bits"], "must be a positive finite number"),
    (["--hw", "u280", "--budget", "nanbits"], "positive finite"),
    (["--hw", "u280", "--budget", "3parsecs"], "unknown budget unit"),
    (["--hw", "u280", "--budget", "three"], "malformed budget"),
    (["--hw", "u280", "--budget", "1bits"], "below the smallest feasible 2.2500bits"),
    (["--hw", "u280", "--budget", "0.5GB"], "below the smallest feasible"),
    (["--hw", "u280", "--budget", "3bits", "--max-latency-ms", "0.001"], "below the smallest feasible"),
    (["--hw", "u280", "--budget", "3bits", "--set", "clock_hz=fast"], "clock_hz must be a number"),
    (["--hw", "u280", "--budget", "3bits", "--set", "clock_hz=-5"], "clock_hz must be >="),
    (["--hw", "u280", "--budget", "3bits", "--set", "warp_drive=1"], "unknown param"),
    (["--hw", "u280", "--budget", "3bits", "--set", "novalue"], "KEY=VALUE"),
    (["--hw", "u280"], "no budget given"),
    (["--hw", "u280", "--budget", "3bits", "--batch", "0"], "--batch must be a positive integer"),
    (["--hw", "u280", "--budget", "3.5Gb"], "case matters"),
    (["--hw", "u280", "--budget", "3bits", "--sensitivity", "hessian"], "llama-2-7b has no weights here"),
    (["--hw", "ultra96-codenet", "--budget", "4bits"], "cannot run the 16-bit embeddings/routers of llama-2-7b"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_one_line_exit_2_no_output(cli, tmp_path, args, message):
    out = tmp_path / "plan.json"
    r = cli("dse.search", *args, "--out", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_files(cli, tmp_path):
    cases = {}
    cfg = tmp_path / "config.json"
    cfg.write_text('{"model_type": "llama", "hidden_size": 4096')  # truncated
    cases["config"] = (["--model", str(cfg)], "config")
    st = tmp_path / "model.safetensors"
    st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")  # header runs past the file
    cases["safetensors"] = (["--model", str(st)], "safetensors")
    spec = tmp_path / "mychip.toml"
    spec.write_text('schema = "hwmodels.spec/1"\nname = "mychip"\nfamily = "fpga_llm"\n[params]\nclock_hz = "x"\n')
    cases["spec"] = (["--hw", str(spec)], "mychip.toml")
    spec2 = tmp_path / "broken.toml"
    spec2.write_text("schema = [unclosed\n")
    cases["spec-toml"] = (["--hw", str(spec2)], "not valid TOML")
    sens = tmp_path / "sens.json"
    sens.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": {"model.layers.0.self_attn.q_proj": {"int8": 1}}}))
    cases["sens-missing-layer"] = (["--sensitivity", str(sens)], "has no entry for layer")
    sens2 = tmp_path / "sens2.json"
    sens2.write_text("{not json")
    cases["sens-json"] = (["--sensitivity", str(sens2)], "not valid JSON")
    for name, (extra, message) in cases.items():
        args = ["--hw", "u280", "--budget", "3.7bits"]
        if "--hw" in extra:
            args = ["--budget", "3.7bits"]
        out = tmp_path / f"out-{name}.json"
        r = cli("dse.search", *args, *extra, "--out", str(out))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (name, r.stderr)
        assert not out.exists()


def test_plan_written_atomically_and_table_printed(cli, tmp_path):
    out = tmp_path / "plan.json"
    r = cli("dse.search", "--hw", "u280", "--budget", "3.7bits", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "totals (searched layers + fixed part)" in r.stdout and f"plan written to {out}" in r.stdout
    assert json.loads(out.read_text())["schema"] == "dse.plan/2"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temp file left behind


def test_out_folder_is_an_error_and_plans_are_world_readable(cli, tmp_path):
    r = cli("dse.search", "--hw", "u280", "--budget", "3.7bits", "--out", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr and list(tmp_path.iterdir()) == []
    out = tmp_path / "plan.json"
    assert cli("dse.search", "--hw", "u280", "--budget", "3.7bits", "--out", str(out)).returncode == 0
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_max_flag_alone_is_the_reported_budget(cli):
    plan = search_json(cli, "--hw", "u280", "--max-latency-ms", "15")
    assert plan["budget"]["kind"] == "latency" and plan["budget"]["value"] == 15.0 and plan["budget"]["text"] == "15ms"
    assert plan["totals"]["latency_s"] <= 15e-3


def test_device_memory_fit_is_reported(cli):
    small = search_json(cli, "--hw", "u280", "--budget", "3.7bits")
    assert small["device"]["memory_capacity_bytes"] == 8e9 and small["device"]["weights_fit"] is True  # DS963: 8 GB
    r = cli("dse.search", "--hw", "u280", "--budget", "3.7bits", "--model", "llama-2-70b", "--json",
            "--set", "allow_offload=true")
    assert r.returncode == 0 and "exceed the 7.33 GB u280 leaves for them" in r.stderr
    assert json.loads(r.stdout)["device"]["weights_fit"] is False


def test_moe_routers_stay_16_bit(cli):
    plan = search_json(cli, "--hw", "a100-80gb", "--budget", "4bits", "--model", "mixtral-8x7b")
    names = {l["name"] for l in plan["layers"]}
    assert "model.layers.0.block_sparse_moe.gate" not in names
    assert "model.layers.0.block_sparse_moe.experts.7.w2" in names
    graph = load_graph("mixtral-8x7b")
    routers = sum(l.params for l in graph.layers if l.role == "router")
    embeds = sum(l.params for l in graph.layers if l.kind == "embedding")
    assert routers == 32 * 8 * 4096  # 32 blocks x 8 experts x hidden 4096
    assert plan["fixed"]["memory_bytes"] == pytest.approx(2 * (routers + embeds + graph.extra_params))
