"""The number-format catalog: exact effective bits per weight and a reference fake-quantizer.

A `Format` knows what one weight costs in storage (payload + scales + zero points +
block metadata) and how to fake-quantize a 2-D weight ``[out, k]`` (groups run along
the last axis, ``k`` = the input/reduction dim). `python -m dse.formats` lists them.

Bits per weight, for a row of length k:

    bits_per_weight(k) = weight_bits + ceil(k/G) * (scale_bits + zero_bits) / k
                         (+ block_bits / block_size for llama.cpp k-quants' super-blocks)

G = group_size, or k for per-output-channel formats (one scale per row). When G does
not divide k the last group of a row is partial and still stores a full scale: this is
GPTQ/AutoGPTQ's ceil grouping (``ceil(in_features / group_size)`` scale rows). Scales and
zero points are stored, and so rounded, in their real storage type (fp16 unless said):
a group whose scale falls below fp16's range quantizes to 0, as it would in storage.

Conventions of the reference `quantize()` (the quantizers live in `quantcore.quantizers`, one
module per family; this module keeps the catalog, the name grammar and the bit accounting):

- int symmetric: scale = amax / (2^(N-1) - 1) per group, levels clamped to
  [-2^(N-1), 2^(N-1) - 1] (the most negative level is unused by this scale choice).
- ``-qz`` storage variants (``int4-g128-qz``, ``int4-g128-asym-qz``): the same quantizer, bits
  counted as GPTQ-style checkpoints store them: fp16 scale plus an N-bit zero point packed per
  group (GPTQModel/AutoRound ``qzeros``, kept even when symmetric; compressed-tensors'
  pack-quantized ``weight_zero_point`` for asymmetric), e.g. int4-g128 4 + (16 + 4)/128 = 4.15625.
- int asymmetric: the range is widened to include 0 (GPTQ's convention, so a zero
  weight is exact and the error stays within half a step), scale = (max - min)/(2^N - 1),
  zero = round(-min/scale) clamped to [0, 2^N - 1], both stored as fp16.
- minifloats (e4m3, e5m2, e3m2, e2m1) round to nearest even on the real grid, with
  subnormals, saturating at the largest finite value (e4m3 448, e5m2 57344, e3m2 28, e2m1 6).
- nf4: bitsandbytes' 16 NF4 code values, blocks of 64, fp32 absmax per block (no double quant).
- mxfp4 / mxint8: OCP Microscaling spec v1.0: 32 elements share an e8m0 scale
  2^(floor(log2(amax)) - emax_elem), emax_elem = 2 for e2m1 and 0 for int8 (int8 elements
  are fixed point with scale 2^-6, clamped symmetrically to +-127 as in microxcaling).
- nvfp4: e2m1 elements, 16 per block, an fp8-e4m3 block scale. NVFP4 also keeps one fp32
  scale per tensor (amax / (448*6)); quantize() applies it (without it the e4m3 scales of
  small weights underflow) but its 32 bits per tensor are ignored in the bit count.
- ternary: BitNet b1.58 absmean, {-1, 0, 1} * mean|w| per row, 5 trits packed per byte.
  binary: sign(w) * mean|w| per row (the L2-optimal scale for signs; w = 0 maps to +).
- llama.cpp types follow ggml's reference quantizers (``ggml-quants.c``): q4_0/q4_1/q5_0/
  q5_1/q8_0 as ``quantize_row_*_ref``; k-quants fit sub-block scales with
  make_qkx2_quants / make_qx_quants and quantize them to 4/6/8 bits against an fp16
  super-block scale (q3_k uses make_qx_quants' candidate search where ggml runs
  make_q3_quants' coordinate descent: same grid, same objective). When k is not a
  multiple of the block, llama-quantize (``tensor_type_fallback`` in src/llama-quant.cpp)
  quantizes that tensor as another type; `Format.fallback_for(k)` models it, and
  bits_per_weight/quantize use it.
- bitmod3/bitmod4 (BitMoD, HPCA'25): per group of 128 the datatype of least squared error
  among four fp3/fp4 variants whose redundant -0 code is an extra special value (see
  `BITMOD_DATATYPES`); fp16 scale amax / max|grid| per candidate, round to nearest with ties
  to the lower value, as the authors' ``quant_datatype`` / ``search_datatype``.
- The activation suffix says how the layer's *input* runs (quantize() is weights only; the
  activation's error is dse.actprior's or a measured sensitivity's business):
  ``-aN`` integer activations of N bits (4, 8; 16 = unquantized), one dynamic scale per token
  (SmoothQuant / vLLM W8A8, QServe's A8); ``-afN`` floating point (``-af8``: fp8 e4m3 per
  token as TensorRT-LLM / vLLM FP8; ``-af4``: fp4 e2m1, as NVFP4's activations); a trailing
  ``c`` quantizes per input channel (static, as LLM.int8()-style channel scales) and ``gG`` per
  group of G along the row (Atom/QuaRot W4A4: ``int4-g128-a4g128``). Fields: `act_bits`,
  `act_type` ("int" | "fp"), `act_granularity` ("token" | "channel" | "group"), `act_group`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.quantizers.bitmod import BITMOD_DATATYPES
from quantcore.quantizers.common import fp16
from quantcore.quantizers.minifloat import round_minifloat  # noqa: F401  (re-exported)
from quantcore.quantizers.nf import NF4_CODE  # noqa: F401  (re-exported)

#: the k at which the nominal `Format.bits` is quoted (Llama-7B hidden size)
NOMINAL_K = 4096
#: activation precisions a name may carry as ``-aN``
ACT_BITS = (4, 8, 16)
#: floating-point activation widths a name may carry as ``-afN``
FP_ACT_BITS = (4, 8)
#: candidate formats for a search when the user gives no --formats
DEFAULT_SEARCH_FORMATS: tuple[str, ...] = (
    "int2-g64", "int3-g128", "int3-g64", "int4-g128", "int4-g64", "int4-g32",
    "int5-g128", "int6-g128", "int8", "fp16",
)
_CATALOG_GROUPS = (32, 64, 128)


@dataclass(frozen=True)
class Format:
    """One number format for weights (and the activation precision it runs with).

    block_size / block_bits: llama.cpp blocks along k (32 or a 256 super-block) and the
    bits each block stores on top of its sub-block scales (the fp16 d and dmin of k-quants);
    k must be a multiple of block_size, else `fallback_for(k)` is used.
    element: the grid the payload lives on (int, e4m3, e2m1, nf4, ..., or the ggml type).
    """

    name: str
    family: str
    weight_bits: float
    group_size: int | None
    symmetric: bool
    scale_bits: int
    zero_bits: int
    act_bits: int = 16
    block_size: int | None = None
    block_bits: int = 0
    element: str = "int"
    description: str = ""
    lowrank: int = 0  # rank of a 16-bit low-rank branch beside the quantized weight (SVDQuant); 0 = none
    act_type: str = "int"  # "int" | "fp": the activation's number type (when act_bits < 16)
    act_granularity: str = "token"  # "token" | "channel" | "group": what one activation scale covers
    act_group: int | None = None  # the group size along the row when act_granularity is "group"

    @property
    def act_suffix(self) -> str:
        """The activation part of the name: ``""`` (16-bit), ``-a8``, ``-af8``, ``-a8c``, ``-a4g128``."""
        if self.act_bits == 16:
            return ""
        tail = {"token": "", "channel": "c", "group": f"g{self.act_group}"}[self.act_granularity]
        return f"-a{'f' if self.act_type == 'fp' else ''}{self.act_bits}{tail}"

    @property
    def act_group_size(self) -> int | None:
        """`act_group` under the name quantcore.quantizers.activation reads."""
        return self.act_group

    @property
    def weight_name(self) -> str:
        """The name without its activation suffix."""
        return self.name[: len(self.name) - len(self.act_suffix)]

    def with_activation(self, act_suffix: str) -> "Format":
        """This weight format with another activation suffix (``""`` for 16-bit activations)."""
        return get_format(self.weight_name + act_suffix)

    @property
    def is_quantized(self) -> bool:
        return self.family != "float"

    @property
    def bits(self) -> float:
        """Nominal effective bits per weight: `bits_per_weight` at k = 4096."""
        return self.bits_per_weight(NOMINAL_K)

    def bits_per_weight(self, k: int, n: int | None = None) -> float:
        """Exact storage bits per weight of a row of k weights (scales, zeros, metadata included).

        n: the layer's output features; only a low-rank branch depends on it (its two 16-bit
        factors hold r*(k + n) values for k*n weights); left out, the layer is taken as square.
        """
        k = check_k(k)
        fallback = self.fallback_for(k)
        if fallback is not self:
            return fallback.bits_per_weight(k)
        groups = 1 if self.group_size is None else -(-k // self.group_size)
        total = self.weight_bits * k + groups * (self.scale_bits + self.zero_bits)
        if self.block_size:
            total += (k // self.block_size) * self.block_bits
        return total / k + lowrank_bits(self.lowrank, k, k if n is None else check_k(n))

    def fallback_for(self, k: int) -> "Format":
        """The format llama-quantize really uses for rows of length k (self when k fits).

        llama.cpp ``tensor_type_fallback``: q2_k, q3_k -> q4_0; q4_k -> q5_0; q5_k -> q5_1;
        q6_k -> q8_0; f16 when k is not a multiple of 32 either. For q4_0..q8_0 with k not a
        multiple of 32 llama.cpp has no fallback (it aborts); we model f16 so tables stay total.
        """
        k = check_k(k)
        if self.block_size is None or k % self.block_size == 0:
            return self
        target = _GGML_FALLBACK.get(self.weight_name)
        if target is None or k % _GGML_BLOCKS[target][0] != 0:
            target = "fp16"
        return get_format(target + self.act_suffix)

    def quantize(self, w: np.ndarray) -> np.ndarray:
        """Fake-quantize a 2-D weight [out, k]: float32 array of the same shape."""
        from quantcore.quantizers import QUANTIZERS
        from quantcore.quantizers.common import check_weights
        from quantcore.quantizers.minifloat import nvfp_tensor_scale, quantize_nvfp

        x = check_weights(w)
        fmt = self.fallback_for(x.shape[1])
        if fmt is not self:
            return fmt.quantize(x)
        if self.lowrank:
            return _q_lowrank(self, x)
        fn = QUANTIZERS[self.family]
        if self.family == "nvfp":  # one fp32 tensor scale for the whole tensor, not per chunk
            fn = functools.partial(quantize_nvfp, tensor=nvfp_tensor_scale(x))
        # Row chunks of ~1M values keep the temporaries in cache and memory bounded.
        rows = max(1, (1 << 20) // x.shape[1])
        for start in range(0, x.shape[0], rows):
            x[start:start + rows] = fn(self, x[start:start + rows])
        return x

    def as_dict(self) -> dict:
        return {
            "name": self.name, "bits": self.bits, "family": self.family,
            "weight_bits": self.weight_bits, "group_size": self.group_size,
            "symmetric": self.symmetric, "scale_bits": self.scale_bits,
            "zero_bits": self.zero_bits, "act_bits": self.act_bits,
            "block_size": self.block_size, "block_bits": self.block_bits,
            "element": self.element, "description": self.description, "lowrank": self.lowrank,
            "act_type": self.act_type, "act_granularity": self.act_granularity, "act_group": self.act_group,
        }


# ---------------------------------------------------------------- name parsing

def _F(name, family, weight_bits, group, sym, scale_bits, zero_bits, element, desc, block=None, block_bits=0):
    return Format(name, family, weight_bits, group, sym, scale_bits, zero_bits, 16, block, block_bits, element, desc)


#: llama.cpp types: (block elements, bytes per block) from ggml-common.h's block structs.
_GGML_BLOCKS = {
    "q4_0": (32, 2 + 16),            # block_q4_0: fp16 d + 32 x 4-bit            = 18 B / 32 -> 4.5
    "q4_1": (32, 2 + 2 + 16),        # block_q4_1: fp16 d, m + 32 x 4-bit         = 20 B / 32 -> 5.0
    "q5_0": (32, 2 + 4 + 16),        # block_q5_0: fp16 d + qh[4] + qs[16]        = 22 B / 32 -> 5.5
    "q5_1": (32, 2 + 2 + 4 + 16),    # block_q5_1: fp16 d, m + qh[4] + qs[16]     = 24 B / 32 -> 6.0
    "q8_0": (32, 2 + 32),            # block_q8_0: fp16 d + 32 x int8             = 34 B / 32 -> 8.5
    "q2_k": (256, 16 + 64 + 2 * 2),  # block_q2_K: scales[16] (4+4 bit) + qs[64] + fp16 d, dmin = 84 B -> 2.625
    "q3_k": (256, 32 + 64 + 12 + 2),  # block_q3_K: hmask[32] + qs[64] + 6-bit scales[12] + d = 110 B -> 3.4375
    "q4_k": (256, 2 * 2 + 12 + 128),  # block_q4_K: d, dmin + 6-bit scales/mins[12] + qs[128] = 144 B -> 4.5
    "q5_k": (256, 2 * 2 + 12 + 32 + 128),  # block_q5_K: + qh[32]                 = 176 B -> 5.5
    "q6_k": (256, 128 + 64 + 16 + 2),  # block_q6_K: ql[128] + qh[64] + int8 scales[16] + d = 210 B -> 6.5625
}
#: llama.cpp src/llama-quant.cpp tensor_type_fallback (types with a 256 block -> a 32 block type)
_GGML_FALLBACK = {"q2_k": "q4_0", "q3_k": "q4_0", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}

_FIXED = {
    "fp32": _F("fp32", "float", 32, None, True, 0, 0, "fp32", "IEEE single, unquantized"),
    "fp16": _F("fp16", "float", 16, None, True, 0, 0, "fp16", "IEEE half, unquantized"),
    "bf16": _F("bf16", "float", 16, None, True, 0, 0, "bf16", "bfloat16, unquantized"),
    "fp8-e4m3": _F("fp8-e4m3", "fp", 8, None, True, 16, 0, "e4m3", "OCP fp8 e4m3fn (max 448), fp16 scale per row"),
    "fp8-e5m2": _F("fp8-e5m2", "fp", 8, None, True, 16, 0, "e5m2", "OCP fp8 e5m2 (max 57344), fp16 scale per row"),
    "fp6-e3m2": _F("fp6-e3m2", "fp", 6, None, True, 16, 0, "e3m2", "fp6 e3m2 (max 28), fp16 scale per row (FP6-LLM)"),
    "nf4": _F("nf4", "nf", 4, 64, True, 32, 0, "nf4", "bitsandbytes NF4, blocks of 64, fp32 absmax"),
    "mxfp4": _F("mxfp4", "mx", 4, 32, True, 8, 0, "e2m1", "OCP MX: e2m1 x 32 + e8m0 shared scale"),
    "mxint8": _F("mxint8", "mx", 8, 32, True, 8, 0, "int8", "OCP MX: int8 x 32 + e8m0 shared scale"),
    "nvfp4": _F("nvfp4", "nvfp", 4, 16, True, 8, 0, "e2m1", "NVFP4: e2m1 x 16 + e4m3 scale (per-tensor fp32 scale not counted)"),
    "ternary": _F("ternary", "ternary", 1.6, None, True, 16, 0, "ternary", "BitNet b1.58 absmean {-1,0,1}, 5 trits/byte, fp16 scale per row"),
    "binary": _F("binary", "binary", 1, None, True, 16, 0, "binary", "sign x mean|w|, fp16 scale per row"),
    "binary2": _F("binary2", "binary", 2, None, True, 32, 0, "binary2", "BinaryDM two-basis binarizer: "
                  "s1 sign(w) + s2 sign(w - s1 sign(w)), two fp16 scales per row"),
    # llama.cpp: payload bits, sub-block (group) size, scale/min bits, super-block fp16 d (and dmin).
    "q4_0": _F("q4_0", "ggml", 4, 32, True, 16, 0, "q4_0", "llama.cpp Q4_0", 32),
    "q4_1": _F("q4_1", "ggml", 4, 32, False, 16, 16, "q4_1", "llama.cpp Q4_1", 32),
    "q5_0": _F("q5_0", "ggml", 5, 32, True, 16, 0, "q5_0", "llama.cpp Q5_0", 32),
    "q5_1": _F("q5_1", "ggml", 5, 32, False, 16, 16, "q5_1", "llama.cpp Q5_1", 32),
    "q8_0": _F("q8_0", "ggml", 8, 32, True, 16, 0, "q8_0", "llama.cpp Q8_0", 32),
    "q2_k": _F("q2_k", "ggml", 2, 16, False, 4, 4, "q2_k", "llama.cpp Q2_K", 256, 32),
    "q3_k": _F("q3_k", "ggml", 3, 16, True, 6, 0, "q3_k", "llama.cpp Q3_K", 256, 16),
    "q4_k": _F("q4_k", "ggml", 4, 32, False, 6, 6, "q4_k", "llama.cpp Q4_K", 256, 32),
    "q5_k": _F("q5_k", "ggml", 5, 32, False, 6, 6, "q5_k", "llama.cpp Q5_K", 256, 32),
    "q6_k": _F("q6_k", "ggml", 6, 16, True, 8, 0, "q6_k", "llama.cpp Q6_K", 256, 16),
}

_INT_RE = re.compile(r"int(\d+)(?:-g(\d+))?(-asym)?(-qz)?")
#: widths GPTQ-style packers (GPTQModel, AutoRound) write, listed in the catalog with a ``-qz`` variant
_QZ_CATALOG_BITS = (2, 3, 4, 8)
_FP4_RE = re.compile(r"fp4-e2m1(?:-g(\d+))?")
_BITMOD_RE = re.compile(r"bitmod(\d+)-g(\d+)")
_ACT_RE = re.compile(r"(.+)-a(f?)(\d+)(c|g\d+)?")
_RANK_RE = re.compile(r"(.+)-r(\d+)")
#: ranks a low-rank branch may take (SVDQuant uses 32; its ablation runs 16-256)
LOWRANK_RANGE = (1, 1024)


def _check_group(group: str | None, name: str) -> int | None:
    if group is None:
        return None
    g = int(group)
    if g < 8 or g > 1024 or g & (g - 1):
        raise QuantDSEError(f"group size {g} in {name!r} is not a power of two from 8 to 1024: use e.g. -g128")
    return g


def _build(base: str) -> Format:
    """The Format of a name without activation suffix, or a QuantDSEError."""
    if base in _FIXED:
        return _FIXED[base]
    m = _INT_RE.fullmatch(base)
    if m:
        n = int(m.group(1))
        if not 2 <= n <= 8:
            raise QuantDSEError(f"integer width {n} in {base!r} is not supported: use int2 .. int8")
        g = _check_group(m.group(2), base)
        sym = m.group(3) is None
        qz = m.group(4) is not None
        name = f"int{n}" + (f"-g{g}" if g else "") + ("" if sym else "-asym") + ("-qz" if qz else "")
        where = f"per group of {g}" if g else "per output channel"
        if qz:  # GPTQ-style storage: an n-bit zero point packed per group, also kept (constant) when symmetric
            kind = ("symmetric" if sym else "asymmetric") + f", packed {n}-bit zero point"
            return _F(name, "int", n, g, sym, 16, n, "int", f"int{n} {kind}, fp16 scale {where} (GPTQ/AutoRound storage)")
        kind = "symmetric" if sym else "asymmetric (fp16 zero point)"
        return _F(name, "int", n, g, sym, 16, 0 if sym else 16, "int", f"int{n} {kind}, fp16 scale {where}")
    m = _FP4_RE.fullmatch(base)
    if m:
        g = _check_group(m.group(1), base) or 128
        name = "fp4-e2m1" if g == 128 else f"fp4-e2m1-g{g}"
        return _F(name, "fp", 4, g, True, 16, 0, "e2m1", f"fp4 e2m1 (max 6), fp16 scale per group of {g}")
    m = _BITMOD_RE.fullmatch(base)
    if m:
        n, g = int(m.group(1)), _check_group(m.group(2), base)
        if n not in BITMOD_DATATYPES:
            raise QuantDSEError(f"BitMoD width {n} in {base!r} is not defined: use bitmod3 or bitmod4 "
                                "(the authors' mixtures are 3- and 4-bit only)")
        # Storage per group: n-bit codes + 8 bits of metadata (scale + 2-bit datatype selector)
        # -> n + 8/128 = 4.0625 / 3.0625 at g128: the paper's and its simulator's w_prec
        # (bitmod_sim/test_bitmod.py; REFERENCE.md). The released quantizer keeps the scale
        # in fp16, which stored with the selector would be n + 18/128 (4.140625). 8 bits fit
        # the authors' earlier code, which quantizes each group scale to `scale_bits`
        # (a parameter there) against one fp16 scale per row (yc2367/BitMoD
        # wiki_c4_ppl/quant_utils/quant_weight_double.py): a 6-bit scale + the 2-bit
        # selector of 4 datatypes = 8 (our reading; the split is not stated). We count the
        # published 8 bits (the per-row fp16 scale, like NVFP4's tensor scale, is not
        # counted) and fake-quantize with the released code's fp16 scale.
        kinds = "/".join(BITMOD_DATATYPES[n])
        return _F(f"bitmod{n}-g{g}", "bitmod", n, g, True, 8, 0, f"bitmod{n}",
                  f"BitMoD fp{n} mixture ({kinds}) per group of {g}, 8-bit scale + datatype metadata")
    raise KeyError(base)


@functools.lru_cache(maxsize=None)
def _get(name: str) -> Format:
    text = name.strip().lower()
    base, act, act_fields = text, 16, {}
    m = _ACT_RE.fullmatch(text)
    if m:
        base, act = m.group(1), int(m.group(3))
        act_fields = _activation_fields(m.group(2), act, m.group(4), name)
    rank = 0
    m = _RANK_RE.fullmatch(base)
    if m:
        base, rank = m.group(1), int(m.group(2))
        if not LOWRANK_RANGE[0] <= rank <= LOWRANK_RANGE[1] or base in ("fp16", "bf16", "fp32"):
            raise QuantDSEError(f"low-rank branch -r{rank} in {name!r} is not supported: use a rank from "
                                f"{LOWRANK_RANGE[0]} to {LOWRANK_RANGE[1]} on a quantized format, e.g. int4-g64-r32-a4")
    try:
        fmt = _build(base)
    except KeyError:
        names = [f.name for f in list_formats()]
        close = difflib.get_close_matches(base, names, n=4, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise QuantDSEError(f"unknown format {name!r}: {hint}run `python -m dse.formats` for the list") from None
    if rank:
        fmt = dataclasses.replace(fmt, name=f"{fmt.name}-r{rank}", lowrank=rank,
                                  description=f"{fmt.description} + rank-{rank} 16-bit low-rank branch (SVDQuant)")
    if act != 16:
        fmt = dataclasses.replace(fmt, act_bits=act, **act_fields)
        fmt = dataclasses.replace(fmt, name=fmt.name + fmt.act_suffix)
    return _intern(fmt)


def _activation_fields(fp: str, act: int, tail: str | None, name: str) -> dict:
    """act_type / act_granularity / act_group of an activation suffix, or a QuantDSEError."""
    if fp and act not in FP_ACT_BITS:
        raise QuantDSEError(f"floating-point activation bits {act} in {name!r} are not supported: use -af8 or -af4")
    if not fp and act not in ACT_BITS:
        raise QuantDSEError(f"activation bits {act} in {name!r} are not supported: use -a4, -a8 or -a16")
    if act == 16 and (fp or tail):
        raise QuantDSEError(f"16-bit activations in {name!r} take no type or granularity: drop the suffix")
    if tail is None:
        return {"act_type": "fp" if fp else "int"}
    if tail == "c":
        return {"act_type": "fp" if fp else "int", "act_granularity": "channel"}
    group = _check_group(tail[1:], name)
    return {"act_type": "fp" if fp else "int", "act_granularity": "group", "act_group": group}


@functools.lru_cache(maxsize=None)
def _intern(fmt: Format) -> Format:
    """One object per format, whichever alias named it (fp4-e2m1-g128 is fp4-e2m1)."""
    return fmt


def get_format(name: str) -> Format:
    """The Format for a name such as ``int4-g128``, ``q4_k`` or ``int4-g128-asym-a8`` (cached)."""
    if not isinstance(name, str):
        raise QuantDSEError(f"format name must be a string, got {type(name).__name__}")
    return _get(name)


@functools.lru_cache(maxsize=None)
def _catalog() -> tuple[Format, ...]:
    names = ["fp32", "fp16", "bf16"]
    for n in range(2, 9):
        for suffix in ("", "-asym"):
            names.append(f"int{n}{suffix}")
            names += [f"int{n}-g{g}{suffix}" for g in _CATALOG_GROUPS]
    names += ["fp8-e4m3", "fp8-e5m2", "fp6-e3m2", "fp4-e2m1", "fp4-e2m1-g32", "fp4-e2m1-g64",
              "nf4", "mxfp4", "mxint8", "nvfp4", "bitmod3-g128", "bitmod4-g128", "ternary", "binary", "binary2",
              *_GGML_BLOCKS]
    for n in _QZ_CATALOG_BITS:
        for suffix in ("-qz", "-asym-qz"):
            names.append(f"int{n}{suffix}")
            names += [f"int{n}-g{g}{suffix}" for g in _CATALOG_GROUPS]
    return tuple(_get(n) for n in names)


def list_formats() -> list[Format]:
    """The catalog, canonical names only (activation variants are not enumerated)."""
    return list(_catalog())


def parse_format_list(text: str) -> list[Format]:
    """``"int4-g128,int8,fp16"`` -> Formats; empty or duplicate entries are errors."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise QuantDSEError("empty format list: give comma-separated names, e.g. int4-g128,int8,fp16")
    formats, seen = [], set()
    for i, part in enumerate(parts):
        if not part:
            raise QuantDSEError(f"empty entry {i + 1} in format list {text!r}: remove the extra comma")
        fmt = get_format(part)
        if fmt.name in seen:
            raise QuantDSEError(f"format {fmt.name} appears twice in {text!r}: list each format once")
        seen.add(fmt.name)
        formats.append(fmt)
    return formats


