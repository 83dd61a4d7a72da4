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


def search_args(config, sens, *extra) -> list:
    """dse.search on the tiny llama and its sensitivity table, on u280, with `extra` flags."""
    return ["--hw", "u280", "--model", config, "--sensitivity", sens, *extra]


def set_error(doc: dict, i: int, fmt: str, value) -> None:
    """Set one cell of a dse.sensitivity/1 table: layer number i (modulo, in name order), format fmt."""
    name = sorted(doc["layers"])[i % len(doc["layers"])]
    doc["layers"][name][fmt] = value


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


# ------------------------------------------------------------------ a tiny Hugging Face checkpoint

#: words of the tiny checkpoint's tokenizer (ids 0, 1 are [UNK], [PAD])
TINY_WORDS = 38


def write_tiny_hf(folder: Path, vocab: int = TINY_WORDS + 2, max_positions: int = 64,
                  tokenizer_words: int = TINY_WORDS) -> Path:
    """A 2-layer BERT (hidden 32) saved by transformers as model.safetensors, with a word-level
    tokenizer.json of `tokenizer_words` words `w0 w1 ...`; seeded, so every call writes the same weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(folder)
    words = ["[UNK]", "[PAD]"] + [f"w{i}" for i in range(tokenizer_words)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def write_calib(path: Path, texts: int = 6, words: int = 5) -> Path:
    """Calibration texts over the tiny tokenizer's words, one per line."""
    lines = [" ".join(f"w{(t * 7 + i) % TINY_WORDS}" for i in range(words + t)) for t in range(texts)]
    path.write_text("\n".join(lines) + "\n")
    return path
