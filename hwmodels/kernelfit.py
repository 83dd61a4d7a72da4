"""One measured kernel's fitted latency: the sub-fits per regime (GEMV / GEMM / all) and their evaluation.

`fit_rows` fits a kernel's measured rows with the parametric model of `hwmodels.fit`;
`kernel_parts` evaluates a fitted entry at new shapes (what the `local` cost family calls).
"""
from __future__ import annotations

import numpy as np

from quantcore.errors import QuantDSEError
from hwmodels import fit
from hwmodels.measure import KERNELS


def _regime(kern, m, gemv_max_m: int = 1):
    """Which sub-fit serves rows with M = m: "gemv" (M <= gemv_max_m) / "gemm" for GEMM kernels, else "all"."""
    if kern.op in ("conv2d", "gather"):
        return np.full(np.shape(m), "all")
    return np.where(np.asarray(m) <= gemv_max_m, "gemv", "gemm")


def kernel_parts(entry: dict, kern, m, k, n):
    """(overhead, compute, memory, total) seconds of `kern` at shapes m, k, n from its fitted entry."""
    m, k, n = (np.asarray(a, dtype=np.float64) for a in (m, k, n))
    m, k, n = np.broadcast_arrays(m, k, n)
    fl, by, wb = kern.flops(m, k, n), kern.bytes(m, k, n), kern.weights(m, k, n)
    regime = _regime(kern, m, entry.get("gemv_max_m", 1))
    parts = [np.full(m.shape, np.inf) for _ in range(4)]  # a regime with no fit: unsupported
    for name, params in entry["fits"].items():
        sel = regime == name
        if sel.any():
            got = fit.predict_parts(params, m[sel], k[sel], n[sel], fl[sel], by[sel], wb[sel])
            for out, val in zip(parts, got):
                out[sel] = val
    return tuple(parts)


#: candidate largest M of the "gemv" sub-fit (small-M GEMMs often run the GEMV-like code path of
#: the library, one weight pass per row), chosen per kernel by cross-validation on the fit rows
GEMV_SPLITS = (1, 4, 16)


def _candidates(free: tuple) -> list[tuple]:
    """Model variants to choose from by cross-validation: without and with the LLC reread term
    (GEMMs, convs) or the per-row term (gathers)."""
    if free == fit.MEMORY_ONLY:  # a gather: without and with the per-row latency term
        return [fit.MEMORY_ONLY, fit.GATHER_PARAMS]
    plain = tuple(p for p in free if p != "reread")
    return [plain, free] if plain != free else [plain]


def fit_rows(name: str, rows: list[dict], stream_bytes_per_s: float | None = None, choose: bool = True, *,
             cache: int) -> dict:
    """Fit one kernel on its "fit" rows (GEMV and GEMM apart); MAPE on the fit and held-out rows.

    With the measured STREAM bandwidth, the fitted bandwidth is bounded to
    [stream / BW_LOW, stream * BW_HIGH] (`fit.bandwidth_bounds`). "heldout_noise" is the
    pass-to-pass variation of the held-out timings (median |pass 1 / pass 2 - 1|, percent;
    the median, as one pass that shared its core with another process can be 100x off): the
    measurement noise, about a lower bound on any model's held-out MAPE. choose=False (the
    quick calibration: too few rows to cross-validate, and no time) fits the simplest variant.
    """
    kern = KERNELS[name]
    mine = [r for r in rows if r["kernel"] == name]
    if not mine:
        raise QuantDSEError(f"no measurements of kernel {name}: rerun python -m hwmodels.calibrate --hw local")

    def arrays(sel):
        shp = np.array([r["shape"] for r in sel], dtype=np.float64).reshape(-1, 3)
        return shp[:, 0], shp[:, 1], shp[:, 2], np.array([r["seconds"] for r in sel])

    train = [r for r in mine if r["role"] == "fit"]
    test = [r for r in mine if r["role"] == "heldout"]
    m, k, n, sec = arrays(train)

    def fit_split(gemv_max_m):
        regime = _regime(kern, m, gemv_max_m)
        fits, cv, count = {}, 0.0, 0
        for part in sorted(set(regime.tolist())):
            sel = regime == part
            free = (fit.MEMORY_ONLY if kern.op == "gather" else fit.PARAMS if part != "gemv"
                    else fit.GEMV_PARAMS if gemv_max_m == 1 else fit.GEMV_PARAMS + ("m_half",))
            if sel.sum() < len(free) - ("reread" in free):  # e.g. CUDA _int_mm rejects M <= 16: no GEMV
                continue
            args = (m[sel], k[sel], n[sel], kern.flops(m[sel], k[sel], n[sel]), kern.bytes(m[sel], k[sel], n[sel]),
                    sec[sel])
            fits[part] = fit.select_and_fit(*args, candidates=_candidates(free)[:None if choose else 1],
                                            bandwidth=fit.bandwidth_bounds(stream_bytes_per_s),
                                            wbytes=kern.weights(m[sel], k[sel], n[sel]), llc_bytes=cache)
            cv += (fits[part]["cv_mape"] or 0.0) * sel.sum()
            count += sel.sum()
        return fits, (cv / count if count else np.inf)

    splits = GEMV_SPLITS if choose and kern.op not in ("conv2d", "gather") else (1,)
    fits, split = None, 1
    for candidate in splits:  # the M up to which the decode-like small-M code path runs, by cross-validation
        got, cv = fit_split(candidate)
        if fits is None or cv < best_cv - fit.CV_MARGIN:
            fits, split, best_cv = got, candidate, cv
    if not fits:
        return None
    entry = {"fits": fits, "gemv_max_m": int(split), "n_fit": len(train), "n_heldout": len(test)}

    def covered_mape(m, k, n, sec):  # over the rows a fitted regime covers
        pred = kernel_parts(entry, kern, m, k, n)[3]
        ok = np.isfinite(pred)
        return fit.mape(pred[ok], sec[ok]) if ok.any() else None

    entry["fit_mape"] = covered_mape(m, k, n, sec)
    entry["heldout_mape"] = covered_mape(*arrays(test)) if test else None
    pairs = [r["pass_seconds"][:2] for r in test if len(r.get("pass_seconds", ())) >= 2]
    entry["heldout_noise"] = float(np.median([abs(a / b - 1) for a, b in pairs]) * 100) if pairs else None
    return entry
