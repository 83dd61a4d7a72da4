"""Hostile and malformed input (issue 13): one test per cause, each fixed in the shared mechanism.

Every bad input ends as exactly one stderr line `error: ...`, exit 2, no output file
(hostile.assert_one_line_error); signals end quietly with 130 / 143 and no temp file.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from dse import pareto, search
from dse import models as dse_models
from hwmodels import calibrate, cost
from quantcore.cli import os_error_line
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_files, load_json, nesting_depth
from tests.conftest import ROOT
from tests.hostile import (TINY, assert_one_line_error, check_plan, no_temp_files, run, safetensors_bytes,
                           search_args, with_header, write_tiny)


# ------------------------------------------------------------------ 1. OSError -> one line, in run_cli

def test_oserror_anywhere_is_one_line_naming_the_path():
    def main(argv):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/model.json")

    r = run(main, [])
    assert_one_line_error(r, "/data/model.json: Permission denied: check its permissions")
    line = os_error_line(OSError(errno.ENAMETOOLONG, "File name too long", "x" * 10))
    assert line.endswith("use a shorter file name")


def test_symlink_loop_and_unreadable_inputs(tiny):
    folder, config, sens = tiny
    loop = folder / "loop.json"
    loop.symlink_to(loop)
    assert_one_line_error(run(search.main, search_args(loop, sens, "--budget", "4bits")), "loop.json")
    if os.geteuid() != 0:  # root reads anything
        config.chmod(0)
        assert_one_line_error(run(search.main, search_args(config, sens, "--budget", "4bits")), "Permission denied")


@pytest.mark.parametrize("out, fragment", [
    ("/proc/quantdse-plan.json", "cannot create a file in /proc"),
    ("/sys/quantdse-plan.json", "/sys/quantdse-plan.json"),
    ("{folder}/" + "n" * 300 + ".json", "File name too long: use a shorter file name"),
])
def test_out_where_no_file_can_be_written(tiny, out, fragment):
    folder, config, sens = tiny
    r = run(search.main, search_args(config, sens, "--budget", "4bits", "--out", out.format(folder=folder)))
    assert_one_line_error(r, fragment)
    assert no_temp_files(folder)


def test_out_into_read_only_folder(tiny):
    folder, config, sens = tiny
    ro = folder / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = run(search.main, search_args(config, sens, "--budget", "4bits", "--out", ro / "plan.json"))
    finally:
        ro.chmod(0o700)
    if os.geteuid() == 0:  # root writes anywhere: the plan is simply written
        assert r.code == 0 and (ro / "plan.json").is_file()
    else:
        assert_one_line_error(r, "Permission denied")
        assert list(ro.iterdir()) == []


# ------------------------------------------------------------------ 2. nesting and size bounded before parsing

DEEP = 100_000


@pytest.mark.parametrize("what", ["config", "sensitivity", "measurements"])
def test_deep_json_is_refused_before_parsing(tiny, what):
    folder, config, sens = tiny
    deep = folder / "deep.json"
    deep.write_text("[" * DEEP + "]" * DEEP)
    if what == "config":
        r = run(search.main, search_args(deep, sens, "--budget", "4bits"))
    elif what == "sensitivity":
        r = run(search.main, search_args(config, deep, "--budget", "4bits"))
    else:
        r = run(calibrate.main, ["--hw", "a100-80gb", "--from", deep, "--out", folder / "d.toml"])
    assert_one_line_error(r, "nests 100,000 levels deep", "QUANTDSE_MAX_DEPTH")


def test_deep_safetensors_header_and_index(tmp_path):
    deep = b"{" + b'"a":{' * DEEP + b"}" * (DEEP + 1)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(deep)) + deep)
    assert_one_line_error(run(dse_models.main, [tmp_path / "model.safetensors"]), "header is not valid JSON")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors.index.json").write_text('{"weight_map": ' + "[" * DEEP + "]" * DEEP + "}")
    assert_one_line_error(run(dse_models.main, [ckpt]), "QUANTDSE_MAX_DEPTH")


@pytest.mark.parametrize("body", ["a = " + "[" * DEEP + "]" * DEEP, "a = " + "{b = " * DEEP + "}" * DEEP])
def test_deep_toml_spec_is_refused_before_parsing(tmp_path, body):
    spec = tmp_path / "deep.toml"
    spec.write_text(body + "\n")
    r = run(cost.main, ["--hw", spec, "--gemm", "1,64,64", "--format", "int8"])
    assert_one_line_error(r, "levels deep", "QUANTDSE_MAX_DEPTH")


def test_depth_scan_skips_strings_and_comments():
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert nesting_depth(b'a = "[[[["  # [[[[[\nb = [[1]]\n', toml=True) == 2
    assert nesting_depth(b"x = '''\n[[[[\n'''\n", toml=True) == 0


def test_size_cap_on_json_inputs(tiny, monkeypatch):
    folder, config, sens = tiny
    monkeypatch.setenv("QUANTDSE_MAX_JSON_BYTES", "100")
    r = run(search.main, search_args(config, sens, "--budget", "4bits"))
    assert_one_line_error(r, "exceeds the cap of 100 bytes", "QUANTDSE_MAX_JSON_BYTES")


@pytest.mark.slow
def test_200mb_valid_config_still_loads(tmp_path):
    """Size alone is no reason to refuse: a valid config padded to 200 MB plans as before."""
    big = {**TINY, "padding": ["x" * 1000] * 200_000}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big))
    assert path.stat().st_size > 200e6
    from quantcore.models import load_graph

    t0 = time.perf_counter()
    graph = load_graph(path)
    assert len(graph.quantizable()) == 2 * 7 + 1 and time.perf_counter() - t0 < 30
    del big


# ------------------------------------------------------------------ 3. finite numbers that overflow

@pytest.mark.parametrize("flags, fragment", [
    (["--budget", "1e300GB"], "a memory budget must be at most 1e+09GB"),
    (["--budget", "1e300bits"], "a bits budget must be at most 64bits"),
    (["--budget", "1e307ms"], "a latency budget must be at most 1e+09ms"),
    (["--budget", "4bits", "--max-memory-gb", "1e300"], "--max-memory-gb is out of range"),
    (["--budget", "4bits", "--seq", str(10 ** 20)], "--seq must be in [1, 16,777,216]"),
    (["--budget", "4bits", "--batch", str(10 ** 20)], "--batch must be in [1, 65,536]"),
    (["--budget", "4bits", "--seed", str(10 ** 20)], "--seed: must be in [0, 4,294,967,295]"),
])
def test_overflowing_flags_name_flag_and_range(tiny, flags, fragment):
    folder, config, sens = tiny
    r = run(search.main, search_args(config, sens, *flags, "--out", folder / "plan.json"))
    assert_one_line_error(r, fragment)
    assert not (folder / "plan.json").exists()


def test_overflowing_gemm_and_config_sizes(tmp_path):
    r = run(cost.main, ["--hw", "a100-80gb", "--gemm", f"{10 ** 20},4096,4096", "--format", "int8"])
    assert_one_line_error(r, "each at most 16,777,216")
    config, _ = write_tiny(tmp_path, hidden_size=2 ** 40)
    assert_one_line_error(run(dse_models.main, [config]), "hidden_size must be in [1, 1,048,576]")


def test_valid_budget_spellings_keep_working(tiny):
    folder, config, sens = tiny
    for budget in ("3.7 bits", "3.7bits", " 4 bits ", "1e-3GB"):
        r = run(search.main, search_args(config, sens, "--budget", budget, "--json"))
        assert r.code == 0, r.err
        check_plan(json.loads(r.out))


# ------------------------------------------------------------------ 4. config schema

@pytest.mark.parametrize("changes, fragments", [
    ({"num_key_value_heads": "four"}, ["num_key_value_heads must be an integer"]),
    ({"head_dim": "x"}, ["head_dim must be an integer"]),
    ({"model_type": ["llama"]}, ["model_type must be a string"]),
    ({"num_attention_heads": 0}, ["num_attention_heads must be in [1, 16,384], got 0"]),
    ({"num_key_value_heads": -4}, ["num_key_value_heads must be in [1, 16,384], got -4"]),
    ({"vocab_size": 0}, ["vocab_size must be in [1,"]),
    ({"hidden_size": 66}, ["hidden_size 66 is not divisible by num_attention_heads 4"]),
    ({"num_key_value_heads": 3}, ["num_key_value_heads 3 does not divide num_attention_heads 4"]),
    ({"tie_word_embeddings": "yes"}, ["tie_word_embeddings must be true or false"]),
    ({"intermediate_size": None, "vocab_size": -1, "hidden_size": 1.5},
     ["missing required key 'intermediate_size'", "vocab_size must be in", "hidden_size must be an integer"]),
])
def test_config_schema_reports_every_problem(tmp_path, changes, fragments):
    config, sens = write_tiny(tmp_path, **changes)
    r = run(search.main, search_args(config, sens, "--budget", "100ms", "--out", tmp_path / "plan.json"))
    assert_one_line_error(r, *fragments)
    assert not (tmp_path / "plan.json").exists()


def test_negative_costs_never_reach_a_plan(tiny):
    """Behind the schema: any table with a negative or infinite cost is refused, not planned."""
    from dse.budget import Budget
    from dse.pipeline import SearchRequest, check_costs, prepare

    folder, config, sens = tiny
    prepared = prepare(SearchRequest(hw="u280", model=str(config), budget=Budget.bits(4), sensitivity=str(sens)))
    check_costs(prepared)  # the real tables pass
    prepared.costs.latency_s[0, 0] = -1e-3
    with pytest.raises(QuantDSEError, match="latency .* not finite and non-negative"):
        check_costs(prepared)


# ------------------------------------------------------------------ 5. safetensors at least as strict as the library

def _valid_tensors() -> dict:
    rng = np.random.default_rng(0)
    return {"a.weight": rng.standard_normal((4, 8)).astype(np.float32),
            "b.weight": rng.standard_normal((8, 4)).astype(np.float32)}


def _damaged(kind: str) -> bytes:
    data = bytes(4 * 32 * 2)
    a = {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}
    b = {"dtype": "F32", "shape": [8, 4], "data_offsets": [128, 256]}
    if kind == "gap":
        return with_header({"a.weight": {**a, "data_offsets": [4, 132]}, "b.weight": {**b, "data_offsets": [132, 260]}},
                           bytes(260))
    if kind == "trailing":
        return with_header({"a.weight": a, "b.weight": b}, data + b"junk")
    if kind == "overlap":
        return with_header({"a.weight": a, "b.weight": {**b, "data_offsets": [64, 192]}}, data[:192])
    if kind == "negative":
        return with_header({"a.weight": {**a, "shape": [-4, -8]}, "b.weight": b}, data)
    if kind == "size":
        return with_header({"a.weight": {**a, "dtype": "F16"}, "b.weight": b}, data)
    if kind == "float-dims":
        return with_header({"a.weight": {**a, "shape": [4.0, 8]}, "b.weight": b}, data)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["gap", "trailing", "overlap", "negative", "size", "float-dims"])
def test_safetensors_checks_match_the_library(tmp_path, kind):
    from safetensors import SafetensorError, safe_open

    path = tmp_path / "m.safetensors"
    path.write_bytes(_damaged(kind))
    with pytest.raises(SafetensorError):  # the oracle: the library refuses this file
        with safe_open(str(path), framework="numpy") as handle:
            [handle.get_tensor(k) for k in handle.keys()]
    assert_one_line_error(run(dse_models.main, [path]), "is corrupt or truncated")
    good = tmp_path / "good.safetensors"
    good.write_bytes(safetensors_bytes(_valid_tensors()))
    assert run(dse_models.main, [good]).code == 0


def test_library_error_while_streaming_is_one_line(tmp_path):
    """A file changed after its header was read: the library's error becomes the one line."""
    from quantcore.models import load_graph

    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes(_valid_tensors()))
    graph = load_graph(path)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(QuantDSEError, match="corrupt or truncated"):
        graph.weights.get("a")


