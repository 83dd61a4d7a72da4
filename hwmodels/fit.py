"""Parametric latency fits: a measured kernel's roofline, and an analytic target's efficiencies.

Kernel model (one per measured kernel; `predict`):

    t = overhead + (t_compute^p + t_memory^p)^(1/p)
    t_compute = 2 M K N / (peak * e(M, m_half) * e(K, k_half) * e(N, n_half)),  e(x, h) = x / (x + h)
    t_memory  = (bytes(M, K, N) + reread * W * s(W / LLC)) / bandwidth,  s(x) = x^4 / (1 + x^4)

a roofline whose corner is smoothed by the p-norm (p = 1: compute and memory add up, p -> inf:
the max), with a saturating efficiency per GEMM dimension (small dimensions fill SIMD lanes,
register tiles and threads badly). The weights W (bytes) are streamed once from DRAM (the
measurement keeps them cold); a kernel that passes over them again (packing, converting bf16
to fp32, one pass per block of M rows) finds them in the last-level cache while W fits and
goes back to DRAM when it does not: `reread` extra passes, switched on by the smooth step s
around the LLC size (read from sysfs by `hwmodels.measure.llc_bytes`, stored in the params as
`llc_bytes`). The bandwidth is bounded around the measured STREAM copy (`bandwidth_bounds`).
Eight numbers per kernel, fitted with
`scipy.optimize.least_squares` on log-time residuals (relative error, so a 5 us call weighs
as much as a 50 ms call) with a soft-L1 loss (the machine is shared: a few timings are
outliers). Gathers have no compute term: t = overhead + (M row_s + bytes / bandwidth) / speedup
(speedup = par_speedup past GRAIN_SIZE output elements, else 1).

`fit_spec_params` fits chosen float params of any analytic family to measured GEMM times
through that family's own `cost()`, for `hwmodels.calibrate --from`.
"""
from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np
from scipy.optimize import least_squares

PARAMS = ("overhead_s", "peak_flops_per_s", "bytes_per_s", "m_half", "k_half", "n_half", "p", "reread")
MEMORY_ONLY = ("overhead_s", "bytes_per_s")
#: a gather of M random rows: + M x row_s, the DRAM latency of a row that memory-level parallelism
#: does not hide; and torch splits it over threads only past GRAIN_SIZE output elements, so the
#: memory time is divided by `par_speedup` (fitted, 1 .. threads) where M x N > GRAIN_SIZE
GATHER_PARAMS = MEMORY_ONLY + ("row_s", "par_speedup")
#: at::internal::GRAIN_SIZE = 32768 (torch aten/src/ATen/Parallel.h): the smallest range
#: at::parallel_for splits over threads
GRAIN_SIZE = 32768
#: GEMV (M = 1): one row, no tile to fill: a plain smoothed roofline, efficiencies fixed at 1
GEMV_PARAMS = ("overhead_s", "peak_flops_per_s", "bytes_per_s", "p", "reread")
_FIXED = {"m_half": 0.0, "k_half": 0.0, "n_half": 0.0, "p": 2.0, "reread": 0.0}
#: steepness of the LLC step s(W / LLC): s = 0.06 at half the LLC, 0.94 at twice it
LLC_STEP = 4.0
#: folds of the cross-validation that chooses between model variants (`select_and_fit`), and the
#: margin (percentage points of CV MAPE) by which a more complex variant must win to be kept
CV_FOLDS, CV_MARGIN = 5, 0.25
_LOWER = {"overhead_s": 1e-8, "peak_flops_per_s": 1e6, "bytes_per_s": 1e6, "m_half": 1e-3, "k_half": 1e-3,
          "n_half": 1e-3, "p": 1.0, "reread": 1e-3,
          "row_s": 1e-12, "par_speedup": 1.0}
#: fitted bandwidth within [STREAM / BW_LOW, STREAM * BW_HIGH] (`bandwidth_bounds`)
BW_LOW, BW_HIGH = 8.0, 2.0
_UPPER = {"overhead_s": 1.0, "peak_flops_per_s": 1e17, "bytes_per_s": 1e14, "m_half": 1e5, "k_half": 1e6,
          "n_half": 1e6, "p": 16.0, "reread": 16.0,
          "row_s": 1e-6, "par_speedup": 256.0}


