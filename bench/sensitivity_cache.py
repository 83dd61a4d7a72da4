"""The `weights` sensitivity cache: the first search on a checkpoint against the second.

    python bench/sensitivity_cache.py            # all-minilm-l6-v2 with k-quants, a fresh cache

Prints the sensitivity time (seconds spent in dse.sensitivity.compute_sensitivity) of two
`dse.search --sensitivity weights` runs on the same checkpoint and formats, in a fresh cache
directory: the first computes the table, the second reads it back.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

FORMATS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0", "int4-g128", "fp16")
MODEL = "all-minilm-l6-v2"


def main() -> int:
    from dse.budget import Budget
    from dse.pipeline import SearchRequest
    from dse.search import search
    import dse.pipeline as pipeline

    timed: list = []
    compute = pipeline.compute_sensitivity

    def timing(*args, **kwargs):
        start = time.perf_counter()
        out = compute(*args, **kwargs)
        timed.append(time.perf_counter() - start)
        return out

    pipeline.compute_sensitivity = timing
    with tempfile.TemporaryDirectory() as cache:
        os.environ["QUANTDSE_CACHE_DIR"] = cache
        request = SearchRequest(hw="a100-80gb", model=MODEL, budget=Budget.bits(4.5), sensitivity="weights",
                                formats=FORMATS)
        for run in ("first (cold cache)", "second (same checkpoint)"):
            start = time.perf_counter()
            search(request)
            print(f"{run:26s} sensitivity {timed[-1]:7.3f} s   whole search {time.perf_counter() - start:7.3f} s")
    print(f"model {MODEL}, formats {','.join(FORMATS)}, weights sensitivity; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
