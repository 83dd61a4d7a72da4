"""Hostile input, round three (issue 23): one fast test per root cause, each fixed in the shared mechanism.

Model folders, caches, output paths, paths inside untrusted files, caps from the environment,
policies, figures, GPU energy readings. The contract is tests/hostile.py's: exit 0 with a
valid result, or exit 2 with one line `error: ...` on stderr, no output file.
(The plan-file surface is in tests/test_hostile_plans.py.)
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from dse import compare, evaluate, pareto, search, show
from hwmodels import cost, gpu_energy
from quantcore.errors import QuantDSEError
from quantcore.io import path_inside, read_input, safe_name
from quantcore.limits import CAP_CEILING, cap
from tests.conftest import ROOT, require
from tests.hostile import (assert_one_line_error, run, search_args, write_calib, write_tiny,
                           write_tiny_hf)


# ------------------------------------------------------------------ caps from the environment

def test_huge_cap_is_held_at_the_ceiling_and_reads_work(tiny, monkeypatch):
    folder, config, sens = tiny
    monkeypatch.setenv("QUANTDSE_MAX_JSON_BYTES", "1e20")  # was OverflowError in read(cap + 1)
    assert cap("json_bytes") == CAP_CEILING
    r = run(search.main, search_args(config, sens, "--budget", "6bits", "--json"))
    assert r.code == 0, r.err
    monkeypatch.setenv("QUANTDSE_MAX_JSON_BYTES", str(10 ** 40))
    assert read_input(config, "config") == config.read_bytes()


@pytest.mark.parametrize("value", ["", " ", "-1", "0", "1.5", "nan", "inf", "x", "1e400"])
def test_bad_or_empty_cap_is_one_line_naming_the_variable(tiny, monkeypatch, value):
    folder, config, sens = tiny
    monkeypatch.setenv("QUANTDSE_MAX_DEPTH", value)
    r = run(search.main, search_args(config, sens, "--budget", "6bits"))
    assert_one_line_error(r, "QUANTDSE_MAX_DEPTH=", "must be a positive integer")


def test_plans_compared_are_capped_and_the_cap_can_be_raised(tiny, monkeypatch):
    folder, config, sens = tiny
    plans = []
    for i, budget in enumerate(("4bits", "6bits", "8bits")):
        plans.append(folder / f"p{i}.json")
        assert run(search.main, search_args(config, sens, "--budget", budget, "--out", plans[-1])).code == 0
    monkeypatch.setenv("QUANTDSE_MAX_PLANS", "2")
    assert_one_line_error(run(compare.main, plans), "exceeds the cap of 2 plans", "QUANTDSE_MAX_PLANS=N")
    monkeypatch.setenv("QUANTDSE_MAX_PLANS", "3")
    assert run(compare.main, plans).code == 0


def test_calibration_texts_are_capped(tmp_path, monkeypatch):
    from dse.calibration import MAX_TEXT_CHARS, read_texts

    calib = tmp_path / "c.txt"
    calib.write_text("a b\n" * 5 + "x" * (3 * MAX_TEXT_CHARS) + "\n")
    monkeypatch.setenv("QUANTDSE_MAX_CALIB_TEXTS", "5")
    with pytest.raises(QuantDSEError, match=r"6\) exceeds the cap of 5 calibration texts.*QUANTDSE_MAX_CALIB_TEXTS"):
        read_texts(calib)
    monkeypatch.setenv("QUANTDSE_MAX_CALIB_TEXTS", "6")
    assert len(read_texts(calib)[-1]) == MAX_TEXT_CHARS  # one huge line is cut, not tokenized whole


# ------------------------------------------------------------------ special files never block

def test_fifo_inputs_are_refused_without_blocking(tiny):
    folder, config, sens = tiny
    fifo = folder / "fifo.json"
    os.mkfifo(fifo)
    assert_one_line_error(run(search.main, search_args(fifo, sens, "--budget", "6bits")), "not a regular file")
    assert_one_line_error(run(show.main, [fifo]), "not a regular file")
    policy = folder / "pol"
    _write_policy(policy)
    (policy / "policy.safetensors").unlink()
    os.mkfifo(policy / "policy.safetensors")
    r = run(search.main, search_args(config, sens, "--budget", "6bits", "--method", "rl", "--policy", policy))
    assert_one_line_error(r, "policy.safetensors", "not a regular file")


# ------------------------------------------------------------------ output paths

def test_empty_flag_values_are_errors_not_defaults(tiny, tmp_path, monkeypatch):
    folder, config, sens = tiny
    plan = folder / "plan.json"
    assert run(search.main, search_args(config, sens, "--budget", "6bits", "--out", plan)).code == 0
    from dse.export.__main__ import main as export_main

    r = run(export_main, ["--plan", plan, "--to", "llamacpp", "--out", ""])  # printed to stdout before
    assert_one_line_error(r, "--out is empty")
    assert r.out == ""
    from policies import train

    monkeypatch.chdir(tmp_path)
    r = run(train.main, ["--out", "", "--timesteps", "100"])  # wrote into the current folder before
    assert_one_line_error(r, "--out is empty")
    assert not (tmp_path / "policy.json").exists()
    assert_one_line_error(run(search.main, search_args(config, sens, "--budget", " ")), "--budget is empty")


def test_multi_target_out_names_cannot_leave_the_out_folder(tiny):
    folder, config, sens = tiny
    evil = folder / "evil.toml"
    spec = (ROOT / "hwmodels" / "specs" / "u280.toml").read_text()
    evil.write_text(spec.replace('name = "u280"', 'name = "../../x\\u0000y/z"'))
    assert 'name = "../../x' in evil.read_text()
    out = folder / "out"
    out.mkdir()
    r = run(search.main, ["--hw", f"a100-80gb,{evil}", "--model", config, "--sensitivity", sens,
                          "--budget", "6bits", "--out", out / "plan.json"])
    assert r.code == 0, r.err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["plan-_.._x_y_z.json", "plan-a100-80gb.json"], written  # one plain name part
    assert not (folder.parent / "x").exists()
    assert safe_name("..") == "unnamed" and safe_name("a/../b") == "a_.._b" and safe_name(".hidden") == "hidden"


def test_notebook_figures_go_to_a_private_new_folder(tmp_path, monkeypatch):
    from experiments import run_notebooks

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    planted = tmp_path / "quantdse-figures"  # the old predictable name, with a link planted at it
    planted.symlink_to(tmp_path / "victim")
    a, b = run_notebooks.default_figures(False), run_notebooks.default_figures(False)
    assert a != b and a.parent == tmp_path and a.is_dir() and not a.is_symlink()
    assert stat.S_IMODE(a.stat().st_mode) == 0o700
    assert not (tmp_path / "victim").exists()


def test_notebook_cell_error_is_one_line(tmp_path, monkeypatch):
    nbformat = require("nbformat")
    require("nbclient")
    from experiments import run_notebooks

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import warnings; warnings.warn('noise')\n1 / 0")]
    nbformat.write(nb, tmp_path / "99_broken.ipynb")
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setitem(run_notebooks.FIGURES, "99_broken", "x.png")
    r = run(run_notebooks.main, ["99_broken", "--figures", tmp_path])
    assert_one_line_error(r, "notebook 99_broken failed: ZeroDivisionError: division by zero")


# ------------------------------------------------------------------ paths inside untrusted files

def _spec_extending(folder: Path, extends: str) -> Path:
    path = folder / "top.toml"
    path.write_text(f'schema = "hwmodels.spec/1"\nname = "top"\nextends = {json.dumps(extends)}\n')
    return path


@pytest.mark.parametrize("extends, fragment", [
    ("/etc/passwd", "is an absolute path"),
    ("../outside.toml", "leads out of"),
    ("link/outside.toml", "leads out of"),
    ("passwd", "unknown hardware 'passwd'"),
])
def test_extends_stays_in_the_specs_folder(tmp_path, monkeypatch, extends, fragment):
    specs = tmp_path / "specs"
    specs.mkdir()
    outside = tmp_path / "outside.toml"
    outside.write_text((ROOT / "hwmodels" / "specs" / "u280.toml").read_text())  # a valid spec, but elsewhere
    (specs / "link").symlink_to(tmp_path)
    (tmp_path / "passwd").write_text(outside.read_text())
    monkeypatch.chdir(tmp_path)  # a bare name was looked up in the current folder too
    r = run(cost.main, ["--hw", _spec_extending(specs, extends), "--gemm", "1,64,64", "--format", "int8"])
    assert_one_line_error(r, fragment)


def test_extends_inside_the_folder_and_builtins_still_load(tmp_path):
    from hwmodels.spec import load_spec

    (tmp_path / "base.toml").write_text((ROOT / "hwmodels" / "specs" / "u280.toml").read_text())
    assert load_spec(str(_spec_extending(tmp_path, "./base.toml"))).family == load_spec("u280").family
    assert load_spec(str(_spec_extending(tmp_path, "a100-80gb"))).family == "gpu"


def test_plan_model_is_a_catalog_name_or_a_folder_beside_the_plan(tmp_path):
    plan = {"model": "../../../etc", "layers": []}
    with pytest.raises(QuantDSEError, match="leads out of"):
        evaluate.plan_model(plan, str(tmp_path / "plan.json"))
    with pytest.raises(QuantDSEError, match="absolute path"):
        evaluate.plan_model({"model": "/usr/lib"}, str(tmp_path / "plan.json"))
    assert evaluate.plan_model({"model": "All-MiniLM-L6-v2"}, "plan.json") == "all-minilm-l6-v2"
    assert evaluate.plan_model({"model": "tiny"}, str(tmp_path / "plan.json")) == str(tmp_path / "tiny")
    with pytest.raises(QuantDSEError, match="leads out of"):
        path_inside("a/../../b", tmp_path, "x")


# ------------------------------------------------------------------ policies

def _write_policy(folder: Path, hidden=(8,), **meta_changes) -> Path:
    from policies.env import N_FEATURES, FeatureScaler
    from policies.policy import save_policy

    rng = np.random.default_rng(0)
    sizes = [N_FEATURES, *hidden]
    tensors = {f"hidden.{i}.weight": rng.normal(size=(sizes[i + 1], sizes[i])).astype(np.float32)
               for i in range(len(hidden))}
    tensors.update({f"hidden.{i}.bias": np.zeros(sizes[i + 1], np.float32) for i in range(len(hidden))})
    tensors.update({"mu.weight": rng.normal(size=(1, sizes[-1])).astype(np.float32), "mu.bias": np.zeros(1, np.float32)})
    path = save_policy(folder, tensors, list(hidden), FeatureScaler(), "test", {"seed": 0})
    if meta_changes:
        meta = json.loads(path.read_text())
        for dotted, value in meta_changes.items():
            *parents, key = dotted.split("__")
            node = meta
            for p in parents:
                node = node[p]
            node[key] = value
        path.write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("changes, fragment", [
    ({"architecture__features": 12.5}, "architecture.features"),
    ({"architecture__features": "12"}, "architecture.features"),
    ({"architecture__hidden": [8.7]}, "architecture.hidden"),
    ({"architecture__hidden": [10 ** 9]}, "architecture.hidden"),
    ({"normalisation__mean": {"a": 1}}, "normalisation.mean"),
    ({"normalisation__std": ["1"] * 12}, "normalisation.std"),
    ({"safetensors_sha256": 5}, '"safetensors_sha256", "name" and "hash" must be strings'),
])
def test_policy_json_is_type_checked(tmp_path, changes, fragment):
    from policies.policy import load_policy

    with pytest.raises(QuantDSEError, match=fragment.replace("[", r"\[").replace(".", r"\.")) as info:
        load_policy(_write_policy(tmp_path / "p", **changes))
    assert "\n" not in str(info.value)


def test_policy_tensors_must_be_float32_bf16_is_refused(tmp_path):
    torch = require("torch")
    from safetensors.torch import save

    from policies.policy import load_policy

    folder = _write_policy(tmp_path / "p")
    meta = json.loads((folder / "policy.json").read_text())
    from safetensors.numpy import load

    tensors = load((folder / "policy.safetensors").read_bytes())
    for dtype in (torch.bfloat16, torch.float16):
        blob = save({k: torch.from_numpy(v).to(dtype) for k, v in tensors.items()})
        (folder / "policy.safetensors").write_bytes(blob)
        meta["safetensors_sha256"] = hashlib.sha256(blob).hexdigest()  # damage the hash cannot see
        (folder / "policy.json").write_text(json.dumps(meta))
        with pytest.raises(QuantDSEError, match="float32"):
            load_policy(folder)


def test_solver_set_without_value_is_one_line(tiny):
    folder, config, sens = tiny
    for args in (["--set", "polish"], ["--set", "polish_seconds=1e400"], ["--set", " polish = maybe"]):
        r = run(search.main, search_args(config, sens, "--budget", "6bits", "--method", "rl", *args))
        assert_one_line_error(r, "polish")


def test_pareto_rl_honours_policy_and_solver_set_keys(tiny):
    folder, config, sens = tiny
    base = search_args(config, sens, "--sweep", "bits=4:8:2", "--method", "rl")
    assert_one_line_error(run(pareto.main, base + ["--policy", folder / "nosuch"]), "no such policy")
    assert_one_line_error(run(pareto.main, base + ["--set", "polish=maybe"]), "polish")
    raw = run(pareto.main, base + ["--set", "polish=false", "--json"])
    polished = run(pareto.main, base + ["--json"])
    assert raw.code == polished.code == 0, raw.err + polished.err
    errors = [[r["error"] for r in json.loads(x.out) if r["status"] != "infeasible"] for x in (raw, polished)]
    assert all(p <= r * (1 + 1e-12) for r, p in zip(*errors))  # polish never raises the error


@pytest.mark.parametrize("flags, fragment", [
    (["--seed", "-1"], "--seed"), (["--gamma", "nan"], "--gamma"), (["--gamma", "1.5"], "--gamma"),
    (["--bc-episodes", "-3"], "--bc-episodes"), (["--timesteps", "99"], "--timesteps"),
    (["--deviation-cost", "inf"], "--deviation-cost"), (["--models", "resnet-50,"], "empty name"),
])
def test_train_flags_are_checked_before_training(tmp_path, flags, fragment):
    from policies import train

    r = run(train.main, ["--out", tmp_path / "p", *flags])
    assert_one_line_error(r, fragment)
    assert not (tmp_path / "p").exists()


def test_train_out_is_checked_before_training(tmp_path):
    from policies import train

    (tmp_path / "file").write_text("x")
    assert_one_line_error(run(train.main, ["--out", tmp_path / "file"]), "is a file")
    assert_one_line_error(run(train.main, ["--out", tmp_path / "no" / "p"]), "does not exist")


def test_measured_options_are_range_checked():
    from policies.measured import _int_option

    for value in ("1e12", "0", "-2", "x", ""):
        with pytest.raises(QuantDSEError, match=r"--set episodes=.*\[1, 100,000\]"):
            _int_option({"episodes": value}, "episodes")
    assert _int_option({"episodes": "12"}, "episodes") == 12


# ------------------------------------------------------------------ figures, GPU energy, warnings

def test_dollar_signs_in_names_are_drawn_as_text(tiny):
    folder, config, sens = tiny
    plan = folder / "plan.json"
    assert run(search.main, search_args(config, sens, "--budget", "6bits", "--out", plan)).code == 0
    doc = json.loads(plan.read_text())
    doc["model"], doc["hardware"] = r"$\frac{a}{$x", r"$\undefined{$ $^$"
    plan.write_text(json.dumps(doc))
    r = run(show.main, [plan, "--plot", folder / "plan.png"])
    assert r.code == 0, r.err
    assert (folder / "plan.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("key, value, fragment", [
    ("seconds_per_pass", 1e-320, "seconds_per_pass must be a number in"),
    ("joules_per_pass", 0.0, "joules_per_pass must be a number in"),
    ("idle_power_w", "124", "idle_power_w must be a number in"),
    ("gpu", ["H200"], "gpu must be the card's name"),
])
def test_gpu_energy_compare_checks_every_reading(tmp_path, key, value, fragment):
    doc = json.loads((ROOT / "tests" / "data" / "gpu_energy_h200.json").read_text())
    if key in ("seconds_per_pass", "joules_per_pass"):
        doc["workloads"]["decode"][key] = value
    else:
        doc[key] = value
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    assert_one_line_error(run(gpu_energy.main, ["--compare", path, "--json"]), fragment)


def test_library_warnings_never_precede_the_error_line():
    def main(argv):
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero
        warnings.warn("a library's warning")
        raise QuantDSEError("bad input: fix it")

    assert_one_line_error(run(main, []), "bad input: fix it")


# ------------------------------------------------------------------ model folders (transformers)

@pytest.fixture(scope="module")
def hf_base(tmp_path_factory):
    require("transformers")
    base = write_tiny_hf(tmp_path_factory.mktemp("hf") / "tiny")
    return base


@pytest.fixture
def hf(hf_base, tmp_path):
    """A fresh copy of the tiny checkpoint (folder named tiny) and calibration texts."""
    from dse import hfmodel

    hfmodel._ENCODERS.clear()
    folder = tmp_path / "m" / "tiny"
    shutil.copytree(hf_base, folder)
    return folder, write_calib(tmp_path / "calib.txt")


def _embed(folder: Path, calib: Path):
    from dse import hfmodel
    from dse.calibration import read_texts

    hfmodel._ENCODERS.clear()
    enc = hfmodel.load_encoder(str(folder))
    return enc.embed(enc.batches(read_texts(calib)))


def test_only_safetensors_is_read_never_the_pickle_beside_it(hf, tmp_path, monkeypatch):
    """A pytorch_model.bin that runs code when unpickled, beside the weights as other.safetensors
    (and named by config.json's transformers_weights): the embeddings are the safetensors'."""
    torch = require("torch")
    folder, calib = hf
    reference = _embed(folder, calib)
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    (folder / "model.safetensors").rename(folder / "other.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "transformers_weights": "pytorch_model.bin"}))

    def refuse(*args, **kwargs):
        raise AssertionError("an unpickler was called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    got = _embed(folder, calib)
    assert torch.equal(got, reference)
    assert not marker.exists()


def test_folder_with_only_pickles_is_refused_with_how_to_convert(hf):
    folder, calib = hf
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even read")
    r = run(search.main, ["--hw", "u280", "--model", folder, "--sensitivity", "output", "--calib", calib,
                          "--budget", "6bits"])
    assert_one_line_error(r, "only pickled weights (pytorch_model.bin)", "save_pretrained")


def _config(folder: Path, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("damage, fragment", [
    (lambda f: (f / "tokenizer.json").write_text("{not json"), "tokenizer.json"),
    (lambda f: (f / "tokenizer.json").write_bytes(b"\xff\xfe" * 10), "tokenizer.json"),
    (lambda f: _config(f, hidden_size=48), "tensor shapes differ from the ones config.json gives"),
    (lambda f: _config(f, num_hidden_layers=3), "has no tensor encoder.layer.2"),
    (lambda f: _config(f, model_type="nosuch"), "config.json: ValueError"),
    (lambda f: _config(f, num_attention_heads=3), "config.json and model.safetensors"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
     "model.safetensors: SafetensorError"),
])
def test_damaged_model_folder_is_one_line_naming_folder_and_file(hf, damage, fragment):
    folder, calib = hf
    damage(folder)
    with pytest.raises(QuantDSEError) as info:  # transformers / tokenizers meet the files
        _embed(folder, calib)
    assert fragment in str(info.value) and f"model folder {folder}" in str(info.value)
    assert "\n" not in str(info.value)
    r = run(search.main, ["--hw", "u280", "--model", folder, "--sensitivity", "output", "--calib", calib,
                          "--budget", "6bits"])  # whichever check meets the damage first names the folder
    assert_one_line_error(r, str(folder))


def test_token_ids_beyond_the_embeddings_are_refused(tmp_path):
    require("transformers")
    from dse import hfmodel

    folder = write_tiny_hf(tmp_path / "tiny", vocab=20)  # tokenizer: 40 ids, embeddings: 20 rows
    calib = write_calib(tmp_path / "calib.txt")
    hfmodel._ENCODERS.clear()
    r = run(search.main, ["--hw", "u280", "--model", folder, "--sensitivity", "output", "--calib", calib,
                          "--budget", "6bits"])
    assert_one_line_error(r, "tokenizer.json has 40 tokens but the model's embedding table 20 rows")


def test_texts_are_cut_at_the_models_own_max_positions(tmp_path):
    require("transformers")
    from dse import hfmodel

    folder = write_tiny_hf(tmp_path / "tiny", max_positions=16)
    calib = write_calib(tmp_path / "calib.txt", words=40)  # 40+ tokens per text, 16 positions
    hfmodel._ENCODERS.clear()
    enc = hfmodel.load_encoder(str(folder))
    assert enc.max_tokens == 16
    from dse.calibration import read_texts

    batches = enc.batches(read_texts(calib))
    assert max(b.ids.shape[1] for b in batches) == 16
    assert enc.embed(batches).shape == (6, 32)


# ------------------------------------------------------------------ caches

def test_tampered_sensitivity_cache_is_measured_again_with_a_notice(hf, tmp_path, monkeypatch, capsys):
    from dse import hfmodel
    from dse.calibsens import calibration_table
    from quantcore.formats import get_format

    folder, calib = hf
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    formats = [get_format(f) for f in ("int4-g32", "int8")]
    fresh, info = calibration_table("output", str(folder), formats, calib)
    assert not info["cached"]
    path = Path(info["cache"])
    doc = json.loads(path.read_text())
    first = next(iter(doc["layers"]))
    for bad in ("0.5", -1.0, None, [1], float("inf")):
        doc["layers"][first]["int8"] = bad
        path.write_text(json.dumps(doc))
        hfmodel._ENCODERS.clear()
        table, info = calibration_table("output", str(folder), formats, calib)
        assert not info["cached"] and table == fresh
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"notice: sensitivity cache {path} is not usable")
    _, info = calibration_table("output", str(folder), formats, calib)
    assert info["cached"]  # the entry written again is good


def test_tampered_local_calibration_is_refused(monkeypatch):
    """Costing never measures: a cached calibration that cannot cost is one line naming the command."""
    from hwmodels import calibration_cache
    from hwmodels.registry import load_model
    from tests.test_local import _synthetic_calibration

    good = _synthetic_calibration(threads=1)
    bad = json.loads(json.dumps(good))
    name = next(iter(bad["kernels"]))
    regime = next(iter(bad["kernels"][name]["fits"]))
    bad["kernels"][name]["fits"][regime]["bytes_per_s"] = "fast"
    monkeypatch.setattr(calibration_cache, "load_calibration", lambda threads, device: bad)
    with pytest.raises(QuantDSEError, match="bytes_per_s = fast is not a finite number.*hwmodels.calibrate --hw local"):
        load_model("local", ["threads=1"]).calibration
    monkeypatch.setattr(calibration_cache, "load_calibration", lambda threads, device: good)
    assert load_model("local", ["threads=1"]).calibration is good
    monkeypatch.setattr(calibration_cache, "load_calibration", lambda threads, device: bad)
    r = run(cost.main, ["--hw", "local", "--set", "threads=1", "--gemm", "1,64,64", "--format", "int8"])
    assert_one_line_error(r, "cached calibration of --hw local is not usable")


# ------------------------------------------------------------------ docs/security.md

SECURITY = ROOT / "docs" / "security.md"


def test_security_page_lists_every_cap_with_its_default():
    """The caps table against the code's CAPS (variable and default, in the page's units)."""
    from quantcore.limits import CAPS

    rows = {line.split("|")[3].strip(" `"): line.split("|")[2].strip()
            for line in SECURITY.read_text().splitlines() if line.startswith("| ") and "QUANTDSE_MAX_" in line}
    shown = {"1 GiB": 1 << 30, "16 MiB": 16 << 20, "4 x CPU cores": 4 * (os.cpu_count() or 1)}
    assert set(rows) == {c.env for c in CAPS.values()}
    for c in CAPS.values():
        assert shown.get(rows[c.env], None) == c.default or rows[c.env] == f"{c.default:,}", (c.env, rows[c.env])


def test_security_page_commands_print_what_it_shows(tmp_path):
    """Each `$ command` of the page, run in a folder with a plan.json, prints the line shown under it."""
    import subprocess
    import sys

    config, sens = write_tiny(tmp_path)
    assert run(search.main, search_args(config, sens, "--budget", "6bits", "--out", tmp_path / "plan.json")).code == 0
    lines = SECURITY.read_text().splitlines()
    commands = [(lines[i][2:], lines[i + 1]) for i in range(len(lines)) if lines[i].startswith("$ ")]
    assert len(commands) == 2
    for command, expected in commands:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        words = command.split()
        while "=" in words[0]:
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        done = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 2 and done.stderr == expected + "\n", (command, done.stderr)
        assert not (tmp_path / "my-policy").exists()


# ------------------------------------------------------------------ a plan's model source

def test_export_reads_a_plans_model_only_inside_the_plans_folder(tiny, tmp_path_factory):
    """provenance.model_source is untrusted: beside the plan it is read, elsewhere it is refused."""
    from dse.export.__main__ import main as export_main

    folder, config, sens = tiny
    plan = folder / "plan.json"
    assert run(search.main, search_args(config, sens, "--budget", "4.5bits", "--out", plan)).code == 0
    out = folder / "types.txt"
    assert run(export_main, ["--plan", plan, "--to", "llamacpp", "--out", out, "--nearest"]).code == 0 and out.exists()
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "plan.json"
    shutil.copy(plan, elsewhere)  # the same plan, away from the model it names
    moved_out = elsewhere.parent / "types.txt"
    r = run(export_main, ["--plan", elsewhere, "--to", "llamacpp", "--out", moved_out, "--nearest"])
    assert_one_line_error(r, "provenance.model_source")
    assert not moved_out.exists()
