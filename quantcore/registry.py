"""One registry pattern for everything chosen by name: solvers, exporters, hardware families,
sensitivity sources.

A `Registry` maps names to ``"module"`` or ``"module:attribute"`` strings (imported on first
use, so listing names stays fast) or to objects. Packages outside a layer add entries through
Python entry points (``[project.entry-points."quantdse.solvers"]`` in their pyproject.toml),
which is how `policies` adds ``--method rl`` without `dse` importing it. A miss is one
`QuantDSEError` line with close matches and every valid name.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterable

from quantcore.errors import QuantDSEError


def unknown_name(kind: str, name: object, valid: Iterable[str], fix: str = "") -> QuantDSEError:
    """`unknown <kind> 'x' (did you mean y?): use one of a, b, c` as an exception to raise."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return QuantDSEError(f"unknown {kind} {name!r}{hint}: use one of {', '.join(valid)}{fix}")


class Registry:
    """Names -> objects, loaded lazily; entry points of `group` add names.

    :param kind: what a name names, for messages ("method", "export target", ...).
    :param entries: name -> ``"module"``, ``"module:attribute"`` or the object itself.
    :param group: the entry-point group other packages register under (None: none).
    :param fix: appended to the miss message, e.g. how to install a plugin.
    """

    def __init__(self, kind: str, entries: dict[str, Any], group: str | None = None, fix: str = ""):
        self.kind = kind
        self.group = group
        self.fix = fix
        self._entries = dict(entries)
        self._loaded: dict[str, Any] = {}
        self._plugins: dict[str, Any] | None = None

    def _plugin_entries(self) -> dict[str, Any]:
        """Entry points of `group`, read once (installed packages' metadata)."""
        if self._plugins is None:
            self._plugins = {}
            if self.group:
                from importlib.metadata import entry_points

                for ep in entry_points(group=self.group):
                    self._plugins.setdefault(ep.name, ep)
        return self._plugins

    def register(self, name: str, target: Any) -> None:
        """Add or replace `name` (a module path string, ``module:attr`` or the object)."""
        self._entries[name] = target
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name: built-in ones first, then plugins, in registration order."""
        return list(self._entries) + [n for n in self._plugin_entries() if n not in self._entries]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self):
        return iter(self.names())

    def check(self, name: object) -> str:
        """`name` if registered, else the one-line error listing close matches and every name."""
        if name not in self:
            raise unknown_name(self.kind, name, self.names(), self.fix)
        return str(name)

    def get(self, name: object) -> Any:
        """The object registered as `name`, imported on first use."""
        name = self.check(name)
        if name not in self._loaded:
            target = self._entries.get(name)
            if target is None:
                self._loaded[name] = self._plugin_entries()[name].load()
            elif isinstance(target, str):
                module, _, attr = target.partition(":")
                obj = importlib.import_module(module)
                self._loaded[name] = getattr(obj, attr) if attr else obj
            else:
                self._loaded[name] = target
        return self._loaded[name]
