"""Hardware specs: TOML data files, validated against their family's schema.

A spec file looks like::

    schema = "hwmodels.spec/1"
    name = "u280"
    family = "fpga_llm"
    description = "AMD Alveo U280 running a FlightLLM-style decode/prefill engine"
    extends = "other-spec"          # optional: start from another spec's params

    [params]                        # SI units; the unit is in the key (clock_hz, hbm_bytes_per_s)
    clock_hz = 225e6

    [sources]                       # where each constant comes from
    clock_hz = "FlightLLM (FPGA'24) Sec. 6"

Loading collects every problem and raises one `QuantDSEError` listing them all,
so a user fixes a spec in one pass (ZigZag's validator does the same).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from quantcore.errors import QuantDSEError

SPEC_SCHEMA = "hwmodels.spec/1"
SPEC_DIR = Path(__file__).parent / "specs"
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
            raise QuantDSEError(f"--set {key}={text}: {key} must be {kind}") from None


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


def list_specs() -> list[str]:
    """Names of the built-in targets (one spec file each)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    from quantcore.io import load_toml

    return load_toml(path, "hardware spec")


def _resolve_path(name_or_path: str, base: Path | None = None) -> Path:
    """A built-in name, or a spec path (relative to `base`, the folder of the spec that names it)."""
    candidate = Path(name_or_path)
    if base is not None and not candidate.is_absolute() and (candidate.suffix == ".toml" or "/" in name_or_path):
        candidate = base / candidate
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.exists():
            raise QuantDSEError(f"hardware spec file {candidate} not found: check the path")
        return candidate
    builtin = SPEC_DIR / f"{name_or_path}.toml"
    if builtin.is_file():
        return builtin
    raise _unknown(name_or_path)


def _unknown(name_or_path: str) -> QuantDSEError:
    """The error for a name that is no built-in target: close matches and the list."""
    import difflib

    names = list_specs()
    close = difflib.get_close_matches(name_or_path, names, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return QuantDSEError(
        f"unknown hardware {name_or_path!r}: {hint}choose one of {', '.join(names)} "
        f"(python -m hwmodels.list) or pass a spec .toml path")


def _resolve_extends(parent: str, spec: Path) -> Path:
    """A spec's `extends`: a built-in name, or a .toml path inside the spec's own folder (a spec is
    untrusted input: it may not make the tool read files elsewhere)."""
    from quantcore.io import path_inside

    if "/" not in parent and "\\" not in parent and not parent.endswith(".toml"):
        if parent in list_specs():
            return SPEC_DIR / f"{parent}.toml"
        raise _unknown(parent)
    target = path_inside(parent, spec.parent, f"hardware spec {spec}: extends")
    if not target.is_file():
        raise QuantDSEError(f"hardware spec {spec}: extends {parent}: no such spec file beside it: check the name")
    return target


def _raw_params(path: Path, seen: tuple = ()) -> tuple[dict, dict, dict, tuple]:
    """Top-level table, params and sources of a spec file with `extends` applied, and the chain of
    (path, family) it extends, nearest first. Relative `extends` paths are from the spec's own folder."""
    import os

    doc = _read_toml(path)
    seen = seen + (os.path.realpath(path),)
    params: dict = {}
    sources: dict = {}
    chain: tuple = ()
    parent = doc.get("extends")
    if parent is not None:
        if not isinstance(parent, str) or not parent.strip():
            raise QuantDSEError(f"hardware spec {path}: extends must be a spec name or .toml path")
        parent_path = _resolve_extends(parent.strip(), path)
        if os.path.realpath(parent_path) in seen:
            raise QuantDSEError(f"hardware spec {path}: extends cycle through {parent!r}: break the cycle")
        if len(seen) > 32:
            raise QuantDSEError(f"hardware spec {path}: extends chain longer than 32 specs: shorten it")
        parent_doc, params, sources, chain = _raw_params(parent_path, seen)
        chain = ((parent_path, parent_doc.get("family")),) + chain
    own = doc.get("params", {})
    if not isinstance(own, dict):
        raise QuantDSEError(f"hardware spec {path}: [params] must be a table")
    params.update(own)
    src = doc.get("sources", {})
    if isinstance(src, dict):
        sources.update({k: str(v) for k, v in src.items()})
    return doc, params, sources, chain


def load_spec(name_or_path: str) -> HardwareSpec:
    """Load a built-in target by name, or a spec file by path, and validate it."""
    from hwmodels.registry import family_schema, family_names

    path = _resolve_path(str(name_or_path))
    doc, params, sources, chain = _raw_params(path)
    problems: list[str] = []
    if doc.get("schema") != SPEC_SCHEMA:
        problems.append(f'schema must be "{SPEC_SCHEMA}", got {doc.get("schema")!r}')
    unknown_top = set(doc) - {"schema", "name", "family", "description", "extends", "params", "sources"}
    if unknown_top:
        problems.append(f"unknown top-level keys {', '.join(sorted(unknown_top))}")
    family = doc.get("family")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        problems.append("name must be a non-empty string")
    inherited = next(((p, f) for p, f in chain if f is not None), None)
    if family is None and inherited is not None:
        family = inherited[1]
    if family is None and chain:
        problems.append("family is missing: neither this spec nor the specs it extends "
                        f"({', '.join(str(p) for p, _ in chain)}) set it; add family = one of {', '.join(family_names())}")
    elif family not in family_names():
        problems.append(f"family must be one of {', '.join(family_names())}, got {family!r}")
    if family not in family_names():
        raise QuantDSEError(f"hardware spec {path}: " + "; ".join(problems))
    schema = family_schema(family)
    checked: dict = {}
    for key in sorted(set(params) - set(schema)):
        problems.append(f"unknown param {key!r} (valid: {', '.join(sorted(schema))})")
    for key, p in schema.items():
        if key not in params:
            if p.default is None:
                problems.append(f"missing param {key!r} ({p.help})")
            else:
                checked[key] = p.default
            continue
        value, problem = p.check(key, params[key])
        if problem:
            problems.append(problem)
        checked[key] = value
    if problems:
        raise QuantDSEError(f"hardware spec {path}: " + "; ".join(problems))
    return HardwareSpec(name=name, family=family, description=str(doc.get("description", "")),
                        params=MappingProxyType(checked), sources=MappingProxyType(sources), path=str(path))


def apply_overrides(spec: HardwareSpec, assignments: list[str] | None) -> HardwareSpec:
    """Apply `--set KEY=VALUE` overrides with the family schema's type and range checks."""
    if not assignments:
        return spec
    from hwmodels.registry import family_schema

    schema = family_schema(spec.family)
    params = dict(spec.params)
    for item in assignments:
        if "=" not in item:
            raise QuantDSEError(f"--set {item!r} must be KEY=VALUE, e.g. --set clock_hz=300e6")
        key, text = (part.strip() for part in item.split("=", 1))
        if key not in schema:
            raise QuantDSEError(
                f"--set {key}: unknown param for {spec.name} (family {spec.family}); valid: {', '.join(sorted(schema))}")
        value, problem = schema[key].check(key, schema[key].parse_text(key, text))
        if problem:
            raise QuantDSEError(f"--set {problem}")
        params[key] = value
    overridden = {a.split("=", 1)[0].strip() for a in assignments}
    sources = dict(spec.sources)
    for key in overridden:
        sources[key] = SET_SOURCE
    return replace(spec, params=MappingProxyType(params), sources=MappingProxyType(sources))
