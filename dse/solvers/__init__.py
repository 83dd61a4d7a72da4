"""Solvers: each module exposes `solve(problem, **options) -> SolveResult`.

`solve(problem, method=...)` picks one by name from `SOLVERS`. A solver declares its options
as typed keyword parameters of its `solve`; an option it does not declare, or a value of the
wrong type, is a one-line error naming it (scipy's `_milp_iv` does the same). Infeasibility
is a status, not an exception; the CLI turns it into the one-line error.

Other packages add methods through the ``quantdse.solvers`` entry-point group (a module with
`solve`, or the function itself): `policies` registers ``rl`` that way.
"""
from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any

from quantcore.errors import QuantDSEError
from quantcore.registry import Registry
from dse.solvers.result import SolveResult

SOLVERS = Registry("method", {
    "ilp": "dse.solvers.ilp",
    "lagrangian": "dse.solvers.lagrangian",
    "mck": "dse.solvers.mck",
    "baq": "dse.solvers.baq",
    "nas": "dse.solvers.nas",
    "greedy": "dse.solvers.greedy",
    "uniform": "dse.solvers.uniform",
}, group="quantdse.solvers",
    fix=" (rl comes with the policies package: reinstall with pip install -e . if it is missing)")

#: what the pipeline passes to every solver that declares it (not user options: never an error)
CONTEXT = ("seed", "progress", "layers", "weights", "policy", "model")


@dataclass(frozen=True)
class Option:
    """One option a solver declares: its name, type (int, float, bool, str or None: any) and default."""

    name: str
    type: type | None
    default: Any
    optional: bool  # None is allowed

    def check(self, method: str, value: Any) -> Any:
        """`value` as this option's type, or the one-line error naming the option."""
        if value is None and self.optional:
            return None
        t = self.type
        ok = (t is None or (t is bool and isinstance(value, bool))
              or (t is int and isinstance(value, int) and not isinstance(value, bool))
              or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
              or (t is str and isinstance(value, str)))
        if not ok:
            raise QuantDSEError(f"solver option {self.name}={value!r}: {method} takes "
                                f"{_TYPE_WORDS.get(t, 'a value')}{' or None' if self.optional else ''}")
        if t is float:
            value = float(value)
            if math.isnan(value):
                raise QuantDSEError(f"solver option {self.name}=nan: {method} takes a number")
        return value


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def solver_function(method: str):
    """The `solve` function of a method (a registered module's `solve`, or a registered function)."""
    target = SOLVERS.get(method)
    return getattr(target, "solve", target)


def options(method: str) -> dict[str, Option]:
    """The options `method` declares (keyword parameters of its `solve`, less the problem and context)."""
    fn = solver_function(method)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation this Python cannot resolve: options stay untyped
        hints = {}
    out = {}
    for name, p in list(inspect.signature(fn).parameters.items())[1:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or name in CONTEXT:
            continue
        t, optional = _base_type(hints.get(name), p.default)
        out[name] = Option(name, t, p.default, optional)
    return out


def _base_type(hint, default) -> tuple[type | None, bool]:
    """(int/float/bool/str or None, whether None is allowed) of an annotation."""
    args = typing.get_args(hint)
    optional = default is None or type(None) in args
    if args:
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    if hint in (int, float, bool, str):
        return hint, optional
    if hint is None and default is not None and type(default) in (int, float, bool, str):
        return type(default), optional
    return None, optional


def check_method(method: str) -> None:
    """A one-line error for a method that is not registered here (close matches, every name)."""
    SOLVERS.check(method)


def available_methods() -> list[str]:
    """Every registered method (built-in and plugins)."""
    return SOLVERS.names()


def check_options(method: str, given: dict) -> dict:
    """`given` user options checked against what `method` declares: unknown names and wrong types are errors."""
    from quantcore.registry import unknown_name

    declared = options(method)
    out = {}
    for name, value in given.items():
        if name not in declared:
            raise unknown_name(f"solver option of {method}", name, declared or ["(none: it takes no options)"])
        out[name] = declared[name].check(method, value)
    return out


def solve(problem, method: str = "ilp", **options_) -> SolveResult:
    """Solve `problem` with `method`; `options_` are the method's declared options plus any of CONTEXT
    (passed where the solver declares them, dropped silently elsewhere)."""
    fn = solver_function(method)
    params = inspect.signature(fn).parameters
    context = {k: options_.pop(k) for k in list(options_) if k in CONTEXT}
    kept = check_options(method, options_)
    kept.update({k: v for k, v in context.items() if k in params})
    return fn(problem, **kept)


def reads_run(method: str) -> bool:
    """Whether `method` reads more of the run than its problem (layers, weights, policy, model): then an
    equal problem is not enough to reuse its answer."""
    return any(k in inspect.signature(solver_function(method)).parameters for k in ("layers", "weights", "policy", "model"))


__all__ = ["solve", "check_method", "reads_run", "check_options", "options", "SolveResult", "SOLVERS", "available_methods",
           "Option"]
