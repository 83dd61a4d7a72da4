"""Data-free priors for activation and KV-cache quantization: outlier-aware, in weight-error units.

The weight sensitivity counts a layer's error as ``params x relative MSE`` of its weights
(dse.sensitivity). For a linear layer y = W x the output error of quantizing the input is,
to first order, the relative MSE of x times the same ||W||^2 scale, so an activation choice
costs ``params x relative MSE of the input`` and adds to the weight format's error. A K or V
cache perturbs the attention the way quantizing the k/v projection's output does, so a cache
choice costs ``params(k_proj or v_proj) x relative MSE of the cached tensor``.

The relative MSE is measured by quantizing a synthetic sample (seeded by its shape and role)
whose outliers follow what the papers report, not fitted to any accuracy figure:

- inputs of q/k/v/gate/up (after a norm): a few fixed outlier channels, 0.2 % of them at 20x
  the typical magnitude ([llm-int8]: outlier features up to 20x, in a handful of dimensions,
  fixed across tokens; [smoothquant]: outliers persist in fixed channels);
- inputs of down_proj / fc2: heavier, 100x in the same fraction of channels on Student-t(3)
  tokens ([smoothquant], [quarot]: the down-projection input is the hardest activation);
- inputs of o_proj (the attention output): 5x outlier channels (estimate: milder, [quarot]);
- K cache: fixed outlier channels, 5 % of head_dim at 10x; V cache: none ([kivi]: keys have
  per-channel outliers, values do not, so K loses more than V at the same per-token format).

These magnitudes are round figures within the cited ranges (estimates). A measured source
(hooks on the real model, dse.calibsens) replaces them where the run has one. The sources are
transformer LLMs: diffusion pipelines and CNNs get no activation prior (their activation variants
carry the weight error only, as before).
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from quantcore.formats import Format, get_format

#: (fraction of outlier channels, their magnitude, Student-t dof of the tokens; 0 = Gaussian) by input role
ACT_OUTLIERS = {"down": (0.002, 100.0, 3.0), "fc2": (0.002, 100.0, 3.0), "o": (0.002, 5.0, 0.0),
                "dense": (0.002, 5.0, 0.0)}
#: inputs after a norm (q/k/v/gate/up and anything unnamed)
DEFAULT_OUTLIERS = (0.002, 20.0, 0.0)
#: the cache tensors: K has per-channel outliers, V does not ([kivi])
KV_OUTLIERS = {"k": (0.05, 10.0, 0.0), "v": (0.0, 1.0, 0.0)}
#: tokens in a sample
SAMPLE_TOKENS = 256


def synthetic(k: int, outliers: tuple, key: str) -> np.ndarray:
    """A [SAMPLE_TOKENS, k] activation sample with fixed outlier channels, seeded by `key`."""
    fraction, magnitude, dof = outliers
    rng = np.random.default_rng(zlib.crc32(f"{key}:{k}".encode()))
    x = rng.standard_t(dof, size=(SAMPLE_TOKENS, k)) if dof else rng.standard_normal((SAMPLE_TOKENS, k))
    n_out = int(round(fraction * k)) if fraction else 0
    if fraction and n_out == 0:
        n_out = 1
    if n_out:
        x[:, rng.choice(k, size=n_out, replace=False)] *= magnitude
    return x.astype(np.float32)


def activation_quantizer(fmt: Format) -> tuple[Format, bool]:
    """(the format that fake-quantizes the input rows, whether to quantize per column) for `fmt`'s activations."""
    if fmt.family in ("nvfp", "mx") and fmt.act_bits == 4:  # NVFP4 / MXFP4 activations: e2m1 in the weight's blocks
        return dataclasses.replace(get_format("fp4-e2m1"), group_size=fmt.group_size), False
    element = {("int", 8): "int8", ("int", 4): "int4", ("fp", 8): "fp8-e4m3", ("fp", 4): "fp4-e2m1"}
    base = get_format(element[(fmt.act_type, fmt.act_bits)])
    group = fmt.act_group if fmt.act_granularity == "group" else None
    return dataclasses.replace(base, group_size=group), fmt.act_granularity == "channel"


def relative_mse(x: np.ndarray, quantizer: Format, per_column: bool = False) -> float:
    """||x - Q(x)||^2 / ||x||^2 with one scale per row (per column when `per_column`)."""
    data = x.T.copy() if per_column else x.copy()
    q = quantizer.quantize(data)
    return float(np.sum(np.square(data - q, dtype=np.float64)) / np.sum(np.square(data, dtype=np.float64)))


def activation_errors(layers, formats) -> np.ndarray:
    """[L, F] prior error of each layer's input at each format's activation precision (0 for 16-bit)."""
    out = np.zeros((len(layers), len(formats)))
    cache: dict = {}
    for j, fmt in enumerate(formats):
        if fmt.act_bits >= 16:
            continue
        quantizer, per_column = activation_quantizer(fmt)
        for i, layer in enumerate(layers):
            outliers = ACT_OUTLIERS.get(layer.role, DEFAULT_OUTLIERS)
            key = (layer.row, outliers, quantizer, per_column)
            if key not in cache:
                cache[key] = relative_mse(synthetic(layer.row, outliers, f"act:{outliers}"), quantizer, per_column)
            out[i, j] = cache[key] * layer.params
    return out


def kv_errors(items, formats) -> np.ndarray:
    """[I, K] prior error of each cache item (dse.kvcache.KVItem) in each KV format."""
    out = np.zeros((len(items), len(formats)))
    cache: dict = {}
    for i, item in enumerate(items):
        outliers = KV_OUTLIERS[item.tensor]
        for j, fmt in enumerate(formats):
            key = (item.head_dim, item.tensor, fmt.name)
            if key not in cache:
                cache[key] = relative_mse(synthetic(item.head_dim, outliers, f"kv:{item.tensor}"), fmt) \
                    if fmt.is_quantized else 0.0
            out[i, j] = cache[key] * item.params
    return out
