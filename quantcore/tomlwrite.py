"""A small TOML writer for the documents this project writes (derived hardware specs).

Top-level keys hold strings, booleans, integers, finite floats or lists of them; a dict value
becomes a ``[table]`` of such keys. Strings are written as TOML basic strings with every
character TOML requires escaped; keys that are not bare words are quoted. A value of another
type is a TypeError (a bug in the caller, not bad input). Readers: `tomllib` (the tests load
every document written back and compare).
"""
from __future__ import annotations

import math
import re

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"TOML value {value!r}: only finite numbers are written")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"TOML value of type {type(value).__name__} is not supported")


def toml_dumps(doc: dict) -> str:
    """TOML text of `doc`: scalar keys first, then one table per dict value."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines += ["", f"[{_key(name)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
