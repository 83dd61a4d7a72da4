"""How well the `local` target predicts this machine: held-out MAPE per kernel, fresh spot checks.

    python -m bench.local [--full] [--threads N] [--seed 0] [--json]

Runs the calibration (quick unless --full; written to the usual cache), prints each kernel's
MAPE on the held-out shapes of the calibration (and their pass-to-pass noise), then times a few LLM-like shapes that are in
neither the fit grid nor the held-out set, fresh, and prints predicted vs measured (each a
median over its calls, the minimum over two passes) with the median ratio.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from quantcore.cli import ArgumentParser, run_cli
from quantcore.formats import get_format
from hwmodels.local_calibration import calibrate
from hwmodels.measure import measure
from hwmodels.ops import Ops
from hwmodels.registry import load_model
from hwmodels.workload import Workload

#: (kernel, format, M, K, N): decode GEMVs and small prefill GEMMs of 7B-class layers, off every grid
SPOT = [("int4pack-mm-g128", "int4-g128", 1, 4096, 11008), ("int4pack-mm-g32", "int4-g32", 1, 11008, 4096),
        ("int8pack-mm", "int8", 1, 5120, 5120), ("mm-bf16", "bf16", 1, 4096, 1408),
        ("mm-fp32", "fp32", 1, 1408, 4096), ("int-mm", "int8-a8", 8, 4096, 1408),
        ("int4pack-mm-g64", "int4-g64", 24, 1408, 4096), ("mm-bf16", "bf16", 48, 4096, 1408)]


def main(argv=None) -> int:
    p = ArgumentParser(prog="bench.local", description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="the full calibration (~2-3 min) instead of the quick one")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    doc = calibrate(quick=not args.full, threads=args.threads, seed=args.seed, progress=True)
    model = load_model("local", {"threads": args.threads})
    jobs = [[k, m, kk, n] for k, _, m, kk, n in SPOT]
    runs = [measure(jobs, threads=doc["fingerprint"]["threads"], seed=args.seed + i, desc="spot checks")
            for i in range(2)]
    best: dict = {}
    for rows, _ in runs:
        for r in rows:
            key = (r["kernel"], tuple(r["shape"]))
            best[key] = min(best.get(key, np.inf), r["seconds"])
    spots = []
    for kernel, fmt, m, k, n in SPOT:
        measured = best.get((kernel, (m, k, n)))
        if measured is None:
            continue
        pred = float(model.cost(Ops.gemm(m, k, n), [get_format(fmt)], Workload()).latency_s[0, 0])
        spots.append({"kernel": kernel, "format": fmt, "gemm": [m, k, n], "predicted_s": pred,
                      "measured_s": measured, "ratio": pred / measured})
    result = {"fingerprint": doc["fingerprint"], "quick": doc["quick"], "calibration_s": doc["seconds"],
              "heldout_mape": {k: v["heldout_mape"] for k, v in doc["kernels"].items()},
              "heldout_noise": {k: v.get("heldout_noise") for k, v in doc["kernels"].items()},
              "median_heldout_mape": float(np.median([v["heldout_mape"] for v in doc["kernels"].values()
                                                      if v["heldout_mape"] is not None])),
              "spot": spots, "median_spot_ratio": float(np.median([s["ratio"] for s in spots])),
              "median_spot_error_pct": float(np.median([abs(s["ratio"] - 1) * 100 for s in spots]))}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    fp = doc["fingerprint"]
    print(f"{fp['cpu']}, {fp['threads']} threads, torch {fp['torch']}: "
          f"{'quick' if doc['quick'] else 'full'} calibration in {doc['seconds']:.1f} s")
    print(f"{'kernel':22s} held-out MAPE  noise (median pass-to-pass)")
    for name, mape in result["heldout_mape"].items():
        noise = result["heldout_noise"][name]
        print(f"{name:22s} {'n/a' if mape is None else f'{mape:.1f}%':>13s}  {'n/a' if noise is None else f'{noise:.1f}%'}")
    print(f"median held-out MAPE {result['median_heldout_mape']:.1f}%")
    print(f"{'spot check':22s} {'format':10s} {'M,K,N':>16s} {'predicted':>11s} {'measured':>11s} ratio")
    for s in spots:
        print(f"{s['kernel']:22s} {s['format']:10s} {','.join(map(str, s['gemm'])):>16s} "
              f"{s['predicted_s'] * 1e6:9.1f}us {s['measured_s'] * 1e6:9.1f}us {s['ratio']:.2f}")
    print(f"median ratio {result['median_spot_ratio']:.2f}, median |error| {result['median_spot_error_pct']:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
