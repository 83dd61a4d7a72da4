"""Safetensors checkpoints: header-only reading, and weights streamed one tensor at a time.

The header is an 8-byte little-endian length followed by that many bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`),
offsets relative to the end of the header. We validate it against the file size so a
truncated download fails here, with one line, instead of deep inside safetensors.
"""
from __future__ import annotations

import math
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.io import load_json, note_input, parse_json
from quantcore.limits import check_cap

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
    """Names, dtypes and shapes of every tensor in one file, validated; no tensor data is read.

    The checks are those of the safetensors library (`Metadata::validate`), so a file we
    accept is one it opens: tensors tile the data area from byte 0 to the file's end
    without gaps or overlaps, each exactly shape x dtype bytes; dims and offsets are
    non-negative integers; `__metadata__` maps strings to strings.
    """
    path = Path(path)
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise QuantDSEError(f"safetensors file {path} is not a regular file: give the path of a checkpoint file")
    note_input(path)
    size = st.st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _corrupt(path, f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise _corrupt(path, f"header length {n} is over the safetensors limit of {MAX_HEADER_BYTES} bytes")
        if n > size - 8:
            raise _corrupt(path, f"header length {n} but the file has {size} bytes")
        raw = handle.read(n)
    try:
        header = parse_json(raw, f"safetensors header of {path}")
    except QuantDSEError:
        raise _corrupt(path, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _corrupt(path, "__metadata__ must map strings to strings")
    out, spans = [], []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise _corrupt(path, f"tensor {name!r} lacks dtype/shape/data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_count(d) for d in shape):
            raise _corrupt(path, f"tensor {name!r} has shape {shape!r}: dims must be non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise _corrupt(path, f"tensor {name!r} has bad data_offsets {offsets!r}")
        begin, end = offsets
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise _corrupt(path, f"tensor {name!r} has {end - begin} bytes for shape {list(shape)} {dtype}")
        spans.append((begin, end, name))
        out.append(TensorInfo(name, dtype, tuple(shape), path))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            why = "overlaps the tensor before it" if begin < position else f"leaves a gap at byte {position}"
            raise _corrupt(path, f"tensor {name!r} starts at byte {begin} and {why}")
        position = end
    if position != size - 8 - n:
        raise _corrupt(path, f"tensors cover {position} of the {size - 8 - n} data bytes "
                             f"({'trailing bytes' if position < size - 8 - n else 'past the end'})")
    return out


def _count(value) -> bool:
    """A non-negative integer (JSON), as safetensors' usize fields require."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the file itself, the index's shards, or all in the folder."""
    if path.is_file():
        return [path]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        doc = load_json(index, "checkpoint index")
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise QuantDSEError(f"{index} is malformed (needs a 'weight_map' object of file names): re-download it")
        shards = sorted(set(weight_map.values()))
        outside = [s for s in shards if Path(s).name != s]
        if outside:
            raise QuantDSEError(f"{index} names shard {outside[0]!r} outside its folder: re-download the index")
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise QuantDSEError(f"{index} lists shard {missing[0]} which is not in {path}: download all shards")
        return [path / s for s in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        refuse_pickles(path)
        raise QuantDSEError(f"no *.safetensors files in {path}: point --model at a checkpoint folder")
    return files


#: weight files that are pickles (unpickling runs code): never read, only named in the refusal
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickles(folder: Path) -> None:
    """A folder whose only weights are pickles: the one-line refusal, with how to convert them."""
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise QuantDSEError(
            f"model folder {folder} has only pickled weights ({pickles[0]}), which quantdse never loads "
            "(unpickling runs code): convert them once where you trust the file: python -c \"from transformers "
            f"import AutoModel; AutoModel.from_pretrained('{folder}', use_safetensors=False)"
            f".save_pretrained('{folder}')\" (save_pretrained writes model.safetensors)")


def read_tensors(path: Path) -> dict[str, TensorInfo]:
    """Every tensor of a file or folder checkpoint, by name."""
    tensors: dict[str, TensorInfo] = {}
    for file in checkpoint_files(path):
        for info in read_header(file):
            tensors[info.name] = info
        check_cap("layers", len(tensors), f"checkpoint {path} tensors")
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
        if layer_name not in self._layer_tensors:
            raise QuantDSEError(f"layer {layer_name!r} has no weight tensor in this checkpoint: check the layer name")
        info = self._tensors[self._layer_tensors[layer_name]]
        array = _read_tensor(info)
        array = np.asarray(array, dtype=np.float32)
        if layer_name in self._transposed:
            array = np.ascontiguousarray(array.T)
        return array.reshape(array.shape[0], -1) if array.ndim != 2 else array


def _read_tensor(info: TensorInfo) -> np.ndarray:
    """One tensor through the safetensors library; its errors (a file changed since its header was read)
    become the one-line error."""
    from safetensors import SafetensorError, safe_open

    try:
        if info.dtype in ("BF16", "F8_E4M3", "F8_E5M2"):  # numpy has no such dtypes
            with safe_open(str(info.file), framework="pt") as handle:
                return handle.get_tensor(info.name).float().numpy()
        with safe_open(str(info.file), framework="numpy") as handle:
            return handle.get_tensor(info.name)
    except SafetensorError as exc:
        raise _corrupt(info.file, f"safetensors: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") \
            from None
