"""Which published documents the constants of a computation were fitted to, read from or chosen beside.

A spec's `[sources]` text (and a GPU runtime profile's) cites a document in square brackets,
`[tmac]`, when the constant's value was fitted to, read from, or chosen with a published figure
of that document in view. The keys are those of docs/references.md. A citation there is a
statement about the value, not a courtesy: a figure of a cited document cannot check the
constant, or anything computed with it.

`recording()` collects the spec of every cost model built while it is open (`note` is called
by `HardwareModel.__init__`), so a caller learns which constants a computation used without
declaring them. `cached` memoises a function like `functools.cache` and replays the specs the
first call recorded, so a cached result still names its constants. `dependencies` then lists
the constants that cite any of a set of documents: a published figure is an independent check
only when that list is empty for its own documents.
"""
from __future__ import annotations

import contextlib
import functools
import re

#: a citation: a reference key in square brackets, e.g. [tmac] or [trtllm-perf-v0.5]
CITATION = re.compile(r"\[([a-z0-9][a-z0-9.+-]*)\]")
_ACTIVE: list[list] = []


def citations(text: str) -> set[str]:
    """The reference keys a source text cites."""
    return set(CITATION.findall(text or ""))


def note(spec) -> None:
    """Record `spec` in every open recording (called for each cost model built)."""
    for used in _ACTIVE:
        used.append(spec)


@contextlib.contextmanager
def recording():
    """Collect the specs of the cost models built inside the block (a list, filled as they are built)."""
    used: list = []
    _ACTIVE.append(used)
    try:
        yield used
    finally:
        del _ACTIVE[next(i for i, rec in enumerate(_ACTIVE) if rec is used)]  # by identity: lists compare by value


def cached(fn):
    """`functools.cache` for functions that build cost models: a hit replays the specs the first call used."""
    memo: dict = {}

    @functools.wraps(fn)
    def wrapper(*args):
        if args in memo:
            result, used = memo[args]
            for spec in used:
                note(spec)
            return result
        with recording() as used:  # the open recordings see these specs as they are built
            result = fn(*args)
        memo[args] = (result, list(used))
        return result

    wrapper.cache_clear = memo.clear
    return wrapper


def dependencies(specs, documents, quantity: str = "time") -> list[str]:
    """`spec.param [key]` for every constant of `specs` whose source cites one of `documents`.

    With quantity="time", a family's `ENERGY_PARAMS` are left out: they enter energy and
    power, never latency (tests/test_fidelity.py checks that for every family)."""
    from hwmodels.registry import family_class

    wanted = set(documents)
    found = set()
    for spec in {id(s): s for s in specs}.values():
        skip = set(family_class(spec.family).ENERGY_PARAMS) if quantity == "time" else set()
        for key, text in spec.sources.items():
            if key in spec.params and key not in skip:
                found.update(f"{spec.name}.{key} [{doc}]" for doc in citations(text) & wanted)
    return sorted(found)
