"""Sensitivity: the error of every (layer, format) pair, as one [L, F] array.

Sources
- ``weights``: the real quantization error of the layer's actual weights,
  ``error = ||W - Q(W)||_F^2 / mean(W^2)`` -- the summed squared error in units of
  the layer's mean squared weight (= params x relative MSE), so big layers weigh
  by their size, as HAWQ's ||dW||^2 does. Tensors are read one at a time.
- ``prior`` (data-free, for config-only models): the same quantity computed on a
  synthetic weight sample fitted to the layer's shape and role: Student-t rows of
  length K (the grouping axis), heavier-tailed for the roles known to carry
  outliers (down/o projections, conv heads). It is a prior, and plans say so.
- ``hessian``, ``fisher``, ``output``: measured on a real torch model with calibration texts
  (dse/calibsens.py says how); they need real weights and `transformers`.
- a JSON file ``{"schema": "dse.sensitivity/1", "layers": {layer: {format: error}}}``:
  every model layer must be present; a format missing for a layer is not allowed
  for that layer.

Total error of a plan = sum of its layers' errors.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse.calibsens import SOURCES as CALIBRATED
from quantcore.errors import QuantDSEError
from quantcore.io import load_json
from quantcore.registry import Registry

SENSITIVITY_SCHEMA = "dse.sensitivity/1"
SOURCES = ("weights", "prior", *CALIBRATED)  # built in: SENSITIVITY_SOURCES adds plugins

#: Student-t degrees of freedom of the prior by role: lower = heavier tails (more outliers).
#: Down/output projections and attention outputs carry the activation-outlier channels
#: (LLM.int8(), SmoothQuant); embeddings-like heads are lighter-tailed.
PRIOR_DOF = {"down": 4.0, "fc2": 4.0, "o": 5.0, "dense": 5.0, "v": 6.0, "lm_head": 8.0}
DEFAULT_DOF = 7.0
#: elements of synthetic weights per (K, role) prior sample
PRIOR_SAMPLE = 1 << 16


@dataclass
class Sensitivity:
    """errors[l, f]: error of layer l in format f (NaN where the format is not allowed)."""

    errors: np.ndarray
    source: str
    description: str
    #: measured K/V cache errors {"<attention>.k_cache": {format: error}} (a file's or a calibration source's
    #: K/V rows); None: the search uses dse.actprior's data-free prior for the cache
    kv_errors: dict | None = None


def _relative_sse(w: np.ndarray, fmt) -> float:
    """||W - Q(W)||^2 / mean(W^2), the error of one layer in one format."""
    q = fmt.quantize(w)
    scale = float(np.mean(np.square(w, dtype=np.float64)))
    if scale == 0.0:
        return 0.0
    return float(np.sum(np.square(w - q, dtype=np.float64)) / scale)


def _prior_sample(k: int, role: str) -> np.ndarray:
    """Synthetic weights [rows, k] for a layer role, seeded by (k, role) for determinism."""
    rows = max(1, PRIOR_SAMPLE // max(k, 1))
    rng = np.random.default_rng(zlib.crc32(f"{k}:{role}".encode()))
    dof = PRIOR_DOF.get(role, DEFAULT_DOF)
    return (rng.standard_t(dof, size=(rows, k)) / np.sqrt(k)).astype(np.float32)


def prior_errors(layers, formats) -> np.ndarray:
    """Data-free expected errors: params x relative MSE on a fitted synthetic sample, times the layer's
    `prior_weight` where its model sets one (diffusion pipelines: quantcore.models.diffusion.PRIOR_WEIGHT)."""
    cache: dict = {}
    out = np.empty((len(layers), len(formats)))
    for i, layer in enumerate(layers):
        key = (layer.row, layer.role)
        if key not in cache:
            sample = _prior_sample(layer.row, layer.role)
            cache[key] = np.array([_relative_sse(sample, f) / sample.size for f in formats])
        out[i] = cache[key] * layer.params * float(layer.attrs.get("prior_weight", 1.0))  # role weight (diffusion)
    return out


def weight_errors(graph, layers, formats) -> np.ndarray:
    """Real quantization errors of the graph's weights (one tensor in memory at a time)."""
    if graph.weights is None:
        raise QuantDSEError(f"model {graph.name} has no weights (loaded from a config): "
                            "use --sensitivity prior, or pass a safetensors file or folder as --model")
    out = np.empty((len(layers), len(formats)))
    for i, layer in enumerate(layers):
        w = graph.weights.get(layer.name)
        if not np.isfinite(w).all():
            raise QuantDSEError(f"weights of {layer.name} contain NaN or inf: the checkpoint is corrupt, re-export it")
        out[i] = [_relative_sse(w, f) for f in formats]
    return out


