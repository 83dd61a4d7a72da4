"""The `weights` sensitivity table, cached across runs (keyed by the checkpoint's files, formats and seed).

A weights table quantizes every layer in every candidate format: a minute for a 50M-parameter
checkpoint with k-quants. The table depends only on each layer's tensor bytes, the format and
the seed, so it is kept under the cache directory (``hwmodels.calibrate.cache_dir``, as the
calibration tables are) as one dse.sensitivity/1 JSON per checkpoint whose key is each file's
resolved path, size and modification time. Cells are added as new formats are searched, so
`--for` targets that change the candidates reuse what was computed. Weights that do not come
from files (a torch module) are never cached.
"""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np

#: bump when the definition of a weights error changes (old entries are then ignored)
CACHE_VERSION = 1


def _files_key(graph, layers) -> str | None:
    """A digest of the checkpoint files holding `layers`' weights, or None when they are not files."""
    tensors = getattr(graph.weights, "_tensors", None)
    names = getattr(graph.weights, "_layer_tensors", None)
    if tensors is None or names is None:
        return None
    files = sorted({str(tensors[names[l.name]].file.resolve()) for l in layers if l.name in names})
    if not files:
        return None
    from pathlib import Path

    stats = [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps({"v": CACHE_VERSION, "files": stats}).encode()).hexdigest()[:20]


def cached_weight_errors(graph, layers, formats, seed: int, compute) -> tuple[np.ndarray, dict]:
    """(errors [layers x formats], info {"cached": cells read, "computed": cells computed, "seconds"}).

    compute(layers, formats) -> array: the uncached computation (dse.sensitivity.weight_errors)."""
    from hwmodels.calibration_cache import cache_dir
    from quantcore.io import atomic_write_text, dumps, load_json

    start = time.perf_counter()
    key = _files_key(graph, layers)
    if key is None:
        out = compute(layers, formats)
        return out, {"cached": 0, "computed": out.size, "seconds": time.perf_counter() - start}
    path = cache_dir() / "sensitivity" / f"{graph.name}-weights-s{seed}-{key}.json"
    table: dict = {}
    if path.is_file():
        try:
            doc = load_json(path, "sensitivity cache", note=False)
            table = doc["layers"] if isinstance(doc.get("layers"), dict) else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            table = {}  # a damaged entry is recomputed
    out = np.full((len(layers), len(formats)), np.nan)
    missing: dict = {}  # format index -> layer indices
    for i, layer in enumerate(layers):
        row = table.get(layer.name, {})
        for j, fmt in enumerate(formats):
            value = row.get(fmt.name) if isinstance(row, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[i, j] = value
            else:
                missing.setdefault(i, []).append(j)
    computed = 0
    for i, cols in missing.items():
        values = compute([layers[i]], [formats[j] for j in cols])[0]
        row = table.setdefault(layers[i].name, {})
        for j, v in zip(cols, values):
            out[i, j] = row[formats[j].name] = float(v)
        computed += len(cols)
    if computed:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps({"schema": "dse.sensitivity/1", "source": "weights", "model": graph.name,
                                       "seed": seed, "layers": table}))
    return out, {"cached": out.size - computed, "computed": computed, "seconds": time.perf_counter() - start}
