"""Atomic output files and strict JSON input.

Outputs are written to a temporary file in the same folder and renamed into
place, so a failed run never leaves a partial file behind.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from quantcore.errors import QuantDSEError


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via temp file + rename (never a partial file)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise QuantDSEError(f"output folder {folder} does not exist: create it or choose another --out path")
    if target.is_dir():
        raise QuantDSEError(f"output path {target} is a folder: give a file path, e.g. {target / 'plan.json'}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plan is read by other tools and users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dumps(obj: Any) -> str:
    """Deterministic JSON text (sorted keys off: callers order their dicts)."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def load_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file; a missing or malformed file is a one-line QuantDSEError."""
    p = Path(path)
    if not p.is_file():
        raise QuantDSEError(f"{what} {p} not found: check the path")
    try:
        return json.loads(p.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QuantDSEError(f"{what} {p} is not valid JSON ({exc}): fix or regenerate the file") from None


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
