"""Check a JSON document against a JSON Schema, plainly: the subset our committed schemas use.

Keywords: type, const, enum, required, properties, additionalProperties, items, minItems,
minLength, minimum, exclusiveMinimum, maximum. Every problem is collected (a user fixes a
file in one pass), each as ``where: what``. Numbers must also be finite, which JSON Schema
cannot say and Python's json module lets through (NaN, Infinity). The tests check the same
documents with the `jsonschema` package, so this subset cannot drift from the standard.
"""
from __future__ import annotations

import math
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _name(value: Any) -> str:
    """How a wrong value is shown: its JSON type, and the value itself when short."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
    text = repr(value) if not isinstance(value, (dict, list)) else ""
    return f"{kind} {text}".strip() if len(text) <= 40 else kind


def problems(doc: Any, schema: dict, where: str = "") -> list[str]:
    """Every way `doc` breaks `schema`, as ``where: what`` strings (empty: it conforms)."""
    out: list[str] = []
    _check(doc, schema, where, out)
    return out


def _check(value: Any, schema: dict, where: str, out: list[str]) -> None:
    here = where or "the document"
    if isinstance(value, float) and not math.isfinite(value):
        out.append(f"{here} must be a finite number, got {value}")
        return
    if "const" in schema and value != schema["const"]:
        out.append(f"{here} must be {schema['const']!r}, got {_name(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{here} must be one of {', '.join(map(str, schema['enum']))}, got {_name(value)}")
        return
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](value) for t in types):
            words = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
                     "number": "a number", "boolean": "true or false", "null": "null"}
            out.append(f"{here} must be {' or '.join(words[t] for t in types)}, got {_name(value)}")
            return
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{here} must be >= {schema['minimum']}, got {value}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{here} must be > {schema['exclusiveMinimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{here} must be <= {schema['maximum']}, got {value}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        out.append(f"{here} must not be empty")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{here} must have at least {schema['minItems']} entries")
        items = schema.get("items")
        if items is not None:
            for i in _suspects(value, items):
                _check(value[i], items, f"{where}[{i}]", out)
    if isinstance(value, dict):
        missing = [k for k in schema.get("required", ()) if k not in value]
        if missing:
            out.append(f"{here} lacks {', '.join(missing)}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{where}.{key}" if where else str(key)
            if key in props:
                _check(item, props[key], sub, out)
            elif extra is False:
                out.append(f"{sub} is not allowed")
            elif isinstance(extra, dict):
                _check(item, extra, sub, out)
            else:
                _finite(item, sub, out)


def _finite(value: Any, where: str, out: list[str]) -> None:
    """Numbers under keys the schema leaves open must still be finite."""
    if isinstance(value, float) and not math.isfinite(value):
        out.append(f"{where} must be a finite number, got {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{where}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite(v, f"{where}[{i}]", out)


# ------------------------------------------------------------------ fast path for long lists of records

_BIG = 1.7976931348623157e308  # the largest finite float
_SIMPLE = {"type", "const", "enum", "minimum", "exclusiveMinimum", "maximum", "minLength"}


def _fast_ok(schema: dict):
    """A predicate for a scalar schema (no nested objects or arrays), or None where there is none."""
    if set(schema) - _SIMPLE:
        return None
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types
    if types and ({"object", "array"} & set(types)):
        return None
    tests = [_TYPES[t] for t in types or ()]
    lo, xlo, hi = schema.get("minimum"), schema.get("exclusiveMinimum"), schema.get("maximum")
    enum = schema.get("enum")
    const = schema.get("const", _TYPES)  # _TYPES: no const
    min_len = schema.get("minLength", 0)
    # the common cases as one expression each (a comparison chain fails for NaN and, with finite ends, for inf)
    low = lo if lo is not None else -_BIG
    high = hi if hi is not None else _BIG
    above = xlo if xlo is not None else -math.inf
    if types == ["number"] and enum is None and const is _TYPES:
        return lambda v: (type(v) is float or type(v) is int) and low <= v <= high and v > above
    if types == ["integer"] and enum is None and const is _TYPES:
        return lambda v: type(v) is int and low <= v <= high and v > above
    if types == ["string"] and enum is None and const is _TYPES:
        return lambda v: type(v) is str and len(v) >= min_len
    if sorted(types or ()) == ["integer", "null"] and enum is None and const is _TYPES:
        return lambda v: v is None or (type(v) is int and low <= v <= high and v > above)
    if not types and enum is not None and const is _TYPES and all(type(e) is str for e in enum):
        names = frozenset(enum)
        return lambda v: type(v) is str and v in names

    def ok(v) -> bool:
        if tests and not any(t(v) for t in tests):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if (isinstance(v, (int, float)) and not isinstance(v, bool)
                and ((lo is not None and v < lo) or (xlo is not None and v <= xlo) or (hi is not None and v > hi))):
            return False
        if isinstance(v, str) and len(v) < min_len:
            return False
        return (enum is None or v in enum) and (const is _TYPES or v == const)
    return ok


def _suspects(values: list, schema: dict) -> list[int]:
    """Indices of `values` that may break `schema`: all of them, except that a list of records whose
    fields are scalars is screened field by field first (a 45k-layer plan in a fraction of a second)."""
    if schema.get("type") != "object" or not all(isinstance(v, dict) for v in values):
        return list(range(len(values)))
    props = schema.get("properties", {})
    checks = {k: _fast_ok(sub) for k, sub in props.items()}
    if any(c is None for c in checks.values()) or schema.get("additionalProperties", True) is not True:
        return list(range(len(values)))
    required = schema.get("required", ())
    bad = set()
    for key, ok in checks.items():
        bad.update(i for i, v in enumerate(values) if key in v and not ok(v[key]))
    bad.update(i for i, v in enumerate(values) if any(k not in v for k in required))
    known = set(props)
    for i, v in enumerate(values):
        if v.keys() - known and any(_not_finite(x) for k, x in v.items() if k not in known):
            bad.add(i)
    return sorted(bad)


def _not_finite(value: Any) -> bool:
    out: list[str] = []
    _finite(value, "", out)
    return bool(out)
