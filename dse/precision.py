"""Activation precision as a choice the solver makes, and the KV items as extra rows of the Problem.

`--activations 16,8,4` expands each weight candidate into its activation variants (``int4-g128``,
``int4-g128-a8``, ``int4-g128-a4``); the target's cost model says which it has a kernel for
(hwmodels.families: int8 tensor cores W8A8/W4A8, int4 tensor cores W4A4, fp8 on Ada/Hopper, the
CPU's int8 matmul) and `dse.device.runnable` drops the others with a note. A variant the user
named in --formats is an error instead when no quantized format the user named runs (`check_asked`). Each variant's error is the weight
error plus its input's activation error (dse.actprior's prior unless a measured source gives it).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from quantcore.errors import QuantDSEError

_TOKEN = re.compile(r"(f?)(\d+)(c|g\d+)?")


def parse_activations(text: str) -> tuple[str, ...]:
    """``"16,8,4"`` -> ``("", "-a8", "-a4")``; tokens: N (int per token), fN (fp), Nc (per channel), NgG (per group)."""
    from quantcore.formats import get_format

    out = []
    for part in str(text).split(","):
        token = part.strip().lower()
        m = _TOKEN.fullmatch(token)
        if not m:
            raise QuantDSEError(f"--activations entry {part.strip()!r} is not a precision: use e.g. 16,8,4 "
                                "(f8 for fp8, 8c per channel, 4g128 per group of 128)")
        suffix = "" if token == "16" else f"-a{token}"
        get_format("int8" + suffix)  # the grammar's own checks and messages (quantcore.formats)
        if suffix in out:
            raise QuantDSEError(f"--activations lists {token} twice: list each precision once")
        out.append(suffix)
    return tuple(out)


def expand_activations(formats: list, suffixes) -> list:
    """Each weight format with each activation suffix, without repeats: 16-bit formats stay 16-bit, and
    no variant has activations narrower than its weights (W8A4 has a kernel nowhere)."""
    out, seen = [], set()
    for fmt in formats:
        variants = [""] if not fmt.is_quantized else suffixes
        for suffix in variants:
            f = fmt.with_activation(suffix)
            if f.act_bits < fmt.weight_bits:
                continue
            if f.name not in seen:
                seen.add(f.name)
                out.append(f)
    return out


def check_asked(request, dropped: tuple, hw_name: str, layers) -> None:
    """The quantized formats the user named in --formats all lack a kernel on the target, one of them for its
    activations (``--formats int4-g128-a4,fp16`` on Hopper): an error naming it, not a note that leaves
    only 16-bit. A list with a runnable quantized format drops the others with the note."""
    from quantcore.formats import get_format

    if not request.formats or request.target:
        return
    quantized = [f for f in (get_format(n) for n in request.formats) if f.is_quantized]
    bad = [f for f in quantized if f.name in set(dropped)]
    if bad and len(bad) == len(quantized) and any(f.act_bits < 16 for f in bad):
        fmt = next(f for f in bad if f.act_bits < 16)
        raise QuantDSEError(f"layer {layers[0].name}: {hw_name} has no kernel for {fmt.name} (weights "
                            f"{fmt.weight_name}, {fmt.act_bits}-bit {fmt.act_type} activations per "
                            f"{fmt.act_granularity}): drop it from --formats, or use --activations to let the "
                            "search keep only the combinations the target runs")


def with_activation_prior(sensitivity, layers, formats):
    """The sensitivity with each variant's activation error added (unless it measured activations itself)."""
    from dse.calibsens import SOURCES as MEASURED  # they measure a format's -aN with the layer's input quantized

    if getattr(sensitivity, "measures_activations", sensitivity.source in MEASURED):
        return sensitivity
    from dse.actprior import activation_errors

    extra = activation_errors(layers, formats)
    return dataclasses.replace(sensitivity, errors=sensitivity.errors + extra,
                               description=f"{sensitivity.description}; activations: data-free outlier prior "
                                           "(dse.actprior)")


def with_kv_rows(names: list, arrays: dict, kv) -> tuple[list, dict]:
    """(format columns, Problem arrays) with the KV items appended as rows.

    Columns: the weight candidates, then the KV formats not among them; a weight row allows only
    weight candidates and a KV row only KV formats. A KV row has no parameters (the bits average
    is the weights'); its memory is `item_memory`.
    """
    columns = list(names) + [f.name for f in kv.formats if f.name not in names]
    L, F, I = len(arrays["params"]), len(columns), len(kv.items)
    where = [columns.index(f.name) for f in kv.formats]

    def grow(arr, fill, kv_values):
        out = np.full((L + I, F), fill, dtype=np.asarray(arr).dtype if fill is not np.inf else float)
        out[:L, :len(names)] = arr
        out[L:, where] = kv_values
        return out

    bits = np.array([[f.bits_per_weight(it.head_dim) for f in kv.formats] for it in kv.items])
    item_memory = np.zeros((L + I, F))
    item_memory[L:, where] = kv.memory
    new = {"error": grow(arrays["error"], np.inf, np.nan_to_num(kv.error, nan=np.inf)),
           "params": np.concatenate([arrays["params"], np.zeros(I)]),
           "bits": grow(arrays["bits"], 16.0, bits),
           "latency_s": grow(arrays["latency_s"], 0.0, kv.latency_s),
           "energy_j": grow(arrays["energy_j"], 0.0, kv.energy_j),
           "mask": grow(arrays["mask"], False, kv.supported),
           "item_memory": item_memory}
    return columns, new


def activation_doc(fmt) -> dict:
    """A plan layer's ``activation`` entry: what its input runs at."""
    if fmt.act_bits >= 16:
        return {"bits": 16, "type": "float"}
    doc = {"bits": fmt.act_bits, "type": fmt.act_type, "granularity": fmt.act_granularity}
    if fmt.act_granularity == "group":
        doc["group_size"] = fmt.act_group
    return doc