def read_sensitivity_file(path: str, layers, others=(), kv_searched: bool = False) -> tuple[dict, str | None, dict]:
    """Validate a sensitivity JSON file against the model's layers:
    ({layer: {format: error}}, note or None, {K/V cache item: {format: error}}).

    others: names of the model's layers a plan does not search (embeddings, attention, routers);
    entries for them are dropped, and the note (for stderr) says so. K/V cache rows (written by
    `dse.sensitivity --kv-formats`) come back apart, validated as layer rows are; unless the cache is
    searched (kv_searched) the note says they are not used.
    """
    doc = load_json(path, "sensitivity file")
    if not isinstance(doc, dict) or doc.get("schema") != SENSITIVITY_SCHEMA:
        raise QuantDSEError(f'sensitivity file {path}: "schema" must be "{SENSITIVITY_SCHEMA}"')
    table = doc.get("layers")
    if not isinstance(table, dict) or not table:
        raise QuantDSEError(f'sensitivity file {path}: "layers" must be a non-empty object {{layer: {{format: error}}}}')
    from dse.runtimequant import is_kv_item

    names = {l.name for l in layers}
    others = set(others)
    unsearched = [name for name in table if name not in names and name in others]
    caches = [name for name in table if name not in names and is_kv_item(name)]
    notes = []
    if unsearched:
        notes.append(f"ignoring {len(unsearched)} layers the search does not choose "
                     f"(e.g. {unsearched[0]}: embeddings, attention and routers stay 16-bit)")
    if caches and not kv_searched:
        notes.append(f"ignoring {len(caches)} K/V cache rows (e.g. {caches[0]}): they are used with --kv-formats")
    note = f"sensitivity file {path}: {'; '.join(notes)}" if notes else None
    if unsearched or caches:
        dropped = {*unsearched, *caches}
        table = {k: v for k, v in table.items() if k not in dropped}
    for layer in layers:
        if layer.name not in table:
            raise QuantDSEError(f"sensitivity file {path} has no entry for layer {layer.name}: "
                                "add it (every quantizable layer of the model needs one)")
    for name in table:
        if name not in names:
            raise QuantDSEError(f"sensitivity file {path}: layer {name} is not in the model: "
                                "check --model or regenerate the file")
    table = {name: _checked_row(row, path, name) for name, row in table.items()}
    kv = {name: _checked_row(doc["layers"][name], path, name) for name in caches}
    return table, note, kv


def _checked_row(row, path: str, name: str) -> dict:
    """One row of a sensitivity file: a non-empty {format: finite error >= 0}, under canonical format names."""
    if not isinstance(row, dict) or not row:
        raise QuantDSEError(f"sensitivity file {path}: layer {name} must map formats to errors")
    for fmt, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise QuantDSEError(f"sensitivity file {path}: error of {name} in {fmt} must be a finite "
                                f"number >= 0, got {value!r}")
    return _canonical_row(row, path, name)


