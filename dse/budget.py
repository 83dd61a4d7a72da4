"""Budgets: `3.7bits`, `3.5GB`, `12ms`, `5mJ` -> a constraint kind and an SI limit."""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from quantcore.errors import QuantDSEError

#: unit -> (constraint kind, factor to SI: bits, bytes, seconds, joules). Case matters:
#: GB is bytes (Gb would be bits), mJ is millijoules (MJ would be megajoules).
UNITS = {
    "bits": ("bits", 1.0), "bit": ("bits", 1.0),
    "GB": ("memory", 1e9), "MB": ("memory", 1e6), "kB": ("memory", 1e3), "KB": ("memory", 1e3),
    "GiB": ("memory", 2.0 ** 30), "MiB": ("memory", 2.0 ** 20), "bytes": ("memory", 1.0), "B": ("memory", 1.0),
    "s": ("latency", 1.0), "ms": ("latency", 1e-3), "us": ("latency", 1e-6),
    "J": ("energy", 1.0), "mJ": ("energy", 1e-3), "uJ": ("energy", 1e-6),
}


class Shown(NamedTuple):
    """How a limit of one kind is shown to people (UNITS[unit] holds the factor back to SI)."""
    unit: str
    factor: float  # from SI to `unit`
    key: str  # of a plan's totals


#: kind -> how its limits and totals are shown
SHOWN_UNITS = {"bits": Shown("bits", 1.0, "effective_bits"), "memory": Shown("GB", 1e-9, "memory_bytes"),
               "latency": Shown("ms", 1e3, "latency_s"), "energy": Shown("mJ", 1e3, "energy_j")}
#: largest budget of each kind, in SI (README "Limits on input"): past these a limit binds nothing
#: real, and the solvers' arithmetic (HiGHS treats 1e20 as infinite) would no longer be exact
MAX_SI = {"bits": 64.0, "memory": 1e18, "latency": 1e6, "energy": 1e12}
_PATTERN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf))\s*([a-zA-Z]+)\s*$")


def parse_budget(text: str) -> tuple[str, float, float]:
    """Return (kind, SI limit, value as written) for a budget string like "3.7bits"."""
    match = _PATTERN.match(str(text))
    if not match:
        raise QuantDSEError(f"malformed budget {text!r}: write a number and a unit, e.g. 3.7bits, 3.5GB, 12ms, 5mJ")
    value = float(match.group(1))
    unit = match.group(2)
    if unit not in UNITS:
        raise QuantDSEError(f"unknown budget unit {unit!r} in {text!r}: use bits, GB, MB, GiB, ms, s, us, mJ or J "
                            "(case matters: GB is bytes, mJ millijoules)")
    if not math.isfinite(value) or value <= 0:
        raise QuantDSEError(f"budget {text!r} must be a positive finite number")
    kind, factor = UNITS[unit]
    check_budget_range(f"budget {str(text).strip()!r}", kind, value, factor, unit)
    return kind, value * factor, value


def check_budget_range(name: str, kind: str, value: float, factor: float, unit: str) -> None:
    """The limit must be at most MAX_SI[kind], said in the unit the user wrote."""
    if value * factor > MAX_SI[kind]:
        raise QuantDSEError(f"{name} is out of range: a {kind} budget must be at most "
                            f"{MAX_SI[kind] / factor:g}{unit}")


def limit_from_flag(flag: str, value: float | None, factor: float, kind: str | None = None,
                    unit: str = "") -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise QuantDSEError(f"{flag} must be a positive finite number, got {value}")
    if kind is not None:
        check_budget_range(flag, kind, value, factor, unit)
    return value * factor
