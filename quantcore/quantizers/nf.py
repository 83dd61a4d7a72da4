"""bitsandbytes NF4: the 16 normal-float code values times a per-block fp32 absmax."""
from __future__ import annotations

import numpy as np

from quantcore.quantizers.common import groups, safe, ungroup


#: bitsandbytes NF4 code values (bitsandbytes/functional.py, get_4bit_type("nf4"))
NF4_CODE = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
_NF4_MIDS = (NF4_CODE[1:] + NF4_CODE[:-1]) / 2


def quantize_nf(f, x):
    k = x.shape[1]
    g = groups(x, f.group_size)
    absmax = np.abs(g).max(axis=-1, keepdims=True)          # fp32 absmax: stored exactly
    idx = np.searchsorted(_NF4_MIDS, g / safe(absmax), side="left")  # ties go down, as bnb's `x > mid`
    return ungroup(NF4_CODE[idx] * absmax, k)
