"""Unquantized floats: fp32 as is, fp16 (overflow is inf, as a real cast) and bf16 (nearest even)."""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import bf16


def quantize_float(f, x):
    if f.element == "fp16":
        return _fp16_cast(x)
    if f.element == "bf16":
        return bf16(x)
    return x


def _fp16_cast(x):
    with np.errstate(over="ignore"):
        return x.astype(np.float16).astype(np.float32)  # real fp16: overflow is inf