def _canonical_row(row: dict, path: str, layer: str) -> dict:
    """{format: error} under the catalog's canonical names (INT8 -> int8); unknown or repeated formats are errors."""
    from quantcore.formats import get_format

    out: dict = {}
    for fmt, value in row.items():
        try:
            canonical = get_format(fmt).name
        except QuantDSEError as exc:
            raise QuantDSEError(f"sensitivity file {path}, layer {layer}: {exc}") from None
        if canonical in out:
            raise QuantDSEError(f"sensitivity file {path}, layer {layer}: format {fmt!r} repeats {canonical!r}: "
                                "keep one entry per format")
        out[canonical] = value
    return out


def file_formats(table: dict) -> list[str]:
    """Formats named in a sensitivity file, in first-seen order."""
    seen: dict = {}
    for row in table.values():
        for fmt in row:
            seen.setdefault(fmt, None)
    return list(seen)


def file_errors(table: dict, layers, formats) -> np.ndarray:
    out = np.full((len(layers), len(formats)), np.nan)
    for i, layer in enumerate(layers):
        row = table[layer.name]
        for j, fmt in enumerate(formats):
            if fmt.name in row:
                out[i, j] = float(row[fmt.name])
    return out


def _weights(graph, layers, formats, seed: int = 0, **_) -> Sensitivity:
    """The weights' own quantization error, cached per checkpoint, formats and seed (dse.senscache)."""
    from dse.senscache import cached_weight_errors

    errors, _ = cached_weight_errors(graph, layers, formats, seed, lambda ls, fs: weight_errors(graph, ls, fs))
    return Sensitivity(errors, "weights",
                       "real quantization error of the model's weights (||W-Q(W)||^2 / mean W^2)")


def _prior(graph, layers, formats, **_) -> Sensitivity:
    return Sensitivity(prior_errors(layers, formats), "prior",
                       "data-free prior: expected error on Student-t weights fitted to shape and role")


def _calibrated(source: str):
    """hessian, fisher or output: measured on calibration texts (dse.calibsens)."""
    def compute(graph, layers, formats, model=None, calib=None, seed: int = 0, kv_formats=()) -> Sensitivity:
        from dse.calibsens import DESCRIPTIONS, calibration_table
        from dse.runtimequant import is_kv_item

        table, info = calibration_table(source, model if model is not None else graph.name, formats, calib, seed,
                                        kv_formats=kv_formats)
        calib_name = Path(calib).name if calib else "shipped calibration.txt"
        kv = {name: row for name, row in table.items() if is_kv_item(name)}
        return Sensitivity(file_errors(table, layers, formats), source,
                           f"{DESCRIPTIONS[source]} ({calib_name}: {info['texts']} texts, {info['tokens']} tokens)",
                           kv_errors=kv or None)
    return compute


#: named sources: f(graph, layers, formats, *, model, calib, seed) -> Sensitivity. Other packages add
#: sources through the ``quantdse.sensitivity`` entry-point group.
SENSITIVITY_SOURCES = Registry("sensitivity source", {
    "weights": _weights, "prior": _prior, **{name: _calibrated(name) for name in CALIBRATED}},
    group="quantdse.sensitivity", fix=f" or a .json file (schema {SENSITIVITY_SCHEMA})")


def compute_sensitivity(graph, layers, formats, source: str, *, model=None, calib=None, seed: int = 0,
                        file=None, kv_formats=()) -> Sensitivity:
    """Errors [len(layers), len(formats)] from `source`: a name in SENSITIVITY_SOURCES or a JSON path.

    model / calib / seed: the model as the user named it, calibration texts and seed for the
    calibration sources (hessian, fisher, output). file: what read_sensitivity_file returned for
    the JSON path `source`, where the caller has read it already. kv_formats: the K/V cache formats
    the search chooses from; a calibration source measures them too, a file gives its K/V rows."""
    if source.startswith("imatrix:"):  # llama.cpp's importance matrix (dse.imatrix)
        from dse.imatrix import imatrix_errors

        errors, description = imatrix_errors(graph, layers, formats, source.removeprefix("imatrix:"))
        return Sensitivity(errors, "imatrix", description)
    if source not in SENSITIVITY_SOURCES and (source.endswith(".json") or Path(source).is_file()):
        table, note, kv = file or read_sensitivity_file(source, layers, [l.name for l in graph.layers],
                                                        kv_searched=bool(kv_formats))
        if note:
            import sys

            print(f"note: {note}", file=sys.stderr)
        return Sensitivity(file_errors(table, layers, formats), f"file:{Path(source).name}",
                           f"errors read from {source}", kv_errors=kv or None)
    measure = SENSITIVITY_SOURCES.get(source)
    if kv_formats and source in CALIBRATED:
        return measure(graph, layers, formats, model=model, calib=calib, seed=seed, kv_formats=kv_formats)
    return measure(graph, layers, formats, model=model, calib=calib, seed=seed)


