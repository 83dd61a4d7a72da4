"""Limits on input: documented ranges for numbers, and caps on work, each with a way to raise it.

Every number a user gives is checked where it enters, in the units the user wrote, and a
message names the flag or key and its range (`check_int`, `int_flag`).
Caps bound the work one run may ask for (graph size, sweep points, file sizes, nesting);
each can be raised with its environment variable (`cap`), and the message says so.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from quantcore.errors import QuantDSEError


@dataclass(frozen=True)
class Cap:
    env: str
    default: int
    what: str


#: the caps on work; README "Limits on input" lists them
CAPS = {
    "layers": Cap("QUANTDSE_MAX_LAYERS", 200_000, "layers (graph nodes) in one model"),
    "sweep_points": Cap("QUANTDSE_MAX_SWEEP_POINTS", 10_000, "points in one --sweep"),
    "json_bytes": Cap("QUANTDSE_MAX_JSON_BYTES", 1 << 30, "bytes of one JSON input file"),
    "toml_bytes": Cap("QUANTDSE_MAX_TOML_BYTES", 16 << 20, "bytes of one TOML spec file"),
    "depth": Cap("QUANTDSE_MAX_DEPTH", 64, "levels of nesting in a JSON or TOML document"),
    "threads": Cap("QUANTDSE_MAX_THREADS", 4 * (os.cpu_count() or 1), "threads of one calibration"),
    "plans": Cap("QUANTDSE_MAX_PLANS", 64, "plans compared at once"),
    "calib_texts": Cap("QUANTDSE_MAX_CALIB_TEXTS", 20_000, "calibration texts (non-empty lines)"),
}

#: the largest value any cap takes: a raised cap stays an int every buffer size and range accepts
CAP_CEILING = 2 ** 62


#: documented ranges of the integer flags shared by the CLIs (README "Limits on input")
RANGES = {"batch": (1, 1 << 16), "seq": (1, 1 << 24), "kv_bits": (1, 32), "seed": (0, 2 ** 32 - 1),
          "gemm": (1, 1 << 24), "episodes": (0, 1_000_000), "timesteps": (100, 100_000_000),
          "steps": (1, 10_000), "resolution": (8, 1 << 14),
          "output_len": (1, 1 << 20), "devices": (1, 1024)}


def cap(name: str) -> int:
    """The cap `name` (CAPS), from its environment variable when set.

    An empty value is an error (not the default); a huge one (`1e20`) is held at CAP_CEILING.
    """
    c = CAPS[name]
    text = os.environ.get(c.env)
    if text is None:
        return c.default
    bad = QuantDSEError(f"{c.env}={text[:40]!r} must be a positive integer (e.g. {c.env}={c.default}): "
                        "fix or unset it")
    value = _integer_text(text)
    if value is None or value < 1:
        raise bad
    return min(value, CAP_CEILING)


def _integer_text(text: str) -> int | None:
    """An integer written as digits or as an integral number in e-notation (`1e20`), else None."""
    text = text.strip()
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not value.is_integer():
        return None
    return int(value)


def over_cap(name: str, got) -> QuantDSEError:
    """The error for `got` exceeding cap `name`: names the cap and how to raise it."""
    c = CAPS[name]
    return QuantDSEError(f"{got} exceeds the cap of {cap(name):,} {c.what}: "
                         f"raise it with {c.env}=N if you mean it")


def check_cap(name: str, got: int, what: str | None = None) -> None:
    if got > cap(name):
        raise over_cap(name, f"{what} ({show_number(got)})" if what else show_number(got))


def show_number(value) -> str:
    """A number for a message: grouped digits, or short scientific form when huge."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10 ** 15:
            return f"{value:,}"
        digits = len(str(abs(value)))
        return f"{'-' if value < 0 else ''}{str(abs(value))[0]}.{str(abs(value))[1:3]}e+{digits - 1}"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def int_problem(value, lo: int, hi: int) -> str | None:
    """Why `value` is not an int in [lo, hi] (integral floats accepted), or None."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer in [{lo:,}, {hi:,}], got {value!r}"
    if not lo <= value <= hi:
        return f"must be in [{lo:,}, {hi:,}], got {show_number(value)}"
    return None


def check_int(value, name: str, lo: int, hi: int) -> int:
    """`value` as an int in [lo, hi]; else a one-line QuantDSEError naming `name` (a flag or key)."""
    problem = int_problem(value, lo, hi)
    if problem:
        raise QuantDSEError(f"{name} {problem}")
    return int(value)


def int_flag(lo: int, hi: int):
    """An argparse `type=` for an integer flag with a documented range (argparse names the flag)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo:,}, {hi:,}], got {str(text)[:30]!r}") from None
        problem = int_problem(value, lo, hi)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    return parse


def float_flag(lo: float, hi: float):
    """An argparse `type=` for a finite number flag in [lo, hi] (argparse names the flag)."""
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a finite number in [{lo:g}, {hi:g}], got {str(text)[:30]!r}")
        return value
    return parse
