"""The local target's calibration cache: where calibrations live and which one fits this machine.

Reading only: `load_calibration` returns the cached calibration for this machine and thread
count, or None. A calibration is made by `hwmodels.local_calibration.calibrate` (the command
``python -m hwmodels.calibrate --hw local``), never by costing. Files live outside the
repository: $QUANTDSE_CACHE_DIR, else $XDG_CACHE_HOME/quantdse, else ~/.cache/quantdse, keyed
by a machine fingerprint (CPU model, cores, torch version, threads, device).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

from quantcore.io import load_json

CALIBRATION_SCHEMA = "quantdse.calibration/1"


def cache_dir() -> Path:
    """Where calibrations live (never inside the repository)."""
    if os.environ.get("QUANTDSE_CACHE_DIR"):
        return Path(os.environ["QUANTDSE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quantdse"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_threads() -> int:
    """torch's intra-op thread count here (what a plain torch program uses)."""
    import torch

    return int(torch.get_num_threads())


def fingerprint(threads: int = 0, device: str = "cpu") -> dict:
    """What a calibration is valid for: CPU model, cores, torch version, threads, device."""
    import torch

    doc = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
           "threads": int(threads) or default_threads(), "device": device}
    if device == "cuda" and torch.cuda.is_available():
        doc["gpu"] = torch.cuda.get_device_name(0)
    return doc


def cache_path(fp: dict) -> Path:
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"local-{fp['device']}-{key}.json"


def load_calibration(threads: int = 0, device: str = "cpu") -> dict | None:
    """The cached calibration for this machine, or None when there is none (or it is unreadable)."""
    fp = fingerprint(threads, device)
    path = cache_path(fp)
    if not path.is_file():
        return None
    try:
        doc = load_json(path, "calibration cache", note=False)
    except (OSError, ValueError):  # QuantDSEError is a ValueError: a damaged cache is remeasured
        return None
    if not isinstance(doc, dict) or doc.get("schema") != CALIBRATION_SCHEMA or doc.get("fingerprint") != fp or not doc.get("kernels"):
        return None
    return doc
