"""Runtime tensors: activations (a format's ``-aN`` suffix) and the K/V cache, fake-quantized.

Activations are quantized dynamically, as W8A8 / W4A4 kernels do (SmoothQuant's per-token
scales, Atom and QServe): the scale is computed from the tensor handed to the kernel and kept
in fp32, never stored, so it costs no bits. ``x`` is ``[tokens, channels]`` (a layer's input,
one row per token):

- ``int`` (symmetric): scale = amax / (2^(N-1) - 1), q = clip(rint(x / scale), -2^(N-1), 2^(N-1) - 1);
- ``fp``: 8 bits are FP8 E4M3 (max 448), 4 bits FP4 E2M1 (max 6): scale = amax / max, then
  round to the nearest grid value (ties to even, subnormals, saturating: `round_minifloat`);
- granularity ``token``: one amax per row; ``channel``: one amax per column over all the rows
  given (the tokens of one call); ``group``: per row, groups of `group` channels;
- 16 bits (and anything wider) is the identity: the model's own precision.

The K/V cache (`quantize_heads`): a catalog format applied to each token's key (or value)
vector of each head, grouped along the head dimension (a group never straddles two heads).
That is how serving kernels store a cache that grows one token at a time: vLLM and
TensorRT-LLM's int8/fp8 caches (one scale per head vector), llama.cpp's q8_0/q4_0 cache types
(blocks of 32 along the head dimension). KIVI instead quantizes K per channel (a scale per
channel over a group of tokens, since K has outlier channels) and V per token; per-channel K
needs a window of full-precision tokens before a group closes, which these kernels do not have.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.quantizers.common import groups, safe, ungroup
from quantcore.quantizers.minifloat import round_minifloat

#: the minifloat element an ``fp`` activation of N bits uses, and its largest value
FP_ELEMENTS = {8: ("e4m3", 448.0), 4: ("e2m1", 6.0)}
GRANULARITIES = ("token", "channel", "group")
#: channels per group for ``group`` granularity when the format names none
DEFAULT_ACT_GROUP = 128


@dataclass(frozen=True)
class ActSpec:
    """How one layer's input is quantized: bits, element type, granularity (group size for ``group``)."""

    bits: int
    kind: str = "int"
    granularity: str = "token"
    group: int = DEFAULT_ACT_GROUP

    @property
    def label(self) -> str:
        """A short stable name (cache keys, tables): a8, fp-a8, a4-channel, a4-g64."""
        gran = {"token": "", "channel": "-channel", "group": f"-g{self.group}"}[self.granularity]
        return f"{'fp-' if self.kind == 'fp' else ''}a{self.bits}{gran}"


def act_spec(fmt) -> ActSpec | None:
    """The activation quantization a Format runs with, or None for 16-bit activations.

    Reads `act_type` / `act_granularity` / `act_group_size` where the Format has them (int,
    token and 128 otherwise)."""
    bits = int(getattr(fmt, "act_bits", 16))
    if bits >= 16:
        return None
    return ActSpec(bits, getattr(fmt, "act_type", "int") or "int", getattr(fmt, "act_granularity", "token") or "token",
                   int(getattr(fmt, "act_group_size", None) or DEFAULT_ACT_GROUP))


def quantize_activation(x: np.ndarray, spec: ActSpec | None) -> np.ndarray:
    """Fake-quantize activations x [tokens, channels] (float32 copy); spec None is the identity."""
    x = np.array(x, dtype=np.float32)
    if x.ndim != 2:
        raise QuantDSEError(f"activations must be a 2-D [tokens, channels] array, got shape {x.shape}")
    if spec is None or spec.bits >= 16:
        return x
    if spec.granularity not in GRANULARITIES:
        raise QuantDSEError(f"activation granularity {spec.granularity!r} is not one of {', '.join(GRANULARITIES)}")
    if spec.kind == "fp" and spec.bits not in FP_ELEMENTS:
        raise QuantDSEError(f"fp activations of {spec.bits} bits are not defined: use 8 (e4m3) or 4 (e2m1)")
    if spec.kind not in ("int", "fp"):
        raise QuantDSEError(f"activation type {spec.kind!r} is not int or fp")
    k = x.shape[1]
    if spec.granularity == "channel":
        g = x.T[:, None, :]                   # [channels, 1, tokens]
    else:
        g = groups(x, spec.group if spec.granularity == "group" else None)  # [tokens, n, group]
    amax = np.abs(g).max(axis=-1, keepdims=True)
    if spec.kind == "int":
        qmax = np.float32(2 ** (spec.bits - 1) - 1)
        scale = amax / qmax
        q = np.clip(np.rint(g / safe(scale)), -qmax - 1, qmax) * scale
    else:
        element, vmax = FP_ELEMENTS[spec.bits]
        scale = amax / np.float32(vmax)
        q = round_minifloat(g / safe(scale), element) * scale
    q = q.astype(np.float32)
    return q[:, 0, :].T.copy() if spec.granularity == "channel" else ungroup(q, k)


def quantize_heads(x: np.ndarray, fmt, head_dim: int) -> np.ndarray:
    """K or V cache entries x [tokens, heads * head_dim] in catalog format `fmt`, grouped along the head dimension."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or head_dim < 1 or x.shape[1] % head_dim:
        raise QuantDSEError(f"K/V entries of shape {x.shape} do not split into heads of {head_dim}")
    rows = x.reshape(-1, head_dim)
    return fmt.quantize(rows).reshape(x.shape)
