"""Progress bars for long solver runs: tqdm on stderr, shown only when stderr is a terminal."""
from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager


def reports_progress(method: str) -> bool:
    """Whether the solver's `solve` takes a `progress` callback (nas does; exact solvers finish in a blink)."""
    from dse.solvers import SOLVERS, solver_function

    if method not in SOLVERS:
        return False
    return "progress" in inspect.signature(solver_function(method)).parameters


@contextmanager
def solver_progress(method: str, enabled: bool = True):
    """Yield a `progress(done, note)` callback feeding a tqdm bar, or None when off.

    The bar is off when not `enabled`, when the solver does not report progress, and (tqdm's
    `disable=None`) when stderr is not a terminal, so pipes, logs and tests stay clean.
    """
    if not enabled or not reports_progress(method):
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(desc=f"{method} search", unit="step", file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)

    def progress(done: int, note: str = "") -> None:
        if note:
            bar.set_postfix_str(note, refresh=False)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()
