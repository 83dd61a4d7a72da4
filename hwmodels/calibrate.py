"""`python -m hwmodels.calibrate`: measure real torch kernels here, fit them, report the error.

    python -m hwmodels.calibrate --hw local [--quick] [--threads N] [--json]
    python -m hwmodels.calibrate --hw local --device cuda --json      # on a machine with a GPU
    python -m hwmodels.calibrate --hw a100-80gb --from measurements.json [--out derived.toml]

`--hw local` times each kernel of `hwmodels.measure.KERNELS` on a designed set of shapes
(`design`: a grid plus random draws from the realistic LLM/CNN range) in several passes (each
shape's time: the median of its calls within a pass, the minimum over passes: the machine is
shared, and a pass that ran while another process held a core shows whole scheduler time
slices, ~8 ms, on every call), and a STREAM copy that bounds the fitted bandwidths. It fits the
parametric model of `hwmodels.fit` per kernel (variants -- the LLC reread term, the largest M
of the GEMV-like sub-fit -- chosen by cross-validation on the fit rows alone) and reports the
MAPE on HELDOUT shapes per kernel drawn at random (seeded) from the same range, never used in
the fit, next to their pass-to-pass noise. On 2 idle cores: full 2-3 min, --quick under a minute (longer
when other processes share the cores: the passes are CPU-bound).
Results go to a cache file keyed by a machine fingerprint (CPU model, cores, torch version,
threads, device), outside the repository: $QUANTDSE_CACHE_DIR, else
$XDG_CACHE_HOME/quantdse, else ~/.cache/quantdse. Shapes that crashed a kernel are kept
there and skipped by later calibrations.

`--device cuda` measures torch's CUDA kernels the same way and prints, per kernel, the
ratio of the matching analytic GPU target's prediction (a100-80gb, h100-sxm) to the
measurement. Without a GPU it says so and exits 0.

`--from FILE` fits the efficiency/overhead params of an analytic target (the float params
of its family schema named "*efficiency*" or "*overhead*") to the user's own
measurements, [{"gemm": [M, K, N], "format": "int4-g128", "seconds": 1.2e-5}, ...],
through that family's cost(), and writes a derived spec (`extends = TARGET`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, check_outputs, dumps, load_json
from quantcore.limits import RANGES, check_cap, int_flag
from hwmodels import fit
from hwmodels.measure import KERNELS, STREAM, cache_bytes, measure
from hwmodels.registry import target_for_gpu

CALIBRATION_SCHEMA = "quantdse.calibration/1"
#: cap on one designed shape's work, so a full calibration stays within ~3 minutes on 2 cores
MAX_FLOPS = 2.4e9
#: cap on one designed shape's weight elements (making random weights and int4-packing them
#: costs ~5 ns per element here: 2^25 elements keep it under ~0.2 s a shape; 4096 x 8192)
MAX_WEIGHT_ELEMS = 2 ** 25
#: cap on one designed shape's output bytes: bigger outputs are fresh mmap'd pages on every call
#: (glibc returns large blocks to the OS), which times page faults rather than the kernel
MAX_OUT_BYTES = 16e6
#: the caps above, as `_within_caps` reads them
CPU_CAPS = {"flops": MAX_FLOPS, "out_bytes": MAX_OUT_BYTES, "weight_elems": MAX_WEIGHT_ELEMS}
#: a GPU has none of the CPU's reasons for the caps above (it runs a 16384^3 GEMM in ~10 ms, and its
#: caching allocator reuses outputs): only a bound on one shape's work and weights
CUDA_CAPS = {"flops": 1e13, "out_bytes": 1e9, "weight_elems": 2 ** 28}
#: random fit shapes per kernel on top of the grid (full), and held-out shapes per kernel
FIT_DRAWS, HELDOUT, HELDOUT_QUICK = 16, 24, 6
#: measurement passes over the whole grid, each in fresh child processes (min of the pass medians)
PASSES, QUICK_PASSES = 2, 2
#: more passes (at most EXTRA_PASSES) over the shapes whose slowest pass is UNSURE_SPREAD x the fastest
EXTRA_PASSES, UNSURE_SPREAD = 1, 1.3
#: the GPU runtime profile whose kernels torch's own ops are (hwmodels/families/gpu_runtimes.toml)
COMPARE_RUNTIME = "gpt-fast"
#: measured calls longer than this are compared apart: eager launch (~15-20 us) is under ~20 % of them
LONG_CALL_S = 100e-6
#: measured CUDA kernel -> the format the analytic GPU model costs for it
CUDA_FORMATS = {"cuda-mm-fp16": "fp16", "cuda-mm-bf16": "bf16", "cuda-int-mm": "int8-a8",
                "cuda-int4pack-mm-g32": "int4-g32", "cuda-int4pack-mm-g64": "int4-g64",
                "cuda-int4pack-mm-g128": "int4-g128"}


# ------------------------------------------------------------------ cache and fingerprint

def cache_dir() -> Path:
    """Where calibrations live (never inside the repository)."""
    if os.environ.get("QUANTDSE_CACHE_DIR"):
        return Path(os.environ["QUANTDSE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quantdse"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_threads() -> int:
    """torch's intra-op thread count here (what a plain torch program uses)."""
    import torch

    return int(torch.get_num_threads())


