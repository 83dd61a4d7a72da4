"""Property-based fuzzing of the CLIs' inputs (issue 13).

Random budgets, flags, config values, corrupted safetensors, sensitivity and spec files,
and output paths. The contract, whatever arrives: exit 0 with a valid result (a plan
within its budget, finite non-negative costs), or exit 2 with exactly one stderr line
`error: ...`, no output file, no temp file, inputs untouched. Anything else (a traceback,
another exit code) fails. Runs in-process through run_cli; derandomized, so CI sees the
same cases every time. Case counts: EXAMPLES below (1,400 in all).
"""
from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dse import models as dse_models
from dse import search
from hwmodels import cost
from hwmodels.spec import SPEC_DIR
from tests.hostile import TINY, TINY_FORMATS, assert_one_line_error, check_plan, no_temp_files, run, write_tiny

pytestmark = pytest.mark.slow

EXAMPLES = {"search": 300, "config": 300, "safetensors": 400, "sensitivity": 100, "cost": 200, "spec": 100}


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
            name = sorted(doc["layers"])[i % len(doc["layers"])]
            doc["layers"][name][fmt] = value
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