# ------------------------------------------------------------------ 6. --out misuse

@pytest.mark.parametrize("out, fragment", [
    ("{config}", "is also an input of this run"),
    ("{sens}", "is also an input of this run"),
    ("/dev/null", "is not a regular file"),
    ("{folder}/sub/", "ends with '/'"),
    ("", "--out is empty"),
    ("{folder}", "is a folder"),
])
def test_out_misuse_is_refused(tiny, out, fragment):
    folder, config, sens = tiny
    before = {p: p.read_bytes() for p in (config, sens)}
    r = run(search.main, search_args(config, sens, "--budget", "4bits", "--out",
                                     out.format(config=config, sens=sens, folder=folder)))
    assert_one_line_error(r, fragment)
    assert {p: p.read_bytes() for p in (config, sens)} == before
    assert not (folder / "sub").exists() and no_temp_files(folder)


def test_multi_target_out_is_checked_and_all_or_none(tiny):
    folder, config, sens = tiny
    args = ["--hw", "u280,a100-80gb", "--model", config, "--sensitivity", sens, "--budget", "4bits"]
    assert_one_line_error(run(search.main, [*args, "--out", ""]), "--out is empty")
    (folder / "plan-a100-80gb.json").mkdir()  # the second target's file cannot be written
    assert_one_line_error(run(search.main, [*args, "--out", folder / "plan.json"]), "is a folder")
    assert not (folder / "plan-u280.json").exists() and no_temp_files(folder)


