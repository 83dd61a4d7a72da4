"""`--sensitivity imatrix:FILE`: llama.cpp's importance matrix turned into per-layer, per-format errors.

llama-imatrix (tools/imatrix/imatrix.cpp, ggml-org/llama.cpp 006e7ef9913f4ed2dc7ebc00890f4e287b6cfcea)
collects, for every weight matrix it sees in a matmul, the sum over calibration tokens of each
input column's squared activation, and writes it in one of two forms:

- GGUF (``save_imatrix``; ``general.type = "imatrix"``): per GGUF tensor name, ``NAME.in_sum2``
  (f32, [n_mat, n_cols]: sums of x^2) and ``NAME.counts`` (f32, [n_mat, 1]: tokens seen);
  the mean square is in_sum2 / counts. n_mat > 1 for stacked MoE experts.
- legacy ``.dat`` (``save_imatrix_legacy``): int32 entry count; per entry an int32 name length,
  the name, int32 ncall, int32 nval and nval f32 values (mean of x^2 times ncall); then the
  int32 chunk count and the dataset name.

With E[x_j^2] the importance of column j, the output error of a layer quantized to Q is
E||(W - Q) x||^2 ~= sum_ij E[x_j^2] (W - Q)_ij^2 (columns uncorrelated: the diagonal llama-quantize
itself weights by). We report it relative to the same weighting of W, the analogue of `weights`'
||W-Q||^2 / mean W^2: sum_ij imp_j (W-Q)_ij^2 / mean_ij(imp_j W_ij^2). The weights come from the
model (a safetensors checkpoint); GGUF names map to HF layers through the gguf package's
tensor-name map (quantcore.models.gguf.gguf_names). A layer the file does not cover is weighted
uniformly (its `weights` error) and the description says how many.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from quantcore.errors import QuantDSEError


def read_imatrix(path: str) -> dict:
    """{GGUF tensor name: importance [n_mat, n_cols] (mean squared activation per column)}."""
    p = Path(path)
    if not p.is_file():
        raise QuantDSEError(f"imatrix file {path} not found: pass the .gguf or .dat llama-imatrix wrote")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    return _read_gguf(p) if magic == b"GGUF" else _read_dat(p)


def _read_gguf(p: Path) -> dict:
    import gguf

    try:
        reader = gguf.GGUFReader(str(p))
    except (ValueError, OSError, struct.error) as exc:
        raise QuantDSEError(f"imatrix {p}: not a readable GGUF file ({exc}): regenerate it with llama-imatrix") from None
    tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in reader.tensors}
    out = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        counts = tensors.get(f"{base}.counts")
        if counts is None:
            raise QuantDSEError(f"imatrix {p}: {base}.in_sum2 has no {base}.counts: regenerate it with llama-imatrix")
        sums = sums.reshape(counts.size, -1)
        out[base] = sums / np.maximum(counts.reshape(-1, 1), 1.0)
    if not out:
        raise QuantDSEError(f"imatrix {p}: no *.in_sum2 tensors: is it an imatrix GGUF (general.type imatrix)?")
    return out


def _read_dat(p: Path) -> dict:
    data = p.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise QuantDSEError(f"imatrix {p}: truncated .dat file at byte {pos}: regenerate it with llama-imatrix")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values

    (n_entries,) = take("<i")
    if n_entries < 1 or n_entries > 1 << 20:
        raise QuantDSEError(f"imatrix {p}: {n_entries} entries: not a llama-imatrix .dat or .gguf file")
    out = {}
    for _ in range(n_entries):
        (length,) = take("<i")
        if not 0 < length < 4096:
            raise QuantDSEError(f"imatrix {p}: bad name length {length}: not a llama-imatrix .dat file")
        name = bytes(take(f"<{length}s")[0]).decode("utf-8", "replace")
        ncall, nval = take("<ii")
        if nval < 0 or nval > 1 << 28:
            raise QuantDSEError(f"imatrix {p}: entry {name} has {nval} values: not a llama-imatrix .dat file")
        values = np.array(take(f"<{nval}f"), dtype=np.float64)
        out[name] = (values / max(ncall, 1)).reshape(1, -1)  # written as mean(x^2) * ncall
    return out


def imatrix_errors(graph, layers, formats, path: str) -> tuple[np.ndarray, str]:
    """(errors [layers x formats], description)."""
    if graph.weights is None:
        raise QuantDSEError(f"--sensitivity imatrix needs the model's weights (the importance weighs their "
                            f"quantization error): pass a safetensors checkpoint as --model, not {graph.name}")
    from quantcore.models.gguf import gguf_names

    table = read_imatrix(path)
    names = gguf_names(graph)
    out = np.empty((len(layers), len(formats)))
    covered = 0
    for i, layer in enumerate(layers):
        w = graph.weights.get(layer.name).astype(np.float64)
        imp = None
        for t in names.get(layer.name, ()):
            entry = table.get(t)
            if entry is not None:
                expert = _expert_index(layer.name)
                imp = entry[expert if entry.shape[0] > 1 and expert is not None else 0]
                break
        if imp is None or imp.size != w.shape[1]:
            imp = np.ones(w.shape[1])
        else:
            covered += 1
        scale = float(np.mean(imp[None, :] * w * w))
        for j, fmt in enumerate(formats):
            q = fmt.quantize(w.astype(np.float32)).astype(np.float64)
            err = float(np.sum(imp[None, :] * (w - q) ** 2))
            out[i, j] = err / scale if scale > 0 else 0.0
    description = (f"llama.cpp importance matrix {Path(path).name}: sum imp_j (W-Q)^2 / mean imp_j W^2 "
                   f"({covered} of {len(layers)} layers covered; the rest weighted uniformly)")
    return out, description


def _expert_index(name: str) -> int | None:
    import re

    m = re.search(r"\.experts\.(\d+)\.", name)
    return int(m.group(1)) if m else None
