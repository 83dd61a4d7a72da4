"""Budgets: `Budget.bits(3.7)`, `Budget.gb(3.5)`, `Budget.ms(12)`, `Budget.mj(5)`, `Budget.tokens_per_s(2000)`
-> a constraint kind and an SI limit. `parse_budget` reads the command line's text form (`3.7bits`, `3.5GB`,
`12ms`, `5mJ`, `2000tok/s`).

Throughput (`tok/s`) is the one limit from below: the workload's output tokens per second (a decode
step's batch, a prefill's prompt tokens, a request's generated tokens) must reach it, which is a
latency limit of tokens / throughput (dse.pipeline turns it into one). `ttft` and `tpot` (time to
first token, time per later output token) are the serving SLOs `--max-ttft-ms` / `--max-tpot-ms`."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
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
    "tok/s": ("throughput", 1.0),
}
#: kinds whose limit is a minimum (every other limit is a maximum)
AT_LEAST = frozenset({"throughput"})


class Shown(NamedTuple):
    """How a limit of one kind is shown to people (UNITS[unit] holds the factor back to SI)."""
    unit: str
    factor: float  # from SI to `unit`
    key: str  # of a plan's totals


#: kind -> how its limits and totals are shown
SHOWN_UNITS = {"bits": Shown("bits", 1.0, "effective_bits"), "memory": Shown("GB", 1e-9, "memory_bytes"),
               "latency": Shown("ms", 1e3, "latency_s"), "energy": Shown("mJ", 1e3, "energy_j"),
               "throughput": Shown("tok/s", 1.0, "tokens_per_s"), "ttft": Shown("ms", 1e3, "ttft_s"),
               "tpot": Shown("ms", 1e3, "tpot_s")}
#: largest budget of each kind, in SI (README "Limits on input"): past these a limit binds nothing
#: real, and the solvers' arithmetic (HiGHS treats 1e20 as infinite) would no longer be exact
MAX_SI = {"bits": 64.0, "memory": 1e18, "latency": 1e6, "energy": 1e12, "throughput": 1e12, "ttft": 1e6,
          "tpot": 1e6}
_PATTERN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf))\s*([a-zA-Z]+(?:/s)?)\s*$")


@dataclass(frozen=True)
class Budget:
    """What a plan may spend: one limit of one kind, as written (value and unit).

    Build one with a constructor, ``Budget.bits(3.7)`` (average effective bits per weight, scales and
    zero points included), ``Budget.gb(3.5)`` (weight memory), ``Budget.ms(12)`` (latency) or
    ``Budget.mj(5)`` (energy), or ``Budget(value, unit)`` with any unit of `UNITS`. An invalid value
    is a `QuantDSEError` naming the parameter ``budget``.

    :param value: the limit in `unit`: positive and finite, at most `MAX_SI` of its kind.
    :param unit: a key of `UNITS` (case matters: GB is bytes, mJ millijoules).
    """

    value: float
    unit: str = "bits"

    def __post_init__(self):
        if self.unit not in UNITS:
            raise QuantDSEError(f"unit {self.unit!r} is unknown: use one of {', '.join(UNITS)} "
                                "(case matters: GB is bytes, mJ millijoules)", param="budget")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise QuantDSEError(f"value must be a number, got {self.value!r}", param="budget")
        if not math.isfinite(self.value) or self.value <= 0:
            raise QuantDSEError(f"{self.value!r} {self.unit} must be a positive finite number", param="budget")
        object.__setattr__(self, "value", float(self.value))
        if self.si > MAX_SI[self.kind]:
            raise QuantDSEError(f"{self.text} is out of range: a {self.kind} budget must be at most "
                                f"{MAX_SI[self.kind] / UNITS[self.unit][1]:g}{self.unit}", param="budget")

    @classmethod
    def bits(cls, value: float) -> "Budget":
        """Average effective bits per weight (payload, scales and zero points)."""
        return cls(value, "bits")

    @classmethod
    def gb(cls, value: float) -> "Budget":
        """Weight memory in GB (1e9 bytes)."""
        return cls(value, "GB")

    @classmethod
    def ms(cls, value: float) -> "Budget":
        """Latency of one pass of the workload in milliseconds."""
        return cls(value, "ms")

    @classmethod
    def mj(cls, value: float) -> "Budget":
        """Energy of one pass of the workload in millijoules (the target's energy model: an estimate)."""
        return cls(value, "mJ")

    @classmethod
    def tokens_per_s(cls, value: float) -> "Budget":
        """A minimum throughput: the workload's output tokens per second."""
        return cls(value, "tok/s")

    @property
    def kind(self) -> str:
        """The constraint: bits, memory, latency, energy or throughput (a minimum)."""
        return UNITS[self.unit][0]

    @property
    def si(self) -> float:
        """The limit in SI units (bits, bytes, seconds, joules)."""
        return self.value * UNITS[self.unit][1]

    @property
    def text(self) -> str:
        """As a command line writes it: ``3.7bits``."""
        return f"{self.value:g}{self.unit}"

    def as_dict(self) -> dict:
        """The plan's ``budget`` entry: {"kind", "value", "text"}."""
        return {"kind": self.kind, "value": self.value, "text": self.text}


def budget_from_text(text: str) -> Budget:
    """`Budget` of a command line's budget text (`3.7bits`); errors say what to write."""
    _, _, value = parse_budget(text)
    return Budget(value, _PATTERN.match(str(text)).group(2))


def parse_budget(text: str) -> tuple[str, float, float]:
    """Return (kind, SI limit, value as written) for a budget string like "3.7bits"."""
    match = _PATTERN.match(str(text))
    if not match:
        raise QuantDSEError(f"malformed budget {text!r}: write a number and a unit, e.g. 3.7bits, 3.5GB, 12ms, 5mJ, "
                            "2000tok/s")
    value = float(match.group(1))
    unit = match.group(2)
    if unit not in UNITS:
        raise QuantDSEError(f"unknown budget unit {unit!r} in {text!r}: use bits, GB, MB, GiB, ms, s, us, mJ, J or tok/s "
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
