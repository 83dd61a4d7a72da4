"""Exporters: a plan turned into the file each quantizer reads (`python -m dse.export`).

One module per target, each with NAME, DEFAULT_OUT, FORMATS (the formats it writes exactly,
bits counted as it stores them), ``write(export)`` and ``read(content, graph)`` (the inverse,
for round trips); `dse.export.base` resolves a plan for a target.
"""
from __future__ import annotations

import difflib
import importlib

from quantcore.errors import QuantDSEError

#: target name -> module
TARGETS = {"llamacpp": "llamacpp", "gptqmodel": "gptqmodel", "llmcompressor": "llmcompressor",
           "compressed-tensors": "ctensors", "autoround": "autoround", "modelopt": "modelopt",
           "nunchaku": "nunchaku"}


def target_module(name: str):
    """The exporter module of a target; an unknown name lists the targets."""
    key = str(name).strip().lower()
    if key not in TARGETS:
        close = difflib.get_close_matches(key, list(TARGETS), n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise QuantDSEError(f"unknown export target {name!r}{hint}: use one of {', '.join(TARGETS)}")
    return importlib.import_module(f"dse.export.{TARGETS[key]}")


def formats_for(target: str, requested=None) -> tuple:
    """The candidate formats of a search for `target` (bf16/fp32 left out: fp16 is the 16-bit choice),
    intersected with `requested` when given; a requested format the target cannot write is an error."""
    supported = [f for f in target_module(target).FORMATS if f not in ("bf16", "fp32")]
    if requested is None:
        return tuple(supported)
    from quantcore.formats import get_format

    names = [get_format(f).name for f in requested]
    bad = [n for n in names if n not in supported]
    if bad:
        raise QuantDSEError(f"{target} cannot write {', '.join(bad)}: drop them from --formats, or see "
                            f"`python -m dse.export --list-formats {target}`")
    return tuple(names)


def read_back(target: str, path, graph) -> dict:
    """The plan a target's file describes for `graph`: {"model", "layers": [{name, format, bits, params}]}
    over the searchable layers the file covers (the inverse of export, used for round trips)."""
    from pathlib import Path

    from quantcore.formats import get_format
    from quantcore.io import load_json

    module = target_module(target)
    p = Path(path)
    content = p.read_text(encoding="utf-8") if p.suffix in (".txt", ".yaml", ".yml") else load_json(p, f"{target} file")
    formats = module.read(content, graph)
    layers = [{"name": l.name, "format": formats[l.name], "bits": get_format(formats[l.name]).bits_per_weight(l.row),
               "params": l.params} for l in graph.quantizable() if l.name in formats]
    return {"model": graph.name, "layers": layers}
