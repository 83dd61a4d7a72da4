"""Property-based fuzzing of the CLIs' inputs (issue 13).

Random budgets, flags, config values, corrupted safetensors, sensitivity and spec files,
and output paths. The contract, whatever arrives: exit 0 with a valid result (a plan
within its budget, finite non-negative costs), or exit 2 with exactly one stderr line
`error: ...`, no output file, no temp file, inputs untouched. Anything else (a traceback,
another exit code) fails. Runs in-process through run_cli; derandomized, so CI sees the
same cases every time. Case counts: EXAMPLES below (1,400 in all, and 1,280 more for round three:
plans, model folders, caches, resume CSVs, policies, spec `extends`, environment caps).
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dse import compare, evaluate, show
from dse import models as dse_models
from dse import search
from hwmodels import cost
from hwmodels.spec import SPEC_DIR
from quantcore.limits import CAP_CEILING, CAPS, cap
from tests.conftest import require
from tests.hostile import (TINY, TINY_FORMATS, assert_one_line_error, check_plan, no_temp_files, run, set_error,
                           write_calib, write_tiny, write_tiny_hf)

pytestmark = pytest.mark.slow

EXAMPLES = {"search": 300, "config": 300, "safetensors": 400, "sensitivity": 100, "cost": 200, "spec": 100,
            # round three (issue 23): 1,280 more
            "plan": 250, "model_folder": 100, "sens_cache": 80, "local_cache": 200, "resume_csv": 100,
            "policy": 200, "extends": 150, "env_caps": 200}


def fuzz(name: str):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def check_contract(r, out: Path | None, inputs: dict[Path, bytes]) -> None:
    """Exit 0, or exit 2 with one line and no output; inputs never change; no temp file anywhere."""
    assert r.code in (0, 2), (r.code, r.err[-3000:])
    event(f"exit {r.code}")
    if r.code == 2:
        assert_one_line_error(r)
        if out is not None and out not in inputs:
            assert not out.exists(), f"{out} left behind"
    else:
        assert "Traceback" not in r.err
    for path, data in inputs.items():
        assert path.read_bytes() == data, f"{path} changed"
        assert no_temp_files(path.parent)


# ------------------------------------------------------------------ strategies

numbers = st.one_of(
    st.integers(-10 ** 25, 10 ** 25), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 63, 10 ** 20, 1e-320, 1e308, 0.5, 3.7, 64, 65]))
budget_text = st.one_of(
    st.builds(lambda v, u, sp: f"{v}{sp}{u}", numbers,
              st.sampled_from(["bits", "bit", "GB", "MB", "GiB", "kB", "B", "ms", "s", "us", "mJ", "J", "Gb", "",
                               "BITS"]), st.sampled_from(["", " "])),
    st.sampled_from(["3.7 bits", "4bits", "6bits", "16bits", "0.0001GB", "1ms", "100ms", "1e3mJ", "inf bits",
                     "nan GB", "0x3bits", "-4bits", "1e300GB", "4 bits 4", ""]),
    st.text(max_size=10))
int_text = st.one_of(st.integers(-10 ** 22, 10 ** 22).map(str), st.sampled_from(["1", "2048", "1e20", "x", "", "-0"]),
                     st.text(max_size=6))
float_text = st.one_of(numbers.map(str), st.text(max_size=6))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 45, 2 ** 45), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8), st.sampled_from([0, 1, -4, 2 ** 40, 4096, 64, 3, 4, 2, 128])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


def out_choice(folder: Path, choice: str, inputs: list[Path]) -> str:
    return {"plan": str(folder / "plan.json"), "nested": str(folder / "no" / "plan.json"), "empty": "",
            "slash": str(folder / "sub") + "/", "folder": str(folder), "devnull": "/dev/null",
            "input": str(inputs[0]), "proc": "/proc/plan.json"}[choice]


OUTS = st.one_of(st.just("plan"), st.just("plan"),
                 st.sampled_from(["nested", "empty", "slash", "folder", "devnull", "input", "proc"]))
valid_budgets = st.one_of(
    st.builds(lambda v, u: f"{v:.3g}{u}", st.floats(0.5, 20), st.sampled_from(["bits", " bits"])),
    st.builds(lambda v: f"{v:.3g}GB", st.floats(1e-5, 1e-3)),
    st.builds(lambda v: f"{v:.3g}ms", st.floats(1e-3, 1.0)),
    st.builds(lambda v: f"{v:.3g}mJ", st.floats(1e-3, 10.0)))
#: flag -> a mostly valid value, else anything
FLAG_VALUES = {
    "--seq": st.integers(1, 8192).map(str), "--batch": st.integers(1, 64).map(str),
    "--seed": st.integers(0, 2 ** 32 - 1).map(str), "--kv-bits": st.sampled_from(["16", "8", "4"]),
    "--max-latency-ms": st.floats(1e-4, 100).map(str), "--max-energy-mj": st.floats(1e-4, 100).map(str),
    "--max-memory-gb": st.floats(1e-6, 1e-2).map(str), "--phase": st.sampled_from(["prefill", "decode"]),
    "--method": st.sampled_from(["ilp", "greedy", "uniform", "lagrangian"]),
    "--formats": st.sampled_from(["int8,fp16", "int2-g32,int4-g32", "int4-g32,int8,fp16"]),
}
flag_sets = st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.none(), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.one_of(FLAG_VALUES[k], FLAG_VALUES[k], FLAG_VALUES[k], int_text, float_text)
                                        for k in keys}))


# ------------------------------------------------------------------ dse.search: budgets, flags, --out

@fuzz("search")
@given(budget=st.one_of(valid_budgets, valid_budgets, valid_budgets, st.none(), budget_text),
       flags=flag_sets, out=OUTS, json_flag=st.booleans())
def test_fuzz_search(budget, flags, out, json_flag):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, sens = write_tiny(folder)
        inputs = {p: p.read_bytes() for p in (config, sens)}
        target = out_choice(folder, out, [config, sens])
        argv = ["--hw", "u280", "--model", config, "--sensitivity", sens, "--out", target]
        if budget is not None:
            argv += ["--budget", budget]
        for flag, value in flags.items():
            argv += [flag, value]
        if json_flag:
            argv.append("--json")
        r = run(search.main, argv)
        check_contract(r, Path(target) if out in ("plan", "nested") else None, inputs)
        if r.code == 0:
            assert out == "plan", f"--out {target!r} was accepted"
            plan = json.loads(Path(target).read_text())
            check_plan(plan)
            if json_flag:
                assert json.loads(r.out) == plan


# ------------------------------------------------------------------ configs with hostile values

KEYS = sorted(set(TINY) | {"head_dim", "tie_word_embeddings", "attention_bias", "max_position_embeddings",
                           "num_local_experts", "num_experts_per_tok", "unknown_key"})


@fuzz("config")
@given(changes=st.dictionaries(st.sampled_from(KEYS), st.one_of(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256]),
                                                                st.integers(1, 512), json_values),
                               min_size=1, max_size=3),
       model_type=st.sampled_from(["llama", "llama", "mistral", "qwen2", "mixtral", "phi", "opt", "bert", "gpt9"]))
def test_fuzz_config_values(changes, model_type):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = {**TINY, "model_type": model_type, "num_local_experts": 4, "num_experts_per_tok": 2, "ffn_dim": 128,
               "max_position_embeddings": 64}
        cfg.update(changes)
        config = folder / "config.json"
        config.write_text(json.dumps(cfg))
        inputs = {config: config.read_bytes()}
        r = run(dse_models.main, [config, "--json"])
        check_contract(r, None, inputs)
        if r.code != 0:
            return
        graph = json.loads(r.out)
        assert all(layer["params"] >= 0 for layer in graph["layers"])
        out = folder / "plan.json"
        r = run(search.main, ["--hw", "a100-80gb", "--model", config, "--sensitivity", "prior", "--formats",
                              "int4-g32,int8,fp16", "--budget", "8bits", "--max-latency-ms", "1000", "--out", out])
        check_contract(r, out, inputs)
        if r.code == 0:
            check_plan(json.loads(out.read_text()))
        else:
            assert not out.exists()


# ------------------------------------------------------------------ corrupted safetensors: never laxer than the library

def _valid_file() -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    return save({"a.weight": rng.standard_normal((4, 8)).astype(np.float32),
                 "b.bias": rng.standard_normal(3).astype(np.float16)})


VALID = _valid_file()
HEADER_LEN = struct.unpack("<Q", VALID[:8])[0]
HEADER = json.loads(VALID[8:8 + HEADER_LEN])


def _library_accepts(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():
                handle.get_tensor(key)
        return True
    except Exception:  # noqa: BLE001 - any refusal by the library counts
        return False


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(VALID) - 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID) - 1), st.just(0)),
    st.tuples(st.just("append"), st.integers(1, 64), st.just(0)),
    st.tuples(st.just("field"), st.sampled_from(["a.weight", "b.bias"]),
              st.tuples(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]), json_values)),
    st.tuples(st.just("length"), st.integers(0, 2 ** 64 - 1), st.just(0)))


@fuzz("safetensors")
@given(steps=st.lists(mutations, min_size=1, max_size=3))
def test_fuzz_safetensors_never_laxer_than_the_library(steps):
    data = bytearray(VALID)
    header = json.loads(json.dumps(HEADER))
    for kind, a, b in steps:
        if kind == "field":
            header[a][b[0]] = b[1]
            raw = json.dumps(header).encode()
            data = bytearray(struct.pack("<Q", len(raw)) + raw + VALID[8 + HEADER_LEN:])
        elif kind == "flip" and a < len(data):
            data[a] ^= b
        elif kind == "truncate":
            data = data[:a]
        elif kind == "append":
            data += bytes(a)
        elif kind == "length" and len(data) >= 8:
            data[:8] = struct.pack("<Q", a)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(bytes(data))
        r = run(dse_models.main, [path, "--json"])
        check_contract(r, None, {path: bytes(data)})
        if not _library_accepts(path):
            assert r.code == 2, "our header check accepted a file the safetensors library refuses"
        if r.code == 0:
            assert _library_accepts(path)


# ------------------------------------------------------------------ sensitivity files

@fuzz("sensitivity")
@given(edit=st.one_of(
    st.tuples(st.just("value"), st.integers(0, 14), st.sampled_from(TINY_FORMATS + ("INT8", "Int4-G32", "int9")),
              st.one_of(st.floats(0, 1e3), st.floats(0, 1e3), json_values)),
    st.tuples(st.just("truncate"), st.integers(0, 2000), st.none(), st.none()),
    st.tuples(st.just("doc"), st.none(), st.none(), json_values)),
    budget=st.sampled_from(["3bits", "6bits", "16bits", "0.0001GB"]))
def test_fuzz_sensitivity_file(edit, budget):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, sens = write_tiny(folder)
        doc = json.loads(sens.read_text())
        kind, i, fmt, value = edit
        if kind == "value":
            set_error(doc, i, fmt, value)
            sens.write_text(json.dumps(doc))
        elif kind == "truncate":
            sens.write_text(sens.read_text()[:i])
        else:
            sens.write_text(json.dumps(value))
        inputs = {p: p.read_bytes() for p in (config, sens)}
        out = folder / "plan.json"
        r = run(search.main, ["--hw", "u280", "--model", config, "--sensitivity", sens, "--budget", budget,
                              "--out", out])
        check_contract(r, out, inputs)
        if r.code == 0:
            check_plan(json.loads(out.read_text()))
        else:
            assert not out.exists()


# ------------------------------------------------------------------ hwmodels.cost flags and --set overrides

@fuzz("cost")
@given(gemm=st.one_of(st.tuples(*[st.integers(1, 8192)] * 3).map(lambda t: ",".join(map(str, t))),
                      st.tuples(*[st.integers(1, 8192)] * 3).map(lambda t: ",".join(map(str, t))),
                      st.tuples(numbers, numbers, numbers).map(lambda t: ",".join(map(str, t))),
                      st.sampled_from(["1,4096,4096", "64,64,64", "1,x,4", "", "1,2"]), st.text(max_size=8)),
       fmt=st.sampled_from(["int8", "int4-g128", "fp16", "nf4", "INT8", "q4_k", "bogus", "int4-g128-a8"]),
       hw=st.sampled_from(["a100-80gb", "u280", "systolic", "rpi5", "bitmod"]),
       sets=st.lists(st.tuples(st.sampled_from(["rows", "cols", "sustained_clock_hz", "clock_hz", "dataflow",
                                                "memory_capacity_bytes", "dram_bytes_per_s", "nope"]),
                               st.one_of(float_text, st.sampled_from(["os", "ws", "true", "32", "1e9", "2e12"]))),
                     max_size=2),
       workload=st.dictionaries(st.sampled_from(["--batch", "--seq", "--kv-bits", "--phase"]),
                                st.one_of(int_text, st.sampled_from(["prefill", "decode", "1", "512", "8"])),
                                max_size=2))
def test_fuzz_cost(gemm, fmt, hw, sets, workload):
    argv = ["--hw", hw, "--gemm", gemm, "--format", fmt, "--json"]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    for flag, value in workload.items():
        argv += [flag, value]
    r = run(cost.main, argv)
    check_contract(r, None, {})
    if r.code == 0:
        doc = json.loads(r.out)
        for key in ("cycles", "latency_s", "energy_j", "bytes"):
            assert math.isfinite(doc[key]) and doc[key] >= 0, (key, doc[key])


# ------------------------------------------------------------------ hardware spec files

SPEC_LINES = (SPEC_DIR / "a100-80gb.toml").read_text().splitlines()


@fuzz("spec")
@given(line=st.integers(0, len(SPEC_LINES) - 1),
       edit=st.one_of(st.sampled_from(["= -1", "= 1e308", "= nan", "= inf", '= "x"', "= [1, [2]]", "= {a = 1}",
                                        "= true", "= 0", "[[", "extends = 'a100-80gb.toml'", 'family = "cpu"']),
                      st.text(max_size=12)))
def test_fuzz_spec_file(line, edit):
    lines = list(SPEC_LINES)
    if "=" in lines[line] and edit.startswith("="):
        lines[line] = lines[line].split("=", 1)[0] + edit
    else:
        lines.insert(line, edit)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "a100-80gb.toml"
        spec.write_text("\n".join(lines) + "\n")
        r = run(cost.main, ["--hw", spec, "--gemm", "16,4096,4096", "--format", "int4-g128", "--json"])
        check_contract(r, None, {spec: spec.read_bytes()})
        if r.code == 0:
            doc = json.loads(r.out)
            assert math.isfinite(doc["latency_s"]) and doc["latency_s"] >= 0


# ================================================================== round three (issue 23)
# Plans, model folders, caches, resume CSVs, policies, spec `extends` and environment caps.

@contextlib.contextmanager
def environ(**values):
    """Set environment variables for one generated case, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@functools.lru_cache(maxsize=None)
