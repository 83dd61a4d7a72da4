"""Minifloat elements (fp8, fp6, fp4 e2m1): per-group fp16 scales, OCP MX shared power-of-two scales,
and NVFP4 (e4m3 block scales under an fp32 tensor scale).
"""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import fp16, groups, safe, ungroup


#: minifloat grids: (mantissa bits, exponent bias, largest finite value)
_MINIFLOAT = {
    "e4m3": (3, 7, 448.0),      # OCP fp8 e4m3fn: no inf, S.1111.111 is NaN -> max 1.75 * 2^8
    "e5m2": (2, 15, 57344.0),   # IEEE-like fp8 e5m2: max 1.75 * 2^15
    "e3m2": (2, 3, 28.0),       # OCP fp6 e3m2: no inf/NaN -> max 1.75 * 2^4
    "e2m1": (1, 1, 6.0),        # OCP fp4 e2m1: {0, 0.5, 1, 1.5, 2, 3, 4, 6}
}


def round_minifloat(x: np.ndarray, element: str) -> np.ndarray:
    """Round to the nearest value of a minifloat grid (ties to even, subnormals, saturating)."""
    mbits, bias, vmax = _MINIFLOAT[element]
    a = np.abs(x)
    _, e = np.frexp(a)                        # a = m * 2^e with m in [0.5, 1)
    e = np.maximum(e - 1, 1 - bias)           # binade exponent; subnormals share the lowest
    step = np.ldexp(np.float32(1), (e - mbits).astype(np.int32)).astype(np.float32)
    q = np.rint(a / step) * step              # rint: ties to even mantissa
    return np.copysign(np.minimum(q, np.float32(vmax)), x).astype(np.float32)



def quantize_fp(f, x):
    """Minifloat elements times an fp16 scale per group (or row) mapping amax to the grid max."""
    k = x.shape[1]
    g = groups(x, f.group_size)
    vmax = np.float32(_MINIFLOAT[f.element][2])
    scale = fp16(np.abs(g).max(axis=-1, keepdims=True) / vmax)
    return ungroup(round_minifloat(g / safe(scale), f.element) * scale, k)



def quantize_mx(f, x):
    """OCP MX: shared scale 2^(floor(log2 amax) - emax_elem), clamped to e8m0's 2^-127..2^127."""
    k = x.shape[1]
    g = groups(x, f.group_size)
    amax = np.abs(g).max(axis=-1, keepdims=True)
    emax_elem = 2 if f.element == "e2m1" else 0
    shared = np.clip(np.frexp(amax)[1] - 1 - emax_elem, -127, 127)
    scale = np.ldexp(np.float64(1), shared.astype(np.int32))  # 2^-127 needs more than fp32 range
    y = g / scale
    if f.element == "e2m1":
        q = round_minifloat(y.astype(np.float32), "e2m1")
    else:  # int8 fixed point 1.6: k/64, clamped to +-127/64
        q = np.clip(np.rint(y * 64), -127, 127) / 64
    return ungroup((q * scale).astype(np.float32), k)


def nvfp_tensor_scale(x) -> np.float32:
    """NVFP4's fp32 per-tensor scale: amax / (448 * 6), so block scales use e4m3's full range."""
    return np.float32(np.abs(x).max() / (448.0 * 6.0)) or np.float32(1)


def quantize_nvfp(f, x, tensor):
    """NVFP4: e2m1 elements x e4m3 block scale x fp32 tensor scale."""
    k = x.shape[1]
    g = groups(x, f.group_size)
    amax = np.abs(g).max(axis=-1, keepdims=True)
    block = round_minifloat(amax / np.float32(6.0) / tensor, "e4m3") * tensor
    return ungroup(round_minifloat(g / safe(block), "e2m1") * block, k)
