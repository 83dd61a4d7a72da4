"""The values specs are made of: `Param` (one typed, ranged, documented field of a family's schema)
and `HardwareSpec` (a validated target). Loading and checking spec files is `hwmodels.spec`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from quantcore.errors import QuantDSEError

#: the source recorded for a param given by `--set` (runtime profiles do not replace these)
SET_SOURCE = "--set override"


@dataclass(frozen=True)
class Param:
    """One field of a family's schema: its type, range, choices, default and meaning."""

    type: type
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    default: Any = None  # None = required

    def check(self, key: str, value: Any) -> tuple[Any, str | None]:
        """Return (coerced value, problem or None)."""
        t = self.type
        if t is bool:
            if not isinstance(value, bool):
                return value, f"{key} must be true or false, got {value!r}"
        elif t is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    return value, f"{key} must be an integer, got {value!r}"
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return value, f"{key} must be a number, got {value!r}"
            value = float(value)
            if not math.isfinite(value):
                return value, f"{key} must be finite, got {value!r}"
        elif t is str:
            if not isinstance(value, str):
                return value, f"{key} must be a string, got {value!r}"
        elif t is list:
            if not isinstance(value, list):
                return value, f"{key} must be a list, got {value!r}"
            value = tuple(value)
        if self.choices is not None and value not in self.choices:
            return value, f"{key} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.min is not None and t in (int, float) and value < self.min:
            return value, f"{key} must be >= {self.min}, got {value!r}"
        if self.max is not None and t in (int, float) and value > self.max:
            return value, f"{key} must be <= {self.max}, got {value!r}"
        return value, None

    def parse_text(self, key: str, text: str) -> Any:
        """Parse a `--set KEY=VALUE` string into this param's type (range not checked here)."""
        t = self.type
        try:
            if t is bool:
                low = text.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if t is int:
                number = float(text)
                if not number.is_integer():
                    raise ValueError
                return int(number)
            if t is float:
                return float(text)
            if t is list:
                return [part.strip() for part in text.split(",") if part.strip()]
            return text
        except ValueError:
            kind = {bool: "true or false", int: "an integer", float: "a number"}.get(t, str(t))
            raise QuantDSEError(f"must be {kind}, got {text!r}", param="overrides", key=key) from None


@dataclass(frozen=True)
class HardwareSpec:
    """A validated hardware target: family, parameters and the source of each."""

    name: str
    family: str
    description: str
    params: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)
    path: str = ""

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def as_dict(self) -> dict:
        return {"name": self.name, "family": self.family, "description": self.description,
                "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
                "sources": dict(self.sources)}
