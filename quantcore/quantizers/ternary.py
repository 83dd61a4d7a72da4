"""Ternary {-1, 0, 1} and binary {-1, 1} weights times a per-row fp16 mean magnitude."""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import fp16, safe


def quantize_ternary(f, x):
    gamma = fp16(np.abs(x).mean(axis=1, keepdims=True))
    return np.clip(np.rint(x / safe(gamma)), -1, 1) * gamma


def quantize_binary(f, x):
    """binary: sign(w) mean|w| per row. binary2 (BinaryDM's two-basis binarizer, at its initial
    scales: Xingyu-Zheng/BinaryDM ours_util.py, BNNLinear/BNNConv2d with order=2): the same on w,
    then once more on the residual w - s1 sign(w), each basis with its own per-row scale."""
    out = np.zeros_like(x)
    for _ in range(int(f.weight_bits)):
        r = x - out
        alpha = fp16(np.abs(r).mean(axis=1, keepdims=True))
        out = out + np.where(r >= 0, alpha, -alpha)
    return out
