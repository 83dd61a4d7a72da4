"""llama.cpp's types: ggml-quants.c reference quantizers (legacy 32-blocks and k-quants), float32
arithmetic as in C.
"""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import fp16, safe


_GROUP_MAX_EPS = np.float32(1e-15)  # ggml-quants.c


def _round_away(v):
    """C roundf: halves away from zero."""
    return np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))


def _signed_absmax(b):
    """The value of largest magnitude per row (first one on ties, as ggml's strict `<`)."""
    idx = np.argmax(np.abs(b), axis=-1)[..., None]
    return np.take_along_axis(b, idx, axis=-1)


def _ggml_legacy(name, b):
    """quantize_row_q{4_0,4_1,5_0,5_1,8_0}_ref on blocks b [n, 32], then dequantize."""
    if name in ("q4_0", "q5_0"):
        half = 8 if name == "q4_0" else 16            # d = max / -8 (or -16), levels 0..2*half-1
        d = _signed_absmax(b) / np.float32(-half)
        inv = np.where(d != 0, np.float32(1) / safe(d), np.float32(0))
        q = np.minimum(2 * half - 1, np.trunc(b * inv + np.float32(half + 0.5)))  # (int8_t) truncates
        return (q - half) * fp16(d)
    if name in ("q4_1", "q5_1"):
        top = 15 if name == "q4_1" else 31
        lo, hi = b.min(axis=-1, keepdims=True), b.max(axis=-1, keepdims=True)
        d = (hi - lo) / np.float32(top)
        inv = np.where(d != 0, np.float32(1) / safe(d), np.float32(0))
        q = np.minimum(top, np.trunc((b - lo) * inv + np.float32(0.5)))
        return q * fp16(d) + fp16(lo)
    d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127)   # q8_0
    inv = np.where(d != 0, np.float32(1) / safe(d), np.float32(0))
    return _round_away(b * inv) * fp16(d)