def _base_folder(name: str) -> Path:
    """A folder built once per session (tiny plans, checkpoints, sweeps), copied by each case."""
    folder = Path(tempfile.mkdtemp(prefix=f"quantdse-fuzz-{name}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _good_plan() -> Path:
    from dse import search as dse_search

    folder = _base_folder("plan")
    plan = folder / "plan.json"
    if not plan.exists():
        config, sens = write_tiny(folder)
        r = run(dse_search.main, ["--hw", "u280", "--model", config, "--sensitivity", sens, "--budget", "6bits",
                                  "--out", plan])
        assert r.code == 0, r.err
    return plan


# ------------------------------------------------------------------ plan files (needs dse.plan's schema reader)

PLAN_FIELDS = {"top": ("model", "hardware", "schema", "totals", "layers", "budget", "workload"),
               "totals": ("effective_bits", "memory_bytes", "latency_s", "energy_j", "error"),
               "layer": ("name", "format", "bits", "params", "error", "latency_s", "energy_j")}


def _json_type(value) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)[:4]
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


plan_edits = st.one_of(
    st.tuples(st.just("top"), st.sampled_from(PLAN_FIELDS["top"]), json_values),
    st.tuples(st.just("totals"), st.sampled_from(PLAN_FIELDS["totals"]), json_values),
    st.tuples(st.just("layer"), st.sampled_from(PLAN_FIELDS["layer"]), json_values),
    st.tuples(st.just("delete"), st.sampled_from(PLAN_FIELDS["layer"] + PLAN_FIELDS["totals"]), st.none()),
    st.tuples(st.just("duplicate"), st.integers(0, 14), st.none()),
    st.tuples(st.just("number"), st.sampled_from(PLAN_FIELDS["layer"][2:] + PLAN_FIELDS["totals"]),
              st.sampled_from([-1, -1e-300, 1e308, 2 ** 70, 0.5])))


@fuzz("plan")
@given(edits=st.lists(st.tuples(st.integers(0, 14), plan_edits), min_size=1, max_size=3))
def test_fuzz_plan_file_schema(edits):
    """show, compare, export and evaluate on a damaged plan: the contract, and a field of the wrong
    JSON type, a deleted field or a duplicated layer is refused by every one of them."""
    from dse.export.__main__ import main as export_main

    good = _good_plan()
    doc = json.loads(good.read_text())
    must_refuse = False
    for index, (kind, key, value) in edits:
        layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
        layer = layers[index % len(layers)] if layers and isinstance(layers[index % len(layers)], dict) else None
        if kind == "top":
            target = doc
        elif kind == "totals":
            target = doc.get("totals") if isinstance(doc.get("totals"), dict) else None
        elif kind == "number" and key in PLAN_FIELDS["totals"]:  # a number where the totals hold one
            target = doc.get("totals") if isinstance(doc.get("totals"), dict) else None
        elif kind in ("layer", "number"):
            target = layer
        elif kind == "delete":
            target = layer if key in PLAN_FIELDS["layer"] else doc.get("totals")
            if isinstance(target, dict) and key in target:
                del target[key]
                must_refuse = True
            continue
        else:  # duplicate
            if layer is not None:
                layers.append(dict(layer))
                must_refuse = True
            continue
        if not isinstance(target, dict):
            continue
        old = target.get(key)
        target[key] = value
        if key in PLAN_FIELDS["layer"] + PLAN_FIELDS["totals"] + ("model", "hardware", "totals", "layers") and \
                _json_type(value) != _json_type(old) and key != "schema":
            must_refuse = True
        if kind == "number" and key == "params" and (value != int(value) or value < 0):
            must_refuse = True
    event(f"must refuse: {must_refuse}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan = folder / "plan.json"
        plan.write_text(json.dumps(doc))
        inputs = {plan: plan.read_bytes()}
        runs = {"show": (show.main, [plan, "--plot", folder / "out.png"], folder / "out.png"),
                "compare": (compare.main, [good, plan, "--json"], None),
                "export": (export_main, ["--plan", plan, "--to", "llamacpp", "--out", folder / "out.txt"],
                           folder / "out.txt"),
                "evaluate": (evaluate.main, ["--plan", plan, "--calib", folder / "missing.txt"], None)}
        for tool, (main, argv, out) in runs.items():
            r = run(main, argv)
            check_contract(r, out, inputs)
            if must_refuse:
                assert r.code == 2 and str(plan) in r.err, (tool, r.err[-500:])


# ------------------------------------------------------------------ model folders (transformers)

def _hf_base() -> Path:
    folder = _base_folder("hf") / "tiny"
    if not folder.exists():
        write_tiny_hf(folder)
        write_calib(folder.parent / "calib.txt")
    return folder


HF_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
           "max_position_embeddings", "model_type", "type_vocab_size", "layer_norm_eps", "transformers_weights",
           "architectures", "torch_dtype", "pad_token_id")
folder_edits = st.one_of(
    st.tuples(st.just("config"), st.sampled_from(HF_KEYS),
              st.one_of(st.sampled_from([1, 2, 8, 16, 32, 48, 64, 3, 0, -1, "bert", "llama", "pytorch_model.bin"]),
                        json_values)),
    st.tuples(st.sampled_from(["tokenizer.json", "model.safetensors", "config.json"]),
              st.sampled_from(["truncate", "flip"]), st.integers(0, 100_000)),
    st.tuples(st.just("pickle"), st.sampled_from(["beside", "instead", "renamed"]), st.none()))


@fuzz("model_folder")
@given(edits=st.lists(folder_edits, min_size=1, max_size=3), source=st.sampled_from(["output", "hessian"]))
def test_fuzz_model_folder(edits, source):
    """--sensitivity output|hessian on a damaged checkpoint folder: the contract; a pickle in it is never run."""
    require("transformers")
    from dse import hfmodel
    from dse import search as dse_search

    base = _hf_base()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tiny"
        shutil.copytree(base, folder)
        marker = Path(tmp) / "unpickled"
        for kind, key, value in edits:
            if kind == "config":
                cfg = json.loads((folder / "config.json").read_text() or "{}") if _is_json(folder / "config.json") else {}
                cfg[key] = value
                (folder / "config.json").write_text(json.dumps(cfg))
            elif kind == "pickle":
                (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))
                weights = folder / "model.safetensors"
                if key == "instead" and weights.exists():
                    weights.unlink()
                elif key == "renamed" and weights.exists():
                    weights.rename(folder / "weights.safetensors")
            elif (folder / kind).exists():
                data = bytearray((folder / kind).read_bytes())
                if key == "truncate":
                    data = data[:value % (len(data) + 1)]
                elif data:
                    data[value % len(data)] ^= 0x5A
                (folder / kind).write_bytes(bytes(data))
        hfmodel._ENCODERS.clear()
        calib = base.parent / "calib.txt"
        out = Path(tmp) / "plan.json"
        with environ(QUANTDSE_CACHE_DIR=str(Path(tmp) / "cache")):
            r = run(dse_search.main, ["--hw", "u280", "--model", folder, "--sensitivity", source, "--calib", calib,
                                      "--budget", "6bits", "--formats", "int4-g32,int8,fp16", "--out", out])
        check_contract(r, out, {calib: calib.read_bytes()})
        assert not marker.exists(), "a pickle from the folder was unpickled"
        if r.code == 0:
            check_plan(json.loads(out.read_text()))


