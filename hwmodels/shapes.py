"""The designed shapes a local calibration times: a grid plus seeded random draws, held-out shapes apart.

Caps bound each shape's work, outputs and weights so a full calibration stays within minutes.
"""
from __future__ import annotations

import math

import numpy as np

from hwmodels.measure import KERNELS

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


def kernel_names(device: str) -> list[str]:
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
    for i, name in enumerate(kernel_names(device)):
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
