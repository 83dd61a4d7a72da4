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

Conventions of the reference `quantize()`:

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
- The activation suffix ``-aN`` (N in 4, 8, 16) only sets `act_bits`; quantize() is weights only.
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

#: the k at which the nominal `Format.bits` is quoted (Llama-7B hidden size)
NOMINAL_K = 4096
#: activation precisions a name may carry as ``-aN``
ACT_BITS = (4, 8, 16)
#: candidate formats for a search when the user gives no --formats
DEFAULT_SEARCH_FORMATS: tuple[str, ...] = (
    "int2-g64", "int3-g128", "int3-g64", "int4-g128", "int4-g64", "int4-g32",
    "int5-g128", "int6-g128", "int8", "fp16",
)
_CATALOG_GROUPS = (32, 64, 128)
_FP16_MAX = 65504.0


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

    @property
    def weight_name(self) -> str:
        """The name without its ``-aN`` suffix."""
        return self.name if self.act_bits == 16 else self.name[: -len(f"-a{self.act_bits}")]

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
        return get_format(target if self.act_bits == 16 else f"{target}-a{self.act_bits}")

    def quantize(self, w: np.ndarray) -> np.ndarray:
        """Fake-quantize a 2-D weight [out, k]: float32 array of the same shape."""
        x = _check_weights(w)
        fmt = self.fallback_for(x.shape[1])
        if fmt is not self:
            return fmt.quantize(x)
        fn = _QUANTIZERS[self.family]
        if self.lowrank:
            return _q_lowrank(self, x)
        if self.family == "nvfp":  # one fp32 tensor scale for the whole tensor, not per chunk
            fn = functools.partial(_q_nvfp, tensor=_nvfp_tensor_scale(x))
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
_ACT_RE = re.compile(r"(.+)-a(\d+)")
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
    base, act = text, 16
    m = _ACT_RE.fullmatch(text)
    if m:
        base, act = m.group(1), int(m.group(2))
        if act not in ACT_BITS:
            raise QuantDSEError(f"activation bits {act} in {name!r} are not supported: use -a4, -a8 or -a16")
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
        fmt = dataclasses.replace(fmt, name=f"{fmt.name}-a{act}", act_bits=act)
    return _intern(fmt)


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


def _check_weights(w) -> np.ndarray:
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


def _fp16(x: np.ndarray) -> np.ndarray:
    """Round to fp16 storage (saturating at +-65504 instead of overflowing to inf)."""
    return np.clip(x, -_FP16_MAX, _FP16_MAX).astype(np.float16).astype(np.float32)


def _bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16, nearest even, by dropping the low 16 bits with rounding."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def _safe(s: np.ndarray) -> np.ndarray:
    """Divisor with zeros replaced by 1 (an all-zero group quantizes to 0, never NaN)."""
    return np.where(s != 0, s, np.float32(1))


