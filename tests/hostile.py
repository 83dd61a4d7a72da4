"""Helpers for the hostile-input tests: run a CLI in-process and check the bad-input contract.

The contract (README, DESIGN.md): exit 0 with a valid result, or exit 2 with exactly one
stderr line `error: <what>: <fix>` and no output file (no temp file either).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantcore.cli import run_cli

#: a tiny llama: 2 blocks, hidden 64 (fast to plan)
TINY = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128}
TINY_FORMATS = ("int2-g32", "int4-g32", "int8", "fp16")


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(main, argv: list[str]) -> Result:
    """`run_cli(main, argv)` in this process, stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(main, [str(a) for a in argv])
    return Result(code, out.getvalue(), err.getvalue())


def assert_one_line_error(r: Result, *fragments: str) -> None:
    lines = r.err.splitlines()
    assert r.code == 2, (r.code, r.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err[-2000:]
    assert "Traceback" not in r.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def no_temp_files(folder: Path) -> bool:
    return not [p for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


def write_tiny(folder: Path, **changes) -> tuple[Path, Path]:
    """(config.json, sensitivity.json) of the tiny llama; `changes` edit the config (None deletes a key)."""
    cfg = {**TINY}
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    config = folder / "tiny.json"
    config.write_text(json.dumps(cfg))
    sens = folder / "tiny-sens.json"
    layers = tiny_layers()
    # errors fall with bits, as a real table does: 4^-bits per weight
    table = {name: {f: params * 4.0 ** -{"int2-g32": 2, "int4-g32": 4, "int8": 8, "fp16": 16}[f]
                    for f in TINY_FORMATS} for name, params in layers}
    sens.write_text(json.dumps({"schema": "dse.sensitivity/1", "layers": table}))
    return config, sens


def tiny_layers() -> list[tuple[str, int]]:
    """(name, params) of the tiny llama's quantizable layers."""
    from quantcore.models.hf_config import graph_from_config

    graph = graph_from_config(dict(TINY), "tiny", "test")
    return [(l.name, l.params) for l in graph.quantizable()]


def check_plan(plan: dict) -> None:
    """A plan is valid: totals finite and non-negative, every limit held."""
    totals = plan["totals"]
    for key in ("effective_bits", "memory_bytes", "latency_s", "energy_j", "error"):
        assert math.isfinite(totals[key]) and totals[key] >= 0, (key, totals[key])
    names = {"bits": "effective_bits", "memory": "memory_bytes", "latency": "latency_s", "energy": "energy_j"}
    for kind, limit in plan["budget"]["limits"].items():
        assert totals[names[kind]] <= limit * (1 + 1e-9), (kind, totals[names[kind]], limit)
    for layer in plan["layers"]:
        assert layer["latency_s"] >= 0 and layer["energy_j"] >= 0 and layer["bits"] > 0


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """A valid safetensors file, written by the library itself."""
    from safetensors.numpy import save

    return save(tensors)


def with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data