def table_doc(graph, layers, formats, sensitivity: Sensitivity) -> dict:
    """The dse.sensitivity/1 document of an error table (what `--sensitivity FILE` reads back)."""
    return {"schema": SENSITIVITY_SCHEMA, "model": graph.name, "source": sensitivity.source,
            "description": sensitivity.description,
            "layers": {l.name: {f.name: float(sensitivity.errors[i, j]) for j, f in enumerate(formats)}
                       for i, l in enumerate(layers)}}


def main(argv=None) -> int:
    """`python -m dse.sensitivity`: write a model's error table, to inspect, edit or replace with your own."""
    import sys

    from quantcore.cli import ArgumentParser
    from quantcore.formats import DEFAULT_SEARCH_FORMATS, get_format, parse_format_list
    from quantcore.io import atomic_write_text, dumps
    from quantcore.models import DEFAULT_MODEL, load_graph

    p = ArgumentParser(prog="dse.sensitivity", description=main.__doc__.split(": ", 1)[1])
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"as for dse.search (default {DEFAULT_MODEL})")
    p.add_argument("--sensitivity", choices=SOURCES,
                   help="weights (default when the model has them), prior (default for config-only models), or "
                        "hessian, fisher, output (measured on the shipped calibration texts)")
    p.add_argument("--formats", help="formats, comma-separated (default: dse.search's default candidates)")
    p.add_argument("--kv-formats", help="also a row per K/V cache item (<attention>.k_cache / .v_cache) with these "
                                        "formats, e.g. int8,int4-g64,int2-g32 (hessian, fisher, output only)")
    p.add_argument("--out", required=True, help="the JSON file to write (schema dse.sensitivity/1, atomically)")
    args = p.parse_args(argv)
    graph = load_graph(args.model)
    layers = graph.quantizable()
    formats = parse_format_list(args.formats) if args.formats else [get_format(n) for n in DEFAULT_SEARCH_FORMATS]
    source = args.sensitivity or ("weights" if graph.weights is not None else "prior")
    if args.kv_formats:
        from dse.calibsens import DESCRIPTIONS, calibration_table

        if source not in DESCRIPTIONS:
            raise QuantDSEError(f"--kv-formats needs --sensitivity hessian, fisher or output (K/V errors are measured "
                                f"on the real model), not {source}")
        table, info = calibration_table(source, args.model, formats, kv_formats=parse_format_list(args.kv_formats))
        doc = {"schema": SENSITIVITY_SCHEMA, "model": graph.name, "source": source,
               "description": f"{DESCRIPTIONS[source]} (shipped calibration.txt: {info['texts']} texts)",
               "layers": table}
    else:
        doc = table_doc(graph, layers, formats, compute_sensitivity(graph, layers, formats, source, model=args.model))
    atomic_write_text(args.out, dumps(doc))
    kv_rows = len(doc["layers"]) - len(layers)
    print(f"{len(layers)} layers x {len(formats)} formats" + (f" and {kv_rows} K/V items" if kv_rows else "") +
          f" ({source}) written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from quantcore.cli import run_cli

    raise SystemExit(run_cli(main))
