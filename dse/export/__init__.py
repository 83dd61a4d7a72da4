"""Exporters: a plan turned into the file each quantizer reads (`python -m dse.export`).

One module per target, each with NAME, DEFAULT_OUT, FORMATS (the formats it writes exactly,
bits counted as it stores them), ``write(export)`` and ``read(content, graph)`` (the inverse,
for round trips); `dse.export.base` resolves a plan for a target. Other packages add targets
through the ``quantdse.exporters`` entry-point group (a module with the same names).
"""
from __future__ import annotations

from quantcore.errors import QuantDSEError
from quantcore.registry import Registry

#: built-in target name -> exporter module
BUILTIN = {"llamacpp": "dse.export.llamacpp", "gptqmodel": "dse.export.gptqmodel",
           "llmcompressor": "dse.export.llmcompressor", "compressed-tensors": "dse.export.ctensors",
           "autoround": "dse.export.autoround", "modelopt": "dse.export.modelopt",
           "nunchaku": "dse.export.nunchaku"}
EXPORTERS = Registry("export target", BUILTIN, group="quantdse.exporters")
#: the built-in target names (`EXPORTERS.names()` adds plugins)
TARGETS = tuple(BUILTIN)


def target_module(name: str):
    """The exporter module of a target; an unknown name lists the targets, with close matches."""
    key = str(name).strip().lower()
    return EXPORTERS.get(key if key in EXPORTERS else name)


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
