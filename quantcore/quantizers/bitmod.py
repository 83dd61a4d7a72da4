"""BitMoD (HPCA'25) mixture datatypes: per group, the candidate grid of least squared error."""
from __future__ import annotations

import functools

import numpy as np

from quantcore.quantizers.common import fp16, groups, safe, ungroup


#: BitMoD datatypes (abdelfattah-lab/BitMoD-HPCA-25, bitmod_quant/quant_utils/quant_weight.py,
#: ``search_datatype(datatype="mixed_bitmod")``), in the code's units: 2 x e2m1 for fp4
#: {0,1,2,3,4,6,8,12}, {0,1,2,4} for fp3. Each spends the sign-magnitude code of -0 on one
#: special value: ER ("extra resolution") +-10 / +-3 (e2m1's +-5), EA ("extra asymmetry")
#: +-16 / +-6 (e2m1's +-8). Order matters: on equal error the first one wins (strict `<`).
BITMOD_DATATYPES: dict[int, dict[str, tuple[float, ...]]] = {
    4: {"fp4_er_pos": (-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 10, 12),
        "fp4_er_neg": (-12, -10, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12),
        "fp4_ea_pos": (-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12, 16),
        "fp4_ea_neg": (-16, -12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12)},
    3: {"fp3_er_pos": (-4, -2, -1, 0, 1, 2, 3, 4),
        "fp3_er_neg": (-4, -3, -2, -1, 0, 1, 2, 4),
        "fp3_ea_pos": (-4, -2, -1, 0, 1, 2, 4, 6),
        "fp3_ea_neg": (-6, -4, -2, -1, 0, 1, 2, 4)},
}



@functools.lru_cache(maxsize=None)
def _bitmod_tables(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grids [C, V], max |grid| [C, 1], midpoints [V-1, C, 1]) of the BitMoD candidates, float32."""
    grids = np.array(list(BITMOD_DATATYPES[bits].values()), dtype=np.float32)
    mids = ((grids[:, 1:] + grids[:, :-1]) / 2).T[:, :, None]
    return grids, np.abs(grids).max(axis=1, keepdims=True), mids


def quantize_bitmod(f, x):
    """Every candidate datatype at once on y [rows, n, C, G], then per group the one of least
    squared error (argmin: the first on equal errors, as the code's strict `<` update)."""
    k = x.shape[1]
    g = groups(x, f.group_size)[:, :, None, :]                      # [r, n, 1, G]
    grids, qmax, mids = _bitmod_tables(int(f.weight_bits))
    n_cand, n_val = grids.shape
    scale = fp16(np.abs(g).max(axis=-1, keepdims=True) / qmax)     # [r, n, C, 1]
    y = g / safe(scale)
    # index into grids.ravel(): c*V + number of midpoints below y. A value on a midpoint
    # counts it as not below, so it takes the lower neighbour (the code's `x <= mid`).
    idx = np.broadcast_to(np.arange(0, n_cand * n_val, n_val, dtype=np.int16)[:, None], y.shape).copy()
    for mid in mids:
        idx += y > mid
    q = np.take(grids.ravel(), idx) * scale                          # [r, n, C, G]
    d = q - g
    err = np.einsum("...i,...i->...", d, d)                          # [r, n, C]
    best = np.argmin(err, axis=-1)[..., None, None]
    return ungroup(np.take_along_axis(q, best, axis=2)[:, :, 0], k)