def _make_qkx2(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """ggml make_qkx2_quants on rows x [m, n] with weights w: (scale, -min) of x ~ scale*L + min."""
    lo = lo0 = np.minimum(x.min(axis=-1, keepdims=True), 0)
    hi = x.max(axis=-1, keepdims=True)
    flat = hi == lo
    sum_w = w.sum(axis=-1, keepdims=True)
    sum_x = (w * x).sum(axis=-1, keepdims=True)

    def err(scale, mn, L):
        diff = scale * L + mn - x
        return (w * (np.abs(diff) if use_mad else diff * diff)).sum(axis=-1, keepdims=True)

    iscale = np.float32(nmax) / safe(hi - lo)
    scale = np.float32(1) / iscale
    L = np.clip(np.rint(iscale * (x - lo)), 0, nmax)
    best = err(scale, lo, L)
    for step in range(nstep + 1):
        iscale = np.float32(rmin + rdelta * step + nmax) / safe(hi - lo)
        L = np.clip(np.rint(iscale * (x - lo)), 0, nmax)
        sum_l = (w * L).sum(axis=-1, keepdims=True)
        sum_l2 = (w * L * L).sum(axis=-1, keepdims=True)
        sum_xl = (w * L * x).sum(axis=-1, keepdims=True)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / safe(D)
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / safe(D)
        pos = this_min > 0
        this_scale = np.where(pos, sum_xl / safe(sum_l2), this_scale)
        this_min = np.where(pos, 0, this_min)
        cur = err(this_scale, this_min, L)
        better = ok & (cur < best)
        best = np.where(better, cur, best)
        scale = np.where(better, this_scale, scale)
        lo = np.where(better, this_min, lo)
    return np.where(flat, 0, scale)[..., 0], -np.where(flat, lo0, lo)[..., 0]


def _make_qx(x, nmax):
    """ggml make_qx_quants(rmse_type=1): symmetric scale for levels -nmax..nmax-1, weights x^2."""
    mx = _signed_absmax(x)
    tiny = np.abs(mx) < _GROUP_MAX_EPS
    mx = safe(np.where(tiny, 0, mx))
    w = x * x

    def fit(iscale):
        L = np.clip(np.rint(iscale * x), -nmax, nmax - 1)
        return (w * x * L).sum(axis=-1, keepdims=True), (w * L * L).sum(axis=-1, keepdims=True)

    sumlx, suml2 = fit(np.float32(-nmax) / mx)
    scale = np.where(suml2 > 0, sumlx / safe(suml2), 0)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        sumlx, suml2 = fit(np.float32(-(nmax + 0.1 * step)) / mx)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        cand = sumlx / safe(suml2)
        scale = np.where(better, cand, scale)
        best = np.where(better, cand * sumlx, best)
    return np.where(tiny, 0, scale)[..., 0]


def _kquant_asym(x, nmax, sub, scale_levels, fit):
    """q2_K / q4_K / q5_K: per sub-block (scale, min) quantized to `scale_levels` against fp16 d, dmin."""
    sb = x.reshape(-1, 256 // sub, sub)
    scales, mins = fit(sb)
    max_scale = np.maximum(scales.max(axis=-1, keepdims=True), 0)
    max_min = np.maximum(mins.max(axis=-1, keepdims=True), 0)
    inv_s = np.where(max_scale > 0, np.float32(scale_levels) / safe(max_scale), 0)
    inv_m = np.where(max_min > 0, np.float32(scale_levels) / safe(max_min), 0)
    ls = np.clip(np.rint(inv_s * scales), 0, scale_levels)
    lm = np.clip(np.rint(inv_m * mins), 0, scale_levels)
    d = fp16(max_scale / np.float32(scale_levels))
    dmin = fp16(max_min / np.float32(scale_levels))
    dd = (d * ls)[..., None]
    dm = (dmin * lm)[..., None]
    q = np.clip(np.rint((sb + dm) / safe(dd)), 0, nmax)
    return (dd * q - dm).reshape(x.shape)


def _kquant_sym(x, nmax, scale_min, scale_max, iscale_num):
    """q3_K / q6_K: symmetric sub-blocks of 16, int scales in [scale_min, scale_max] x fp16 d."""
    sb = x.reshape(-1, 16, 16)
    scales = _make_qx(sb, nmax)
    max_scale = _signed_absmax(scales)
    tiny = np.abs(max_scale) < _GROUP_MAX_EPS
    iscale = np.where(tiny, 0, np.float32(iscale_num) / safe(np.where(tiny, 0, max_scale)))
    ls = np.clip(np.rint(iscale * scales), scale_min, scale_max)
    d = np.where(tiny, 0, fp16(np.float32(1) / safe(iscale)))
    dd = (d * ls)[..., None]
    q = np.clip(np.rint(sb / safe(dd)), -nmax, nmax - 1)
    return (dd * q).reshape(x.shape)


def _qkx2_fit(nmax, rmin, rdelta, nstep, use_mad, av_weights):
    def fit(sb):
        if av_weights:  # q4_K/q5_K: weights av_x + |x|, av_x = rms of the sub-block
            w = np.sqrt((sb * sb).mean(axis=-1, keepdims=True)) + np.abs(sb)
        else:           # q2_K: weights |x|
            w = np.abs(sb)
        return _make_qkx2(sb, w, nmax, rmin, rdelta, nstep, use_mad)
    return fit


def quantize_ggml(f, x):
    name = f.weight_name
    bsize = f.block_size
    b = x.reshape(-1, bsize)
    if bsize == 32:
        out = _ggml_legacy(name, b)
    elif name == "q2_k":
        out = _kquant_asym(b, 3, 16, 15, _qkx2_fit(3, -0.5, 0.1, 15, True, False))
    elif name == "q4_k":
        out = _kquant_asym(b, 15, 32, 63, _qkx2_fit(15, -1.0, 0.1, 20, False, True))
    elif name == "q5_k":
        out = _kquant_asym(b, 31, 32, 63, _qkx2_fit(31, -0.5, 0.1, 15, False, True))
    elif name == "q3_k":   # 6-bit scales l in [-32, 31], d = 1 / (-32 / max_scale)
        out = _kquant_sym(b, 4, -32, 31, -32)
    else:                  # q6_k: int8 scales min(127, .), d = 1 / (-128 / max_scale)
        out = _kquant_sym(b, 32, -128, 127, -128)
    return out.reshape(x.shape)
