"""Calibrate the `local` target: time the designed shapes here, fit each kernel, write the cache.

`calibrate` runs `hwmodels.measure` over `hwmodels.shapes.design` in several passes (each
shape's time: the median of its calls within a pass, the minimum over passes: the machine is
shared, and a pass that ran while another process held a core shows whole scheduler time
slices on every call), plus a STREAM copy that bounds the fitted bandwidths; fits every kernel
(`hwmodels.kernelfit.fit_rows`) and writes the result where `hwmodels.calibration_cache`
finds it. Only the calibrate command runs this; costing reads the cache and never measures.
"""
from __future__ import annotations

import os
import sys
import time

from quantcore.io import atomic_write_text, dumps, load_json
from hwmodels.calibration_cache import CALIBRATION_SCHEMA, cache_path, fingerprint
from hwmodels.kernelfit import fit_rows
from hwmodels.measure import STREAM, cache_bytes, measure
from hwmodels.shapes import kernel_names, design

#: measurement passes over the whole grid, each in fresh child processes (min of the pass medians)
PASSES, QUICK_PASSES = 2, 2
#: more passes (at most EXTRA_PASSES) over the shapes whose slowest pass is UNSURE_SPREAD x the fastest
EXTRA_PASSES, UNSURE_SPREAD = 1, 1.3


def _spread(runs: list[dict]) -> float:
    times = [r["seconds"] for r in runs]
    return max(times) / min(times) if times else 1.0


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
    for name in kernel_names(device):
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
