"""Reference quantizers, one module per family; `QUANTIZERS` maps a format family to its function.

Each takes (format, x: float32 [rows, k]) and returns the fake-quantized values. `Format.quantize`
(quantcore.formats) checks the input, picks the function and feeds it row chunks.
"""
from quantcore.quantizers.bitmod import quantize_bitmod
from quantcore.quantizers.float import quantize_float
from quantcore.quantizers.ggml import quantize_ggml
from quantcore.quantizers.integer import quantize_int
from quantcore.quantizers.minifloat import quantize_fp, quantize_mx, quantize_nvfp
from quantcore.quantizers.nf import quantize_nf
from quantcore.quantizers.ternary import quantize_binary, quantize_ternary


QUANTIZERS = {
    "float": quantize_float, "int": quantize_int, "fp": quantize_fp, "nf": quantize_nf, "mx": quantize_mx,
    "nvfp": quantize_nvfp, "ternary": quantize_ternary, "binary": quantize_binary, "ggml": quantize_ggml,
    "bitmod": quantize_bitmod,
}
