"""What every reference quantizer shares: input checks, fp16/bf16 rounding, grouping along k.

Quantizers take x: float32 [rows, k] and return the fake-quantized values, same shape.
"""
from __future__ import annotations

import numpy as np

from quantcore.errors import QuantDSEError


#: the largest finite fp16 value (scales saturate here instead of overflowing)
FP16_MAX = 65504.0


def check_weights(w) -> np.ndarray:
    """A float32 copy of w, or a QuantDSEError for a non-2-D, empty or non-finite array."""
    a = np.asarray(w)
    if a.ndim != 2:
        raise QuantDSEError(f"weights must be a 2-D [out, k] array, got shape {a.shape}: "
                            "reshape first (conv kernels to [out, in*kh*kw])")
    if a.size == 0 or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise QuantDSEError(f"weights must be a non-empty float array, got {a.dtype} of shape {a.shape}")
    x = a.astype(np.float32)  # always a copy
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        raise QuantDSEError(f"weights contain NaN/inf: {bad} of {x.size} values are not finite "
                            "(or overflow float32); clean the tensor before quantizing")
    return x


def fp16(x: np.ndarray) -> np.ndarray:
    """Round to fp16 storage (saturating at +-65504 instead of overflowing to inf)."""
    return np.clip(x, -FP16_MAX, FP16_MAX).astype(np.float16).astype(np.float32)


def bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16, nearest even, by dropping the low 16 bits with rounding."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def safe(s: np.ndarray) -> np.ndarray:
    """Divisor with zeros replaced by 1 (an all-zero group quantizes to 0, never NaN)."""
    return np.where(s != 0, s, np.float32(1))


def groups(x: np.ndarray, g: int | None) -> np.ndarray:
    """[rows, k] -> [rows, ceil(k/g), g], the last group zero-padded (padding never moves
    amax, nor min/max for ranges that include 0, so it changes no scale)."""
    r, k = x.shape
    g = k if g is None else g
    n = -(-k // g)
    if n * g != k:
        x = np.pad(x, ((0, 0), (0, n * g - k)))
    return x.reshape(r, n, g)


def ungroup(y: np.ndarray, k: int) -> np.ndarray:
    return y.reshape(y.shape[0], -1)[:, :k]