def _groups(x: np.ndarray, g: int | None) -> np.ndarray:
    """[rows, k] -> [rows, ceil(k/g), g], the last group zero-padded (padding never moves
    amax, nor min/max for ranges that include 0, so it changes no scale)."""
    r, k = x.shape
    g = k if g is None else g
    n = -(-k // g)
    if n * g != k:
        x = np.pad(x, ((0, 0), (0, n * g - k)))
    return x.reshape(r, n, g)


def _ungroup(y: np.ndarray, k: int) -> np.ndarray:
    return y.reshape(y.shape[0], -1)[:, :k]


# ---------------------------------------------------------------- grids

#: minifloat grids: (mantissa bits, exponent bias, largest finite value)
_MINIFLOAT = {
    "e4m3": (3, 7, 448.0),      # OCP fp8 e4m3fn: no inf, S.1111.111 is NaN -> max 1.75 * 2^8
    "e5m2": (2, 15, 57344.0),   # IEEE-like fp8 e5m2: max 1.75 * 2^15
    "e3m2": (2, 3, 28.0),       # OCP fp6 e3m2: no inf/NaN -> max 1.75 * 2^4
    "e2m1": (1, 1, 6.0),        # OCP fp4 e2m1: {0, 0.5, 1, 1.5, 2, 3, 4, 6}
}

#: bitsandbytes NF4 code values (bitsandbytes/functional.py, get_4bit_type("nf4"))
NF4_CODE = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
_NF4_MIDS = (NF4_CODE[1:] + NF4_CODE[:-1]) / 2

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


def round_minifloat(x: np.ndarray, element: str) -> np.ndarray:
    """Round to the nearest value of a minifloat grid (ties to even, subnormals, saturating)."""
    mbits, bias, vmax = _MINIFLOAT[element]
    a = np.abs(x)
    _, e = np.frexp(a)                        # a = m * 2^e with m in [0.5, 1)
    e = np.maximum(e - 1, 1 - bias)           # binade exponent; subnormals share the lowest
    step = np.ldexp(np.float32(1), (e - mbits).astype(np.int32)).astype(np.float32)
    q = np.rint(a / step) * step              # rint: ties to even mantissa
    return np.copysign(np.minimum(q, np.float32(vmax)), x).astype(np.float32)


# ---------------------------------------------------------------- quantizers (x: float32 [rows, k])

def _q_float(f: Format, x):
    if f.element == "fp16":
        return _fp16_cast(x)
    if f.element == "bf16":
        return _bf16(x)
    return x


def _fp16_cast(x):
    with np.errstate(over="ignore"):
        return x.astype(np.float16).astype(np.float32)  # real fp16: overflow is inf


def _q_int(f: Format, x):
    k = x.shape[1]
    g = _groups(x, f.group_size)
    n = int(f.weight_bits)
    if f.symmetric:
        qmax = 2 ** (n - 1) - 1
        scale = _fp16(np.abs(g).max(axis=-1, keepdims=True) / np.float32(qmax))
        q = np.clip(np.rint(g / _safe(scale)), -qmax - 1, qmax)
        return _ungroup(q * scale, k)
    levels = 2 ** n - 1
    lo = np.minimum(g.min(axis=-1, keepdims=True), 0)
    hi = np.maximum(g.max(axis=-1, keepdims=True), 0)
    scale = _fp16((hi - lo) / np.float32(levels))
    s = _safe(scale)
    zero = np.clip(np.rint(-lo / s), 0, levels)
    q = np.clip(np.rint(g / s) + zero, 0, levels)
    return _ungroup((q - zero) * scale, k)


def _q_fp(f: Format, x):
    """Minifloat elements times an fp16 scale per group (or row) mapping amax to the grid max."""
    k = x.shape[1]
    g = _groups(x, f.group_size)
    vmax = np.float32(_MINIFLOAT[f.element][2])
    scale = _fp16(np.abs(g).max(axis=-1, keepdims=True) / vmax)
    return _ungroup(round_minifloat(g / _safe(scale), f.element) * scale, k)


def _q_nf(f: Format, x):
    k = x.shape[1]
    g = _groups(x, f.group_size)
    absmax = np.abs(g).max(axis=-1, keepdims=True)          # fp32 absmax: stored exactly
    idx = np.searchsorted(_NF4_MIDS, g / _safe(absmax), side="left")  # ties go down, as bnb's `x > mid`
    return _ungroup(NF4_CODE[idx] * absmax, k)


def _q_mx(f: Format, x):
    """OCP MX: shared scale 2^(floor(log2 amax) - emax_elem), clamped to e8m0's 2^-127..2^127."""
    k = x.shape[1]
    g = _groups(x, f.group_size)
    amax = np.abs(g).max(axis=-1, keepdims=True)
    emax_elem = 2 if f.element == "e2m1" else 0
    shared = np.clip(np.frexp(amax)[1] - 1 - emax_elem, -127, 127)
    scale = np.ldexp(np.float64(1), shared.astype(np.int32))  # 2^-127 needs more than fp32 range
    y = g / scale
    if f.element == "e2m1":
        q = round_minifloat(y.astype(np.float32), "e2m1")
    else:  # int8 fixed point 1.6: k/64, clamped to +-127/64
        q = np.clip(np.rint(y * 64), -127, 127) / 64
    return _ungroup((q * scale).astype(np.float32), k)


def _nvfp_tensor_scale(x) -> np.float32:
    """NVFP4's fp32 per-tensor scale: amax / (448 * 6), so block scales use e4m3's full range."""
    return np.float32(np.abs(x).max() / (448.0 * 6.0)) or np.float32(1)


def _q_nvfp(f: Format, x, tensor):
    """NVFP4: e2m1 elements x e4m3 block scale x fp32 tensor scale."""
    k = x.shape[1]
    g = _groups(x, f.group_size)
    amax = np.abs(g).max(axis=-1, keepdims=True)
    block = round_minifloat(amax / np.float32(6.0) / tensor, "e4m3") * tensor
    return _ungroup(round_minifloat(g / _safe(block), "e2m1") * block, k)


def _q_ternary(f: Format, x):
    gamma = _fp16(np.abs(x).mean(axis=1, keepdims=True))
    return np.clip(np.rint(x / _safe(gamma)), -1, 1) * gamma


def _q_binary(f: Format, x):
    """binary: sign(w) mean|w| per row. binary2 (BinaryDM's two-basis binarizer, at its initial
    scales: Xingyu-Zheng/BinaryDM ours_util.py, BNNLinear/BNNConv2d with order=2): the same on w,
    then once more on the residual w - s1 sign(w), each basis with its own per-row scale."""
    out = np.zeros_like(x)
    for _ in range(int(f.weight_bits)):
        r = x - out
        alpha = _fp16(np.abs(r).mean(axis=1, keepdims=True))
        out = out + np.where(r >= 0, alpha, -alpha)
    return out


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
    low = _fp16(((u[:, :r] * s[:r]) @ vt[:r]).astype(np.float32))
    return low + base.quantize(x - low)


# ---- llama.cpp (ggml-quants.c reference quantizers, float32 arithmetic as in C)

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
        inv = np.where(d != 0, np.float32(1) / _safe(d), np.float32(0))
        q = np.minimum(2 * half - 1, np.trunc(b * inv + np.float32(half + 0.5)))  # (int8_t) truncates
        return (q - half) * _fp16(d)
    if name in ("q4_1", "q5_1"):
        top = 15 if name == "q4_1" else 31
        lo, hi = b.min(axis=-1, keepdims=True), b.max(axis=-1, keepdims=True)
        d = (hi - lo) / np.float32(top)
        inv = np.where(d != 0, np.float32(1) / _safe(d), np.float32(0))
        q = np.minimum(top, np.trunc((b - lo) * inv + np.float32(0.5)))
        return q * _fp16(d) + _fp16(lo)
    d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127)   # q8_0
    inv = np.where(d != 0, np.float32(1) / _safe(d), np.float32(0))
    return _round_away(b * inv) * _fp16(d)


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

    iscale = np.float32(nmax) / _safe(hi - lo)
    scale = np.float32(1) / iscale
    L = np.clip(np.rint(iscale * (x - lo)), 0, nmax)
    best = err(scale, lo, L)
    for step in range(nstep + 1):
        iscale = np.float32(rmin + rdelta * step + nmax) / _safe(hi - lo)
        L = np.clip(np.rint(iscale * (x - lo)), 0, nmax)
        sum_l = (w * L).sum(axis=-1, keepdims=True)
        sum_l2 = (w * L * L).sum(axis=-1, keepdims=True)
        sum_xl = (w * L * x).sum(axis=-1, keepdims=True)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / _safe(D)
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / _safe(D)
        pos = this_min > 0
        this_scale = np.where(pos, sum_xl / _safe(sum_l2), this_scale)
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
    mx = _safe(np.where(tiny, 0, mx))
    w = x * x

    def fit(iscale):
        L = np.clip(np.rint(iscale * x), -nmax, nmax - 1)
        return (w * x * L).sum(axis=-1, keepdims=True), (w * L * L).sum(axis=-1, keepdims=True)

    sumlx, suml2 = fit(np.float32(-nmax) / mx)
    scale = np.where(suml2 > 0, sumlx / _safe(suml2), 0)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        sumlx, suml2 = fit(np.float32(-(nmax + 0.1 * step)) / mx)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        cand = sumlx / _safe(suml2)
        scale = np.where(better, cand, scale)
        best = np.where(better, cand * sumlx, best)
    return np.where(tiny, 0, scale)[..., 0]


