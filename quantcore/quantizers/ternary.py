"""Ternary {-1, 0, 1} and binary {-1, 1} weights times a per-row fp16 mean magnitude."""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import fp16, safe


def quantize_ternary(f, x):
    gamma = fp16(np.abs(x).mean(axis=1, keepdims=True))
    return np.clip(np.rint(x / safe(gamma)), -1, 1) * gamma


def quantize_binary(f, x):
    alpha = fp16(np.abs(x).mean(axis=1, keepdims=True))
    return np.where(x >= 0, alpha, -alpha)