def fingerprint(threads: int = 0, device: str = "cpu") -> dict:
    """What a calibration is valid for: CPU model, cores, torch version, threads, device."""
    import torch

    doc = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
           "threads": int(threads) or default_threads(), "device": device}
    if device == "cuda" and torch.cuda.is_available():
        doc["gpu"] = torch.cuda.get_device_name(0)
    return doc


def cache_path(fp: dict) -> Path:
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"local-{fp['device']}-{key}.json"


def load_calibration(threads: int = 0, device: str = "cpu") -> dict | None:
    """The cached calibration for this machine, or None when there is none (or it is unreadable)."""
    fp = fingerprint(threads, device)
    path = cache_path(fp)
    if not path.is_file():
        return None
    try:
        doc = load_json(path, "calibration cache", note=False)
    except (OSError, ValueError):  # QuantDSEError is a ValueError: a damaged cache is remeasured
        return None
    if not isinstance(doc, dict) or doc.get("schema") != CALIBRATION_SCHEMA or doc.get("fingerprint") != fp or not doc.get("kernels"):
        return None
    return doc


# ------------------------------------------------------------------ shape design

def _kernel_names(device: str) -> list[str]:
    return [name for name, k in KERNELS.items() if k.device == device]


def _draw(rng, kern, count: int, quick: bool) -> list[tuple]:
    """`count` random shapes of `kern` in the realistic LLM/CNN range, within the caps.

    GEMMs: a third decode GEMVs (M = 1), the rest M log-uniform in 2..2048; K and N
    log-uniform in 256..16384, multiples of 128 (real layers: 1408, 4096, 11008, 14336; int4
    groups up to 128 divide K). Convs: ResNet-like 3x3 layers (sides 7..56, 16..512 channels
    in steps of 16). Gathers: 1..2048 rows of 256..8192 elements. Draws over a cap are redrawn.
    """
    top = 4096 if quick else 16384

    def log_uniform(lo, hi):
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    def dim(lo, hi, step):
        return max(lo, int(round(log_uniform(lo, hi) / step)) * step)

    out: list[tuple] = []
    for _ in range(count * 50):
        if len(out) == count:
            break
        if kern.op == "gather":
            s = (int(round(log_uniform(1, 2048))), 1, dim(256, top // 2, 128))
        elif kern.op == "conv2d":
            s = (int(rng.integers(7, 57)) ** 2, dim(16, 512, 16) * 9, dim(32, 512, 16))
        else:
            m = 1 if len(out) % 3 == 0 else int(round(log_uniform(2, 2048)))
            s = (m, dim(256, top, 128), dim(256, top, 128))
        if _within_caps(kern, s) and s not in out:
            out.append(s)
    return out


def _within_caps(kern, s) -> bool:
    m, k, n = s
    caps = CUDA_CAPS if kern.device == "cuda" else CPU_CAPS
    return (kern.flops(m, k, n) <= caps["flops"] and m * n * kern.out_bytes <= caps["out_bytes"]
            and k * n <= caps["weight_elems"])


def design(quick: bool, device: str = "cpu", seed: int = 0) -> list[dict]:
    """Fit and held-out shapes for every kernel of `device`: [{"kernel", "shape", "role"}].

    Fit: a grid over the range (powers of 2 and 4; GEMV M = 1 and GEMM M > 1 are separate
    code paths with separate fits) plus random draws (`_draw`, so the fit sees the odd sizes
    real layers have). Held-out: HELDOUT (HELDOUT_QUICK) further draws from the same
    distribution with their own seeded stream, never in the fit. Shapes over the caps
    (MAX_FLOPS, MAX_OUT_BYTES, MAX_WEIGHT_ELEMS) are left out to bound the run time.
    """
    if quick:
        ms, ks, ns = (4, 32, 256), (512, 2048), (512, 2048)
        gemv_ks, gemv_ns = (512, 1024, 2048), (512, 2048)
        sides, cins, couts = (14, 28), (32, 128), (64, 256)
        gms, gns = (1, 64, 1024), (512, 2048)
        extra_fit, held = 0, HELDOUT_QUICK
    else:
        ms, ks, ns = (2, 8, 32, 128, 512, 2048), (256, 1024, 4096, 16384), (256, 1024, 4096, 16384)
        gemv_ks, gemv_ns = (256, 1024, 4096, 16384), (256, 1024, 4096, 16384)
        sides, cins, couts = (7, 14, 28, 56), (16, 64, 256, 512), (32, 128, 512)
        gms, gns = (1, 16, 128, 1024, 2048), (256, 1024, 4096)
        extra_fit, held = FIT_DRAWS, HELDOUT
    jobs: list[dict] = []
    for i, name in enumerate(_kernel_names(device)):
        kern = KERNELS[name]
        if kern.op == "gather":
            grid = [(m, 1, n) for m in gms for n in gns]
        elif kern.op == "conv2d":
            grid = [(s * s, c * 9, o) for s in sides for c in cins for o in couts]
        else:
            grid = [(1, k, n) for k in gemv_ks for n in gemv_ns] + [(m, k, n) for m in ms for k in ks for n in ns]
        grid = [s for s in grid if _within_caps(kern, s)]
        fit_rng, held_rng = (np.random.default_rng([seed, i, role]) for role in (0, 1))
        grid += [s for s in _draw(fit_rng, kern, extra_fit, quick) if s not in grid]
        test = [s for s in _draw(held_rng, kern, held + 8, quick) if s not in grid][:held]
        jobs += [{"kernel": name, "shape": list(s), "role": "fit"} for s in grid]
        jobs += [{"kernel": name, "shape": list(s), "role": "heldout"} for s in test]
    return jobs


# ------------------------------------------------------------------ calibrate

def _spread(runs: list[dict]) -> float:
    times = [r["seconds"] for r in runs]
    return max(times) / min(times) if times else 1.0


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


def calibrate(quick: bool = False, threads: int = 0, device: str = "cpu", seed: int = 0,
              progress: bool = True) -> dict:
    """Measure, fit and cache; returns the calibration document (also written to cache_path)."""
    started = time.perf_counter()
    fp = fingerprint(threads, device)
    path = cache_path(fp)
    old_crashed = []
    if path.is_file():
        try:
            old_crashed = list(load_json(path, "calibration cache", note=False).get("crashed", []))
        except (OSError, ValueError, AttributeError, TypeError):
            old_crashed = []
    avoid = {(c["kernel"], tuple(c["shape"])) for c in old_crashed}
    jobs = [j for j in design(quick, device, seed) if (j["kernel"], tuple(j["shape"])) not in avoid]
    passes = QUICK_PASSES if quick else PASSES
    seen: dict = {}
    crashed: list = []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load_before > 0.5 and progress:
        print(f"notice: load average {load_before:.1f} before calibrating: other processes share these cores, "
              "multi-threaded timings may show scheduler stalls (repeated passes filter some)", file=sys.stderr)

    streams: list[float] = []
    cache = cache_bytes(device)  # the CPU's LLC or the GPU's L2: what cold weights must exceed

    def run(todo, i):
        rows, bad = measure([[STREAM, 1, 1, 1]] + [[j["kernel"], *j["shape"]] for j in todo], threads=fp["threads"],
                            target_s=0.01 if quick else 0.02, min_repeats=5, seed=seed + i, progress=progress,
                            desc=f"calibrating {device} (pass {i + 1})", device=device, cache=cache)
        crashed.extend(bad)
        for r in rows:
            if r["kernel"] == STREAM:
                streams.append(r["bytes_per_s"])
                continue
            seen.setdefault((r["kernel"], tuple(r["shape"])), []).append(r)
        gone = {(c["kernel"], tuple(c["shape"])) for c in bad}
        return [j for j in todo if (j["kernel"], tuple(j["shape"])) not in gone]

    for i in range(passes):
        jobs = run(jobs, i)
    for i in range(passes, passes + EXTRA_PASSES):  # shapes whose passes disagree: a pass was contended
        unsure = [j for j in jobs if _spread(seen.get((j["kernel"], tuple(j["shape"])), [])) > UNSURE_SPREAD]
        if not unsure:
            break
        run(unsure, i)
    rows = []
    for j in jobs:
        runs = seen.get((j["kernel"], tuple(j["shape"])), [])
        if runs:  # a pass's median is robust to spikes; the min over passes drops a contended pass
            rows.append({"kernel": j["kernel"], "shape": j["shape"], "role": j["role"],
                         "seconds": min(r["seconds"] for r in runs),
                         "pass_seconds": [r["seconds"] for r in runs],
                         "repeats": sum(r["repeats"] for r in runs)})
    # the slowest pass: the copy rate is bimodal on this VM (~45 or ~87 GB/s from one worker
    # process to the next, cause not found), and the fits' bandwidth bound must not follow the fast mode
    stream = float(min(streams)) if streams else None
    kernels = {}
    for name in _kernel_names(device):
        if any(r["kernel"] == name and r["role"] == "fit" for r in rows):
            entry = fit_rows(name, rows, stream, choose=not quick, cache=cache)
            if entry is not None:
                kernels[name] = entry
    doc = {"schema": CALIBRATION_SCHEMA, "fingerprint": fp, "quick": bool(quick), "seed": seed,
           "load_average": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0],
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": 0.0, "stream_bytes_per_s": stream, "stream_passes": streams,
           "llc_bytes": cache,
           "kernels": kernels,
           "measurements": rows, "crashed": old_crashed + crashed}
    doc["seconds"] = round(time.perf_counter() - started, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dumps(doc))
    doc["path"] = str(path)
    return doc


def ensure_calibration(threads: int = 0, auto: bool = True) -> dict:
    """The cached CPU calibration; without one, run the quick one (auto) or raise the one-line error."""
    doc = load_calibration(threads, "cpu")
    if doc is not None:
        return doc
    if not auto:
        raise QuantDSEError("no calibration of the local target on this machine: "
                            "run python -m hwmodels.calibrate --hw local")
    print("notice: no calibration of --hw local on this machine yet: running the quick one (<1 min on 2 idle cores); "
          "python -m hwmodels.calibrate --hw local gives the full one", file=sys.stderr)
    return calibrate(quick=True, threads=threads, progress=False)


# ------------------------------------------------------------------ CUDA vs analytic

def compare_with_target(doc: dict) -> dict | None:
    """Ratio analytic / measured per CUDA kernel, against the matching GPU target.

    The target runs with `runtime=gpt-fast`, whose kernels are the ones torch calls here (cuBLAS
    for fp16/bf16, tinygemm for `_weight_int4pack_mm`). Eager torch spends ~15-20 us of host
    time per call, which a CUDA-graph runtime does not: "long" is the median over the shapes
    measured above LONG_CALL_S, where that is under ~20 % of the time.
    """
    target = target_for_gpu(doc["fingerprint"].get("gpu", ""))
    if target is None:
        return None
    from quantcore.formats import get_format
    from hwmodels.ops import Ops
    from hwmodels.registry import load_model
    from hwmodels.workload import Workload

    model = load_model(target, [f"runtime={COMPARE_RUNTIME}"])
    out = {"target": target, "runtime": COMPARE_RUNTIME, "long_call_s": LONG_CALL_S, "kernels": {}}
    for name, fmt_name in CUDA_FORMATS.items():
        rows = [r for r in doc["measurements"] if r["kernel"] == name]
        if not rows:
            continue
        fmt = get_format(fmt_name)
        ops = Ops.from_rows([(f"g{i}", "linear", *r["shape"], 1.0, float(r["shape"][1] * r["shape"][2]), "")
                             for i, r in enumerate(rows)])
        pred = model.cost(ops, [fmt], Workload()).latency_s[:, 0]
        seconds = np.array([r["seconds"] for r in rows])
        ratio = pred / seconds
        long = ratio[seconds > LONG_CALL_S]
        out["kernels"][name] = {"format": fmt_name, "median_ratio": float(np.median(ratio)),
                                "min_ratio": float(ratio.min()), "max_ratio": float(ratio.max()), "n": len(rows),
                                "long_median_ratio": float(np.median(long)) if long.size else None,
                                "n_long": int(long.size)}
    return out


# ------------------------------------------------------------------ --from: fit an analytic target

def read_measurements(path: str) -> list[dict]:
    """Validate a user measurements file: a list of {"gemm": [M, K, N], "format", "seconds"}."""
    from quantcore.formats import get_format

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


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    return repr(float(v)) if isinstance(v, float) else str(v)


def derive_spec(hw: str, measurements_path: str, out: str | None) -> dict:
    """Fit `hw`'s fittable params to the measurements, write the derived spec, return a report."""
    from hwmodels.registry import family_schema
    from hwmodels.spec import load_spec

    spec = load_spec(hw)
    if spec.family == "local":
        raise QuantDSEError("--from fits an analytic target; the local target is calibrated by measuring: "
                            "drop --from")
    names = fit.fittable_params(family_schema(spec.family))
    if not names:
        raise QuantDSEError(f"target {spec.name} (family {spec.family}) has no efficiency/overhead params to fit: "
                            "pick an analytic GPU or FPGA target")
    rows = read_measurements(measurements_path)
    from hwmodels.registry import load_model

    model = load_model(spec)
    from quantcore.formats import get_format

    unsupported = sorted({r["format"] for r in rows if not model.supports(get_format(r["format"]))})
    if unsupported:
        raise QuantDSEError(f"formats {', '.join(unsupported)} are not supported on {spec.name}: "
                            "remove those measurements")
    result = fit.fit_spec_params(spec, rows, names)
    out_path = Path(out) if out else Path(f"{spec.name}-fitted.toml")
    name = out_path.stem
    source = f"fitted to {measurements_path} ({result['n']} GEMMs; MAPE {result['mape_before']:.1f}% -> " \
             f"{result['mape_after']:.1f}%) by python -m hwmodels.calibrate --from"
    from hwmodels.spec import SPEC_DIR

    parent = spec.name  # a built-in by name; a spec file by its path from the derived spec's folder
    if Path(spec.path).resolve().parent != SPEC_DIR.resolve():
        parent = os.path.relpath(Path(spec.path).resolve(), out_path.resolve().parent)
    lines = ['schema = "hwmodels.spec/1"', f"name = {json.dumps(name)}", f"extends = {json.dumps(parent)}",
             f"description = {json.dumps(f'{spec.name} with efficiencies fitted to {measurements_path}')}",
             "", "[params]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in result["params"].items()]
    lines += ["", "[sources]"] + [f"{k} = {json.dumps(source)}" for k in result["params"]]
    atomic_write_text(out_path, "\n".join(lines) + "\n", check=lambda tmp: load_spec(str(tmp)))  # it must load
    return {"hardware": spec.name, "out": str(out_path), **result,
            "initial": {k: float(spec[k]) for k in names}}


# ------------------------------------------------------------------ CLI

def _report_text(doc: dict) -> str:
    fp = doc["fingerprint"]
    lines = [f"local target: {fp['cpu']}, {fp['threads']} threads, torch {fp['torch']}, device {fp['device']}"
             f" ({'quick' if doc['quick'] else 'full'} calibration, {doc['seconds']:.1f} s)",
             f"cache: {doc.get('path', '')}",
             f"STREAM copy bandwidth: {(doc.get('stream_bytes_per_s') or 0) / 1e9:.1f} GB/s",
             f"{'kernel':22s} {'n_fit':>5s} {'fit MAPE':>9s} {'held-out':>9s} {'held MAPE':>9s} {'noise':>6s}"
             "  peak GFLOP/s  GB/s"]
    for name, k in doc["kernels"].items():
        p = k["fits"].get("gemm") or k["fits"].get("all") or k["fits"]["gemv"]
        bw = (k["fits"].get("gemv") or p)["bytes_per_s"]  # GEMV: where the bandwidth is identifiable
        held = "n/a" if k["heldout_mape"] is None else f"{k['heldout_mape']:.1f}%"
        noise = "n/a" if k.get("heldout_noise") is None else f"{k['heldout_noise']:.1f}%"
        at_bound = bool(doc.get("stream_bytes_per_s")) and any(
            abs(bw / b - 1) < 0.01 for b in fit.bandwidth_bounds(doc["stream_bytes_per_s"]))
        lines.append(f"{name:22s} {k['n_fit']:5d} {k['fit_mape'] or 0:8.1f}% {k['n_heldout']:9d} {held:>9s} {noise:>6s}  "
                     f"{p.get('peak_flops_per_s', 0) / 1e9:11.1f}  {bw / 1e9:5.1f}{'*' if at_bound else ''}")
    lines.append("noise: median pass-to-pass variation of the held-out timings; GB/s: the GEMV (or only) fit's "
                 "bandwidth, * = at its STREAM-derived bound (that fit is not memory-bound)")
    rejected: dict = {}
    for c in doc["crashed"]:
        if c["returncode"]:
            lines.append(f"crashed (avoided from now on): {c['kernel']} {c['shape']} exit {c['returncode']}")
        else:  # the kernel raised (e.g. CUDA _int_mm needs M > 16): one line a kernel
            rejected.setdefault(c["kernel"], []).append(c)
    for name, rows in rejected.items():
        lines.append(f"rejected by the kernel (avoided from now on): {name}, {len(rows)} shapes, e.g. "
                     f"{rows[0]['shape']}: {rows[0].get('stderr', '')[:80]}")
    cmp = doc.get("comparison")
    if cmp:
        lines.append(f"analytic {cmp['target']} (runtime={cmp['runtime']}) / measured, median ratio: all shapes, "
                     f"and calls over {cmp['long_call_s'] * 1e6:.0f} us (eager launch under ~20 %)")
        for name, c in cmp["kernels"].items():
            long = "n/a" if c["long_median_ratio"] is None else f"{c['long_median_ratio']:.2f}x"
            lines.append(f"  {name:22s} {c['format']:10s} {c['median_ratio']:.2f}x "
                         f"[{c['min_ratio']:.2f} .. {c['max_ratio']:.2f}] over {c['n']} shapes; "
                         f"long {long} over {c['n_long']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = ArgumentParser(prog="hwmodels.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--hw", required=True, help="local (measure here), or an analytic target with --from")
    p.add_argument("--quick", action="store_true", help="small grid (<1 min on 2 idle cores), for tests and first runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int_flag(*RANGES["seed"]), default=0,
                   help="seed of the held-out shapes and the random weights")
    p.add_argument("--from", dest="source", metavar="FILE", help="measurements JSON to fit an analytic target to")
    p.add_argument("--out", help="derived spec path for --from (default TARGET-fitted.toml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads < 0:
        raise QuantDSEError(f"--threads must be >= 0, got {args.threads}")
    check_cap("threads", args.threads, "--threads")
    check_outputs([args.out], [args.source, args.hw])

    if args.source:
        report = derive_spec(args.hw, args.source, args.out)
        if args.json:
            print(dumps(report), end="")
        else:
            print(f"{report['hardware']}: fitted {', '.join(report['params'])} to {report['n']} measurements; "
                  f"MAPE {report['mape_before']:.1f}% -> {report['mape_after']:.1f}%; wrote {report['out']}")
            for k, v in report["params"].items():
                print(f"  {k:28s} {report['initial'][k]:.6g} -> {v:.6g}")
        return 0
    if args.hw != "local":
        raise QuantDSEError(f"--hw {args.hw}: only the local target is measured; for an analytic target "
                            "pass --from measurements.json")
    if args.out is not None:
        raise QuantDSEError("--out goes with --from (a derived spec); the local calibration is cached")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            message = "no CUDA device here (torch.cuda.is_available() is False): skipping the CUDA calibration"
            print(dumps({"skipped": message}), end="") if args.json else print(message)
            return 0
    doc = calibrate(quick=args.quick, threads=args.threads, device=args.device, seed=args.seed,
                    progress=not args.no_progress)
    if args.device == "cuda":
        doc["comparison"] = compare_with_target(doc)
    if args.json:
        print(dumps({k: v for k, v in doc.items() if k != "measurements"}), end="")
    else:
        print(_report_text(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