def test_out_onto_hardlinked_input_is_refused(tiny):
    folder, config, sens = tiny
    link = folder / "link.json"
    os.link(config, link)
    r = run(search.main, search_args(config, sens, "--budget", "4bits", "--out", link))
    assert_one_line_error(r, "also an input")


def test_input_protection_ends_with_the_run(tiny):
    """Outside run_cli (notebooks), reading a file does not forbid writing it later."""
    folder, config, _ = tiny
    from quantcore.io import atomic_write_text

    load_json(config, "config")
    atomic_write_text(config, config.read_text())


# ------------------------------------------------------------------ 7. signals

def _terminal_signals() -> None:
    """In the child, before exec: Ctrl-C as a terminal's foreground job gets it. A shell starts a background
    job (a test run with `&`) with SIGINT ignored, which its children would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(code: str, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=_terminal_signals)


def _wait_for(predicate, timeout=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_sigterm_during_a_large_write_leaves_no_temp_file(tmp_path):
    # 512 MiB, then a check that waits before the rename: the signal lands in the write or right after it
    code = ("import sys, time; from quantcore.cli import run_cli; from quantcore.io import atomic_write_bytes;"
            "sys.exit(run_cli(lambda a: atomic_write_bytes(sys.argv[1], bytes(512 << 20), "
            "check=lambda tmp: time.sleep(60))))")
    proc = _spawn(code, tmp_path / "big.bin")
    assert _wait_for(lambda: any(p.name.endswith(".tmp") for p in tmp_path.iterdir())), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err == "" and out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_search_exits_quietly(tmp_path, sig, code):
    # the child says "go" from inside the search (the model is loaded, handlers are installed), then waits
    # there, so the signal always lands mid-search however fast or loaded the machine is
    script = ("import sys, time\n"
              "from quantcore.cli import run_cli\n"
              "from dse import api, search\n"
              "real_prepare = api.prepare\n"
              "def prepare(request):\n"
              "    prepared = real_prepare(request)\n"
              "    print('go', flush=True)\n"
              "    time.sleep(60)\n"
              "    return prepared\n"
              "api.prepare = prepare\n"
              "sys.exit(run_cli(search.main, sys.argv[1:]))\n")
    proc = _spawn(script, "--hw", "a100-80gb", "--model", "deepseek-v3", "--budget", "4bits",
                  "--out", tmp_path / "plan.json")
    assert proc.stdout.readline().strip() == "go"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err == "", err[-2000:]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 8. caps on work

def test_layer_cap_names_itself_and_can_be_raised(tmp_path, monkeypatch):
    config, sens = write_tiny(tmp_path, num_hidden_layers=1_000_000)
    t0 = time.perf_counter()
    r = run(dse_models.main, [config])
    assert_one_line_error(r, "exceeds the cap of 200,000 layers", "QUANTDSE_MAX_LAYERS=N")
    assert time.perf_counter() - t0 < 20
    small, _ = write_tiny(tmp_path)
    monkeypatch.setenv("QUANTDSE_MAX_LAYERS", "10")
    assert_one_line_error(run(dse_models.main, [small]), "cap of 10 layers")
    monkeypatch.setenv("QUANTDSE_MAX_LAYERS", "100")
    assert run(dse_models.main, [small]).code == 0


def test_readme_raising_the_layer_cap(monkeypatch):
    """README: `QUANTDSE_MAX_LAYERS=500000 python -m dse.models deepseek-v3 --json > /dev/null`."""
    monkeypatch.setenv("QUANTDSE_MAX_LAYERS", "500000")
    r = run(dse_models.main, ["deepseek-v3", "--json"])
    assert r.code == 0 and len(json.loads(r.out)["layers"]) == 45153
    monkeypatch.setenv("QUANTDSE_MAX_LAYERS", "40000")
    assert_one_line_error(run(dse_models.main, ["deepseek-v3"]), "cap of 40,000 layers")


def test_thread_and_sweep_caps(tiny):
    folder, config, sens = tiny
    r = run(calibrate.main, ["--hw", "local", "--threads", str(10 ** 20)])
    assert_one_line_error(r, "--threads", "QUANTDSE_MAX_THREADS=N")
    r = run(pareto.main, search_args(config, sens, "--sweep", "memory=1e-6:5e3:1e-6", "--out", folder / "p.csv"))
    assert_one_line_error(r, "5e+09 points", "exceeds the cap of 10,000 points", "QUANTDSE_MAX_SWEEP_POINTS")
    assert not (folder / "p.csv").exists()


# ------------------------------------------------------------------ 9. messages that mislead

def test_infeasible_message_shows_the_difference(tiny):
    folder, config, sens = tiny
    r = run(search.main, search_args(config, sens, "--budget", "1bits"))
    least = float(r.err.split("smallest feasible ")[1].split("bits")[0])
    budget = least * (1 - 1e-7)
    r = run(search.main, search_args(config, sens, "--budget", f"{budget!r}bits"))
    assert_one_line_error(r, "below the smallest feasible")
    shown = r.err.split("bits limit ")[1].split("bits is below the smallest feasible ")
    assert shown[0] != shown[1].split("bits")[0], r.err


def test_sensitivity_aliases_are_canonical(tiny):
    folder, config, sens = tiny
    doc = json.loads(sens.read_text())
    doc["layers"] = {name: {{"int8": "INT8", "int4-g32": "Int4-G32"}.get(f, f): v for f, v in row.items()}
                     for name, row in doc["layers"].items()}
    sens.write_text(json.dumps(doc))
    r = run(search.main, search_args(config, sens, "--budget", "6bits", "--json"))
    assert r.code == 0, r.err
    plan = json.loads(r.out)
    check_plan(plan)
    assert {"int8", "int4-g32"} <= set(plan["formats"])
    name = next(iter(doc["layers"]))
    doc["layers"][name]["int8"] = 1.0  # INT8 and int8 in one row
    sens.write_text(json.dumps(doc))
    assert_one_line_error(run(search.main, search_args(config, sens, "--budget", "6bits")), "repeats 'int8'")
    doc["layers"][name] = {"int9-gx": 1.0}
    sens.write_text(json.dumps(doc))
    assert_one_line_error(run(search.main, search_args(config, sens, "--budget", "6bits")), f"layer {name}",
                          "unknown format 'int9-gx'")


def test_extends_chain_without_family_says_so(tmp_path):
    (tmp_path / "base.toml").write_text('schema = "hwmodels.spec/1"\nname = "base"\n[params]\n')
    (tmp_path / "mid.toml").write_text('schema = "hwmodels.spec/1"\nname = "mid"\nextends = "./base.toml"\n')
    (tmp_path / "top.toml").write_text('schema = "hwmodels.spec/1"\nname = "top"\nextends = "./mid.toml"\n')
    r = run(cost.main, ["--hw", tmp_path / "top.toml", "--gemm", "1,64,64", "--format", "int8"])
    assert_one_line_error(r, "family is missing: neither this spec nor the specs it extends", "mid.toml", "base.toml")


def test_extends_path_is_relative_to_the_spec(tmp_path, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mid.toml").write_text('schema = "hwmodels.spec/1"\nname = "mid"\nextends = "a100-80gb"\n'
                                    "[params]\nsustained_clock_hz = 1.0e9\n")
    (specs / "top.toml").write_text('schema = "hwmodels.spec/1"\nname = "top"\nextends = "./mid.toml"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from hwmodels.spec import load_spec

    spec = load_spec(str(specs / "top.toml"))
    assert spec.family == "gpu" and spec["sustained_clock_hz"] == 1.0e9


def test_pareto_writes_both_files_or_neither(tiny):
    folder, config, sens = tiny
    args = search_args(config, sens, "--sweep", "bits=3:6:1", "--out", folder / "p.csv")
    r = run(pareto.main, [*args, "--plot", folder / "missing" / "p.png"])
    assert_one_line_error(r, "output folder")
    assert not (folder / "p.csv").exists()
    r = run(pareto.main, [*args, "--plot", folder / "p.csv"])
    assert_one_line_error(r, "two outputs of this run")
    assert not (folder / "p.csv").exists() and no_temp_files(folder)

    def refuse(tmp):
        raise QuantDSEError("refused")

    with pytest.raises(QuantDSEError):
        atomic_write_files([(folder / "a.txt", "a"), (folder / "b.txt", "b")], check=refuse)
    assert not (folder / "a.txt").exists() and not (folder / "b.txt").exists() and no_temp_files(folder)


def test_pareto_error_is_one_line_without_progress_bar(tiny):
    folder, config, sens = tiny
    r = run(pareto.main, search_args(config, sens, "--sweep", "bits=3:6:1", "--method", "nosuch"))
    assert_one_line_error(r, "nosuch")


@pytest.mark.parametrize("hw_as_path, out_name", [(False, "a100-80gb.toml"), (True, "derived.toml")])
def test_calibrate_from_writes_a_spec_that_loads(tmp_path, monkeypatch, hw_as_path, out_name):
    from hwmodels.spec import SPEC_DIR, load_spec

    rows = [{"gemm": [m, 4096, 4096], "format": "int4-g128", "seconds": s}
            for m, s in ((1, 6e-5), (16, 7e-5), (256, 2.5e-4), (1024, 9e-4))]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    hw = "a100-80gb"
    if hw_as_path:
        mine = tmp_path / "targets"
        mine.mkdir()
        (mine / "my-a100.toml").write_text((SPEC_DIR / "a100-80gb.toml").read_text())
        hw = str(mine / "my-a100.toml")
    out = (tmp_path / "targets" if hw_as_path else tmp_path / "out") / out_name
    out.parent.mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)
    if hw_as_path:  # a spec extends only built-ins or files beside it: a derived spec of a spec file is whole
        (tmp_path / "out").mkdir()
        r = run(calibrate.main, ["--hw", hw, "--from", "m.json", "--out", tmp_path / "out" / out_name])
        assert r.code == 0, r.err
        elsewhere = (tmp_path / "out" / out_name).read_text()
        assert "extends" not in elsewhere and load_spec(str(tmp_path / "out" / out_name)).family == "gpu"
    r = run(calibrate.main, ["--hw", hw, "--from", "m.json", "--out", out, "--json"])
    assert r.code == 0, r.err
    monkeypatch.chdir(ROOT)
    spec = load_spec(str(out))
    assert spec.family == "gpu" and spec.name == out.stem
    r = run(calibrate.main, ["--hw", hw, "--from", tmp_path / "m.json", "--out", tmp_path / "m.json"])
    assert_one_line_error(r, "also an input")
