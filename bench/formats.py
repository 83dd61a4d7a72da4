"""Reference quantize() speed per format on one 4096 x 11008 weight (a Llama-2-7B MLP matrix).

Prints the median of 3 runs and the rate in weights per second; sensitivity from real
weights calls quantize() once per (layer, format), so this bounds `--sensitivity weights`.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantcore.formats import list_formats  # noqa: E402


def main() -> None:
    w = np.random.default_rng(0).standard_normal((4096, 11008), dtype=np.float32)
    print(f"{'format':18s} {'median s':>9s} {'Mweights/s':>11s}")
    for fmt in list_formats():
        if not fmt.is_quantized:
            continue
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fmt.quantize(w)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{fmt.name:18s} {med:9.3f} {w.size / med / 1e6:11.1f}")


if __name__ == "__main__":
    main()
