"""Integer grids with an fp16 scale per group (or row): symmetric, or asymmetric with a zero point."""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import fp16, groups, safe, ungroup


def quantize_int(f, x):
    k = x.shape[1]
    g = groups(x, f.group_size)
    n = int(f.weight_bits)
    if f.symmetric:
        qmax = 2 ** (n - 1) - 1
        scale = fp16(np.abs(g).max(axis=-1, keepdims=True) / np.float32(qmax))
        q = np.clip(np.rint(g / safe(scale)), -qmax - 1, qmax)
        return ungroup(q * scale, k)
    levels = 2 ** n - 1
    lo = np.minimum(g.min(axis=-1, keepdims=True), 0)
    hi = np.maximum(g.max(axis=-1, keepdims=True), 0)
    scale = fp16((hi - lo) / np.float32(levels))
    s = safe(scale)
    zero = np.clip(np.rint(-lo / s), 0, levels)
    q = np.clip(np.rint(g / s) + zero, 0, levels)
    return ungroup((q - zero) * scale, k)