def _is_json(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (ValueError, UnicodeDecodeError):
        return False


class _Payload:
    """Unpickling it creates a file: proof that a pickle ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------ caches

SENS_FORMATS = ("int4-g32", "int8", "fp16")


@functools.lru_cache(maxsize=None)
def _sens_reference() -> tuple[dict, str, bytes]:
    """(table, cache file name, cache file bytes) of the tiny checkpoint, measured once in a clean cache."""
    from dse import hfmodel
    from dse.calibsens import calibration_table
    from quantcore.formats import get_format

    base = _hf_base()
    with environ(QUANTDSE_CACHE_DIR=str(_base_folder("sens-cache"))):
        hfmodel._ENCODERS.clear()
        table, info = calibration_table("output", str(base), [get_format(f) for f in SENS_FORMATS],
                                        base.parent / "calib.txt")
    path = Path(info["cache"])
    return table, path.name, path.read_bytes()


@fuzz("sens_cache")
@given(edit=st.one_of(
    st.tuples(st.just("value"), st.integers(0, 20), st.sampled_from(SENS_FORMATS), json_values),
    st.tuples(st.just("value"), st.integers(0, 20), st.sampled_from(SENS_FORMATS),
              st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("key"), st.sampled_from(["layers", "tokens", "schema"]), st.none(), json_values),
    st.tuples(st.just("raw"), st.none(), st.none(), st.binary(max_size=40))))
def test_fuzz_sensitivity_cache(edit):
    """A tampered cache entry is used only when it is a valid table for this run (a valid table is
    data like any input); anything else is measured again, equal to a clean measurement, and replaced."""
    require("transformers")
    from dse.calibsens import cache_problem, calibration_table
    from quantcore.formats import get_format

    base = _hf_base()
    reference, name, good = _sens_reference()
    formats = [get_format(f) for f in SENS_FORMATS]
    with tempfile.TemporaryDirectory() as tmp, environ(QUANTDSE_CACHE_DIR=tmp):
        path = Path(tmp) / "sensitivity" / name
        path.parent.mkdir()
        doc = json.loads(good)
        kind, a, b, value = edit
        if kind == "value":
            set_error(doc, a, b, value)
            path.write_text(json.dumps(doc))
        elif kind == "key":
            doc[a] = value
            path.write_text(json.dumps(doc))
        else:
            path.write_bytes(value)
        try:
            valid = cache_problem(json.loads(path.read_text()), sorted(reference), list(SENS_FORMATS)) is None
        except (ValueError, UnicodeDecodeError):
            valid = False
        table, info = calibration_table("output", str(base), formats, base.parent / "calib.txt")
        event(f"cached: {info['cached']}")
        assert info["cached"] == valid
        for row in table.values():
            assert all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in row.values())
        if not valid:
            assert table == reference
            assert json.loads(path.read_bytes())["layers"] == reference  # the bad entry was replaced


def _synthetic_local() -> dict:
    from tests.test_local import _synthetic_calibration

    return _synthetic_calibration(threads=1)


@fuzz("local_cache")
@given(edits=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20),
                                st.one_of(st.sampled_from(["overhead_s", "bytes_per_s", "peak_flops_per_s", "p",
                                                           "m_half", "reread", "llc_bytes", "row_s", "par_speedup"]),
                                          st.text(max_size=4)),
                                st.one_of(json_values, st.floats(), st.sampled_from([0, -1, 1e-300, 1e300]),
                                          st.floats(1e-3, 8.0), st.floats(1e-3, 8.0))),  # in range: still valid
                      min_size=1, max_size=3),
       top=st.one_of(st.none(), st.tuples(st.sampled_from(["kernels", "fingerprint", "gemv_max_m"]), json_values)))
def test_fuzz_local_calibration_cache(edits, top):
    """Costs from a tampered local calibration: a valid document costs finite, non-negative numbers;
    an invalid one is refused with one line (costing never measures)."""
    from hwmodels import calibration_cache
    from hwmodels.families.local import calibration_problem

    doc = _synthetic_local()
    kernels = list(doc["kernels"])
    for k, f, key, value in edits:
        entry = doc["kernels"][kernels[k % len(kernels)]]
        regimes = list(entry["fits"])
        entry["fits"][regimes[f % len(regimes)]][key] = value
    if top is not None:
        key, value = top
        if key == "gemv_max_m":
            doc["kernels"][kernels[0]][key] = value
        else:
            doc[key] = value
    doc = json.loads(json.dumps(doc, allow_nan=True))
    problem = calibration_problem(doc)
    event(f"valid: {problem is None}")
    with mock.patch.object(calibration_cache, "load_calibration", lambda threads, device: doc):
        r = run(cost.main, ["--hw", "local", "--set", "threads=1", "--gemm", "16,256,256", "--format", "int8",
                            "--json"])
    check_contract(r, None, {})
    if problem is not None:
        assert_one_line_error(r, "cached calibration of --hw local is not usable")
    elif r.code == 0:
        out = json.loads(r.out)
        assert math.isfinite(out["latency_s"]) and out["latency_s"] >= 0


# ------------------------------------------------------------------ resume CSVs (experiments.sweep, CLI level)

SWEEP_ARGS = ["--hw", "systolic", "--grid", "rows=16,32", "--model", "resnet-50", "--budgets", "5bits,6bits",
              "--formats", "int4-g128,int8,fp16", "--phase", "prefill", "--seq", "1", "--workers", "1"]


def _good_sweep() -> Path:
    from experiments import sweep as sw

    path = _base_folder("sweep") / "sweep.csv"
    if not path.exists():
        r = run(sw.main, SWEEP_ARGS + ["--out", path])
        assert r.code == 0, r.err
    return path


csv_edits = st.one_of(
    st.tuples(st.just("cell"), st.integers(1, 4), st.integers(0, 40),
              st.one_of(st.sampled_from(["nan", "inf", "-1", "1e999", "", "x", "\x00", "é", '"', "1,2"]),
                        st.text(max_size=6))),
    st.tuples(st.just("bytes"), st.integers(0, 2000), st.integers(0, 0), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("latin1"), st.integers(0, 2000), st.integers(0, 0), st.just("é".encode("latin-1"))),
    st.tuples(st.just("truncate"), st.integers(0, 2000), st.integers(0, 0), st.just(b"")))


@fuzz("resume_csv")
@given(edits=st.lists(csv_edits, min_size=1, max_size=3))
def test_fuzz_resume_csv(edits):
    """Resuming a sweep from a tampered --out: exit 0 with a complete, well-formed CSV, or one line."""
    import csv as csv_module
    import io

    from experiments import sweep as sw

    good = _good_sweep().read_bytes()
    data = bytearray(good)
    for kind, row, col, value in edits:
        if kind == "cell":
            lines = bytes(data).decode("utf-8", "replace").split("\n")
            if row < len(lines) and lines[row]:
                cells = next(csv_module.reader([lines[row]]))
                cells[col % len(cells)] = value
                buf = io.StringIO()
                csv_module.writer(buf, lineterminator="").writerow(cells)
                lines[row] = buf.getvalue()
            data = bytearray("\n".join(lines).encode("utf-8", "surrogatepass"))
        elif kind == "truncate":
            data = data[:row]
        else:
            at = row % (len(data) + 1)
            data[at:at] = value
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.csv"
        out.write_bytes(bytes(data))
        r = run(sw.main, SWEEP_ARGS + ["--out", out])
        assert r.code in (0, 2), (r.code, r.err[-2000:])
        if r.code == 2:
            assert_one_line_error(r)
            assert out.read_bytes() == bytes(data), "a refused resume changed the file"
        else:
            rows = list(csv_module.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
            assert len(rows) == 4 and {r["status"] for r in rows} <= {"optimal", "failed", "infeasible"}
            for row in rows:
                for key in sw.TOTALS:
                    assert row[key] == "" or (math.isfinite(float(row[key])) and float(row[key]) >= 0), (key, row)


# ------------------------------------------------------------------ policies

def _good_policy() -> Path:
    from policies.env import N_FEATURES, FeatureScaler
    from policies.policy import save_policy

    folder = _base_folder("policy") / "pol"
    if not folder.exists():
        rng = np.random.default_rng(0)
        tensors = {"hidden.0.weight": rng.normal(size=(8, N_FEATURES)).astype(np.float32),
                   "hidden.0.bias": np.zeros(8, np.float32), "mu.weight": rng.normal(size=(1, 8)).astype(np.float32),
                   "mu.bias": np.zeros(1, np.float32)}
        save_policy(folder, tensors, [8], FeatureScaler(), "fuzz", {"seed": 0})
    return folder


POLICY_KEYS = ("schema", "name", "hash", "safetensors_sha256", "architecture", "normalisation", "training",
               "architecture.features", "architecture.hidden", "normalisation.mean", "normalisation.std")
policy_edits = st.one_of(
    st.tuples(st.just("json"), st.sampled_from(POLICY_KEYS),
              st.one_of(json_values, st.sampled_from([12, 12.0, 12.5, "12", [8], [8.5], [0], [10 ** 9], [1.0] * 12]))),
    st.tuples(st.just("tensors"), st.sampled_from(["flip", "truncate", "bf16", "f16", "shape", "nan"]),
              st.integers(0, 10_000)),
    st.tuples(st.just("set"), st.sampled_from(["polish", "polish=", "polish=false", "polish_seconds=1e400",
                                               "polish_seconds=-1", "polish_seconds=0.01", " polish = true",
                                               "polish_seconds=x"]), st.none()))


@fuzz("policy")
@given(edits=st.lists(policy_edits, min_size=1, max_size=3), rehash=st.booleans())
def test_fuzz_policy(edits, rehash):
    """dse.search --method rl --policy on a damaged policy folder (its hash recomputed or not): the contract."""
    import hashlib

    from safetensors.numpy import load, save

    from dse import search as dse_search

    base = _good_policy()
    config, sens = write_tiny(_base_folder("policy"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pol"
        shutil.copytree(base, folder)
        meta = json.loads((folder / "policy.json").read_text())
        blob = (folder / "policy.safetensors").read_bytes()
        sets = []
        for kind, key, value in edits:
            if kind == "json":
                node, *rest = key.split(".")
                if rest and isinstance(meta.get(node), dict):
                    meta[node][rest[0]] = value
                elif not rest:
                    meta[node] = value
            elif kind == "set":
                sets += ["--set", key]
            else:
                tensors = load((base / "policy.safetensors").read_bytes())  # the undamaged tensors
                if key == "flip" and blob:
                    b = bytearray(blob)
                    b[value % len(b)] ^= 0x41
                    blob = bytes(b)
                    continue
                if key == "truncate":
                    blob = blob[:value % (len(blob) + 1)]
                    continue
                torch = require("torch")
                from safetensors.torch import save as tsave

                if key in ("bf16", "f16"):
                    dtype = torch.bfloat16 if key == "bf16" else torch.float16
                    blob = tsave({k: torch.from_numpy(v).to(dtype) for k, v in tensors.items()})
                    continue
                if key == "shape":
                    tensors["mu.bias"] = np.zeros(2, np.float32)
                else:
                    tensors["mu.weight"] = np.full_like(tensors["mu.weight"], np.nan)
                blob = save(tensors)
        if rehash:
            meta["safetensors_sha256"] = hashlib.sha256(blob).hexdigest()
        (folder / "policy.json").write_text(json.dumps(meta, allow_nan=True))
        (folder / "policy.safetensors").write_bytes(blob)
        out = Path(tmp) / "plan.json"
        r = run(dse_search.main, ["--hw", "u280", "--model", config, "--sensitivity", sens, "--budget", "6bits",
                                  "--method", "rl", "--policy", folder, "--out", out, *sets])
        check_contract(r, out, {folder / "policy.json": (folder / "policy.json").read_bytes()})
        if r.code == 0:
            check_plan(json.loads(out.read_text()))


# ------------------------------------------------------------------ spec `extends`: never a file outside the spec's folder

extends_values = st.one_of(
    st.sampled_from(["./base.toml", "base.toml", "../outside.toml", "/etc/passwd", "sub/../base.toml",
                     "sub/../../outside.toml", "link/outside.toml", "a100-80gb", "u280", "outside", "passwd",
                     "base", "", " ", "./", "..", "\\..\\outside.toml", "~/outside.toml", "base.toml\x00x"]),
    st.builds(lambda parts, tail: "/".join(parts) + tail,
              st.lists(st.sampled_from(["..", ".", "sub", "link", ""]), max_size=4),
              st.sampled_from(["/outside.toml", "/base.toml", "outside.toml", ""])),
    st.text(max_size=12))


@fuzz("extends")
@given(extends=extends_values)
def test_fuzz_spec_extends(extends):
    """Whatever `extends` says, only files inside the spec's folder (or built-in specs) are read."""
    from quantcore import io as qio

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        specs = root / "specs"
        (specs / "sub").mkdir(parents=True)
        u280 = (SPEC_DIR / "u280.toml").read_text()
        (specs / "base.toml").write_text(u280.replace('name = "u280"', 'name = "base"'))
        (root / "outside.toml").write_text(u280.replace('name = "u280"', 'name = "outside"'))
        (root / "passwd").write_text(u280)
        (specs / "link").symlink_to(root)
        top = specs / "top.toml"
        top.write_text(f'schema = "hwmodels.spec/1"\nname = "top"\nextends = {json.dumps(extends)}\n')
        read = []
        real_read = qio.read_input

        def recording(path, *args, **kwargs):
            read.append(os.path.realpath(path))
            return real_read(path, *args, **kwargs)

        cwd = os.getcwd()
        os.chdir(root)  # a bare name must not be looked up in the current folder
        try:
            with mock.patch.object(qio, "read_input", recording):
                r = run(cost.main, ["--hw", top, "--gemm", "1,64,64", "--format", "int8", "--json"])
        finally:
            os.chdir(cwd)
        check_contract(r, None, {top: top.read_bytes()})
        allowed = (os.path.realpath(specs), os.path.realpath(SPEC_DIR))
        outside = [p for p in read if not any(os.path.commonpath([a, p]) == a for a in allowed)]
        assert not outside, f"extends {extends!r} read {outside}"


# ------------------------------------------------------------------ caps from the environment

cap_text = st.one_of(st.integers(-5, 10 ** 30).map(str), st.sampled_from(["", " ", "1e20", "1e400", "nan", "inf",
                                                                           "1.5", "0x10", "٣", "10_000", "-0", "+7"]),
                     st.floats().map(str), st.text(max_size=6))


@fuzz("env_caps")
@given(values=st.dictionaries(st.sampled_from(sorted(CAPS)), cap_text, min_size=1, max_size=3))
def test_fuzz_environment_caps(values):
    """Any value of any QUANTDSE_MAX_* variable: the contract, and a cap is never an overflow."""
    env = {CAPS[name].env: text for name, text in values.items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, sens = write_tiny(folder)
        out = folder / "plan.json"
        with environ(**env):
            r = run(search.main, ["--hw", "u280", "--model", config, "--sensitivity", sens, "--budget", "6bits",
                                  "--out", out])
            check_contract(r, out, {config: config.read_bytes(), sens: sens.read_bytes()})
            for name in values:
                try:
                    got = cap(name)
                except Exception as exc:  # noqa: BLE001 - only the one-line error may come out
                    assert type(exc).__name__ == "QuantDSEError" and CAPS[name].env in str(exc)
                    assert r.code == 2 or name not in ("json_bytes", "depth", "layers")
                    continue
                assert isinstance(got, int) and 1 <= got <= CAP_CEILING
            if r.code == 0:
                check_plan(json.loads(out.read_text()))
