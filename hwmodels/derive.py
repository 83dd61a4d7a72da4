"""`hwmodels.calibrate --from`: fit an analytic target's efficiencies to the user's measurements.

The efficiency/overhead params of a target (the float params of its family schema named
"*efficiency*" or "*overhead*") are fitted, through that family's own `cost()`, to measured GEMM
times [{"gemm": [M, K, N], "format": "int4-g128", "seconds": 1.2e-5}, ...]; the result is written
as a derived spec (``extends = TARGET``) by a TOML writer and must load back.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
from scipy.optimize import least_squares

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from quantcore.io import atomic_write_text, load_json
from quantcore.tomlwrite import toml_dumps
from hwmodels.fit import mape
from hwmodels.ops import Ops
from hwmodels.registry import family_class, family_schema, load_model
from hwmodels.spec import SPEC_DIR, SPEC_SCHEMA, load_spec
from hwmodels.workload import Workload

#: where a derived spec goes without --out (in the current folder; no input changes it)
DEFAULT_OUT = "fitted-spec.toml"


def fittable_params(schema: dict) -> list[str]:
    """The float params of a family schema named like an efficiency or an overhead."""
    return sorted(key for key, p in schema.items()
                  if p.type is float and ("efficiency" in key or "overhead" in key))


def _predict_spec(model_cls, spec, values: dict, groups: dict, workload):
    params = dict(spec.params)
    params.update(values)
    model = model_cls(replace(spec, params=MappingProxyType(params)))
    out = {}
    for fmt_name, (fmt, ops, _) in groups.items():
        out[fmt_name] = model.cost(ops, [fmt], workload).latency_s[:, 0]
    return out


def fit_spec_params(spec, measurements: list[dict], names: list[str]) -> dict:
    """Fit `names` (float params of spec's family) to measured GEMM seconds via the family's cost().

    measurements: [{"gemm": [M, K, N], "format": name, "seconds": s}]. Parameters are fitted as
    multiples of their current value (or absolute, from 0) inside the schema's [min, max].
    Returns {"params": fitted values, "mape_before": %, "mape_after": %, "n": count}.
    """
    model_cls = family_class(spec.family)
    schema = model_cls.SCHEMA
    workload = Workload()
    groups: dict = {}
    for row in measurements:
        name = row["format"]
        entry = groups.setdefault(name, [get_format(name), [], []])
        m, k, n = row["gemm"]
        entry[1].append((f"m{len(entry[1])}", "linear", m, k, n, 1.0, float(k) * n, ""))
        entry[2].append(float(row["seconds"]))
    groups = {f: (fmt, Ops.from_rows(rows), np.array(sec)) for f, (fmt, rows, sec) in groups.items()}
    measured = np.concatenate([g[2] for g in groups.values()])

    scale = np.array([spec[p] if spec[p] > 0 else 1e-6 for p in names], dtype=np.float64)
    lo = np.array([(schema[p].min if schema[p].min is not None else 0.0) for p in names]) / scale
    hi = np.array([(schema[p].max if schema[p].max is not None else np.inf) for p in names]) / scale
    x0 = np.clip(np.array([spec[p] for p in names]) / scale, lo, hi)

    def times(x):
        pred = _predict_spec(model_cls, spec, dict(zip(names, x * scale)), groups, workload)
        return np.concatenate([pred[f] for f in groups])

    def residual(x):
        return np.log(np.maximum(times(x), 1e-30)) - np.log(measured)

    before = mape(times(x0), measured)
    res = least_squares(residual, x0, bounds=(lo, hi), x_scale=np.maximum(np.abs(x0), 1.0),
                        diff_step=1e-3, max_nfev=500)
    fitted = {p: float(v) for p, v in zip(names, res.x * scale)}
    return {"params": fitted, "mape_before": before, "mape_after": mape(times(res.x), measured),
            "n": int(len(measured))}


def read_measurements(path: str) -> list[dict]:
    """Validate a user measurements file: a list of {"gemm": [M, K, N], "format", "seconds"}."""
    data = load_json(path, "measurements file")
    if not isinstance(data, list) or not data:
        raise QuantDSEError(f"measurements file {path} must be a non-empty JSON list of "
                            '{"gemm": [M, K, N], "format": ..., "seconds": ...}')
    for i, row in enumerate(data):
        where = f"measurements file {path} entry {i}"
        if not isinstance(row, dict) or set(row) - {"gemm", "format", "seconds"} or len(row) != 3:
            raise QuantDSEError(f'{where} must have exactly the keys "gemm", "format", "seconds"')
        g = row["gemm"]
        if (not isinstance(g, list) or len(g) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in g)):
            raise QuantDSEError(f"{where}: gemm must be three positive integers [M, K, N], got {g!r}")
        s = row["seconds"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            raise QuantDSEError(f"{where}: seconds must be a positive number, got {s!r}")
        if not isinstance(row["format"], str):
            raise QuantDSEError(f"{where}: format must be a format name such as int4-g128")
        get_format(row["format"])
    return data


def derive_spec(hw: str, measurements_path: str, out: str | None) -> dict:
    """Fit `hw`'s fittable params to the measurements, write the derived spec, return a report.

    The spec goes to `out`, or to DEFAULT_OUT in the current folder: a fixed name, so no input (a
    spec named ``../x``, a measurements path) chooses where a file is written."""
    spec = load_spec(hw)
    if spec.family == "local":
        raise QuantDSEError("--from fits an analytic target; the local target is calibrated by measuring: "
                            "drop --from")
    names = fittable_params(family_schema(spec.family))
    if not names:
        raise QuantDSEError(f"target {spec.name} (family {spec.family}) has no efficiency/overhead params to fit: "
                            "pick an analytic GPU or FPGA target")
    rows = read_measurements(measurements_path)
    model = load_model(spec)
    unsupported = sorted({r["format"] for r in rows if not model.supports(get_format(r["format"]))})
    if unsupported:
        raise QuantDSEError(f"formats {', '.join(unsupported)} are not supported on {spec.name}: "
                            "remove those measurements")
    result = fit_spec_params(spec, rows, names)
    out_path = Path(out) if out else Path(DEFAULT_OUT)
    source = f"fitted to {Path(measurements_path).name} ({result['n']} GEMMs; MAPE {result['mape_before']:.1f}% -> " \
             f"{result['mape_after']:.1f}%) by python -m hwmodels.calibrate --from"
    doc = {"schema": SPEC_SCHEMA, "name": out_path.stem,
           "description": f"{spec.name} with efficiencies fitted to {Path(measurements_path).name}"}
    if Path(spec.path).resolve().parent == SPEC_DIR.resolve():  # a built-in: extend it by name
        doc.update(extends=spec.name, params=result["params"], sources={k: source for k in result["params"]})
    else:  # a spec file: specs extend only built-ins or files beside them, so the derived spec is whole
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.params.items()}
        doc.update(family=spec.family, params={**params, **result["params"]},
                   sources={**dict(spec.sources), **{k: source for k in result["params"]}})
    atomic_write_text(out_path, toml_dumps(doc), check=lambda tmp: load_spec(str(tmp)))  # it must load
    return {"hardware": spec.name, "out": str(out_path), **result,
            "initial": {k: float(spec[k]) for k in names}}
