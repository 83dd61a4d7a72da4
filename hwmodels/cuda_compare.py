"""A CUDA calibration against the analytic GPU target of the same device: predicted / measured per kernel."""
from __future__ import annotations

import numpy as np

from hwmodels.registry import load_model, target_for_gpu

#: the GPU runtime profile whose kernels torch's own ops are (hwmodels/families/gpu_runtimes.toml)
COMPARE_RUNTIME = "gpt-fast"
#: measured calls longer than this are compared apart: eager launch (~15-20 us) is under ~20 % of them
LONG_CALL_S = 100e-6
#: measured CUDA kernel -> the format the analytic GPU model costs for it
CUDA_FORMATS = {"cuda-mm-fp16": "fp16", "cuda-mm-bf16": "bf16", "cuda-int-mm": "int8-a8",
                "cuda-int4pack-mm-g32": "int4-g32", "cuda-int4pack-mm-g64": "int4-g64",
                "cuda-int4pack-mm-g128": "int4-g128"}


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