def _kquant_asym(x, nmax, sub, scale_levels, fit):
    """q2_K / q4_K / q5_K: per sub-block (scale, min) quantized to `scale_levels` against fp16 d, dmin."""
    sb = x.reshape(-1, 256 // sub, sub)
    scales, mins = fit(sb)
    max_scale = np.maximum(scales.max(axis=-1, keepdims=True), 0)
    max_min = np.maximum(mins.max(axis=-1, keepdims=True), 0)
    inv_s = np.where(max_scale > 0, np.float32(scale_levels) / _safe(max_scale), 0)
    inv_m = np.where(max_min > 0, np.float32(scale_levels) / _safe(max_min), 0)
    ls = np.clip(np.rint(inv_s * scales), 0, scale_levels)
    lm = np.clip(np.rint(inv_m * mins), 0, scale_levels)
    d = _fp16(max_scale / np.float32(scale_levels))
    dmin = _fp16(max_min / np.float32(scale_levels))
    dd = (d * ls)[..., None]
    dm = (dmin * lm)[..., None]
    q = np.clip(np.rint((sb + dm) / _safe(dd)), 0, nmax)
    return (dd * q - dm).reshape(x.shape)


def _kquant_sym(x, nmax, scale_min, scale_max, iscale_num):
    """q3_K / q6_K: symmetric sub-blocks of 16, int scales in [scale_min, scale_max] x fp16 d."""
    sb = x.reshape(-1, 16, 16)
    scales = _make_qx(sb, nmax)
    max_scale = _signed_absmax(scales)
    tiny = np.abs(max_scale) < _GROUP_MAX_EPS
    iscale = np.where(tiny, 0, np.float32(iscale_num) / _safe(np.where(tiny, 0, max_scale)))
    ls = np.clip(np.rint(iscale * scales), scale_min, scale_max)
    d = np.where(tiny, 0, _fp16(np.float32(1) / _safe(iscale)))
    dd = (d * ls)[..., None]
    q = np.clip(np.rint(sb / _safe(dd)), -nmax, nmax - 1)
    return (dd * q).reshape(x.shape)


def _qkx2_fit(nmax, rmin, rdelta, nstep, use_mad, av_weights):
    def fit(sb):
        if av_weights:  # q4_K/q5_K: weights av_x + |x|, av_x = rms of the sub-block
            w = np.sqrt((sb * sb).mean(axis=-1, keepdims=True)) + np.abs(sb)
        else:           # q2_K: weights |x|
            w = np.abs(sb)
        return _make_qkx2(sb, w, nmax, rmin, rdelta, nstep, use_mad)
    return fit


def _q_ggml(f: Format, x):
    name = f.weight_name
    bsize = _GGML_BLOCKS[name][0]
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


@functools.lru_cache(maxsize=None)
def _bitmod_tables(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grids [C, V], max |grid| [C, 1], midpoints [V-1, C, 1]) of the BitMoD candidates, float32."""
    grids = np.array(list(BITMOD_DATATYPES[bits].values()), dtype=np.float32)
    mids = ((grids[:, 1:] + grids[:, :-1]) / 2).T[:, :, None]
    return grids, np.abs(grids).max(axis=1, keepdims=True), mids


def _q_bitmod(f: Format, x):
    """Every candidate datatype at once on y [rows, n, C, G], then per group the one of least
    squared error (argmin: the first on equal errors, as the code's strict `<` update)."""
    k = x.shape[1]
    g = _groups(x, f.group_size)[:, :, None, :]                      # [r, n, 1, G]
    grids, qmax, mids = _bitmod_tables(int(f.weight_bits))
    n_cand, n_val = grids.shape
    scale = _fp16(np.abs(g).max(axis=-1, keepdims=True) / qmax)     # [r, n, C, 1]
    y = g / _safe(scale)
    # index into grids.ravel(): c*V + number of midpoints below y. A value on a midpoint
    # counts it as not below, so it takes the lower neighbour (the code's `x <= mid`).
    idx = np.broadcast_to(np.arange(0, n_cand * n_val, n_val, dtype=np.int16)[:, None], y.shape).copy()
    for mid in mids:
        idx += y > mid
    q = np.take(grids.ravel(), idx) * scale                          # [r, n, C, G]
    d = q - g
    err = np.einsum("...i,...i->...", d, d)                          # [r, n, C]
    best = np.argmin(err, axis=-1)[..., None, None]
    return _ungroup(np.take_along_axis(q, best, axis=2)[:, :, 0], k)


_QUANTIZERS = {
    "float": _q_float, "int": _q_int, "fp": _q_fp, "nf": _q_nf, "mx": _q_mx,
    "nvfp": _q_nvfp, "ternary": _q_ternary, "binary": _q_binary, "ggml": _q_ggml, "bitmod": _q_bitmod,
}


# ---------------------------------------------------------------- CLI