def params_problem(params) -> str | None:
    """Why `params` cannot be a fitted kernel for `predict_parts` (None when it can): read back from a
    cache, every number must be finite, within the fit's bounds, and the divisors positive."""
    if not isinstance(params, dict):
        return "a kernel fit is not an object"
    need = MEMORY_ONLY + (("m_half", "k_half", "n_half", "p") if "peak_flops_per_s" in params else ())
    for key in need:
        if key not in params:
            return f"a kernel fit has no {key}"
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            return f"{key} = {str(value)[:20]} is not a finite number >= 0"
        if value > _UPPER.get(key, np.inf):
            return f"{key} = {value:g} is above the fit's bound {_UPPER[key]:g}"
    for key in ("bytes_per_s", "peak_flops_per_s", "p", "par_speedup"):
        if key in params and params[key] <= 0:
            return f"{key} must be > 0"
    if params.get("reread", 0) > 0 and not params.get("llc_bytes", 0) > 0:
        return "reread needs llc_bytes > 0"
    return None


def _eff(x, half):
    return x / (x + half)


def spill(wbytes, llc_bytes):
    """Smooth 0 -> 1 step as the weights outgrow the last-level cache."""
    x = (np.asarray(wbytes, dtype=np.float64) / llc_bytes) ** LLC_STEP
    return x / (1.0 + x)


def predict_parts(params: dict, m, k, n, flops, nbytes, wbytes=0.0):
    """(overhead, t_compute, t_memory, total) seconds, numpy-broadcast over the shapes.

    wbytes: weight bytes per call (for the reread term; params without "reread" ignore it).
    """
    nbytes = np.asarray(nbytes, dtype=np.float64)
    if params.get("reread", 0.0) > 0.0:
        nbytes = nbytes + params["reread"] * np.asarray(wbytes, dtype=np.float64) * spill(wbytes,
                                                                                         params["llc_bytes"])
    t_mem = nbytes / params["bytes_per_s"]
    overhead = np.broadcast_to(np.float64(params["overhead_s"]), t_mem.shape)
    if "peak_flops_per_s" not in params:
        if params.get("row_s", 0.0) > 0.0:
            m_arr = np.asarray(m, dtype=np.float64)
            parallel = m_arr * np.asarray(n, dtype=np.float64) > GRAIN_SIZE
            t_mem = (t_mem + params["row_s"] * m_arr) / np.where(parallel, params.get("par_speedup", 1.0), 1.0)
        return overhead, np.zeros_like(t_mem), t_mem, overhead + t_mem
    eff = _eff(m, params["m_half"]) * _eff(k, params["k_half"]) * _eff(n, params["n_half"])
    t_comp = np.asarray(flops, dtype=np.float64) / (params["peak_flops_per_s"] * eff)
    p = params["p"]
    with np.errstate(divide="ignore"):
        body = np.exp(np.logaddexp(p * np.log(t_comp), p * np.log(t_mem)) / p)
    return overhead, t_comp, t_mem, overhead + body


def predict(params: dict, m, k, n, flops, nbytes, wbytes=0.0):
    return predict_parts(params, m, k, n, flops, nbytes, wbytes)[3]