# ---------------------------------------------------------------- input checks and helpers

#: the longest row a format is asked about (README "Limits on input")
MAX_K = 1 << 30


def check_k(k) -> int:
    ok = not isinstance(k, bool) and isinstance(k, (int, float, np.integer, np.floating)) \
        and (isinstance(k, (int, np.integer)) or (math.isfinite(k) and float(k).is_integer())) and k >= 1
    if not ok:
        raise QuantDSEError(f"row length k must be a positive integer, got {k!r}")
    if k > MAX_K:
        from quantcore.limits import show_number

        raise QuantDSEError(f"row length k must be at most {MAX_K:,}, got {show_number(int(k))}")
    return int(k)


# ---- SVDQuant's low-rank branch (Li et al. 2024, "SVDQuant: Absorbing Outliers by Low-Rank
# Components for 4-Bit Diffusion Models", Sec. 4): W = L1 L2 + R, L1 L2 the rank-r truncated SVD
# of W kept in 16 bits, R quantized by the base format. (The smoothing that first migrates
# activation outliers into W needs calibration activations; this data-free reference leaves it out.)

def lowrank_bits(rank: int, k: int, n: int) -> float:
    """Bits per weight of a rank-r 16-bit branch beside a k x n weight: 16 r (k + n) / (k n)."""
    return 16.0 * rank * (k + n) / (float(k) * n) if rank else 0.0


def _q_lowrank(f: Format, x):
    base = _intern(dataclasses.replace(f, lowrank=0, name=f.name.replace(f"-r{f.lowrank}", "")))
    r = min(f.lowrank, *x.shape)
    u, s, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    low = fp16(((u[:, :r] * s[:r]) @ vt[:r]).astype(np.float32))
    return low + base.quantize(x - low)


# ---------------------------------------------------------------- CLI
