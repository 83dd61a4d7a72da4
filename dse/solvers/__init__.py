"""Solvers: each module exposes `solve(problem, **options) -> SolveResult`.

`solve(problem, method=...)` picks one by name. Infeasibility is a status, not an
exception; the CLI turns it into the one-line error.
"""
from __future__ import annotations

import importlib
import importlib.util

from quantcore.errors import QuantDSEError
from dse.solvers.result import SolveResult

METHODS = {
    "ilp": "dse.solvers.ilp",
    "lagrangian": "dse.solvers.lagrangian",
    "mck": "dse.solvers.mck",
    "baq": "dse.solvers.baq",
    "nas": "dse.solvers.nas",
    "greedy": "dse.solvers.greedy",
    "uniform": "dse.solvers.uniform",
    "rl": "policies.solver",
}


def available_methods() -> list[str]:
    """Methods whose module is present in this installation."""
    out = []
    for name, module in METHODS.items():
        if importlib.util.find_spec(module) is not None:
            out.append(name)
    return out


def check_method(method: str) -> None:
    """A one-line error for a method that is not installed here."""
    if method not in METHODS or importlib.util.find_spec(METHODS[method]) is None:
        raise QuantDSEError(f"unknown method {method!r}: use one of {', '.join(available_methods())}")


def solve(problem, method: str = "ilp", **options) -> SolveResult:
    check_method(method)
    return importlib.import_module(METHODS[method]).solve(problem, **options)


__all__ = ["solve", "check_method", "SolveResult", "METHODS", "available_methods"]