def mape(predicted, measured) -> float:
    """Mean absolute percentage error, in percent."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    return float(np.mean(np.abs(predicted - measured) / measured) * 100.0)


def bandwidth_bounds(stream_bytes_per_s: float | None) -> tuple[float, float]:
    """Physically plausible [low, high] for a kernel's bandwidth, from the measured STREAM copy.

    High: BW_HIGH x STREAM (a read-only stream of weights beats a copy, which also writes and
    write-allocates: 3 bytes of traffic per 2 counted). Low: STREAM / BW_LOW (a kernel may
    use DRAM badly; below that its time is compute, overhead or threading, not bandwidth).
    """
    if not stream_bytes_per_s:
        return _LOWER["bytes_per_s"], _UPPER["bytes_per_s"]
    return stream_bytes_per_s / BW_LOW, stream_bytes_per_s * BW_HIGH


def fit_kernel(m, k, n, flops, nbytes, seconds, free: tuple = PARAMS, bandwidth: tuple | None = None,
               wbytes=0.0, llc_bytes: float | None = None) -> dict:
    """Least-squares fit of the kernel model's `free` params to measured seconds; returns all params.

    Params not in `free` keep `_FIXED` values (MEMORY_ONLY: no compute term at all);
    `bandwidth` = (low, high) bounds bytes_per_s (`bandwidth_bounds`); without `llc_bytes` (or
    with no weight shape reaching half the LLC, where the reread term is not identifiable)
    "reread" is fixed at 0. Several
    starting points for the efficiency knees (the log-residual surface has shallow valleys);
    the start with the lowest robust cost wins.
    """
    m, k, n, flops, nbytes, seconds = (np.asarray(a, dtype=np.float64) for a in (m, k, n, flops, nbytes, seconds))
    if len(seconds) < len(free):
        raise ValueError(f"need at least {len(free)} measurements to fit {len(free)} params, got {len(seconds)}")
    wbytes = np.broadcast_to(np.asarray(wbytes, dtype=np.float64), seconds.shape)
    if "reread" in free and (not llc_bytes or not (wbytes > llc_bytes / 2).any()):
        free = tuple(p for p in free if p != "reread")
    memory_only = "peak_flops_per_s" not in free
    fixed = {} if memory_only else {key: v for key, v in _FIXED.items() if key not in free}
    if "reread" in free:
        fixed["llc_bytes"] = float(llc_bytes)
    lower, upper = dict(_LOWER), dict(_UPPER)
    if bandwidth is not None:
        lower["bytes_per_s"], upper["bytes_per_s"] = bandwidth
    lo = np.log([lower[p] for p in free])
    hi = np.log([upper[p] for p in free])
    log_t = np.log(seconds)

    def unpack(x):
        return {**fixed, **dict(zip(free, np.exp(x)))}

    def residual(x):
        return np.log(predict(unpack(x), m, k, n, flops, nbytes, wbytes)) - log_t

    base = {"overhead_s": max(float(seconds.min()) * 0.5, 2e-8), "bytes_per_s": float((nbytes / seconds).max()),
            "peak_flops_per_s": float((flops / seconds).max()) * 1.5 if not memory_only else 1.0, "p": 2.0,
            "reread": 0.5, "par_speedup": 1.5, "row_s": float(seconds.min() / np.max(m)) if np.max(m) > 0 else 1e-9}
    knees = [(1.0, 16.0, 16.0), (8.0, 128.0, 128.0), (0.1, 1.0, 1.0)] if "m_half" in free else [(1.0, 1.0, 1.0)]
    best = None
    for mh, kh, nh in knees:
        x0 = np.log([{**base, "m_half": mh, "k_half": kh, "n_half": nh}[p] for p in free])
        x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
        res = least_squares(residual, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, max_nfev=2000)
        if best is None or res.cost < best.cost:
            best = res
    return {key: float(v) for key, v in unpack(best.x).items()}


def select_and_fit(m, k, n, flops, nbytes, seconds, candidates: list, folds: int = CV_FOLDS, seed: int = 0,
                   **opts) -> dict:
    """Fit the candidate param sets (`fit_kernel`'s `free`) and keep the one with the lowest
    `folds`-fold cross-validated MAPE on these rows (seeded folds): an extra term must
    predict rows it was not fitted on, better by CV_MARGIN, to be kept (candidates go from
    simple to complex), so it cannot just absorb noise.

    Returns the chosen fit on all rows, with "cv_mape" (percent) added.
    """
    arrays = [np.broadcast_to(np.asarray(a, dtype=np.float64), np.shape(seconds)) for a in (m, k, n, flops, nbytes)]
    seconds = np.asarray(seconds, dtype=np.float64)
    wbytes = np.broadcast_to(np.asarray(opts.pop("wbytes", 0.0), dtype=np.float64), seconds.shape)
    if len(candidates) == 1 or len(seconds) < 2 * folds:  # nothing to choose, or too few rows: the simplest
        return {**fit_kernel(*arrays, seconds, free=candidates[0], wbytes=wbytes, **opts), "cv_mape": None}
    fold = np.random.default_rng(seed).permutation(len(seconds)) % folds
    best = None
    for free in candidates:
        pred = np.empty_like(seconds)
        ok = True
        for f in range(folds):
            tr, te = fold != f, fold == f
            if tr.sum() < len(free) or not te.any():
                ok = False
                break
            params = fit_kernel(*(a[tr] for a in arrays), seconds[tr], free=free, wbytes=wbytes[tr], **opts)
            pred[te] = predict(params, *(a[te] for a in arrays), wbytes[te])
        score = mape(pred, seconds) if ok else np.inf
        if best is None or score < best[0] - CV_MARGIN:
            best = (score, free)
    params = fit_kernel(*arrays, seconds, free=best[1], wbytes=wbytes, **opts)
    return {**params, "cv_mape": float(best[0]) if np.isfinite(best[0]) else None}


# ------------------------------------------------------------------ analytic targets (--from)

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
    from quantcore.formats import get_format
    from hwmodels.ops import Ops
    from hwmodels.registry import family_class
    from hwmodels.workload import Workload

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
