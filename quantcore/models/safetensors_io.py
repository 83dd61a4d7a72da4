"""Safetensors checkpoints: header-only reading, and weights streamed one tensor at a time.

The header is an 8-byte little-endian length followed by that many bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`),
offsets relative to the end of the header. We validate it against the file size so a
truncated download fails here, with one line, instead of deep inside safetensors.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantcore.errors import QuantDSEError

#: bytes per element of each safetensors dtype (safetensors `Dtype` enum)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
FLOAT_DTYPES = ("F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64")
#: larger headers than this are not real checkpoints (safetensors itself caps at 100 MB)
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple
    file: Path


def _corrupt(path: Path, why: str) -> QuantDSEError:
    return QuantDSEError(f"safetensors file {path} is corrupt or truncated ({why}): re-download or re-export it")


def read_header(path: str | Path) -> list[TensorInfo]:
    """Names, dtypes and shapes of every tensor in one file, validated; no tensor data is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise _corrupt(path, f"{size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, MAX_HEADER_BYTES):
                raise _corrupt(path, f"header length {n} but the file has {size} bytes")
            raw = handle.read(n)
    except OSError as exc:
        raise QuantDSEError(f"cannot read safetensors file {path} ({exc.strerror}): check the path") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(path, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    data_bytes = size - 8 - n
    out = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise _corrupt(path, f"tensor {name!r} lacks dtype/shape/data_offsets") from None
        if dtype not in DTYPE_BYTES:
            raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise _corrupt(path, f"tensor {name!r} has bad data_offsets {entry['data_offsets']!r}")
        if end > data_bytes:
            raise _corrupt(path, f"tensor {name!r} ends at byte {end} past the {data_bytes} data bytes")
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise _corrupt(path, f"tensor {name!r} has {end - begin} bytes for shape {list(shape)} {dtype}")
        out.append(TensorInfo(name, dtype, shape, path))
    return out


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the file itself, the index's shards, or all in the folder."""
    if path.is_file():
        return [path]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise QuantDSEError(f"{index} is malformed (needs a 'weight_map' object): re-download it") from None
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise QuantDSEError(f"{index} lists shard {missing[0]} which is not in {path}: download all shards")
        return [path / s for s in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise QuantDSEError(f"no *.safetensors files in {path}: point --model at a checkpoint folder")
    return files


def read_tensors(path: Path) -> dict[str, TensorInfo]:
    """Every tensor of a file or folder checkpoint, by name."""
    tensors: dict[str, TensorInfo] = {}
    for file in checkpoint_files(path):
        for info in read_header(file):
            tensors[info.name] = info
    return tensors


def natural_key(name: str) -> list:
    """Sort `layers.2` before `layers.10`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class SafetensorsWeights:
    """WeightSource over safetensors files: opens the file and reads ONE tensor per call."""

    def __init__(self, tensors: dict[str, TensorInfo], layer_tensors: dict[str, str], transposed=()):
        self._tensors = tensors
        self._layer_tensors = dict(layer_tensors)  # layer name -> tensor name
        self._transposed = set(transposed)  # layers stored [in, out] (GPT-2 Conv1D)

    def get(self, layer_name: str) -> np.ndarray:
        """The layer's weight as float32 [out, k] (conv kernels flattened; bf16/fp8 via torch)."""
        from safetensors import safe_open

        if layer_name not in self._layer_tensors:
            raise QuantDSEError(f"layer {layer_name!r} has no weight tensor in this checkpoint: check the layer name")
        info = self._tensors[self._layer_tensors[layer_name]]
        if info.dtype in ("BF16", "F8_E4M3", "F8_E5M2"):  # numpy has no such dtypes
            with safe_open(str(info.file), framework="pt") as handle:
                array = handle.get_tensor(info.name).float().numpy()
        else:
            with safe_open(str(info.file), framework="numpy") as handle:
                array = handle.get_tensor(info.name)
        array = np.asarray(array, dtype=np.float32)
        if layer_name in self._transposed:
            array = np.ascontiguousarray(array.T)
        return array.reshape(array.shape[0], -1) if array.ndim != 2 else array
